"""Tests of the MongoDB connector.

No MongoDB server can run on this machine, so the same connector code runs over a
mongomock client injected through `MongoConnector(settings, client=...)`. What mongomock
does not model (real maxTimeMS enforcement, authentication, server selection) is covered
only through the error mapping with pymongo's own exception classes.
"""

import datetime

import mongomock
import pandas as pd
import pytest
from bson import ObjectId
from pymongo import errors

from datasources.connectors import connector_class
from datasources.connectors.base import ConnectionSettings, ConnectorError, QueryRefused
from datasources.connectors.mongodb import MongoConnector, find_refused_operator

SECRET = "s3cr3t-pass"


def make_settings(**overrides):
    values = dict(
        host="mongo.example",
        port=None,
        database="shop",
        user="analyst",
        secret=SECRET,
        options={},
        allow_writes=False,
    )
    values.update(overrides)
    return ConnectionSettings(**values)


@pytest.fixture
def client():
    client = mongomock.MongoClient()
    db = client["shop"]
    db.orders.insert_many(
        [
            {"order": 1, "customer": "ann", "total": 10.5, "status": "paid"},
            {"order": 2, "customer": "bob", "total": 3.0, "status": "open"},
            {"order": 3, "customer": "ann", "total": 7.25, "status": "paid"},
            {"order": 4, "customer": "cid", "total": 99.0, "status": "paid"},
        ]
    )
    db.customers.insert_many([{"name": "ann", "city": "Oslo"}, {"name": "bob", "city": "Rome"}])
    return client


def connector(client, **overrides):
    return MongoConnector(make_settings(**overrides), client=client)


def test_registered_kind_and_port():
    assert connector_class("mongodb") is MongoConnector
    assert MongoConnector(make_settings()).port == 27017
    assert MongoConnector(make_settings(port=27018)).port == 27018


def test_find_with_filter_projection_sort_limit(client):
    frame = connector(client).read(
        {
            "collection": "orders",
            "filter": {"status": "paid"},
            "projection": {"_id": 0, "order": 1, "total": 1},
            "sort": [["total", -1]],
            "limit": 2,
        }
    )
    assert list(frame.columns) == ["order", "total"]
    assert frame["order"].tolist() == [4, 1]
    assert frame["total"].tolist() == [99.0, 10.5]


def test_limit_argument_caps_the_query_limit(client):
    query = {"collection": "orders", "sort": [["order", 1]], "limit": 3}
    assert connector(client).read(query, limit=1)["order"].tolist() == [1]
    assert len(connector(client).read(query, limit=10)) == 3
    assert connector(client).read(query, limit=0).empty


def test_object_id_is_stringified(client):
    frame = connector(client).read({"collection": "orders", "filter": {"order": 1}})
    value = frame.loc[0, "_id"]
    assert isinstance(value, str)
    assert ObjectId.is_valid(value)


def test_aggregation(client):
    frame = connector(client).read(
        {
            "collection": "orders",
            "pipeline": [
                {"$match": {"status": "paid"}},
                {"$group": {"_id": "$customer", "spent": {"$sum": "$total"}}},
                {"$sort": {"_id": 1}},
            ],
        }
    )
    assert frame.to_dict("records") == [
        {"_id": "ann", "spent": 17.75},
        {"_id": "cid", "spent": 99.0},
    ]


def test_aggregation_with_limit_and_lookup(client):
    frame = connector(client).read(
        {
            "collection": "orders",
            "pipeline": [
                {"$sort": {"order": 1}},
                {
                    "$lookup": {
                        "from": "customers",
                        "localField": "customer",
                        "foreignField": "name",
                        "as": "who",
                    }
                },
                {"$project": {"_id": 0, "order": 1, "city": {"$first": "$who.city"}}},
            ],
        },
        limit=2,
    )
    assert frame.to_dict("records") == [
        {"order": 1, "city": "Oslo"},
        {"order": 2, "city": "Rome"},
    ]


