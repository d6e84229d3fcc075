"""The one module that talks to MLflow.

Everything else (the engine, the training and prediction steps, pages, tests) goes
through these functions, so the tracking store is configured in one place.
"""

import importlib
import json
import os
import pickle
import pickletools
import re
import tempfile
from pathlib import Path
from typing import Any

# MLflow configures its own loggers at import and narrates migrations at INFO.
os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
# A tracking server that does not answer fails a run's start in seconds, not after
# MLflow's default of 7 retries with exponential backoff (minutes).
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")

import mlflow  # noqa: E402
import mlflow.sklearn  # noqa: E402
from django.conf import settings  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402
from mlflow.models import infer_signature  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

# MLflow rejects parameter values longer than this.
_MAX_PARAM_LENGTH = 500
# Characters MLflow refuses in a parameter key.
_PARAM_KEY_UNSAFE = re.compile(r"[^\w\-. :/]")

MODEL_URI_FORMS = (
    "runs:/<run id>/model, models:/<model id>, models:/<name>@<alias> or models:/<name>/<version>"
)
# The model URIs a pipeline may predict with. Run and logged-model ids are MLflow's uuid4
# hex; a run's model is named, not a nested artifact path.
_MODEL_URI = re.compile(
    r"runs:/(?P<run_id>[0-9a-f]{32})/(?P<model_name>[\w.-]+)"
    r"|models:/(?P<model_id>m-[0-9a-f]{32})"
    r"|models:/(?P<name>[^/@:]+)(?:@(?P<alias>[\w-]+)|/(?P<version>[0-9]+))"
)


class TrackingUnavailable(RuntimeError):
    """The MLflow tracking store cannot be reached."""


def store_name() -> str:
    """The tracking URI without credentials, for messages."""
    return _without_credentials(settings.MLFLOW_TRACKING_URI)


def _without_credentials(text: str) -> str:
    return re.sub(r"//[^/@\s]*@", "//", text)


class ModelNotFound(LookupError):
    """A model URI that names no model in the tracking store or the model registry."""


def preload() -> None:
    """Do MLflow's one-off work of a first run: lazy imports, ORM mappers, package map.

    A worker calls this before it forks engine processes, which then inherit it instead
    of paying about 2 s each. The store is opened here too, so a child skips its schema
    checks; `after_fork` makes the child open its own connections to it.
    """
    import git  # noqa: F401  (MLflow imports GitPython in every run to tag the commit)
    import mlflow.pyfunc  # noqa: F401
    import mlflow.store.tracking.sqlalchemy_store  # noqa: F401
    import mlflow.utils.git_utils  # noqa: F401
    import skops.io  # noqa: F401
    from mlflow.utils import requirements_utils
    from sqlalchemy.orm import configure_mappers

    configure_mappers()
    # log_model maps every installed module to its package once per process (about 2 s
    # of reading package metadata); building the map here lets forked runs inherit it.
    requirements_utils._init_modules_to_packages_map()
    configure().search_experiments(max_results=1)


_INHERITED_POOLS: list = []


def after_fork() -> None:
    """In a forked child: leave the parent's store connections alone, open new ones.

    The inherited pools stay referenced so that freeing them never closes a connection
    the parent still uses.
    """
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    for engine in SqlAlchemyStore._engine_map.values():
        _INHERITED_POOLS.append(engine.pool)
        engine.dispose(close=False)


_client: tuple[str, MlflowClient] | None = None


def configure() -> MlflowClient:
    """The client of the configured store. It is kept (for the last URI only: tests switch
    stores) because building one costs about 0.35 ms, a tenth of a prediction's overhead."""
    global _client
    uri = settings.MLFLOW_TRACKING_URI
    mlflow.set_tracking_uri(uri)
    if _client is None or _client[0] != uri:
        _client = (uri, MlflowClient(uri))
    return _client[1]


