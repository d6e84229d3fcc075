"""How fast does a dashboard chart aggregate a large dataset, against pandas?

    .venv/bin/python bench/chart_aggregation.py [--rows 5000000] [--repeat 10] [--keep]

Writes a dataset of --rows rows and 10 columns (a timestamp over two years, a `series`
text column of 10 values, six float columns, an int and a text column; fixed seed) as a
Parquet Dataset version in a temporary media, cache and database folder. Then, each in
a fresh process so its peak memory is its own:

- engine: `dashboards.aggregate.chart_data` of a monthly line chart, mean of `v0`, grouped
  by `series` (10 series). "first" is the first call of the process (DuckDB's start
  included); "cold" empties the Django cache before each call (p50 over --repeat);
  "cached" answers from the Django cache (p50 / p95 over --repeat).
- pandas: `pandas.read_parquet` of the three columns the chart needs + `groupby` of
  (month, series) mean, the same result, p50 over --repeat.

Peak memory is the child's RSS high-water mark (VmHWM; the whole process: Django, DuckDB, pandas). Ratios
are pandas over engine. See bench/README.md.
"""

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import (
    ROOT,
    configure_environment,
    setup_django,
    temporary_folder,
    timed,
    verdict,
)

COLD_TARGET, CACHED_TARGET, MEMORY_TARGET_MB = 0.500, 0.050, 1024
DATASET = "bench-chart"


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--child", choices=["engine", "pandas"], help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    return parser.parse_args()


def chart_spec():
    from dashboards.aggregate import ChartSource, ChartSpec

    source = ChartSource(kind="dataset", dataset=DATASET)
    spec = ChartSpec(
        kind="line", x="when", y=("v0",), aggregation="mean", time_grain="month", group_by="series"
    )
    return source, spec


def write_dataset(rows: int, folder: Path):
    """The benchmark frame as a Parquet file, stored as a Dataset version."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from datasources.services import add_dataset

    rng = np.random.default_rng(42)
    start = np.datetime64("2023-01-01T00:00:00", "s")
    columns = {
        "when": start + rng.integers(0, 2 * 365 * 86400, rows).astype("timedelta64[s]"),
        "series": pa.array(rng.integers(0, 10, rows).astype(str)).dictionary_encode(),
    }
    for index in range(6):
        columns[f"v{index}"] = rng.normal(100, 30, rows).round(2)
    columns["count"] = rng.integers(0, 1000, rows)
    columns["region"] = pa.array(rng.integers(0, 50, rows).astype(str)).dictionary_encode()
    path = folder / "bench.parquet"
    pq.write_table(pa.table(columns), path, compression="snappy")
    with open(path, "rb") as handle:
        dataset = add_dataset(handle, DATASET, "bench.parquet")
    path.unlink()
    return dataset


def max_rss_mb() -> float:
    """The process's RSS high-water mark. VmHWM, not ru_maxrss: Linux carries ru_maxrss
    over fork and exec, so a child started by this (large) parent would report its size."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_engine(repeat: int) -> dict:
    import django

    django.setup()
    from django.core.cache import cache

    from dashboards.aggregate import chart_data

    source, spec = chart_spec()
    after_imports = max_rss_mb()
    cache.clear()
    started = time.perf_counter()
    data = chart_data(source, spec)
    first = time.perf_counter() - started
    cold = timed(lambda: chart_data(source, spec), repeat, before=cache.clear)
    cached = sorted(timed(lambda: chart_data(source, spec), repeat))
    return {
        "first": first,
        "cold": statistics.median(cold),
        "cached": statistics.median(cached),
        "cached_p95": cached[min(len(cached) - 1, round(0.95 * (len(cached) - 1)))],
        "rss_after_imports_mb": after_imports,
        "peak_rss_mb": max_rss_mb(),
        "labels": len(data.labels),
        "series": len(data.series),
        "points": data.points,
        "checksum": round(sum(v for s in data.series for v in s["values"] if v is not None), 6),
    }


def child_pandas(path: str, repeat: int) -> dict:
    import pandas as pd

    after_imports = max_rss_mb()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        frame = pd.read_parquet(path, columns=["when", "series", "v0"])
        month = frame["when"].dt.to_period("M").dt.start_time
        result = frame.groupby([month, frame["series"]], observed=True)["v0"].mean()
        times.append(time.perf_counter() - started)
        del frame, month
    return {
        "time": statistics.median(times),
        "first": times[0],
        "rss_after_imports_mb": after_imports,
        "peak_rss_mb": max_rss_mb(),
        "checksum": round(float(result.sum()), 6),
    }


def run_child(kind: str, repeat: int, path: str = "") -> dict:
    command = [sys.executable, __file__, "--child", kind, "--repeat", str(repeat)]
    if path:
        command += ["--path", path]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def bench_aggregation(args) -> None:
    """The chart aggregation engine on a --rows x 10 dataset, against pandas."""
    with temporary_folder("mlops-bench-charts-", args.keep) as folder:
        configure_environment(folder, MLOPS_MAX_UPLOAD_BYTES=str(4 * 1024**3))
        setup_django()
        started = time.perf_counter()
        dataset = write_dataset(args.rows, folder)
        print(
            f"dataset: {dataset.row_count:,} rows x {dataset.column_count} columns, "
            f"{dataset.size_bytes / 1024**2:.0f} MB Parquet, written in "
            f"{time.perf_counter() - started:.1f} s"
        )
        engine = run_child("engine", args.repeat)
        baseline = run_child("pandas", args.repeat, dataset.file.path)
        report(engine, baseline)


def report(engine: dict, baseline: dict) -> None:
    print(
        f"chart: {engine['labels']} months x {engine['series']} series = {engine['points']} "
        f"points; same result as pandas: {engine['checksum'] == baseline['checksum']}"
    )
    print(f"{'':28}{'engine':>12}{'pandas':>12}{'ratio':>8}")
    rows = [
        ("first call (s)", engine["first"], baseline["first"]),
        ("cold, p50 (s)", engine["cold"], baseline["time"]),
        ("cached, p50 (s)", engine["cached"], baseline["time"]),
    ]
    for label, ours, theirs in rows:
        print(f"{label:28}{ours:12.4f}{theirs:12.4f}{theirs / ours:8.1f}x")
    print(f"{'cached, p95 (s)':28}{engine['cached_p95']:12.4f}")
    print(
        f"{'peak RSS (MB)':28}{engine['peak_rss_mb']:12.0f}{baseline['peak_rss_mb']:12.0f}"
        f"{baseline['peak_rss_mb'] / engine['peak_rss_mb']:8.1f}x"
    )
    print(
        f"{'  after imports (MB)':28}{engine['rss_after_imports_mb']:12.0f}"
        f"{baseline['rss_after_imports_mb']:12.0f}"
    )
    print(f"cold < {COLD_TARGET * 1000:.0f} ms: {verdict(engine['cold'] < COLD_TARGET)}")
    print(f"cached < {CACHED_TARGET * 1000:.0f} ms: {verdict(engine['cached'] < CACHED_TARGET)}")
    peak_ok = engine["peak_rss_mb"] < MEMORY_TARGET_MB
    print(f"peak memory < {MEMORY_TARGET_MB} MB: {verdict(peak_ok)}")


def main() -> None:
    args = parse_args()
    if args.child == "engine":
        sys.path.insert(0, str(ROOT))
        print(json.dumps(child_engine(args.repeat)))
    elif args.child == "pandas":
        print(json.dumps(child_pandas(args.path, args.repeat)))
    else:
        bench_aggregation(args)


if __name__ == "__main__":
    main()
