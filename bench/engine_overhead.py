"""How much slower is a pipeline run through the engine than the same work as a plain script?

Run from the project root:

    .venv/bin/python bench/engine_overhead.py [--rows 200000] [--repeat N] [--in-process]
        [--preload] [--profile] [--no-warmup] [--keep]

Everything (Django database, step cache, media, MLflow store and artifacts) lives in a
fresh temporary folder that is deleted at the end (keep it with --keep). The baseline and
the engine run alternately --repeat times and the minimum of each is compared; the last
line printed is the ratio engine/baseline against the 1.15 target. See bench/README.md.
"""

import argparse
import cProfile
import functools
import io
import json
import logging
import os
import pickle
import pstats
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_RATIO = 1.15
TARGET = "label"
DATASET_NAME = "bench-data"
RANDOM_STATE = 42
TEST_SIZE = 0.2


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000, help="rows of the dataset")
    parser.add_argument("--repeat", type=int, default=1, help="alternating repetitions")
    parser.add_argument("--n-estimators", type=int, default=50)
    parser.add_argument("--max-depth", type=int, default=12)
    parser.add_argument("--n-jobs", type=int, default=-1)
    parser.add_argument("--seed", type=int, default=19, help="seed of the generated data")
    parser.add_argument(
        "--profile", action="store_true", help="run the engine once more under cProfile"
    )
    parser.add_argument(
        "--no-warmup",
        dest="warmup",
        action="store_false",
        help="skip the untimed 2,000-row run of both paths that pays one-off import costs",
    )
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="run the engine in this process (MLOPS_ISOLATE_RUNS=0) instead of a forked child",
    )
    parser.add_argument(
        "--preload",
        action="store_true",
        help="run the warm-up engine run in this process even when runs are forked, so the "
        "children inherit its imports (what a worker could do at start)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    return parser.parse_args()


def configure_environment(folder: Path, in_process: bool = False) -> None:
    """Point settings at `folder`; must run before django.setup()."""
    sys.path.insert(0, str(ROOT))
    os.environ["DJANGO_SETTINGS_MODULE"] = "mlops_site.settings"
    os.environ["DATABASE_URL"] = f"sqlite:///{folder / 'bench.db'}"
    os.environ["MLOPS_CACHE_DIR"] = str(folder / "cache")
    os.environ["MEDIA_ROOT"] = str(folder / "media")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{folder / 'mlflow.db'}"
    os.environ["MLFLOW_ARTIFACT_ROOT"] = str(folder / "mlartifacts")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    if in_process:
        os.environ["MLOPS_ISOLATE_RUNS"] = "0"


# --------------------------------------------------------------------------- data


def make_frame(rows: int, seed: int):
    """19 numeric features (about 1% missing each) and a noisy binary label."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    n_features = 19
    X = rng.normal(size=(rows, n_features))
    X[:, 3] = np.exp(X[:, 3])  # a skewed feature
    X[:, 7] = rng.integers(0, 10, size=rows)  # a small-integer feature
    weights = rng.normal(size=n_features)
    logit = (
        X @ weights * 0.5
        + 1.5 * np.sin(X[:, 0] * 2)
        + X[:, 1] * X[:, 2]
        - 0.3 * np.log1p(X[:, 3])
        + rng.normal(scale=1.0, size=rows)
    )
    label = (logit > np.median(logit)).astype(int)
    X[rng.random(X.shape) < 0.01] = np.nan
    frame = pd.DataFrame(X, columns=[f"f{i:02d}" for i in range(n_features)])
    frame[TARGET] = label
    return frame


# --------------------------------------------------------------------------- timing


def cpu_seconds() -> float:
    """CPU time of this process (all threads) and of its reaped children (a run's fork)."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


class Probes:
    """Wall and CPU time of named calls, accumulated per label, reset before each run.

    When the engine runs in a forked child, the child writes its totals to `path` as the
    engine returns, and the parent reads them back.
    """

    def __init__(self, path: Path):
        self.path = path
        self.totals = defaultdict(float)  # wall seconds
        self.cpu = defaultdict(float)  # process CPU seconds, all threads
        self.counts = defaultdict(int)
        self.labels = []  # fixed labels, in the order they were installed

    def reset(self):
        self.totals.clear()
        self.cpu.clear()
        self.counts.clear()
        self.path.unlink(missing_ok=True)

    def save(self):
        data = {name: [self.totals[name], self.cpu[name]] for name in self.totals}
        self.path.write_text(json.dumps(data))

    def load(self):
        """Totals written by the process that ran the engine (this one or a child)."""
        if not self.path.exists():
            return
        for name, (wall, cpu) in json.loads(self.path.read_text()).items():
            self.totals[name], self.cpu[name] = wall, cpu

    def wrap(self, owner, attribute: str, label):
        original = getattr(owner, attribute)
        if not callable(label) and label not in self.labels:
            self.labels.append(label)

        if getattr(original, "_bench_probe", False):
            return

        @functools.wraps(original)
        def timed(*args, **kwargs):
            name = label(*args, **kwargs) if callable(label) else label
            start, start_cpu = time.perf_counter(), time.process_time()
            try:
                return original(*args, **kwargs)
            finally:
                self.totals[name] += time.perf_counter() - start
                self.cpu[name] += time.process_time() - start_cpu
                self.counts[name] += 1

        timed._bench_probe = True
        setattr(owner, attribute, timed)

    def snapshot(self) -> dict[str, tuple[float, float]]:
        """(wall, cpu) in install order, the per-step (computed) labels after the fixed ones."""
        fixed = [name for name in self.labels if name in self.totals]
        computed = sorted(name for name in self.totals if name not in self.labels)
        return {name: (self.totals[name], self.cpu[name]) for name in fixed + computed}


def install_probes(probes: Probes) -> None:
    """Time the engine's parts from outside: nothing in the project is modified."""
    import mlflow.sklearn

    from experiments import tracking
    from pipelines.engine.cache import StepCache
    from pipelines.engine.registry import STEP_TYPES
    from pipelines.engine.runner import PipelineEngine
    from pipelines.models import PipelineRun, StepRun

    probes.wrap(StepCache, "save", lambda self, order, *a, **k: f"cache.save step {order}")
    for slug in ("csv", "drop_na", "train_sklearn", "predict"):
        probes.wrap(STEP_TYPES[slug], "run", f"step.run {slug}")
    probes.wrap(tracking.TrackedRun, "start", "mlflow start_run (+experiment)")
    probes.wrap(tracking.TrackedRun, "log_params", "mlflow log_params")
    probes.wrap(tracking.TrackedRun, "log_metrics", "mlflow log_metrics")
    probes.wrap(tracking.TrackedRun, "end", "mlflow end_run")
    # skops.io is imported lazily by the engine, so in a forked run it is imported anew
    # each time; wrap it only when the model is logged, inside the process that logs it.
    log_model = tracking.TrackedRun.log_sklearn_model

    @functools.wraps(log_model)
    def log_sklearn_model(*args, **kwargs):
        install_skops_probes(probes)
        return log_model(*args, **kwargs)

    tracking.TrackedRun.log_sklearn_model = log_sklearn_model
    probes.wrap(tracking.TrackedRun, "log_sklearn_model", "log_sklearn_model (total)")
    probes.labels += [
        "  import skops.io (first use in this process)",
        "  skops.dumps (trusted-type scan)",
        "  skops.get_untrusted_types",
    ]
    probes.wrap(tracking, "infer_signature", "  infer_signature")
    probes.wrap(mlflow.sklearn, "log_model", "  mlflow.sklearn.log_model")
    probes.labels += ["    skops.dump (model.skops)", "    skops.load (mlflow verify)"]
    probes.wrap(PipelineRun, "append_log", "db: append_log")
    probes.wrap(StepRun, "save", "db: StepRun save/create")

    execute = PipelineEngine.execute

    @functools.wraps(execute)
    def execute_and_report(*args, **kwargs):
        try:
            return execute(*args, **kwargs)
        finally:
            probes.save()

    PipelineEngine.execute = execute_and_report


def install_skops_probes(probes: Probes) -> None:
    fresh = "skops.io" not in sys.modules
    start, start_cpu = time.perf_counter(), time.process_time()
    import skops.io

    if fresh:
        label = "  import skops.io (first use in this process)"
        probes.totals[label] += time.perf_counter() - start
        probes.cpu[label] += time.process_time() - start_cpu
    probes.wrap(skops.io, "dumps", "  skops.dumps (trusted-type scan)")
    probes.wrap(skops.io, "get_untrusted_types", "  skops.get_untrusted_types")
    probes.wrap(skops.io, "dump", "    skops.dump (model.skops)")
    probes.wrap(skops.io, "load", "    skops.load (mlflow verify)")


# --------------------------------------------------------------------------- runs


def hyperparams(args) -> dict:
    return {"n_estimators": args.n_estimators, "max_depth": args.max_depth, "n_jobs": args.n_jobs}


def run_baseline(csv_path: str, params: dict):
    """The engine's work as a plain script, timed phase by phase."""
    import pandas as pd
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import Pipeline

    from pipelines.steps.estimators import build_estimator
    from pipelines.steps.training import _preparation, evaluate

    phases = {}  # name -> (wall, cpu)
    start = mark = time.perf_counter()
    start_cpu = mark_cpu = cpu_seconds()

    def lap(name):
        nonlocal mark, mark_cpu
        now, now_cpu = time.perf_counter(), cpu_seconds()
        phases[name] = (now - mark, now_cpu - mark_cpu)
        mark, mark_cpu = now, now_cpu

    frame = pd.read_csv(csv_path)
    lap("read_csv")
    frame = frame.dropna().reset_index(drop=True)
    lap("dropna")
    features = [c for c in frame.columns if c != TARGET]
    X, y = frame[features], frame[TARGET]
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=TEST_SIZE, random_state=RANDOM_STATE, stratify=y
    )
    estimator = build_estimator("classification", "random_forest", dict(params), RANDOM_STATE)
    model = Pipeline([("prepare", _preparation(X)), ("estimator", estimator)])
    model.fit(X_train, y_train)
    lap("split+fit")
    scores = evaluate("classification", model, X_test, y_test)
    lap("evaluate")
    # Same output as the predict step: a prediction column plus one probability per class.
    predictions = frame.copy()
    predictions["prediction"] = model.predict(X)
    probabilities = pd.DataFrame(
        model.predict_proba(X),
        columns=[f"probability_{label}" for label in model.classes_],
        index=frame.index,
    )
    predictions = pd.concat([predictions, probabilities], axis=1)
    lap("predict")
    wall, cpu = time.perf_counter() - start, cpu_seconds() - start_cpu
    return Timed(wall, cpu, phases=phases, scores=scores)


def warm_up(folder: Path, params: dict, seed: int, probes: "Probes", preload: bool) -> None:
    """Run both paths once on 2,000 rows, untimed: first calls import and set up a lot.

    A forked engine run keeps nothing, so its warm-up only helps the parent with
    `preload`, which runs it in this process.
    """
    from django.conf import settings

    from datasources.services import add_dataset
    from pipelines import services

    path = folder / "warmup.csv"
    make_frame(2000, seed).to_csv(path, index=False)
    with open(path, "rb") as handle:
        dataset = add_dataset(handle, "bench-warmup", "warmup.csv")
    start = time.perf_counter()
    run_baseline(dataset.file.path, params)
    definition = pipeline_definition("bench-warmup", params, "bench-warmup")
    pipeline = services.import_pipeline(definition)
    isolated = isolated_runs()
    if preload:
        settings.MLOPS_ISOLATE_RUNS = False
    try:
        run_engine(pipeline, probes)
    finally:
        settings.MLOPS_ISOLATE_RUNS = isolated
    where = "in this process" if preload or not isolated else "forked"
    print(f"warm-up on 2000 rows, engine {where}: {time.perf_counter() - start:.3f} s (not timed)")


def pipeline_definition(name: str, params: dict, dataset: str = DATASET_NAME) -> dict:
    return {
        "name": name,
        "description": "engine overhead benchmark",
        "steps": [
            {"order": 1, "type": "csv", "name": "", "params": {"dataset": dataset}},
            {"order": 2, "type": "drop_na", "name": "", "params": {}},
            {
                "order": 3,
                "type": "train_sklearn",
                "name": "",
                "params": {
                    "task": "classification",
                    "estimator": "random_forest",
                    "target": TARGET,
                    "test_size": TEST_SIZE,
                    "random_state": RANDOM_STATE,
                    "hyperparams": dict(params),
                },
            },
            {"order": 4, "type": "predict", "name": "", "params": {}},
        ],
    }


def start_run_function():
    """`start_run` from wherever this version of the project keeps it."""
    try:
        from pipelines.runs import start_run
    except ImportError:
        from pipelines.services import start_run
    return start_run


def isolated_runs() -> bool:
    """Whether start_run(wait=True) executes the engine in a forked child process."""
    from django.conf import settings

    return bool(getattr(settings, "MLOPS_ISOLATE_RUNS", False))


def run_engine(pipeline, probes: Probes):
    start_run = start_run_function()
    probes.reset()
    start, start_cpu = time.perf_counter(), cpu_seconds()
    run = start_run(pipeline, wait=True)
    wall, cpu = time.perf_counter() - start, cpu_seconds() - start_cpu
    if run.status != "succeeded":
        print(run.logs)
        raise SystemExit(f"engine run failed: {run.error_message}")
    probes.load()
    return Timed(wall, cpu, run=run, probes=probes.snapshot())


@dataclass
class Timed:
    wall: float
    cpu: float
    phases: dict = field(default_factory=dict)
    scores: dict = field(default_factory=dict)
    run: object = None
    probes: dict = field(default_factory=dict)


# --------------------------------------------------------------------------- reporting


def seconds(value: float) -> str:
    return f"{value:8.3f} s"


def megabytes(size: int) -> str:
    return f"{size / 1e6:8.1f} MB"


def step_timings(run) -> list[tuple[int, str, float]]:
    return [
        (s.order, s.step_type, s.duration.total_seconds())
        for s in run.step_runs.order_by("order")
        if s.duration is not None
    ]


COUNTERPART = {  # the baseline phases that do a step's work
    "csv": ["read_csv"],
    "drop_na": ["dropna"],
    "train_sklearn": ["split+fit", "evaluate"],
    "predict": ["predict"],
}


def engine_only(engine: "Timed") -> tuple[float, float]:
    """Wall and CPU seconds of the engine outside the step bodies (step.run)."""
    bodies = [value for name, value in engine.probes.items() if name.startswith("step.run")]
    return (
        engine.wall - sum(wall for wall, _ in bodies),
        engine.cpu - sum(cpu for _, cpu in bodies),
    )


def report_engine_breakdown(engine: "Timed", base: "Timed") -> None:
    run, probes = engine.run, engine.probes
    steps = step_timings(run)
    first = run.step_runs.order_by("order").first()
    last = run.step_runs.order_by("-order").first()
    nan = (float("nan"), float("nan"))
    print("\nPer step, best engine run vs best baseline (wall seconds; cpu = all threads):")
    print(
        f"  {'step':<18}{'StepRun':>9}{'step.run':>10}{'(cpu)':>9}{'cache.save':>11}"
        f"{'baseline':>10}{'(cpu)':>9}{'StepRun-baseline':>18}"
    )
    for order, slug, duration in steps:
        body, body_cpu = probes.get(f"step.run {slug}", nan)
        save, _ = probes.get(f"cache.save step {order}", nan)
        phases = [base.phases[name] for name in COUNTERPART[slug]]
        base_wall, base_cpu = sum(p[0] for p in phases), sum(p[1] for p in phases)
        print(
            f"  {f'{order} {slug}':<18}{duration:>8.3f}s{body:>9.3f}s{body_cpu:>8.3f}s"
            f"{save:>10.3f}s{base_wall:>9.3f}s{base_cpu:>8.3f}s{duration - base_wall:>+17.3f}s"
        )
    run_span = (run.finished_at - run.started_at).total_seconds()
    before = (first.started_at - run.started_at).total_seconds()
    after = (run.finished_at - last.finished_at).total_seconds()
    between = run_span - before - after - sum(d for _, _, d in steps)
    print(f"  start_run total (timed)                      {seconds(engine.wall)}")
    print(f"  validate, create, claim (+ fork, reap)       {seconds(engine.wall - run_span)}")
    print(f"  claim -> first step (plan, MLflow start, params) {seconds(before)}")
    print(f"  between steps (append_log)                   {seconds(between)}")
    print(f"  last step -> finished (metrics, end run)     {seconds(after)}")
    outside, outside_cpu = engine_only(engine)
    print(
        f"  engine outside step bodies                   {seconds(outside)}"
        f"  (cpu {outside_cpu:.3f} s)"
    )
    print("\nInstrumented calls in the best engine run (wall, cpu):")
    for name, (wall, cpu) in probes.items():
        print(f"  {name:<46}{seconds(wall)}{seconds(cpu)}")


def measure_cache(pipeline, run, scratch: Path) -> None:
    """Load every cached context, then save it again into a scratch folder, timed."""
    import hashlib
    import hmac

    import joblib
    from django.conf import settings

    from pipelines.engine.cache import StepCache
    from pipelines.engine.runner import plan_steps

    cache = StepCache(pipeline.pk)
    copy = StepCache(pipeline.pk, directory=scratch)
    print("\nStep cache, measured outside the runs (best of 2 each):")
    print(
        f"  {'step':<18}{'size':>11}{'load':>10}{'save':>10}"
        f"{'= dump':>10}{'+ HMAC':>10}   keys (pickled size)"
    )
    totals = defaultdict(float)
    model_pickles = 0
    for step in plan_steps(run.definition):
        path = cache.path(step.order)
        size = path.stat().st_size
        load = _best(lambda step=step: cache.load(step.order, step.fingerprint))
        context = cache.load(step.order, step.fingerprint)
        summary = (cache.read_meta(step.order) or {}).get("summary", {})
        save = _best(functools.partial(copy.save, step.order, context, step.fingerprint, summary))
        dump_path = scratch / f"dump_{step.order}.joblib"
        dump = _best(lambda context=context, dump_path=dump_path: joblib.dump(context, dump_path))

        def mac(dump_path=dump_path, step=step):
            key = hashlib.sha256(b"mlops.step-cache:" + settings.SECRET_KEY.encode()).digest()
            digest = hmac.new(key, step.fingerprint.digest.encode(), hashlib.sha256)
            with open(dump_path, "rb") as handle:
                while chunk := handle.read(1024 * 1024):
                    digest.update(chunk)
            return digest.hexdigest()

        hmac_time = _best(mac)
        dump_path.unlink()
        parts = ", ".join(
            f"{key} {len(pickle.dumps(value, protocol=5)) / 1e6:.1f} MB"
            for key, value in context.items()
        )
        model_pickles += "model" in context
        label = f"{step.order} {step.step_type.slug}"
        print(
            f"  {label:<18}{megabytes(size)}{load:>9.3f}s{save:>9.3f}s"
            f"{dump:>9.3f}s{hmac_time:>9.3f}s   {parts}"
        )
        totals["size"] += size
        totals["load"] += load
        totals["save"] += save
    print(
        f"  {'total':<18}{megabytes(int(totals['size']))}{totals['load']:>9.3f}s"
        f"{totals['save']:>9.3f}s"
    )
    if model_pickles > 1:
        print(f"  the fitted model is pickled into {model_pickles} cache files")


def measure_log_model(run) -> None:
    """log_sklearn_model on the run's model in a separate MLflow run, split into its parts."""
    import mlflow.sklearn
    import skops.io
    from mlflow.models import infer_signature

    from experiments import tracking

    context = _train_context(run)
    model = context["model"]
    example = context["data"][list(model.feature_names_in_)].head(5)
    requirements = ["scikit-learn", "pandas", "numpy"]
    print("\nMLflow log_sklearn_model, measured outside the runs on the same model:")

    def timed(label, func, note=""):
        start = time.perf_counter()
        result = func()
        print(f"  {label:<60}{seconds(time.perf_counter() - start)}{note}")
        return result

    tracked = tracking.TrackedRun.start("bench/log-model", "log-model", {})
    try:
        timed(
            "log_sklearn_model, first call in this process",
            lambda: tracked.log_sklearn_model(model, example),
        )
        timed(
            "log_sklearn_model, second call (steady state)",
            lambda: tracked.log_sklearn_model(model, example),
        )
        signature = timed(
            "  infer_signature", lambda: infer_signature(example, model.predict(example))
        )
        blob = timed(
            "  skops.dumps (only to list the types to trust)", lambda: skops.io.dumps(model)
        )
        trusted = timed(
            "  skops.get_untrusted_types", lambda: skops.io.get_untrusted_types(data=blob)
        )
        timed(
            "  skops.loads (= mlflow's verify after its own dump)",
            lambda: skops.io.loads(blob, trusted=trusted),
        )
        print(f"  trusted types found: {trusted}, skops file {len(blob) / 1e6:.1f} MB")
        timed(
            "log_model skops, signature + example, types given",
            lambda: mlflow.sklearn.log_model(
                model,
                name="model-skops",
                signature=signature,
                input_example=example,
                pip_requirements=requirements,
                skops_trusted_types=trusted,
            ),
        )
        timed(
            "log_model skops, signature, no example (no serving check)",
            lambda: mlflow.sklearn.log_model(
                model,
                name="model-skops-no-example",
                signature=signature,
                pip_requirements=requirements,
                skops_trusted_types=trusted,
            ),
        )
        pickled = timed("pickle.dumps, for comparison", lambda: pickle.dumps(model, protocol=5))
        print(f"  pickle size {len(pickled) / 1e6:.1f} MB")
        quiet = logging.getLogger("mlflow.sklearn")
        level = quiet.level
        quiet.setLevel(logging.ERROR)  # its pickle-format warning
        timed(
            "log_model pickle, no signature/example (unsafe format)",
            lambda: mlflow.sklearn.log_model(
                model,
                name="model-pickle",
                serialization_format="pickle",
                signature=False,
                pip_requirements=requirements,
            ),
        )
        quiet.setLevel(level)
    finally:
        tracked.end(succeeded=True)


def measure_predict(run) -> None:
    """The predict step calls predict() and predict_proba(): two passes over the forest."""
    context = _train_context(run)
    model = context["model"]
    X = context["data"][list(model.feature_names_in_)]
    print(f"\nPrediction on all {len(X)} cleaned rows, outside the runs:")
    start = time.perf_counter()
    predicted = model.predict(X)
    predict = time.perf_counter() - start
    start = time.perf_counter()
    probabilities = model.predict_proba(X)
    proba = time.perf_counter() - start
    start = time.perf_counter()
    derived = model.classes_[probabilities.argmax(axis=1)]
    argmax = time.perf_counter() - start
    same = bool((derived == predicted).all())
    print(f"  model.predict(X)                                    {seconds(predict)}")
    print(f"  model.predict_proba(X)                              {seconds(proba)}")
    print(
        f"  classes_[proba.argmax(1)] instead of predict        {seconds(argmax)}"
        f"  (identical: {same})"
    )


def _train_context(run) -> dict:
    from pipelines.engine.cache import StepCache
    from pipelines.engine.runner import plan_steps

    train = next(s for s in plan_steps(run.definition) if s.step_type.slug == "train_sklearn")
    return StepCache(run.pipeline_id).load(train.order, train.fingerprint)


def _best(func, times: int = 2) -> float:
    best = float("inf")
    for _ in range(times):
        start = time.perf_counter()
        func()
        best = min(best, time.perf_counter() - start)
    return best


def profile_engine(pipeline) -> None:
    from django.conf import settings

    isolated = isolated_runs()
    settings.MLOPS_ISOLATE_RUNS = False  # cProfile sees only this process
    profiler = cProfile.Profile()
    profiler.enable()
    start_run_function()(pipeline, wait=True)
    profiler.disable()
    settings.MLOPS_ISOLATE_RUNS = isolated
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out).strip_dirs()
    stats.sort_stats("cumulative").print_stats(40)
    stats.sort_stats("tottime").print_stats(20)
    print(
        "\ncProfile of one more engine run, in this process (main thread only; the trees are "
        "built in worker threads):"
    )
    print(out.getvalue())


