"""Extraction speed and memory: the `sql` step against pandas.read_sql and ConnectorX.

    .venv/bin/python bench/extraction.py [--rows 1000000] [--repeat N]

Builds a MariaDB table of --rows rows x 10 numeric columns (127.0.0.1:3306, root), then
reads the same query three ways, each in its own process so peak memory is its own:
the `sql` step (through the MySQL connector, with its read-only and time-limit
guarantees), `pandas.read_sql` over SQLAlchemy + mysqlclient, and ConnectorX. Prints rows/s,
peak memory above the process baseline, and the ratios the issue sets as targets:
the step's rows/s against ConnectorX (>= 0.8) and its peak memory against the
DataFrame's size (<= 2.5x). ConnectorX is skipped when it is not installed.

With --repeat N (default 3) the three run in turn N times; each keeps its fastest run and
its largest peak. The step's line says which driver read the rows (the connector hands a
read over to mysqlclient when ConnectorX cannot do it).
"""

import argparse
import json
import logging
import logging.handlers
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from common import ROOT, configure_environment, setup_django

QUERY = "SELECT * FROM wide"


def build_table(database: str, rows: int) -> None:
    import MySQLdb

    connection = MySQLdb.connect(host="127.0.0.1", user="root", autocommit=True)
    cursor = connection.cursor()
    cursor.execute(f"CREATE DATABASE {database}")
    cursor.execute(f"USE {database}")  # MariaDB's seq_1_to_N tables need a current database
    columns = ", ".join(f"c{i} DOUBLE" for i in range(9))
    cursor.execute(f"CREATE TABLE {database}.wide (id BIGINT PRIMARY KEY, {columns})")
    values = ", ".join(f"seq * {i + 1} / 7.0" for i in range(9))
    cursor.execute(f"INSERT INTO {database}.wide SELECT seq, {values} FROM seq_1_to_{rows}")
    connection.close()


def drop_database(database: str) -> None:
    import MySQLdb

    connection = MySQLdb.connect(host="127.0.0.1", user="root", autocommit=True)
    connection.cursor().execute(f"DROP DATABASE IF EXISTS {database}")
    connection.close()


def measure(method: str, database: str) -> dict:
    """Run one read in this process; rows, seconds, frame bytes and peak memory growth.

    Imports and set-up happen first, so the peak counts only what the read allocates.
    """
    read = _prepare(method, database)
    # The connector logs a read it hands over from ConnectorX to mysqlclient.
    handed_over = logging.handlers.BufferingHandler(capacity=100)
    connector_log = logging.getLogger("datasources.connectors.mysql")
    connector_log.addHandler(handed_over)
    connector_log.setLevel(logging.INFO)
    baseline = _max_rss()
    start = time.perf_counter()
    frame = read()
    seconds = time.perf_counter() - start
    result = {
        "rows": len(frame),
        "seconds": seconds,
        "frame_bytes": int(frame.memory_usage(deep=True).sum()),
        "peak_bytes": _max_rss() - baseline,
    }
    if method == "step":
        result["reader"] = (
            "mysqlclient" if handed_over.buffer or not _has_connectorx() else "ConnectorX"
        )
    return result


def _has_connectorx() -> bool:
    try:
        import connectorx  # noqa: F401
    except ImportError:
        return False
    return True


def _prepare(method: str, database: str):
    import pandas as pd

    if method == "read_sql":
        import sqlalchemy

        engine = sqlalchemy.create_engine(f"mysql+mysqldb://root@127.0.0.1:3306/{database}")
        return lambda: pd.read_sql(QUERY, engine)
    if method == "connectorx":
        import connectorx

        return lambda: connectorx.read_sql(f"mysql://root@127.0.0.1:3306/{database}", QUERY)
    return _prepare_step(database)


def _prepare_step(database: str):
    configure_environment(Path(tempfile.mkdtemp(prefix="bench-extraction-")))
    setup_django()
    from datasources.sources import save_source
    from pipelines.engine.registry import get_step_type

    values = {"name": "bench", "kind": "mysql", "host": "127.0.0.1", "port": 3306}
    save_source({**values, "database": database, "user": "root"}, secret="")
    step = get_step_type("sql")
    params = step.Params.model_validate({"datasource": "bench", "query": QUERY})
    return lambda: step.run({}, params, lambda message: None)["data"]


def _max_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def run_isolated(method: str, database: str) -> dict | None:
    result = subprocess.run(
        [sys.executable, __file__, "--measure", method, "--database", database],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    if result.returncode != 0:
        print(f"{method}: failed\n{result.stderr[-2000:]}")
        return None
    return json.loads(result.stdout.strip().splitlines()[-1])


def _best(kept: dict | None, new: dict) -> dict:
    """The faster of two runs, with the larger of their peaks."""
    if kept is None:
        return new
    best = dict(min(kept, new, key=lambda run: run["seconds"]))
    best["peak_bytes"] = max(kept["peak_bytes"], new["peak_bytes"])
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each; the best counts")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--database", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.database)))
        return 0
    database = f"mlops_bench_{uuid.uuid4().hex[:8]}"
    print(f"building {args.rows} rows x 10 numeric columns in MariaDB database {database}")
    results = {}
    try:
        build_table(database, args.rows)
        for _ in range(max(1, args.repeat)):
            for method in ("step", "read_sql", "connectorx"):
                measured = run_isolated(method, database)
                if measured:
                    results[method] = _best(results.get(method), measured)
    finally:
        drop_database(database)
    for method, measured in results.items():
        rate = measured["rows"] / measured["seconds"]
        reader = f" (read by {measured['reader']})" if "reader" in measured else ""
        print(
            f"{method:>10}: {measured['rows']} rows in {measured['seconds']:.2f} s = "
            f"{rate / 1000:.0f}k rows/s; peak +{measured['peak_bytes'] / 2**20:.0f} MB "
            f"for a {measured['frame_bytes'] / 2**20:.0f} MB frame{reader}"
        )
    step = results.get("step")
    if step and "connectorx" in results:
        cx = results["connectorx"]
        ratio = (step["rows"] / step["seconds"]) / (cx["rows"] / cx["seconds"])
        print(f"step rows/s / ConnectorX rows/s: {ratio:.2f} (target >= 0.8)")
    if step:
        memory = step["peak_bytes"] / step["frame_bytes"]
        print(f"step peak memory / frame size: {memory:.2f} (target <= 2.5)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
