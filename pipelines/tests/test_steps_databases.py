"""The sql and save_table steps against a real MariaDB, end to end through the engine."""

import uuid

import pytest

from conftest import require_service
from experiments import tracking
from pipelines import runs
from pipelines.choices import RunStatus
from pipelines.validation import validate_steps

PASSWORD = "not-a-real-password-" + uuid.uuid4().hex[:6]


@pytest.fixture
def scratch_mariadb():
    """A throwaway MariaDB database with a `sales` table, and a read-write account."""
    require_service("MariaDB", "127.0.0.1", 3306)
    import MySQLdb

    name = f"mlops_steps_{uuid.uuid4().hex[:8]}"
    admin = MySQLdb.connect(host="127.0.0.1", user="root", autocommit=True)
    cursor = admin.cursor()
    cursor.execute(f"CREATE DATABASE {name}")
    cursor.execute(
        f"CREATE TABLE {name}.sales (id INT PRIMARY KEY, region VARCHAR(10), amount DOUBLE)"
    )
    rows = [(i, ["north", "south"][i % 2], float(i * 10)) for i in range(1, 41)]
    cursor.executemany(f"INSERT INTO {name}.sales VALUES (%s, %s, %s)", rows)
    cursor.execute(
        f"CREATE USER IF NOT EXISTS 'mlops_steps'@'127.0.0.1' IDENTIFIED BY '{PASSWORD}'"
    )
    cursor.execute(f"ALTER USER 'mlops_steps'@'127.0.0.1' IDENTIFIED BY '{PASSWORD}'")
    cursor.execute(f"GRANT ALL ON {name}.* TO 'mlops_steps'@'127.0.0.1'")
    yield name, cursor
    cursor.execute(f"DROP DATABASE {name}")
    admin.close()


@pytest.fixture
def warehouse(db, scratch_mariadb):
    from datasources.sources import save_source

    name, _ = scratch_mariadb
    values = {
        "name": "warehouse",
        "kind": "mysql",
        "host": "127.0.0.1",
        "port": 3306,
        "database": name,
        "user": "mlops_steps",
        "allow_writes": True,
    }
    return save_source(values, secret=PASSWORD)


def test_sql_extract_then_save_predictions_to_a_table(warehouse, scratch_mariadb, make_pipeline):
    name, cursor = scratch_mariadb
    pipeline = make_pipeline(
        [
            {
                "type": "sql",
                "params": {
                    "datasource": "warehouse",
                    "query": "SELECT id, region, amount FROM sales",
                },
            },
            {
                "type": "filter_rows",
                "params": {"conditions": [{"column": "region", "op": "==", "value": "north"}]},
            },
            {
                "type": "save_table",
                "params": {"datasource": "warehouse", "table": "north_sales", "mode": "replace"},
            },
        ]
    )

    run = runs.start_run(pipeline, wait=True)

    assert run.status == RunStatus.SUCCEEDED, run.error_message
    assert run.step_runs.get(order=1).rows_out == 40
    cursor.execute(f"SELECT COUNT(*), SUM(amount) FROM {name}.north_sales")
    assert cursor.fetchone() == (20, sum(float(i * 10) for i in range(2, 41, 2)))


def test_secret_never_reaches_runs_logs_or_mlflow(warehouse, make_pipeline):
    pipeline = make_pipeline(
        [{"type": "sql", "params": {"datasource": "warehouse", "table": "sales", "limit": 5}}]
    )

    run = runs.start_run(pipeline, wait=True)

    assert run.status == RunStatus.SUCCEEDED, run.error_message
    tracked = tracking.get_run(run.mlflow_run_id)
    for text in (str(run.definition), run.logs, str(tracked["params"]), str(tracked["tags"])):
        assert PASSWORD not in text
    assert tracked["params"]["1.sql.datasource"] == "warehouse"


def test_changed_source_rows_make_the_sql_cache_stale(warehouse, scratch_mariadb, make_pipeline):
    from pipelines import services

    name, cursor = scratch_mariadb
    pipeline = make_pipeline(
        [
            {
                "type": "sql",
                "params": {"datasource": "warehouse", "table": "sales", "watermark": "id"},
            }
        ]
    )
    runs.start_run(pipeline, wait=True)
    assert services.step_freshness(pipeline)[0].state == "fresh"

    cursor.execute(f"INSERT INTO {name}.sales VALUES (41, 'east', 1.0)")

    freshness = services.step_freshness(pipeline)[0]
    assert (freshness.state, freshness.reason) == ("stale", "its source data changed")


def test_rejected_query_fails_the_step_saying_why(warehouse, make_pipeline):
    pipeline = make_pipeline(
        [{"type": "sql", "params": {"datasource": "warehouse", "query": "DELETE FROM sales"}}]
    )

    run = runs.start_run(pipeline, wait=True)

    assert run.status == RunStatus.FAILED
    assert "read" in run.error_message.lower() and "only" in run.error_message.lower()


def test_save_table_refused_for_read_only_source_and_unknown_source(warehouse):
    from datasources.sources import save_source

    save_source({"allow_writes": False}, source=warehouse)
    errors = validate_steps(
        [
            {"order": 1, "type": "sql", "params": {"datasource": "nowhere", "table": "t"}},
            {
                "order": 2,
                "type": "save_table",
                "params": {"datasource": "warehouse", "table": "out"},
            },
        ]
    )

    messages = {(e.order, e.field): e.message for e in errors}
    assert messages[(1, "params.datasource")] == "data source 'nowhere' does not exist"
    assert messages[(2, "params.datasource")] == "data source 'warehouse' does not allow writes"


def test_save_predictions_needs_a_prediction_step(warehouse):
    errors = validate_steps(
        [
            {"order": 1, "type": "sql", "params": {"datasource": "warehouse", "table": "sales"}},
            {
                "order": 2,
                "type": "save_table",
                "params": {"datasource": "warehouse", "table": "o", "source": "predictions"},
            },
        ]
    )

    assert [str(e) for e in errors] == [
        "step 2, type: save_table needs 'predictions', which no earlier step produces"
    ]


def test_sql_params_need_query_or_table(warehouse):
    errors = validate_steps(
        [
            {
                "order": 1,
                "type": "sql",
                "params": {"datasource": "warehouse", "query": "SELECT 1", "table": "t"},
            }
        ]
    )

    assert [(e.field, e.message) for e in errors] == [
        ("params.query", "give either a query or a table, not both")
    ]