def ensure_experiment(name: str) -> str:
    """The id of the named experiment, created with a local artifact folder if needed."""
    client = configure()
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    artifact_location = None
    if _is_local_store(settings.MLFLOW_TRACKING_URI):
        folder = Path(settings.MLFLOW_ARTIFACT_ROOT) / name.replace("/", "_")
        artifact_location = folder.as_uri()
    return client.create_experiment(name, artifact_location=artifact_location)


class TrackedRun:
    """One MLflow run, open from `start` until `end`."""

    def __init__(self, run_id: str):
        self.run_id = run_id

    @classmethod
    def start(cls, experiment: str, run_name: str, tags: dict[str, str]) -> "TrackedRun":
        """Open the run; TrackingUnavailable, naming the store, if it cannot be reached."""
        try:
            experiment_id = ensure_experiment(experiment)
            active = mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=tags)
        except (MlflowException, OSError) as exc:
            cause = _without_credentials(str(exc).splitlines()[0] if str(exc) else "")[:200]
            raise TrackingUnavailable(
                f"the MLflow tracking store at {store_name()} cannot be reached "
                f"({type(exc).__name__}: {cause}); no step was run"
            ) from None  # the cause's text carries the URI as given, credentials included
        return cls(active.info.run_id)

    def log_params(self, params: dict[str, Any]) -> None:
        clean = {key: str(value)[:_MAX_PARAM_LENGTH] for key, value in params.items()}
        mlflow.log_params(clean)

    def log_metrics(self, metrics: dict[str, float]) -> None:
        mlflow.log_metrics({key: float(value) for key, value in metrics.items()})

    def log_artifacts(self, folder: str, artifacts: dict[str, Any]) -> list[str]:
        """Log named tables (CSV), mappings and lists (JSON) or text under `folder`.

        Returns the artifact paths, relative to the run's artifact root.
        """
        with tempfile.TemporaryDirectory() as scratch:
            for name, value in artifacts.items():
                _write_artifact(Path(scratch) / name, value)
            mlflow.log_artifacts(scratch, artifact_path=folder)
        return [f"{folder}/{name}" for name in artifacts]

    def log_trials(self, step_label: str, trials: list[dict]) -> None:
        """Log each search trial as a run nested in this one: its params and metrics."""
        experiment_id = mlflow.get_run(self.run_id).info.experiment_id
        for number, trial in enumerate(trials, start=1):
            name = f"{step_label} trial {number}"
            with mlflow.start_run(run_name=name, experiment_id=experiment_id, nested=True):
                mlflow.set_tags({"mlops.trial": str(number), "mlops.best": str(trial["best"])})
                self.log_params(trial["params"])
                self.log_metrics(trial["metrics"])

    def log_curves(self, curves: dict[str, list[float]]) -> None:
        """Log each learning curve as the history of one metric, a value per iteration."""
        for key, values in curves.items():
            log_metric_steps(self.run_id, key, values)

    def log_sklearn_model(self, model, input_example) -> str:
        """Log a fitted sklearn estimator with its signature; returns the model URI."""
        # Transformers such as PCA have no predict: their output is the transform.
        output = model.predict if hasattr(model, "predict") else model.transform
        signature = infer_signature(input_example, output(input_example))
        # The model was fitted by this run, so the classes it is made of (tree
        # internals, numpy dtypes) are trusted when skops loads it back.
        trusted = _classes_in(model)
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            signature=signature,
            input_example=input_example,
            # Listing requirements skips MLflow's slow dependency inference.
            pip_requirements=[f"scikit-learn=={_sklearn_version()}", "pandas", "numpy"],
            skops_trusted_types=trusted,
        )
        mlflow.set_tag("mlops.model_uri", info.model_uri)
        return info.model_uri

    def end(self, succeeded: bool) -> None:
        mlflow.end_run(status="FINISHED" if succeeded else "FAILED")


