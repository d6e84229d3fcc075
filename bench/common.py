"""What the benchmark scripts share: a temporary project to run Django in, timing and
p50 / p95, and the timing of a page through Django's test client.

The scripts import it as `common` (`from common import ...`): Python puts a script's own
folder, bench/, first on sys.path, so `.venv/bin/python bench/<name>.py` finds it.
"""

import contextlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def configure_environment(folder: Path, **extra: str) -> None:
    """Point the settings at a temporary project in `folder` (database, step cache, media,
    MLflow store); must run before django.setup(), and processes started later inherit it.
    `extra` adds variables or replaces these (e.g. DATABASE_URL, MLFLOW_ARTIFACT_ROOT)."""
    sys.path.insert(0, str(ROOT))
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "mlops_site.settings",
            "DATABASE_URL": f"sqlite:///{folder / 'bench.db'}",
            "MLOPS_CACHE_DIR": str(folder / "cache"),
            "MEDIA_ROOT": str(folder / "media"),
            "MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'mlflow.db'}",
            "LOG_LEVEL": "WARNING",
            "DJANGO_ALLOWED_HOSTS": "testserver",
            **extra,
        }
    )


def setup_django(*commands: str) -> None:
    """django.setup(), the migrations, then each management command in `commands`
    (e.g. "createcachetable"), all quietly."""
    import django

    django.setup()
    from django.core.management import call_command

    for command in ("migrate", *commands):
        call_command(command, verbosity=0)


@contextlib.contextmanager
def temporary_folder(prefix: str, keep: bool = False) -> Iterator[Path]:
    """A new temporary folder, deleted on the way out unless `keep` (then its path is
    printed)."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield folder
    finally:
        if keep:
            print(f"kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)


def timed(
    call: Callable[[], object], repeat: int, before: Callable[[], object] | None = None
) -> list[float]:
    """Seconds of each of `repeat` calls of `call`; `before` runs ahead of each call,
    outside the timing (e.g. clearing a cache)."""
    timings = []
    for _ in range(repeat):
        if before:
            before()
        started = time.perf_counter()
        call()
        timings.append(time.perf_counter() - started)
    return timings


def percentiles(timings: list[float]) -> tuple[float, float]:
    """p50 (the median) and p95 (statistics.quantiles' last of 20) of at least 2 values."""
    return statistics.median(timings), statistics.quantiles(timings, n=20)[-1]


def measure_page(client, url: str, requests: int, warmups: int = 3, before=None, **headers):
    """A page through Django's test client: p50 and p95 in ms over `requests` requests
    after `warmups` warm-up requests, the status code and the query count of one request.
    `before` runs ahead of each request, outside the timing (e.g. clearing the cache)."""
    from django.db import connection

    def get():
        return client.get(url, headers=headers)

    for _ in range(warmups):
        if before:
            before()
        get()
    queries = []
    if before:
        before()
    # Counts every statement, whatever DEBUG says and however often the connection reopens.
    with connection.execute_wrapper(
        lambda execute, sql, *rest: queries.append(sql) or execute(sql, *rest)
    ):
        response = get()
    p50, p95 = percentiles([seconds * 1000 for seconds in timed(get, requests, before)])
    return p50, p95, response.status_code, len(queries)


def page_table_header(first: str = "page", width: int = 26) -> str:
    """The header of a table of page_table_row rows."""
    return (
        f"{first:<{width}}{'status':>7}{'queries':>9}{'p50 ms':>9}{'p95 ms':>9}"
        f"{'target':>8}{'p95/target':>12}{'p95/baseline':>14}"
    )


def page_table_row(name, status, queries, p50, p95, target, baseline, width: int = 26) -> str:
    """A page's line: what measure_page returned, with p95 over its target and over the
    baseline (the login page)."""
    return (
        f"{name:<{width}}{status:>7}{queries:>9}{p50:>9.1f}{p95:>9.1f}{target:>8.0f}"
        f"{p95 / target:>12.2f}{p95 / baseline:>14.1f}"
    )


def verdict(ok: bool) -> str:
    return "OK" if ok else "MISSED"


def worst_ratio_line(worst: float, what: str = "worst") -> str:
    """The last line of a page benchmark: the worst p95 / target ratio and its verdict."""
    return f"{what} p95/target ratio: {worst:.2f} (target <= 1.00) {verdict(worst <= 1)}"
