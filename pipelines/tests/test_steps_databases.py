"""The sql, mongo and save_table steps, end to end through the engine: sql and save_table
against a real MariaDB, mongo over mongomock (no MongoDB server runs here)."""

import json
import re
import uuid
from datetime import timedelta

import mongomock
import pytest
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from conftest import require_service
from datasources.connectors.base import ConnectorError
from datasources.connectors.mongodb import MongoConnector
from datasources.connectors.mysql import MySQLConnector
from experiments import tracking
from pipelines import runs, services
from pipelines.choices import RunStatus, StepRunStatus
from pipelines.engine.cache import StepCache
from pipelines.engine.registry import DataReferences, get_step_type
from pipelines.tests.helpers import run_step
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


@pytest.fixture
def sql_reads(monkeypatch):
    """The queries the MariaDB connector is asked to read, in order."""
    queries, read = [], MySQLConnector.read

    def spy(self, query, *args, **kwargs):
        queries.append(query)
        return read(self, query, *args, **kwargs)

    monkeypatch.setattr(MySQLConnector, "read", spy)
    return queries


@pytest.fixture
def shop(db, monkeypatch):
    """A MongoDB data source `shop` whose connector reaches a mongomock client."""
    from datasources.sources import save_source

    client = mongomock.MongoClient()
    client["shop"].orders.insert_many(
        [
            {"order": 1, "customer": "ann", "total": 10.5, "status": "paid"},
            {"order": 2, "customer": "bob", "total": 3.0, "status": "open"},
            {"order": 3, "customer": "ann", "total": 7.25, "status": "paid"},
            {"order": 4, "customer": "cid", "total": 99.0, "status": "paid"},
        ]
    )
    monkeypatch.setattr("pymongo.MongoClient", lambda **kwargs: client)
    save_source({"name": "shop", "kind": "mongodb", "host": "mongo.example", "database": "shop"})
    return client


def refuse_to_query(*args, **kwargs):
    raise AssertionError("a data source was queried")


def statuses(run):
    return [(s.order, s.status) for s in run.step_runs.order_by("order")]


def then_filter(extraction: dict) -> list[dict]:
    """A pipeline of an extraction step and a filter, to replay from the filter."""
    condition = {"column": "total", "op": ">", "value": 0}
    return [extraction, {"type": "filter_rows", "params": {"conditions": [condition]}}]


def sql_steps(**params):
    return [
        {"type": "sql", "params": {"datasource": "warehouse", "table": "sales", **params}},
        {
            "type": "filter_rows",
            "params": {"conditions": [{"column": "region", "op": "==", "value": "north"}]},
        },
    ]


def age_cached_read(pipeline, order: int, hours: int) -> None:
    """Make the cached read of a step look `hours` older."""
    meta_path = StepCache(pipeline.pk).meta_path(order)
    meta = json.loads(meta_path.read_text())
    read_at = parse_datetime(meta["source"]["read_at"]) - timedelta(hours=hours)
    meta["source"]["read_at"] = read_at.isoformat()
    meta_path.write_text(json.dumps(meta))


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


# Freshness of a database read: a run from the first step reads; a replay asks the policy.


def test_a_run_reads_the_source_once_and_says_why(warehouse, make_pipeline, sql_reads):
    pipeline = make_pipeline(sql_steps())

    run = runs.start_run(pipeline, wait=True)

    assert run.status == RunStatus.SUCCEEDED, run.error_message
    assert sql_reads == ["SELECT * FROM sales"]
    assert "step 1 (sql): re-read: a run from the first step always reads its source." in run.logs


def test_a_run_from_the_first_step_reads_the_source_again(warehouse, make_pipeline, sql_reads):
    pipeline = make_pipeline(sql_steps(version_query="SELECT MAX(id) FROM sales"))
    runs.start_run(pipeline, wait=True)
    sql_reads.clear()

    replay = runs.start_run(pipeline, from_step=1, wait=True)

    assert statuses(replay) == [(1, StepRunStatus.SUCCEEDED), (2, StepRunStatus.SUCCEEDED)]
    assert sql_reads == ["SELECT MAX(id) FROM sales", "SELECT * FROM sales"]
    assert "step 1 (sql): re-read: a run from the first step always reads its source." in (
        replay.logs
    )


def test_replay_reuses_the_read_while_the_version_query_returns_the_same_value(
    warehouse, make_pipeline, sql_reads
):
    pipeline = make_pipeline(sql_steps(version_query="SELECT MAX(id) FROM sales"))
    run = runs.start_run(pipeline, wait=True)
    assert "step 1 (sql): version query returned 40" in run.logs
    sql_reads.clear()

    replay = runs.start_run(pipeline, from_step=2, wait=True)

    assert statuses(replay) == [(1, StepRunStatus.REUSED), (2, StepRunStatus.SUCCEEDED)]
    assert sql_reads == ["SELECT MAX(id) FROM sales"]
    assert "step 1 (sql): reused: version query returned the same value 40." in replay.logs