def flatten_params(steps: list[dict]) -> dict[str, Any]:
    """Step params as flat MLflow params: `<order>.<type>.<name>[.<nested>]`."""
    flat: dict[str, Any] = {}
    for step in steps:
        prefix = f"{step['order']}.{step['type']}"
        _flatten(prefix, step.get("params", {}), flat)
    return flat


def terminate(run_id: str, killed: bool = False) -> None:
    """Close an MLflow run whose process was stopped before it could end it."""
    client = configure()
    if client.get_run(run_id).info.status == "RUNNING":
        client.set_terminated(run_id, status="KILLED" if killed else "FAILED")


def get_run(run_id: str) -> dict:
    """Params, metrics and tags of an MLflow run, as plain dicts."""
    run = configure().get_run(run_id)
    return {
        "status": run.info.status,
        "experiment_id": run.info.experiment_id,
        "params": dict(run.data.params),
        "metrics": dict(run.data.metrics),
        "tags": dict(run.data.tags),
    }


def child_runs(run_id: str) -> list[dict]:
    """The runs nested in a run (search trials), oldest first, as `get_run` dicts."""
    client = configure()
    parent = client.get_run(run_id)
    children = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{run_id}'",
        order_by=["attributes.start_time ASC"],
    )
    return [get_run(child.info.run_id) for child in children]


def artifact_paths(run_id: str, folder: str) -> list[str]:
    return [item.path for item in configure().list_artifacts(run_id, folder)]


def download_artifact(run_id: str, path: str) -> Path:
    """A local copy of one artifact of a run."""
    configure()
    return Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=path))


def load_model(model_uri: str):
    configure()
    return mlflow.sklearn.load_model(model_uri)


def parse_model_uri(uri: str) -> dict[str, str | None]:
    """The parts of a model URI; ValueError unless it has one of the MODEL_URI_FORMS."""
    match = _MODEL_URI.fullmatch(uri)
    if match is None:
        raise ValueError(f"{uri!r} is not a model URI; expected {MODEL_URI_FORMS}")
    return match.groupdict()


def resolve_model_version(uri: str) -> str:
    """The fixed URI of the model `uri` names now, or ModelNotFound saying why not.

    An alias moves from version to version, so `models:/<name>@<alias>` resolves to
    `models:/<name>/<version>`; a run's model resolves to its logged model,
    `models:/<model id>`. Version and model-id URIs are checked and returned as they are.
    """
    parts = parse_model_uri(uri)
    client = configure()
    try:
        if parts["alias"]:
            found = client.get_model_version_by_alias(parts["name"], parts["alias"])
            return f"models:/{parts['name']}/{found.version}"
        if parts["run_id"]:
            return _run_model_uri(client, parts["run_id"], parts["model_name"])
        if parts["version"]:
            client.get_model_version(parts["name"], parts["version"])
        else:
            client.get_logged_model(parts["model_id"])
    except MlflowException as exc:
        raise ModelNotFound(exc.message) from None
    return uri


def register_model(
    model_uri: str,
    name: str,
    alias: str | None = None,
    tags: dict[str, str] | None = None,
    description: str = "",
) -> int:
    """Register a logged model as the next version of `name`, moving `alias` to it.

    The registered model is created on first use. Returns the new version number.
    """
    client = configure()
    version = mlflow.register_model(model_uri, name, tags=tags).version
    if description:
        client.update_model_version(name, version, description=description)
    if alias:
        client.set_registered_model_alias(name, alias, version)
    return int(version)


def model_version(name: str, version: int) -> dict:
    """A registered model version's tags, description, source and aliases."""
    found = configure().get_model_version(name, str(version))
    return {
        "tags": dict(found.tags),
        "description": found.description or "",
        "source": found.source,
        "run_id": found.run_id,
        "aliases": list(found.aliases),
    }


