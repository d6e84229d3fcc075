"""The MLflow model registry as the platform uses it: what the model pages show, and the
one code path for every alias change, the promotion gate included.

The page, the admin and the `register_model` step all move aliases through `set_alias`
and `remove_alias`, so every change is checked the same way and recorded as an
AliasChange. MLflow is read and written through `tracking`; its failures arrive as
`tracking.TrackingUnavailable`. A refused change raises AliasRefused, whose message
names the field and the problem.
"""

import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

from experiments import tracking
from experiments.models import AliasChange, ModelPolicy
from pipelines.models import PipelineRun

ALIAS = re.compile(r"[\w-]{1,255}")
# A registered model name, as the register_model step accepts it (no slashes or spaces).
MODEL_NAME = re.compile(r"[\w-][\w.-]{0,255}")
MAX_DESCRIPTION = 5000
# The tags of a pipeline's MLflow run a version registered from it keeps.
VERSION_TAGS = ("mlops.pipeline_id", "mlops.pipeline", "mlops.run_id", "mlops.trigger")
# MLflow keeps "latest" and "v<number>" to name versions, so they are no aliases.
RESERVED_ALIAS = re.compile(r"latest|v\d+", re.IGNORECASE)
METRIC_NAME = re.compile(r"[\w\-. /]{1,250}")
# The alias the promotion gate guards: what serving and predict steps load.
GATED_ALIAS = "champion"
SUGGESTED_ALIASES = ("champion", "challenger")
# The detail page shows this many metrics of the source runs as columns.
METRIC_COLUMNS = 6
HISTORY_SHOWN = 50


class AliasRefused(ValueError):
    """An alias change the registry or the promotion gate refuses; the message says why."""


