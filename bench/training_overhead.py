"""How much does the train_sklearn step add to fitting the same sklearn Pipeline directly?

Run from the project root:

    .venv/bin/python bench/training_overhead.py [--rows 100000] [--repeat 3]

For each of three estimators on a generated dataset (--rows rows x 20 features, fixed
seed), it times the step body (`run()`: split, fit, metrics, artifacts) against the same
Pipeline (`_preparation` + `build_estimator`), split and `evaluate` as a plain script,
alternately, and compares the best of --repeat. Django runs on a temporary folder that is
deleted at the end. See bench/README.md.
"""

import argparse
import sys
import time

from common import configure_environment, temporary_folder

TARGET_RATIO = 1.10
LABEL = "label"
SEED = 7
TEST_SIZE = 0.2
ESTIMATORS = {
    "logistic_regression": {"max_iter": 200},
    "random_forest": {"n_estimators": 20, "max_depth": 10},
    "hist_gradient_boosting": {"max_iter": 50},
}


def make_frame(rows: int):
    """19 numeric features with 1% missing values, one categorical, a noisy binary label."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(SEED)
    numeric = rng.normal(size=(rows, 19))
    colour = rng.choice(["red", "green", "blue", "grey", "pink"], size=rows)
    score = numeric[:, :5] @ [1.0, -0.8, 0.6, 0.4, -0.3] + (colour == "red")
    label = (score + rng.normal(scale=1.0, size=rows) > 0.5).astype(int)
    numeric[rng.random(numeric.shape) < 0.01] = np.nan
    frame = pd.DataFrame(numeric, columns=[f"x{i}" for i in range(19)])
    return frame.assign(colour=colour, **{LABEL: label})


def run_direct(frame, estimator: str) -> dict:
    """The step's work as a plain script: split, the same Pipeline, fit, evaluate."""
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import Pipeline

    from pipelines.steps.estimators import build_estimator
    from pipelines.steps.training import _preparation, evaluate

    X, y = frame.drop(columns=LABEL), frame[LABEL]
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=TEST_SIZE, random_state=SEED, stratify=y
    )
    built = build_estimator("classification", estimator, dict(ESTIMATORS[estimator]), SEED)
    model = Pipeline([("prepare", _preparation(X)), ("estimator", built)])
    model.fit(X_train, y_train)
    return evaluate("classification", model, X_test, y_test)


def run_step(frame, estimator: str) -> dict:
    from pipelines.engine.registry import get_step_type

    step = get_step_type("train_sklearn")
    params = step.Params.model_validate(
        {
            "task": "classification",
            "estimator": estimator,
            "target": LABEL,
            "test_size": TEST_SIZE,
            "random_state": SEED,
            "hyperparams": ESTIMATORS[estimator],
        }
    )
    context = step.run({"data": frame}, params, lambda message: None)
    return context["metrics"]


def timed(function, *args) -> tuple[tuple[float, float], dict]:
    """(wall, CPU) seconds of a call, and its result. CPU time counts every thread of this
    process and varies less than wall time when other processes compete for the cores."""
    start, start_cpu = time.perf_counter(), time.process_time()
    result = function(*args)
    return (time.perf_counter() - start, time.process_time() - start_cpu), result


def compare(frame, estimator: str, repeat: int) -> tuple[tuple, tuple]:
    """Best (wall, CPU) times of the direct fit and of the step, run alternately."""
    direct, step = [], []
    for _ in range(repeat):
        seconds, direct_metrics = timed(run_direct, frame, estimator)
        direct.append(seconds)
        seconds, step_metrics = timed(run_step, frame, estimator)
        step.append(seconds)
        if step_metrics != direct_metrics:
            raise SystemExit(f"{estimator}: metrics differ: {step_metrics} != {direct_metrics}")
    # Best wall and best CPU time, each over all runs.
    return tuple(map(min, zip(*direct, strict=True))), tuple(map(min, zip(*step, strict=True)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3, help="alternating runs; best counts")
    args = parser.parse_args()
    with temporary_folder("mlops-bench-training-") as folder:
        configure_environment(folder, MLFLOW_ARTIFACT_ROOT=str(folder / "mlartifacts"))
        import django

        django.setup()
        frame = make_frame(args.rows)
        # Both paths import and warm up on a small slice, so no timed run pays for it.
        for estimator in ESTIMATORS:
            compare(frame.head(2_000), estimator, 1)
        print(f"{args.rows} rows x {frame.shape[1] - 1} features, best of {args.repeat}")
        print("estimator               direct     step  ratio | CPU: direct     step  ratio")
        worst = 0.0
        for estimator in ESTIMATORS:
            (direct, direct_cpu), (step, step_cpu) = compare(frame, estimator, args.repeat)
            worst = max(worst, step / direct)
            print(
                f"{estimator:<22} {direct:>6.2f}s {step:>7.2f}s {step / direct:>6.3f} | "
                f"{direct_cpu:>10.2f}s {step_cpu:>7.2f}s {step_cpu / direct_cpu:>6.3f}"
            )
        verdict = "OK" if worst <= TARGET_RATIO else "ABOVE TARGET"
        print(
            f"worst step/direct wall-time ratio {worst:.3f} (target <= {TARGET_RATIO:.2f}) {verdict}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