def active_run_tags() -> dict[str, str]:
    """The mlops.* tags the MLflow run open in this process started with: which pipeline
    run it records. Empty when no run is open."""
    active = mlflow.active_run()
    if active is None:
        return {}
    return {key: value for key, value in active.data.tags.items() if key.startswith("mlops.")}


def _run_model_uri(client: MlflowClient, run_id: str, model_name: str) -> str:
    run = client.get_run(run_id)
    found = client.search_logged_models(
        experiment_ids=[run.info.experiment_id],
        # Both values passed the URI pattern, so they hold no quotes.
        filter_string=f"source_run_id = '{run_id}' AND name = '{model_name}'",
    )
    if not found:
        raise ModelNotFound(f"run {run_id} logged no model named {model_name!r}")
    return found[0].model_uri


def _classes_in(model) -> list[str]:
    """Dotted names of the classes a model's pickle references (not its functions).

    Scanning a pickle takes milliseconds where a trial skops dump takes a large share of
    a second for a big forest.
    """
    names = set()
    for opcode, argument, _ in pickletools.genops(pickle.dumps(model, protocol=3)):
        if opcode.name == "GLOBAL":
            module, _, name = argument.partition(" ")
            if isinstance(getattr(importlib.import_module(module), name, None), type):
                names.add(f"{module}.{name}")
    return sorted(names)


def _write_artifact(path: Path, value: Any) -> None:
    import pandas as pd

    if isinstance(value, pd.DataFrame):
        value.to_csv(path, index=False)
    elif isinstance(value, (dict, list)):
        path.write_text(json.dumps(value, indent=2, default=str))
    else:
        path.write_text(str(value))


def _flatten(prefix: str, value: Any, out: dict) -> None:
    if isinstance(value, dict) and value:
        if any(_PARAM_KEY_UNSAFE.search(str(key)) for key in value):
            # Keys MLflow refuses (column names, rule operators) keep the mapping whole.
            out[prefix] = json.dumps(value, default=str)
            return
        for key, item in value.items():
            _flatten(f"{prefix}.{key}", item, out)
    else:
        out[prefix] = value


def _is_local_store(uri: str) -> bool:
    return uri.startswith(("sqlite:", "file:")) or "://" not in uri


def _sklearn_version() -> str:
    import sklearn

    return sklearn.__version__


def run_exists(run_id: str) -> bool:
    """Whether the tracking store holds the run; TrackingUnavailable if it cannot say."""
    try:
        configure().get_run(run_id)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return False
        raise TrackingUnavailable(f"the MLflow tracking store at {store_name()} failed") from None
    except OSError:
        raise TrackingUnavailable(
            f"the MLflow tracking store at {store_name()} cannot be reached"
        ) from None
    return True


def list_artifacts(run_id: str, folder: str = "") -> list[dict]:
    """The files and folders directly in `folder` of a run: path, is_dir and size."""
    items = configure().list_artifacts(run_id, folder or None)
    return [{"path": i.path, "is_dir": i.is_dir, "size": i.file_size} for i in items]


def local_artifact_root(run_id: str) -> Path | None:
    """The folder holding a run's artifacts when it is on this machine, else None."""
    from mlflow.utils.file_utils import local_file_uri_to_path

    uri = configure().get_run(run_id).info.artifact_uri
    if uri.startswith("file:") or "://" not in uri:
        return Path(local_file_uri_to_path(uri))
    return None


def list_experiments() -> list[dict]:
    """Every active experiment as {"id", "name", "tags"}, by name.

    TrackingUnavailable, naming the store, when it cannot be reached.
    """
    with _reading():
        found = configure().search_experiments(order_by=["name ASC"], max_results=50_000)
    return [{"id": exp.experiment_id, "name": exp.name, "tags": dict(exp.tags)} for exp in found]