def test_replay_reads_again_when_the_version_query_returns_another_value(
    warehouse, scratch_mariadb, make_pipeline
):
    name, cursor = scratch_mariadb
    pipeline = make_pipeline(sql_steps(version_query="SELECT MAX(id) FROM sales"))
    runs.start_run(pipeline, wait=True)
    cursor.execute(f"INSERT INTO {name}.sales VALUES (41, 'north', 1.0)")

    replay = runs.start_run(pipeline, from_step=2, wait=True)

    assert statuses(replay) == [(1, StepRunStatus.SUCCEEDED), (2, StepRunStatus.SUCCEEDED)]
    assert replay.step_runs.get(order=1).rows_out == 41
    assert "step 1 (sql): re-read: version changed from 40 to 41." in replay.logs
    # The new version was recorded: the next replay reuses that read.
    again = runs.start_run(pipeline, from_step=2, wait=True)
    assert again.step_runs.get(order=1).status == StepRunStatus.REUSED


def test_replay_reads_again_when_the_cached_read_is_older_than_max_age(
    warehouse, make_pipeline, sql_reads
):
    pipeline = make_pipeline(sql_steps(max_age=3600))
    runs.start_run(pipeline, wait=True)
    fresh = runs.start_run(pipeline, from_step=2, wait=True)
    age_cached_read(pipeline, order=1, hours=2)
    sql_reads.clear()

    stale = runs.start_run(pipeline, from_step=2, wait=True)

    assert fresh.step_runs.get(order=1).status == StepRunStatus.REUSED
    assert re.search(
        r"step 1 \(sql\): reused: cache is \d+ s old, within max_age 1 h\.", fresh.logs
    )
    assert stale.step_runs.get(order=1).status == StepRunStatus.SUCCEEDED
    assert "step 1 (sql): re-read: cache is 2 h old, older than max_age 1 h." in stale.logs
    assert sql_reads == ["SELECT * FROM sales"]


def test_replay_without_a_policy_reuses_the_read_and_queries_nothing(
    warehouse, make_pipeline, monkeypatch
):
    pipeline = make_pipeline(sql_steps())
    runs.start_run(pipeline, wait=True)
    monkeypatch.setattr(MySQLConnector, "read", refuse_to_query)

    replay = runs.start_run(pipeline, from_step=2, wait=True)

    assert statuses(replay) == [(1, StepRunStatus.REUSED), (2, StepRunStatus.SUCCEEDED)]
    reason = r"reused: read \d+ s ago; the step has no version_query or max_age\."
    assert re.search(rf"step 1 \(sql\): {reason}", replay.logs)


def test_step_freshness_shows_the_last_read_and_never_queries_the_source(
    warehouse, make_pipeline, monkeypatch
):
    pipeline = make_pipeline(sql_steps(version_query="SELECT MAX(id) FROM sales"))
    run = runs.start_run(pipeline, wait=True)
    monkeypatch.setattr(MySQLConnector, "read", refuse_to_query)

    freshness = services.step_freshness(pipeline)

    assert [(f.state, f.last_version) for f in freshness] == [("fresh", "40"), ("fresh", None)]
    assert run.started_at <= freshness[0].last_read_at <= run.finished_at
    assert freshness[1].last_read_at is None


def test_version_query_must_return_one_value(warehouse, make_pipeline):
    pipeline = make_pipeline(sql_steps(version_query="SELECT id FROM sales"))

    run = runs.start_run(pipeline, wait=True)

    assert run.status == RunStatus.FAILED
    assert run.error_message == (
        "step 1 (sql) failed: version_query: must return one value (one row, one column); "
        "it returned several rows of 1 column(s)"
    )


def test_version_query_runs_read_only(warehouse, scratch_mariadb, make_pipeline):
    name, cursor = scratch_mariadb
    pipeline = make_pipeline(sql_steps(version_query="DELETE FROM sales"))

    run = runs.start_run(pipeline, wait=True)

    assert run.status == RunStatus.FAILED
    assert run.error_message.startswith("step 1 (sql) failed: version_query: ")
    assert "read-only" in run.error_message
    cursor.execute(f"SELECT COUNT(*) FROM {name}.sales")
    assert cursor.fetchone() == (40,)


# The mongo step


AGGREGATION = [
    {"$match": {"status": "paid"}},
    {"$group": {"_id": "$customer", "spent": {"$sum": "$total"}}},
    {"$sort": {"_id": 1}},
]
MAX_ORDER = [{"$group": {"_id": None, "v": {"$max": "$order"}}}]


def test_mongo_step_runs_an_aggregation(shop):
    context, log = run_step(
        "mongo", {}, datasource="shop", collection="orders", pipeline=AGGREGATION
    )

    assert context["data"].to_dict("records") == [
        {"_id": "ann", "spent": 17.75},
        {"_id": "cid", "spent": 99.0},
    ]
    assert log == ["read 2 documents from shop.orders"]