@pytest.mark.parametrize(
    "query, operator",
    [
        ({"collection": "orders", "pipeline": [{"$out": "copy"}]}, "$out"),
        ({"collection": "orders", "pipeline": [{"$merge": {"into": "copy"}}]}, "$merge"),
        ({"collection": "orders", "filter": {"$where": "this.total > 1"}}, "$where"),
        (
            {
                "collection": "orders",
                "filter": {
                    "$expr": {
                        "$function": {"body": "function() {return true}", "args": [], "lang": "js"}
                    }
                },
            },
            "$function",
        ),
        (
            {
                "collection": "orders",
                "pipeline": [
                    {
                        "$group": {
                            "_id": None,
                            "x": {"$accumulator": {"init": "function() {}", "lang": "js"}},
                        }
                    }
                ],
            },
            "$accumulator",
        ),
        # Nested: inside $or ...
        (
            {
                "collection": "orders",
                "filter": {"$or": [{"status": "paid"}, {"$where": "sleep(100000)"}]},
            },
            "$where",
        ),
        # ... inside a $lookup sub-pipeline ...
        (
            {
                "collection": "orders",
                "pipeline": [
                    {
                        "$lookup": {
                            "from": "customers",
                            "pipeline": [{"$match": {}}, {"$merge": {"into": "stolen"}}],
                            "as": "c",
                        }
                    }
                ],
            },
            "$merge",
        ),
        # ... inside $facet, and in a projection.
        (
            {"collection": "orders", "pipeline": [{"$facet": {"a": [{"$out": "x"}]}}]},
            "$out",
        ),
        (
            {
                "collection": "orders",
                "projection": {"x": {"$function": {"body": "f", "args": [], "lang": "js"}}},
            },
            "$function",
        ),
    ],
)
def test_refused_operators(client, query, operator):
    with pytest.raises(QueryRefused, match=rf"\{operator}\b"):
        connector(client).read(query)
    # Nothing was written anywhere.
    assert sorted(client["shop"].list_collection_names()) == ["customers", "orders"]


def test_find_refused_operator_ignores_values():
    # An operator name as a string value is data, not an operator.
    assert find_refused_operator({"note": "$out", "tags": ["$where"]}) is None
    assert find_refused_operator([{"a": [{"b": {"$merge": 1}}]}]) == "$merge"


@pytest.mark.parametrize(
    "query",
    [
        "db.orders.find()",
        {"filter": {}},
        {"collection": "orders", "pipeline": {"$match": {}}},
        {"collection": "orders", "pipeline": [], "filter": {}},
        {"collection": "orders", "sort": [["a", 2]]},
        {"collection": "orders", "limit": -1},
        {"collection": "orders", "update": {"$set": {"a": 1}}},
    ],
)
def test_malformed_queries_are_refused(client, query):
    with pytest.raises(QueryRefused):
        connector(client).read(query)


def test_preview(client):
    frame = connector(client).preview("orders", n=2)
    assert len(frame) == 2
    assert {"_id", "order", "customer", "total", "status"} <= set(frame.columns)


def test_columns_sampled_with_types(client):
    client["shop"].mixed.insert_many(
        [
            {"a": 1, "when": datetime.datetime(2024, 1, 1), "tags": ["x"]},
            {"a": "one", "when": None, "extra": {"k": 1}},
        ]
    )
    assert connector(client).columns("orders") == [
        ("_id", "objectId"),
        ("order", "int"),
        ("customer", "string"),
        ("total", "double"),
        ("status", "string"),
    ]
    assert dict(connector(client).columns("mixed")) == {
        "_id": "objectId",
        "a": "int|string",
        "when": "date",
        "tags": "array",
        "extra": "object",
    }


def test_columns_sample_only_first_hundred(client):
    coll = client["shop"].big
    coll.insert_many([{"n": i} for i in range(100)] + [{"n": 100, "late": True}])
    assert [name for name, _ in connector(client).columns("big")] == ["_id", "n"]


def test_list_tables_and_test(client):
    conn = connector(client)
    assert conn.list_tables() == ["customers", "orders"]
    assert conn.test().startswith("MongoDB ")


FRAME = pd.DataFrame(
    {"id": [1, 2, 3], "score": [0.5, float("nan"), 2.0], "label": ["a", "b", None]}
)


def test_write_refused_without_allow_writes(client):
    with pytest.raises(QueryRefused, match="not allowed"):
        connector(client).write(FRAME, "scores")
    assert "scores" not in client["shop"].list_collection_names()