def search_runs(
    experiment_ids: list[str],
    filter_string: str = "",
    order_by: list[str] | None = None,
    max_results: int = 25,
    page_token: str | None = None,
) -> tuple[list[dict], str | None]:
    """One page of runs as plain dicts (id, name, status, start_time in ms, params,
    metrics, tags) and the token of the next page (None on the last).

    ValueError for a filter or ordering MLflow refuses; TrackingUnavailable when the
    store cannot be reached.
    """
    with _reading():
        page = configure().search_runs(
            experiment_ids,
            filter_string=filter_string,
            order_by=order_by,
            max_results=max_results,
            page_token=page_token,
        )
    token = page.token.decode() if isinstance(page.token, bytes) else page.token
    return [_run_dict(run) for run in page], token or None


def get_experiment(experiment_id: str) -> dict | None:
    """One experiment as `list_experiments` gives it; None when there is no such id."""
    with _reading():
        try:
            found = configure().get_experiment(experiment_id)
        except MlflowException as exc:
            if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                return None
            raise
    return {"id": found.experiment_id, "name": found.name, "tags": dict(found.tags)}


def _run_dict(run) -> dict:
    return {
        "id": run.info.run_id,
        "name": run.info.run_name,
        "status": run.info.status,
        "start_time": run.info.start_time,
        "params": dict(run.data.params),
        "metrics": dict(run.data.metrics),
        "tags": dict(run.data.tags),
    }


class _reading:
    """Turns MLflow's failures into ValueError (a request it refuses) or
    TrackingUnavailable (a store it cannot reach), with no credentials in the text."""

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, traceback):
        if isinstance(exc, MlflowException) and exc.error_code == "INVALID_PARAMETER_VALUE":
            raise ValueError(_without_credentials(exc.message)) from None
        if isinstance(exc, (MlflowException, OSError)):
            cause = _without_credentials(str(exc).splitlines()[0] if str(exc) else "")[:200]
            raise TrackingUnavailable(
                f"the MLflow tracking store at {store_name()} cannot be reached "
                f"({type(exc).__name__}: {cause})"
            ) from None
        return False


def get_runs(run_ids: list[str]) -> dict[str, dict]:
    """The runs with these ids, as `search_runs` gives them, keyed by id; ids the store
    does not hold are left out. TrackingUnavailable when the store cannot be reached."""
    client, found = configure(), {}
    for run_id in run_ids:
        with _reading():
            try:
                found[run_id] = _run_dict(client.get_run(run_id))
            except MlflowException as exc:
                # A malformed id is as unknown as a well-formed one the store lacks.
                if exc.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                    raise
    return found


def run_details(run_id: str) -> dict | None:
    """One run as `search_runs` gives it, with its experiment id and end time (ms);
    None when the store has no such run, TrackingUnavailable when it cannot be reached."""
    with _reading():
        try:
            run = configure().get_run(run_id)
        except MlflowException as exc:
            if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                return None
            raise
    return {
        **_run_dict(run),
        "experiment_id": run.info.experiment_id,
        "end_time": run.info.end_time,
    }


def metric_history(run_id: str, key: str) -> list[dict]:
    """Every value a run logged for one metric, as {"step", "value", "timestamp"} (ms),
    by step then time. TrackingUnavailable when the store cannot be reached."""
    with _reading():
        found = configure().get_metric_history(run_id, key)
    points = [{"step": m.step, "value": m.value, "timestamp": m.timestamp} for m in found]
    return sorted(points, key=lambda point: (point["step"], point["timestamp"]))


def log_metric_steps(run_id: str, key: str, values: list[float], first_step: int = 0) -> None:
    """Log a series of one metric to a run, one value per step (a learning curve)."""
    import time

    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    metrics = [Metric(key, float(v), now, first_step + i) for i, v in enumerate(values)]
    client = configure()
    # MLflow takes at most 1000 metrics in one batch.
    for start in range(0, len(metrics), 1000):
        client.log_batch(run_id, metrics=metrics[start : start + 1000])


# The model registry (pages, aliases, the promotion gate: experiments/registry.py).