def test_mongo_aggregation_with_a_limit_runs_in_a_pipeline(shop, make_pipeline):
    pipeline = make_pipeline(
        [
            {
                "type": "mongo",
                "params": {
                    "datasource": "shop",
                    "collection": "orders",
                    "pipeline": AGGREGATION,
                    "limit": 1,
                },
            }
        ]
    )

    run = runs.start_run(pipeline, wait=True)

    assert run.status == RunStatus.SUCCEEDED, run.error_message
    assert run.step_runs.get(order=1).rows_out == 1


def test_mongo_step_runs_a_find(shop):
    context, _ = run_step(
        "mongo",
        {},
        datasource="shop",
        collection="orders",
        filter={"status": "paid"},
        projection={"_id": 0, "order": 1},
        sort=[["total", -1]],
        limit=2,
    )

    assert context["data"].to_dict("records") == [{"order": 4}, {"order": 1}]


def test_mongo_replay_follows_the_version_query(shop, make_pipeline):
    extraction = {
        "type": "mongo",
        "params": {"datasource": "shop", "collection": "orders", "version_query": MAX_ORDER},
    }
    pipeline = make_pipeline(then_filter(extraction))
    first = runs.start_run(pipeline, wait=True)

    same = runs.start_run(pipeline, from_step=2, wait=True)
    shop["shop"].orders.insert_one({"order": 5, "customer": "dan", "total": 1.0})
    changed = runs.start_run(pipeline, from_step=2, wait=True)

    assert "step 1 (mongo): re-read: a run from the first step always reads" in first.logs
    assert same.step_runs.get(order=1).status == StepRunStatus.REUSED
    assert "step 1 (mongo): reused: version query returned the same value 4." in same.logs
    assert changed.step_runs.get(order=1).status == StepRunStatus.SUCCEEDED
    assert changed.step_runs.get(order=1).rows_out == 5
    assert "step 1 (mongo): re-read: version changed from 4 to 5." in changed.logs


def test_mongo_replay_reads_again_when_the_version_query_fails(shop, make_pipeline, monkeypatch):
    extraction = {
        "type": "mongo",
        "params": {"datasource": "shop", "collection": "orders", "version_query": MAX_ORDER},
    }
    pipeline = make_pipeline(then_filter(extraction))
    runs.start_run(pipeline, wait=True)

    def unreachable(*args, **kwargs):
        raise ConnectorError("MongoDB at mongo.example:27017 is unreachable")

    monkeypatch.setattr(MongoConnector, "read", unreachable)
    replay = runs.start_run(pipeline, from_step=2, wait=True)

    failure = "version_query: MongoDB at mongo.example:27017 is unreachable"
    assert f"step 1 (mongo): re-read: {failure}." in replay.logs
    assert replay.status == RunStatus.FAILED
    assert replay.error_message == f"step 1 (mongo) failed: {failure}"


def test_mongo_step_freshness_never_queries_the_source(shop, make_pipeline, monkeypatch):
    extraction = {
        "type": "mongo",
        "params": {"datasource": "shop", "collection": "orders", "version_query": MAX_ORDER},
    }
    pipeline = make_pipeline(then_filter(extraction))
    runs.start_run(pipeline, wait=True)
    monkeypatch.setattr(MongoConnector, "read", refuse_to_query)

    freshness = services.step_freshness(pipeline)

    assert [(f.state, f.last_version) for f in freshness] == [("fresh", "4"), ("fresh", None)]
    assert timezone.now() - freshness[0].last_read_at < timedelta(minutes=1)


def test_mongo_version_query_must_return_one_value(shop):
    step = get_step_type("mongo")
    params = step.Params(
        datasource="shop", collection="orders", version_query=[{"$match": {"status": "paid"}}]
    )

    with pytest.raises(ValueError, match="version_query: must return one value"):
        step.run({}, params, lambda message: None)


def test_mongo_version_query_returning_no_document_is_null(shop):
    # MongoDB's $group over an empty collection returns no document; SQL's MAX a NULL.
    context, log = run_step(
        "mongo",
        {},
        datasource="shop",
        collection="orders",
        version_query=[{"$match": {"order": 99}}],
    )

    assert context["_source"]["version"] == "NULL"
    assert log[0] == "version query returned NULL"


# What the steps name, for the data sources and datasets pages


def test_database_steps_name_the_source_they_use():
    assert get_step_type("sql").references(
        {"datasource": "warehouse", "table": "t"}
    ) == DataReferences(sources=("warehouse",))
    assert get_step_type("mongo").references({"datasource": 3}) == DataReferences(sources=(3,))
    assert get_step_type("save_table").references({"datasource": "out"}) == DataReferences(
        sources=("out",)
    )
    assert get_step_type("sql").references({"datasource": ["odd"]}) == DataReferences()