class RegistrationRefused(AliasRefused):
    """A registration refused before anything was written; `field` names the form field
    at fault ("name", "alias", "description"), or is blank for the run itself."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


@dataclass
class ModelSummary:
    name: str
    description: str
    aliases: list[tuple[str, int]]
    versions: list[int]
    updated_at: datetime | None
    policy: ModelPolicy | None = None

    @property
    def latest(self) -> int | None:
        return self.versions[0] if self.versions else None


@dataclass
class ModelPage:
    name: str
    description: str
    aliases: list[tuple[str, int]]
    versions: list[dict]
    metric_keys: list[str]
    more_metrics: int
    policy: ModelPolicy | None
    history: list[AliasChange] = field(default_factory=list)


def model_summaries() -> list[ModelSummary]:
    """Every registered model with its aliases, versions and gate: one query for gates."""
    summaries = [
        ModelSummary(
            model["name"],
            model["description"],
            sorted(model["aliases"].items()),
            model["versions"],
            _moment(model["updated"]),
        )
        for model in tracking.list_registered_models()
    ]
    policies = ModelPolicy.objects.filter(name__in=[s.name for s in summaries]).exclude(
        gate_metric=""
    )
    by_name = {policy.name: policy for policy in policies}
    for summary in summaries:
        summary.policy = by_name.get(summary.name)
    return summaries


def model_page(name: str) -> ModelPage | None:
    """A registered model's versions (newest first) with their runs, pipeline runs and
    metrics, its gate and its alias history; None when there is no such model."""
    model = tracking.registered_model(name)
    if model is None:
        return None
    policy = ModelPolicy.objects.filter(name=name).first()
    versions = model["versions"]
    # MLflow's version search leaves a version's aliases out; the model lists them all.
    for version in versions:
        version["aliases"] = sorted(
            a for a, n in model["aliases"].items() if n == version["version"]
        )
    _link_pipeline_runs(versions)
    keys = _metric_keys(versions, policy.gate_metric if policy else "")
    for version in versions:
        metrics = version["run"]["metrics"] if version["run"] else {}
        version["metric_cells"] = [metrics.get(key) for key in keys[:METRIC_COLUMNS]]
        version["created_at"] = _moment(version["created"])
    history = AliasChange.objects.filter(model_name=name).select_related("changed_by")
    return ModelPage(
        model["name"],
        model["description"],
        sorted(model["aliases"].items()),
        versions,
        keys[:METRIC_COLUMNS],
        max(len(keys) - METRIC_COLUMNS, 0),
        policy,
        list(history[:HISTORY_SHOWN]),
    )


def set_alias(
    name: str, alias: str, version: int, user=None, override: bool = False, reason: str = ""
) -> AliasChange:
    """Point `alias` of model `name` at `version` and record it; AliasRefused if the
    alias is invalid, the version missing, or the promotion gate refuses the move.

    Staff (`user.is_staff`) may pass a refusing gate with `override=True` and a reason.
    """
    change = check_alias_change(name, alias, version, user, override, reason)
    tracking.set_model_alias(name, alias, version)
    change.save()
    return change


def remove_alias(name: str, alias: str, user=None, reason: str = "") -> AliasChange:
    """Remove `alias` from model `name` and record it; AliasRefused if it is not set."""
    previous = check_alias_removal(name, alias)
    tracking.delete_model_alias(name, alias)
    change = _alias_change(name, alias, None, previous, user, reason)
    change.save()
    return change


def check_alias_removal(name: str, alias: str) -> int:
    """The version `alias` points at, which removing it leaves without it; AliasRefused
    when the alias is not set."""
    previous = tracking.alias_version(name, alias)
    if previous is None:
        raise AliasRefused(f"alias: {name} has no alias “{alias}” to remove.")
    return previous


def check_alias_change(
    name: str, alias: str, version: int, user=None, override: bool = False, reason: str = ""
) -> AliasChange:
    """The AliasChange `set_alias` would record (unsaved), or AliasRefused saying why not."""
    check_alias_name(alias)
    metrics = tracking.version_metrics(name, version)
    if metrics is None:
        raise AliasRefused(f"version: {name} has no version {version}.")
    previous = tracking.alias_version(name, alias)
    if previous == version:
        raise AliasRefused(f"alias: “{alias}” already points at version {version}.")
    change = _alias_change(name, alias, version, previous, user, reason)
    _apply_gate(change, metrics, f"version {version}", override)
    return change


def _alias_change(
    name: str, alias: str, version: int | None, previous: int | None, user, reason: str
) -> AliasChange:
    """An unsaved record of `alias` moving from `previous` to `version` (None: removed)."""
    return AliasChange(
        model_name=name,
        alias=alias,
        version=version,
        previous_version=previous,
        changed_by=user,
        reason=reason.strip(),
    )


def check_new_version(name: str, alias: str, metrics: dict[str, float]) -> None:
    """Refuse (AliasRefused) a version about to be registered from a run with `metrics`
    whose `alias` the gate would not let move to it; nothing is written."""
    check_alias_name(alias)
    change = AliasChange(
        model_name=name, alias=alias, previous_version=tracking.alias_version(name, alias)
    )
    _apply_gate(change, metrics, "the new version", override=False)


def register_version(
    model_uri: str, name: str, alias: str | None, tags: dict[str, str], description: str = ""
) -> int:
    """Register a run's logged model as the next version of `name` and move `alias` to it:
    what the `register_model` step does. Returns the version number.

    The gate is checked before registering, so a refused promotion leaves no new version
    and the alias where it was. The MLflow run open in this process is the source run.
    """
    if alias:
        check_new_version(name, alias, tracking.active_run_metrics())
    version = tracking.register_model(model_uri, name, tags=tags, description=description)
    if alias:
        run_id = tags.get("mlops.run_id", "")
        set_alias(
            name,
            alias,
            version,
            user=_started_by(run_id),
            reason=f"register_model step of pipeline run #{run_id}" if run_id else "",
        )
    return version


def register_run_model(
    mlflow_run_id: str, name: str, alias: str | None = None, description: str = "", user=None
) -> int:
    """Register the model MLflow run `mlflow_run_id` logged as the next version of `name`
    and move `alias` to it, recorded as `user`'s change: what the run page's form does.
    Returns the version number.

    RegistrationRefused, with nothing registered, for an invalid name, alias or
    description, a run with no model, a model this run already registered under `name`,
    or an alias the promotion gate (judging the run's metrics) would not let move.
    """
    run = tracking.run_details(mlflow_run_id)
    model_uri = run["tags"].get("mlops.model_uri", "") if run else ""
    if not model_uri:
        raise RegistrationRefused("", f"MLflow run {mlflow_run_id} logged no model to register.")
    _check_registration(mlflow_run_id, name, description)
    if alias:
        try:
            check_new_version(name, alias, run["metrics"])
        except AliasRefused as error:
            problem = str(error).removeprefix("alias: ")
            raise RegistrationRefused(
                "alias", f"{problem} Nothing was registered: leave the alias blank or pick another."
            ) from None
    tags = {key: run["tags"][key] for key in VERSION_TAGS if key in run["tags"]}
    if user is not None:
        tags["mlops.registered_by"] = user.get_username()
    version = tracking.register_model(model_uri, name, tags=tags, description=description.strip())
    if alias:
        reason = f"registered from MLflow run {mlflow_run_id}"
        set_alias(name, alias, version, user=user, reason=reason)
    return version


def _check_registration(mlflow_run_id: str, name: str, description: str) -> None:
    if not MODEL_NAME.fullmatch(name or ""):
        raise RegistrationRefused(
            "name",
            f"“{name}” is not a model name; use letters, digits, _ - and dots "
            "(at most 256, not starting with a dot), e.g. churn-classifier.",
        )
    if len(description) > MAX_DESCRIPTION:
        raise RegistrationRefused(
            "description",
            f"at most {MAX_DESCRIPTION:,} characters; this one has {len(description):,}.",
        )
    # A second submit of the same form must not make a second, identical version.
    for found in tracking.run_model_versions(mlflow_run_id):
        if found["name"] == name:
            raise RegistrationRefused(
                "name", f"this run’s model is already version {found['version']} of {name}."
            )


def check_alias_name(alias: str) -> None:
    if not ALIAS.fullmatch(alias or ""):
        raise AliasRefused(
            f"alias: “{alias}” is not an alias; use letters, digits, _ and - "
            "(at most 255), e.g. champion."
        )
    if RESERVED_ALIAS.fullmatch(alias):
        raise AliasRefused(f"alias: “{alias}” is reserved by MLflow to name versions.")


def save_policy(name: str, gate_metric: str, higher_is_better: bool, user=None) -> ModelPolicy:
    """Set the promotion gate of model `name`; a blank metric turns the gate off."""
    gate_metric = gate_metric.strip()
    if gate_metric and not METRIC_NAME.fullmatch(gate_metric):
        raise AliasRefused(
            f"gate_metric: “{gate_metric}” is not a metric name; use letters, digits, "
            "_ - . / and spaces (at most 250)."
        )
    policy, _ = ModelPolicy.objects.update_or_create(
        name=name,
        defaults={
            "gate_metric": gate_metric,
            "higher_is_better": higher_is_better,
            "updated_by": user,
        },
    )
    return policy


def _apply_gate(change: AliasChange, metrics: dict, candidate: str, override: bool) -> None:
    """Fill the gate fields of `change`; AliasRefused when the gate refuses it and no
    staff override with a reason passes it."""
    if change.alias != GATED_ALIAS:
        return
    policy = ModelPolicy.objects.filter(name=change.model_name).exclude(gate_metric="").first()
    if policy is None:
        return
    change.gate_metric = policy.gate_metric
    change.new_value = _usable(metrics.get(policy.gate_metric))
    if change.previous_version is not None:
        current = tracking.version_metrics(change.model_name, change.previous_version) or {}
        change.previous_value = _usable(current.get(policy.gate_metric))
    problem = _gate_problem(change, policy, candidate)
    if problem is None:
        return
    if not override:
        raise AliasRefused(f"Promotion gate: {problem}.")
    user = change.changed_by
    if not (user and user.is_staff):
        raise AliasRefused(f"override: only staff may override the promotion gate ({problem}).")
    if not change.reason:
        raise AliasRefused(f"reason: say why the promotion gate is overridden ({problem}).")
    change.overridden = True


def _gate_problem(change: AliasChange, policy: ModelPolicy, candidate: str) -> str | None:
    metric, new, old = policy.gate_metric, change.new_value, change.previous_value
    if new is None:
        return f"the source run of {candidate} has no {metric} metric, which the gate compares"
    if old is None:
        return None  # No champion yet, or one the gate cannot compare with.
    worse = new < old if policy.higher_is_better else new > old
    if not worse:
        return None
    shown_new, shown_old = _shown(new, old)
    direction = "higher" if policy.higher_is_better else "lower"
    return (
        f"{metric} {shown_new} of {candidate} is worse than {shown_old} of champion "
        f"version {change.previous_version} ({direction} is better)"
    )


def _shown(new: float, old: float) -> tuple[str, str]:
    """Both values short, with as many digits as it takes to tell them apart."""
    for digits in (3, 6, 17):
        texts = (f"{new:.{digits}g}", f"{old:.{digits}g}")
        if texts[0] != texts[1]:
            return texts
    return texts


def _usable(value) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


def _started_by(run_id: str):
    if not run_id.isdigit():
        return None
    run = PipelineRun.objects.filter(pk=run_id).select_related("started_by").first()
    return run.started_by if run else None


def _metric_keys(versions: list[dict], gate_metric: str) -> list[str]:
    keys = sorted({key for v in versions if v["run"] for key in v["run"]["metrics"]})
    if gate_metric in keys:
        keys.remove(gate_metric)
        keys.insert(0, gate_metric)
    return keys


def _link_pipeline_runs(versions: list[dict]) -> None:
    """Give each version its pipeline run and pipeline, from the `mlops.run_id` tag of the
    version or of its source run: one query."""
    for version in versions:
        run_tags = version["run"]["tags"] if version["run"] else {}
        tagged = version["tags"].get("mlops.run_id") or run_tags.get("mlops.run_id", "")
        version["pipeline_run_pk"] = int(tagged) if tagged.isdigit() else None
    pks = {v["pipeline_run_pk"] for v in versions} - {None}
    found = (
        PipelineRun.objects.filter(pk__in=pks)
        .select_related("pipeline")
        .only("pk", "status", "pipeline__name")
    )
    by_pk = {run.pk: run for run in found}
    for version in versions:
        run = by_pk.get(version["pipeline_run_pk"])
        version["pipeline_run"] = run
        version["pipeline"] = run.pipeline if run else None


def _moment(milliseconds: int | None) -> datetime | None:
    if milliseconds is None:
        return None
    return datetime.fromtimestamp(milliseconds / 1000, tz=UTC)