def list_registered_models() -> list[dict]:
    """Every registered model, by name: name, description, aliases ({alias: version}),
    versions (numbers, newest first) and updated (ms). Two reads of the store in all."""
    with _reading():
        client = configure()
        models = _every_page(client.search_registered_models, order_by=["name ASC"])
        versions = _every_page(client.search_model_versions, max_results=10_000)
    numbers: dict[str, list[int]] = {}
    for found in versions:
        numbers.setdefault(found.name, []).append(int(found.version))
    return [
        {
            "name": model.name,
            "description": model.description or "",
            "aliases": {alias: int(number) for alias, number in model.aliases.items()},
            "versions": sorted(numbers.get(model.name, []), reverse=True),
            "updated": model.last_updated_timestamp,
        }
        for model in models
    ]


def registered_model(name: str) -> dict | None:
    """One registered model as `list_registered_models` gives it, its `versions` as dicts
    (newest first) each with its source `run` (`get_run` dict plus name and id; None when
    the run is gone); None when there is no such model. A version's aliases are in the
    model's `aliases`: MLflow's version search leaves them out."""
    with _reading():
        client = configure()
        try:
            model = client.get_registered_model(name)
        except MlflowException as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                return None
            raise
        found = _every_page(client.search_model_versions, filter_string=f"name = {_quoted(name)}")
        runs = {v.run_id: _run_or_none(client, v.run_id) for v in found if v.run_id}
    versions = [_version_dict(v, runs.get(v.run_id)) for v in found]
    return {
        "name": model.name,
        "description": model.description or "",
        "aliases": {alias: int(number) for alias, number in model.aliases.items()},
        "versions": sorted(versions, key=lambda v: v["version"], reverse=True),
        "updated": model.last_updated_timestamp,
    }


def version_metrics(name: str, version: int) -> dict[str, float] | None:
    """The metrics of a model version's source run ({} without a run); None when the
    model has no such version."""
    with _reading():
        client = configure()
        try:
            found = client.get_model_version(name, str(version))
        except MlflowException as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                return None
            raise
        run = _run_or_none(client, found.run_id) if found.run_id else None
    return run["metrics"] if run else {}


def alias_version(name: str, alias: str) -> int | None:
    """The version `alias` points at; None when the model or the alias does not exist."""
    with _reading():
        try:
            return int(configure().get_model_version_by_alias(name, alias).version)
        except MlflowException as exc:
            if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                return None
            raise


def set_model_alias(name: str, alias: str, version: int) -> None:
    with _reading():
        configure().set_registered_model_alias(name, alias, str(version))


def delete_model_alias(name: str, alias: str) -> None:
    with _reading():
        configure().delete_registered_model_alias(name, alias)


def registered_model_names() -> list[str]:
    """The name of every registered model, sorted: one read per 1,000 models."""
    with _reading():
        found = _every_page(configure().search_registered_models, max_results=1000)
    return sorted(model.name for model in found)


def run_model_versions(run_id: str) -> list[dict]:
    """The registered versions whose source run is `run_id`, as {"name", "version",
    "created"} (ms), newest first. `run_id` must be a run id MLflow made (no quotes)."""
    with _reading():
        found = _every_page(configure().search_model_versions, filter_string=f"run_id = '{run_id}'")
    versions = [
        {"name": v.name, "version": int(v.version), "created": v.creation_timestamp} for v in found
    ]
    return sorted(versions, key=lambda v: v["created"] or 0, reverse=True)


def active_run_metrics() -> dict[str, float]:
    """The metrics logged so far by the MLflow run open in this process ({} if none)."""
    active = mlflow.active_run()
    if active is None:
        return {}
    with _reading():
        return dict(configure().get_run(active.info.run_id).data.metrics)


def _every_page(search, **kwargs) -> list:
    found, token = [], None
    while True:
        page = search(page_token=token, **kwargs)
        found.extend(page)
        token = page.token
        if not token:
            return found


