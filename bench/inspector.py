"""How fast does the step inspector open a large cached step, against unpickling it?

    .venv/bin/python bench/inspector.py [--rows 1000000] [--columns 20] [--repeat 20] [--keep]

Writes one step's context ({"data": rows x columns}) through StepCache.save, as the engine
does, then its Parquet copy and profile (StepCache.add_inspection, what the worker task
does after the step), in a temporary cache folder; both times are printed.
Then, each in a fresh process so its peak memory is its own:

- inspector: open the step (HMAC of the cache and of its record, the profile) and read
  the first page; another page; a sort by a numeric column (first page). The first open
  hashes the files; later opens in the same process skip hashing files whose inode,
  size, mtime and ctime are unchanged. Prints the cold open, then p50/p95 over --repeat.
- baseline: joblib.load of the cache file + DataFrame.describe(), what a page would do
  without the sidecars.

Peak memory is the child's ru_maxrss growth over its state after imports, compared with
the frame's own memory. The database part of a page (a few constant queries) is left
out: bench/pages.py measures it. See bench/README.md.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import ROOT, temporary_folder

OPEN_TARGET, PAGE_TARGET = 0.300, 1.0
PIPELINE, ORDER = 1, 1


def setup_django(cache_dir: str) -> None:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mlops_site.settings")
    import django
    from django.conf import settings

    django.setup()
    settings.MLOPS_CACHE_DIR = Path(cache_dir)


def fingerprint():
    from pipelines.engine.cache import Fingerprint

    return Fingerprint(step_type="csv", params={"dataset": "bench"}, upstream="")


def write(args) -> None:
    import numpy as np
    import pandas as pd

    from pipelines.engine.cache import StepCache

    rng = np.random.default_rng(7)
    numeric = args.columns - 2
    frame = pd.DataFrame(
        {f"x{i}": rng.normal(size=args.rows) for i in range(numeric)}
        | {
            "city": rng.choice(["Oslo", "Paris", "Lima", "Pune", "Kyiv"], size=args.rows),
            "code": rng.integers(0, 10_000, size=args.rows).astype(str),
        }
    )
    memory = int(frame.memory_usage(deep=True).sum())
    cache = StepCache(PIPELINE)
    started = time.perf_counter()
    cache.save(ORDER, {"data": frame}, fingerprint(), {"rows": len(frame)})
    saved = time.perf_counter()
    # What a worker task does after the step, off the run's path.
    cache.add_inspection(ORDER, fingerprint().digest, {"data": frame})
    profiled = time.perf_counter()
    print(json.dumps({"memory": memory, "save": saved - started, "profile": profiled - saved}))


def rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def inspect(args) -> None:
    from types import SimpleNamespace

    from pipelines import inspector
    from pipelines.engine.cache import StepCache
    from pipelines.inspector import KeyInfo, StepOutput

    pipeline = SimpleNamespace(pk=PIPELINE)
    cache = StepCache(PIPELINE)

    def open_step() -> StepOutput:
        """step_output without the database: the cache checks, the record, the profile."""
        meta = cache.inspection(ORDER, fingerprint())
        record = meta["inspect"]
        output = StepOutput(pipeline, ORDER, {"type": "csv"}, None, None, meta=meta)
        output.keys = [KeyInfo(k, v["kind"], v) for k, v in record["keys"].items()]
        output.profiles = inspector._read_profiles(cache, ORDER, record)
        return output

    before = rss()
    timings = {"open": [], "page": [], "sort": []}
    cold = None
    for _ in range(args.repeat):
        started = time.perf_counter()
        output = open_step()
        inspector.data_page(pipeline, ORDER, "data", 1, output=output)
        elapsed = time.perf_counter() - started
        cold = elapsed if cold is None else cold
        timings["open"].append(elapsed)
        started = time.perf_counter()
        inspector.data_page(pipeline, ORDER, "data", 7_777, output=output)
        timings["page"].append(time.perf_counter() - started)
        started = time.perf_counter()
        inspector.data_page(pipeline, ORDER, "data", 1, sort="x3", descending=True, output=output)
        timings["sort"].append(time.perf_counter() - started)
    print(json.dumps({"cold": cold, "timings": timings, "peak": rss() - before}))


def baseline(args) -> None:
    import joblib

    from pipelines.engine.cache import StepCache

    before = rss()
    started = time.perf_counter()
    context = StepCache(PIPELINE).load(ORDER, fingerprint())  # HMAC check + joblib.load
    loaded = time.perf_counter() - started
    context["data"].describe(include="all")
    total = time.perf_counter() - started
    del joblib
    print(json.dumps({"load": loaded, "total": total, "peak": rss() - before}))


def child(phase: str, args, cache_dir: str) -> dict:
    command = [sys.executable, __file__, "--phase", phase, "--cache-dir", cache_dir]
    command += ["--rows", str(args.rows), "--columns", str(args.columns)]
    command += ["--repeat", str(args.repeat)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode:
        sys.exit(f"{phase} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def p(values, q) -> float:
    return (
        statistics.quantiles(values, n=100, method="inclusive")[q - 1]
        if len(values) > 1
        else values[0]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--columns", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--phase", choices=["write", "inspect", "baseline"])
    parser.add_argument("--cache-dir")
    args = parser.parse_args()
    if args.phase:
        setup_django(args.cache_dir)
        {"write": write, "inspect": inspect, "baseline": baseline}[args.phase](args)
        return

    with temporary_folder("bench-inspector-", args.keep) as folder:
        written = child("write", args, str(folder))
        sizes = {path.name: path.stat().st_size for path in folder.iterdir()}
        seen = child("inspect", args, str(folder))
        base = child("baseline", args, str(folder))
    mb = 1024 * 1024
    memory = written["memory"]
    print(f"frame: {args.rows:,} rows x {args.columns} columns, {memory / mb:,.0f} MB in memory")
    print(
        f"cache write (joblib, in the run): {written['save']:.2f} s; inspector profile and "
        f"Parquet copy (a worker task after the step): {written['profile']:.2f} s"
    )
    for name, size in sorted(sizes.items()):
        print(f"  {name}: {size / mb:,.1f} MB")
    t = seen["timings"]
    print(f"inspector open + first page, cold (hashes the files): {seen['cold'] * 1000:,.0f} ms")
    for name, target in (("open", OPEN_TARGET), ("page", PAGE_TARGET), ("sort", PAGE_TARGET)):
        p50, p95 = p(t[name], 50), p(t[name], 95)
        verdict = "OK" if p95 <= target else "OVER"
        print(
            f"inspector {name:<5} p50 {p50 * 1000:7,.0f} ms  p95 {p95 * 1000:7,.0f} ms"
            f"  (target {target * 1000:,.0f} ms) {verdict}"
        )
    print(
        f"inspector peak memory growth: {seen['peak'] / mb:,.0f} MB = {seen['peak'] / memory:.2f}x the frame (target < 2x)"
    )
    print(
        f"baseline joblib.load (with HMAC) {base['load'] * 1000:,.0f} ms, "
        f"+ describe() {base['total'] * 1000:,.0f} ms, peak memory {base['peak'] / mb:,.0f} MB "
        f"= {base['peak'] / memory:.2f}x the frame"
    )
    print(
        f"ratios: cold open / baseline {seen['cold'] / base['total']:.3f}, "
        f"open p95 / baseline {p(t['open'], 95) / base['total']:.3f}, "
        f"sort p95 / baseline {p(t['sort'], 95) / base['total']:.3f}, "
        f"peak memory / baseline {seen['peak'] / max(base['peak'], 1):.2f}"
    )


if __name__ == "__main__":
    main()
