"""How much slower is a pipeline run through the engine than the same work as a plain script?

    .venv/bin/python bench/engine_overhead.py [--rows 200000] [--repeat 3] [--in-process]
        [--profile] [--keep]

Works in a temporary folder (database, step cache, media, MLflow), deleted unless --keep.
The last line is the fastest engine run over the fastest baseline run. See bench/README.md.
"""

import argparse
import cProfile
import os
import pstats
import time
from pathlib import Path

from common import configure_environment, setup_django, temporary_folder, verdict

TARGET_RATIO = 1.15
LABEL = "label"
FEATURES = 19  # plus the label: 20 columns
SEED = 19  # of the generated data
RANDOM_STATE = 42
TEST_SIZE = 0.2
HYPERPARAMS = {"n_estimators": 50, "max_depth": 12, "n_jobs": -1}
WARMUP_ROWS = 2000
# The baseline phases that do the work of each step.
STEP_PHASES = {
    "csv": ["read_csv"],
    "drop_na": ["dropna"],
    "train_sklearn": ["fit", "evaluate"],
    "predict": ["predict"],
}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3, help="alternating runs of each")
    parser.add_argument("--in-process", action="store_true", help="no forked engine child")
    parser.add_argument("--profile", action="store_true", help="cProfile one more engine run")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    return parser.parse_args()


def make_frame(rows: int):
    """Numeric features with about 1% missing values each and a noisy binary label."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(SEED)
    X = rng.normal(size=(rows, FEATURES))
    logit = X @ rng.normal(size=FEATURES) + np.sin(2 * X[:, 0]) + rng.normal(size=rows)
    X[rng.random(X.shape) < 0.01] = np.nan
    frame = pd.DataFrame(X, columns=[f"f{i:02d}" for i in range(FEATURES)])
    frame[LABEL] = (logit > np.median(logit)).astype(int)
    return frame


def add_pipeline(folder: Path, name: str, rows: int):
    """A generated dataset and the pipeline csv -> drop_na -> train_sklearn -> predict."""
    from datasources.services import add_dataset
    from pipelines.services import import_pipeline

    path = folder / f"{name}.csv"
    make_frame(rows).to_csv(path, index=False)
    with open(path, "rb") as handle:
        dataset = add_dataset(handle, name, path.name)
    train = {
        "task": "classification",
        "estimator": "random_forest",
        "target": LABEL,
        "test_size": TEST_SIZE,
        "random_state": RANDOM_STATE,
        "hyperparams": dict(HYPERPARAMS),
    }
    steps = [("csv", {"dataset": name}), ("drop_na", {}), ("train_sklearn", train), ("predict", {})]
    definition = {
        "name": name,
        "steps": [
            {"order": order, "type": slug, "name": "", "params": params}
            for order, (slug, params) in enumerate(steps, start=1)
        ],
    }
    return dataset.file.path, import_pipeline(definition)


def run_baseline(csv_path: str) -> tuple[float, dict, dict]:
    """The pipeline's work as a plain pandas/scikit-learn script: wall, phases, metrics."""
    import pandas as pd
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import Pipeline

    from pipelines.steps.estimators import build_estimator
    from pipelines.steps.training import _preparation, evaluate

    phases = {}
    start = mark = time.perf_counter()

    def lap(name):
        nonlocal mark
        now = time.perf_counter()
        phases[name], mark = now - mark, now

    frame = pd.read_csv(csv_path)
    lap("read_csv")
    frame = frame.dropna().reset_index(drop=True)
    lap("dropna")
    X, y = frame.drop(columns=LABEL), frame[LABEL]
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=TEST_SIZE, random_state=RANDOM_STATE, stratify=y
    )
    estimator = build_estimator("classification", "random_forest", dict(HYPERPARAMS), RANDOM_STATE)
    model = Pipeline([("prepare", _preparation(X)), ("estimator", estimator)])
    model.fit(X_train, y_train)
    lap("fit")
    metrics = evaluate("classification", model, X_test, y_test)
    lap("evaluate")
    # The predict step's output: the frame plus a prediction and one probability per class.
    probabilities = pd.DataFrame(
        model.predict_proba(X), columns=[f"probability_{c}" for c in model.classes_]
    )
    pd.concat([frame.assign(prediction=model.predict(X)), probabilities], axis=1)
    lap("predict")
    return time.perf_counter() - start, phases, metrics


def run_engine(pipeline):
    """start_run(wait=True): validation, StepRuns, cache writes and MLflow logging included."""
    from pipelines.runs import start_run

    start = time.perf_counter()
    run = start_run(pipeline, trigger="command", wait=True)
    wall = time.perf_counter() - start
    if run.status != "succeeded":
        raise SystemExit(f"engine run failed: {run.error_message}\n{run.logs}")
    return wall, run