def _quoted(value: str) -> str:
    """A string literal for MLflow's filter syntax; ValueError if it cannot be quoted."""
    quote = "'" if "'" not in value else '"'
    if quote in value:
        raise ValueError(f"{value!r} holds both kinds of quote; MLflow cannot search it")
    return f"{quote}{value}{quote}"


def _run_or_none(client: MlflowClient, run_id: str) -> dict | None:
    try:
        run = client.get_run(run_id)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise
    return {**_run_dict(run), "experiment_id": run.info.experiment_id}


def _version_dict(found, run: dict | None) -> dict:
    return {
        "version": int(found.version),
        "run_id": found.run_id or "",
        "source": found.source,
        "status": found.status,
        "description": found.description or "",
        "tags": dict(found.tags),
        "created": found.creation_timestamp,
        "run": run,
    }


_MAX_VERSION = 2**31 - 1


def find_model_version(name: str, alias: str | None = None, version: str | None = None) -> dict:
    """The registered version `name@alias` points to now, or `name/version`: its number
    and source (the logged model it was registered from), in one registry read.

    ModelNotFound naming what is missing; TrackingUnavailable when the store fails.
    """
    if version is not None and int(version) > _MAX_VERSION:
        # MLflow keeps versions in a 32-bit column; a larger number would fail in the store.
        raise ModelNotFound(f"Model Version (name={name}, version={version}) not found")
    client = configure()
    try:
        if alias:
            found = client.get_model_version_by_alias(name, alias)
        else:
            found = client.get_model_version(name, version)
    except MlflowException as exc:
        # A missing alias is INVALID_PARAMETER_VALUE, a missing model or version
        # RESOURCE_DOES_NOT_EXIST.
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise ModelNotFound(_without_credentials(exc.message)) from None
        raise TrackingUnavailable(f"the MLflow tracking store at {store_name()} failed") from None
    except OSError:
        raise TrackingUnavailable(
            f"the MLflow tracking store at {store_name()} cannot be reached"
        ) from None
    return {"version": int(found.version), "source": found.source}


def model_input_columns(model_uri: str) -> list[dict] | None:
    """The input columns of a logged model's signature, in order, as
    {"name", "type", "required"} with MLflow's type names ("double", "long", "string",
    "boolean", "datetime", ...); None when the model has no column signature."""
    configure()
    signature = mlflow.models.get_model_info(model_uri).signature
    if signature is None or signature.inputs is None or not signature.inputs.has_input_names():
        return None
    return [
        {
            "name": column.name,
            "type": getattr(column.type, "name", str(column.type)),
            "required": column.required,
        }
        for column in signature.inputs.inputs
    ]


# When the statistics of a SQLite store were last checked, per store, in this process.
_STATISTICS_CHECKED: dict[str, float] = {}


def refresh_query_statistics() -> None:
    """ANALYZE a SQLite store whose runs have doubled since its last ANALYZE.

    Without current statistics SQLite joins the metric subquery of MLflow's sort by a
    metric by scanning it once per run: 4.6 s for an experiment of 5,000 runs, 0.1 s with
    them. Checked at most once a minute per process; database servers keep their own.
    """
    import sqlite3
    import time
    from contextlib import closing

    uri = settings.MLFLOW_TRACKING_URI
    now = time.monotonic()
    if not uri.startswith("sqlite:///") or now - _STATISTICS_CHECKED.get(uri, -60) < 60:
        return
    _STATISTICS_CHECKED[uri] = now
    path = uri.removeprefix("sqlite:///").split("?")[0]
    try:
        # A short timeout: a page never waits for a run that is writing; the next check retries.
        with closing(sqlite3.connect(path, timeout=0.2)) as db:
            if _runs_doubled_since_analyze(db):
                # Sampling keeps ANALYZE to milliseconds; estimates are all the planner needs.
                db.execute("PRAGMA analysis_limit = 1000")
                db.execute("ANALYZE")
    except sqlite3.Error:
        pass