# --------------------------------------------------------------------------- main


def main() -> int:
    args = parse_args()
    folder = Path(tempfile.mkdtemp(prefix="mlops-bench-"))
    configure_environment(folder, args.in_process)
    try:
        return benchmark(args, folder)
    finally:
        if args.keep:
            print(f"\nkept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)


def benchmark(args, folder: Path) -> int:
    import django

    django.setup()

    import numpy as np
    import pandas as pd
    import sklearn
    from django.core.management import call_command

    from datasources.services import add_dataset
    from experiments import tracking
    from pipelines import services

    call_command("migrate", verbosity=0)
    tracking.configure().search_experiments()

    params = hyperparams(args)
    frame = make_frame(args.rows, args.seed)
    csv_path = folder / "bench.csv"
    frame.to_csv(csv_path, index=False)
    with open(csv_path, "rb") as handle:
        dataset = add_dataset(handle, DATASET_NAME, "bench.csv")
    clean_rows = len(frame.dropna())
    print(
        f"data: {args.rows} rows x {frame.shape[1]} columns, {clean_rows} rows after dropna, "
        f"CSV {megabytes(csv_path.stat().st_size).strip()}, label mean {frame[TARGET].mean():.3f}"
    )
    print(f"random forest: {params}, cpus={os.cpu_count()}")
    print(
        f"python {sys.version.split()[0]}, numpy {np.__version__}, pandas {pd.__version__}, "
        f"scikit-learn {sklearn.__version__}"
    )
    del frame

    start = time.perf_counter()
    pipeline = services.import_pipeline(pipeline_definition("bench-engine", params))
    print(f"import_pipeline: {time.perf_counter() - start:.3f} s (not timed)")

    mode = "a forked child process" if isolated_runs() else "this process"
    print(f"start_run(wait=True) runs the engine in {mode}")
    probes = Probes(folder / "probes.json")
    install_probes(probes)
    if args.warmup:
        warm_up(folder, params, args.seed, probes, args.preload)

    busy_before, own_before, wall_before = machine_busy(), cpu_seconds(), time.perf_counter()
    baselines, engines = [], []
    for index in range(1, args.repeat + 1):
        base = run_baseline(dataset.file.path, params)
        baselines.append(base)
        print(
            f"[{index}/{args.repeat}] baseline {base.wall:7.3f} s (cpu {base.cpu:7.3f} s): "
            + ", ".join(f"{name} {wall:.2f}" for name, (wall, _) in base.phases.items())
        )
        engine = run_engine(pipeline, probes)
        engines.append(engine)
        print(
            f"[{index}/{args.repeat}] engine   {engine.wall:7.3f} s (cpu {engine.cpu:7.3f} s): "
            + ", ".join(f"{o} {slug} {d:.2f}" for o, slug, d in step_timings(engine.run))
        )
    busy_after, own_after, wall_after = machine_busy(), cpu_seconds(), time.perf_counter()

    base = min(baselines, key=lambda item: item.wall)
    engine = min(engines, key=lambda item: item.wall)
    if base.scores != engine.run.metrics:
        print(f"\nWARNING: metrics differ: baseline {base.scores} engine {engine.run.metrics}")
    else:
        print(f"\nmetrics identical in both: {_format(base.scores)}")

    report_engine_breakdown(engine, base)
    scratch = folder / "cache-copy"
    scratch.mkdir()
    measure_cache(pipeline, engine.run, scratch)
    measure_log_model(engine.run)
    measure_predict(engine.run)

    if args.profile:
        profile_engine(pipeline)

    ratio = engine.wall / base.wall
    cpu_ratio = min(e.cpu for e in engines) / min(b.cpu for b in baselines)
    outside, _ = engine_only(engine)
    print()
    if busy_before is not None and busy_after is not None:
        others = (busy_after - busy_before) - (own_after - own_before)
        share = others / ((wall_after - wall_before) * (os.cpu_count() or 1))
        print(
            f"other processes used {max(others, 0):.1f} CPU-s during the timed runs "
            f"({max(share, 0):.0%} of the machine)"
        )
        if share > 0.05:
            print("WARNING: the machine was shared; wall times are noisy, see the CPU ratio")
    print(f"baseline (min of {args.repeat}): {base.wall:.3f} s wall, {base.cpu:.3f} s cpu")
    print(f"engine   (min of {args.repeat}): {engine.wall:.3f} s wall, {engine.cpu:.3f} s cpu")
    print(f"engine overhead: {engine.wall - base.wall:+.3f} s wall")
    print(
        f"engine work outside step bodies: {outside:.3f} s "
        f"-> ratio with identical step bodies {(base.wall + outside) / base.wall:.2f}"
    )
    print(f"engine/baseline CPU-time ratio: {cpu_ratio:.2f}")
    verdict = "OK" if ratio <= TARGET_RATIO else "ABOVE TARGET"
    print(f"engine/baseline ratio: {ratio:.2f} (target <= {TARGET_RATIO}) {verdict}")
    return 0


def machine_busy() -> float | None:
    """CPU-seconds all processes have used since boot (Linux), None elsewhere."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except (OSError, IndexError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _format(scores: dict) -> str:
    return ", ".join(f"{k}={v:.4f}" for k, v in scores.items())


if __name__ == "__main__":
    sys.exit(main())