def print_steps(engine_wall: float, run, phases: dict) -> None:
    """Each StepRun's duration against the baseline phases doing the same work."""
    print("\nper step, fastest runs (s):")
    print(f"  {'step':<16}{'StepRun':>9}{'baseline':>10}{'diff':>9}")
    in_steps = 0.0
    for step in run.step_runs.order_by("order"):
        duration = step.duration.total_seconds()
        baseline = sum(phases[name] for name in STEP_PHASES[step.step_type])
        diff = duration - baseline
        print(f"  {step.step_type:<16}{duration:>9.3f}{baseline:>10.3f}{diff:>+9.3f}")
        in_steps += duration
    outside = engine_wall - in_steps
    print(f"  {'outside steps':<16}{outside:>9.3f}{0:>10.3f}{outside:>+9.3f}")


def print_cache(run, scratch: Path) -> None:
    """Time StepCache.save and .load of each step's context, outside the runs."""
    from pipelines.engine.cache import StepCache
    from pipelines.engine.runner import plan_steps

    cache, copy = StepCache(run.pipeline_id), StepCache(run.pipeline_id, directory=scratch)
    print("\nstep cache files, measured outside the runs:")
    print(f"  {'step':<16}{'size MB':>9}{'save s':>9}{'load s':>9}")
    for step in plan_steps(run.definition):
        start = time.perf_counter()
        context = cache.load(step.order, step.fingerprint)
        load = time.perf_counter() - start
        start = time.perf_counter()
        copy.save(step.order, context, step.fingerprint, summary={})
        save = time.perf_counter() - start
        size = cache.path(step.order).stat().st_size / 1e6
        print(f"  {step.step_type.slug:<16}{size:>9.1f}{save:>9.3f}{load:>9.3f}")


def busy_cpu_seconds() -> float:
    """CPU seconds every process on the machine has used since boot (Linux /proc/stat)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    """This process's CPU time, plus its reaped children's (the forked engine runs)."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def profile_engine(pipeline) -> None:
    from django.conf import settings

    settings.MLOPS_ISOLATE_RUNS = False  # cProfile sees only this process
    profiler = cProfile.Profile()
    profiler.runcall(run_engine, pipeline)
    pstats.Stats(profiler).strip_dirs().sort_stats("cumulative").print_stats(30)


def setup_stores() -> None:
    setup_django()
    from experiments import tracking

    tracking.configure().search_experiments()  # creates MLflow's schema, untimed


def timed_runs(csv_path: str, pipeline, repeat: int) -> tuple[list, list, float]:
    """Baseline and engine runs, alternately; also the CPU share other processes used."""
    baselines, engines = [], []
    busy, own, start = busy_cpu_seconds(), own_cpu_seconds(), time.perf_counter()
    for index in range(1, repeat + 1):
        baselines.append(run_baseline(csv_path))
        engines.append(run_engine(pipeline))
        print(
            f"[{index}/{repeat}] baseline {baselines[-1][0]:.3f} s, engine {engines[-1][0]:.3f} s"
        )
    others = (busy_cpu_seconds() - busy) - (own_cpu_seconds() - own)
    return baselines, engines, max(others, 0) / ((time.perf_counter() - start) * os.cpu_count())


def benchmark(args, folder: Path) -> None:
    setup_stores()
    # Both paths once on a small dataset: first calls pay one-off imports and setup.
    warmup_csv, warmup_pipeline = add_pipeline(folder, "bench-warmup", WARMUP_ROWS)
    run_baseline(warmup_csv)
    run_engine(warmup_pipeline)

    csv_path, pipeline = add_pipeline(folder, "bench-data", args.rows)
    mode = "in this process" if args.in_process else "in a forked child, as in the worker"
    print(f"{args.rows} rows x {FEATURES + 1} columns, random forest {HYPERPARAMS}")
    print(f"engine runs {mode}; {os.cpu_count()} CPUs")
    baselines, engines, others_share = timed_runs(csv_path, pipeline, args.repeat)
    base_wall, phases, metrics = min(baselines, key=lambda result: result[0])
    engine_wall, run = min(engines, key=lambda result: result[0])
    same = "identical" if metrics == run.metrics else f"DIFFER: {metrics} vs {run.metrics}"
    print(f"metrics {same}")
    print_steps(engine_wall, run, phases)
    print_cache(run, folder / "cache-copy")
    if args.profile:
        profile_engine(pipeline)

    print(f"\nother processes used {others_share:.0%} of the CPUs during the timed runs")
    if others_share > 0.05:
        print("WARNING: the machine was busy; the wall times are noisy")
    print(f"baseline {base_wall:.3f} s, engine {engine_wall:.3f} s (min of {args.repeat})")
    ratio = engine_wall / base_wall
    print(
        f"engine/baseline ratio: {ratio:.2f} (target <= {TARGET_RATIO}) "
        f"{verdict(ratio <= TARGET_RATIO)}"
    )


def main() -> None:
    args = parse_args()
    with temporary_folder("mlops-bench-", args.keep) as folder:
        configure_environment(
            folder,
            MLFLOW_ARTIFACT_ROOT=str(folder / "mlartifacts"),
            MLOPS_ISOLATE_RUNS="0" if args.in_process else "1",
        )
        benchmark(args, folder)


if __name__ == "__main__":
    main()