def _runs_doubled_since_analyze(db) -> bool:
    runs = db.execute("SELECT max(rowid) FROM runs").fetchone()[0] or 0
    if not db.execute("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'").fetchone():
        return runs > 0
    found = db.execute("SELECT stat FROM sqlite_stat1 WHERE tbl = 'runs'").fetchone()
    return runs > 2 * (int(found[0].split()[0]) if found else 0)


def count_runs(experiment_ids: list[str]) -> dict[str, int] | None:
    """Active runs not nested in another, per experiment, counted by the store's database
    in one query; None when the store is not a database (a tracking server)."""
    from mlflow.store.tracking.dbmodels.models import SqlRun, SqlTag
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
    from sqlalchemy import func, select
    from sqlalchemy.exc import SQLAlchemyError

    store = configure()._tracking_client.store
    if not isinstance(store, SqlAlchemyStore):
        return None
    ids = [int(value) for value in experiment_ids if value.isdigit()]
    nested = select(SqlTag.run_uuid).where(SqlTag.key == "mlflow.parentRunId")
    query = (
        select(SqlRun.experiment_id, func.count())
        .where(SqlRun.experiment_id.in_(ids), SqlRun.lifecycle_stage == "active")
        .where(SqlRun.run_uuid.not_in(nested))
        .group_by(SqlRun.experiment_id)
    )
    try:
        with store.ManagedSessionMaker() as session:
            counted = {str(experiment): count for experiment, count in session.execute(query)}
    except SQLAlchemyError:
        return None  # the caller's own search reports what is wrong with the store
    return {experiment: counted.get(experiment, 0) for experiment in experiment_ids}


def find_model_version_by_alias(name: str, alias: str) -> dict:
    """find_model_version(name, alias) in one SELECT on a database registry store.

    The serving endpoint resolves the alias on every request, so a moved alias is served
    from the next one; MLflow's own read is nine ORM queries in a session (about 2 ms),
    this is one prepared statement on the store's engine (under 0.1 ms). Whatever it does
    not find (no such model, alias or version), and registries that are not a database,
    go through find_model_version, which names what is missing.
    """
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore
    from sqlalchemy.exc import SQLAlchemyError

    store = configure()._get_registry_client().store
    if not isinstance(store, SqlAlchemyStore):
        return find_model_version(name, alias)
    values = {"name": name, "alias": alias, "workspace": store._get_active_workspace()}
    try:
        with store.engine.connect() as connection:
            found = connection.execute(_alias_query(), values).first()
    except SQLAlchemyError:
        found = None  # find_model_version reports what is wrong with the store
    if found is None:
        return find_model_version(name, alias)
    return {"version": int(found.version), "source": found.source}


_ALIAS_QUERY: list = []  # built on first use: building it costs more than running it


def _alias_query():
    """The version and source an alias points at, in MLflow's own table classes, so its
    schema stays its own."""
    if _ALIAS_QUERY:
        return _ALIAS_QUERY[0]
    from mlflow.entities.model_registry.model_version_stages import STAGE_DELETED_INTERNAL
    from mlflow.store.model_registry.dbmodels.models import (
        SqlModelVersion,
        SqlRegisteredModelAlias,
    )
    from sqlalchemy import bindparam, select

    aliases, versions = SqlRegisteredModelAlias, SqlModelVersion
    query = (
        select(versions.version, versions.source)
        .join(
            aliases,
            (aliases.workspace == versions.workspace)
            & (aliases.name == versions.name)
            & (aliases.version == versions.version),
        )
        .where(aliases.workspace == bindparam("workspace"))
        .where(aliases.name == bindparam("name"), aliases.alias == bindparam("alias"))
        .where(versions.current_stage != STAGE_DELETED_INTERNAL)
    )
    _ALIAS_QUERY.append(query)
    return query