def test_write_modes(client, monkeypatch):
    monkeypatch.setattr("datasources.connectors.mongodb.INSERT_CHUNK", 2)
    conn = connector(client, allow_writes=True)
    coll = client["shop"].scores

    assert conn.write(FRAME, "scores") == 3  # fail mode, new collection
    docs = list(coll.find({}, {"_id": 0}).sort("id", 1))
    assert docs == [
        {"id": 1, "score": 0.5, "label": "a"},
        {"id": 2, "score": None, "label": "b"},
        {"id": 3, "score": 2.0, "label": None},
    ]
    assert all(type(d["id"]) is int for d in docs)

    with pytest.raises(ConnectorError, match="already has documents"):
        conn.write(FRAME, "scores", mode="fail")
    assert coll.count_documents({}) == 3

    assert conn.write(FRAME, "scores", mode="append") == 3
    assert coll.count_documents({}) == 6

    assert conn.write(FRAME.head(1), "scores", mode="replace") == 1
    assert coll.count_documents({}) == 1

    with pytest.raises(ConnectorError, match="unknown write mode"):
        conn.write(FRAME, "scores", mode="upsert")


def test_write_empty_frame_and_timestamps(client):
    conn = connector(client, allow_writes=True)
    assert conn.write(FRAME.head(0), "empty") == 0
    frame = pd.DataFrame({"at": pd.to_datetime(["2024-01-02", None])})
    assert conn.write(frame, "times") == 2
    values = [d["at"] for d in client["shop"].times.find()]
    assert values == [datetime.datetime(2024, 1, 2), None]


def test_read_round_trip_after_write(client):
    conn = connector(client, allow_writes=True)
    conn.write(FRAME, "scores")
    frame = conn.read({"collection": "scores", "projection": {"_id": 0}, "sort": [["id", 1]]})
    assert frame["id"].tolist() == [1, 2, 3]


class FailingClient:
    """Stands in for a pymongo client whose server is unreachable or rejects the login."""

    def __init__(self, exc):
        self.exc = exc

    def server_info(self):
        raise self.exc

    def __getitem__(self, name):
        raise self.exc


@pytest.mark.parametrize(
    "exc, message",
    [
        (
            errors.ServerSelectionTimeoutError(
                "mongo.example:27017: [Errno 111] Connection refused"
            ),
            "unreachable",
        ),
        (
            errors.ServerSelectionTimeoutError("mongo.example:27017: timed out"),
            "timed out after 10 s",
        ),
        (
            errors.OperationFailure("Authentication failed.", code=18),
            "authentication failed for user 'analyst'",
        ),
        (errors.ExecutionTimeout("operation exceeded time limit", code=50), "time limit"),
    ],
)
def test_test_error_messages(exc, message):
    conn = MongoConnector(make_settings(), client=FailingClient(exc))
    with pytest.raises(ConnectorError, match=message) as info:
        conn.test()
    assert SECRET not in str(info.value)


def test_secret_is_scrubbed_from_driver_messages():
    exc = errors.OperationFailure(f"bad uri mongodb://analyst:{SECRET}@host", code=2)
    conn = MongoConnector(make_settings(), client=FailingClient(exc))
    with pytest.raises(ConnectorError) as info:
        conn.test()
    assert SECRET not in str(info.value)
    assert "***" in str(info.value)


def test_real_client_is_built_from_settings(monkeypatch):
    built = {}

    def fake_client(**kwargs):
        built.update(kwargs)
        return mongomock.MongoClient()

    monkeypatch.setattr("pymongo.MongoClient", fake_client)
    conn = MongoConnector(
        make_settings(
            port=27100, options={"tls": True, "auth_source": "users", "connect_timeout": 2}
        )
    )
    conn.client()
    assert built == {
        "host": "mongo.example",
        "port": 27100,
        "tls": True,
        "serverSelectionTimeoutMS": 2000,
        "connectTimeoutMS": 2000,
        "username": "analyst",
        "password": SECRET,
        "authSource": "users",
    }


def test_real_pymongo_client_builds_without_a_server():
    # pymongo connects lazily: building the real client contacts no server.
    conn = MongoConnector(make_settings(options={"connect_timeout": 1}))
    client = conn.client()
    try:
        assert client.options.server_selection_timeout == 1
    finally:
        client.close()
