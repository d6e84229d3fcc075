"""MySQLConnector against a real MariaDB at 127.0.0.1:3306 (root, no password)."""

import os
import uuid

import numpy as np
import pandas as pd
import pytest

from conftest import require_service
from datasources.connectors.base import ConnectionSettings, ConnectorError, QueryRefused
from datasources.connectors.mysql import MySQLConnector

HOST, PORT = "127.0.0.1", 3306


def admin():
    import MySQLdb

    return MySQLdb.connect(host=HOST, port=PORT, user="root", autocommit=True)


@pytest.fixture(scope="module")
def database():
    require_service("MariaDB", HOST, PORT)
    name = f"mlops_conn_test_{uuid.uuid4().hex[:10]}"
    connection = admin()
    cursor = connection.cursor()
    cursor.execute(f"CREATE DATABASE `{name}`")
    cursor.execute(f"USE `{name}`")
    cursor.execute(
        "CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(20), price DECIMAL(8,2),"
        " weight DOUBLE NULL, created DATETIME)"
    )
    cursor.execute(
        "INSERT INTO items VALUES (1, 'apple', 1.50, 0.2, '2024-01-02 03:04:05'),"
        " (2, 'pear', 2.25, NULL, '2024-02-03 04:05:06'), (3, 'fig', 10.00, 0.05, NULL)"
    )
    cursor.execute("CREATE TABLE log (x INT)")
    cursor.execute(
        "CREATE FUNCTION evil() RETURNS INT NOT DETERMINISTIC MODIFIES SQL DATA"
        " BEGIN INSERT INTO log VALUES (1); RETURN 1; END"
    )
    yield name
    cursor.execute(f"DROP DATABASE `{name}`")
    connection.close()


def make(database, **overrides):
    values = dict(
        host=HOST,
        port=PORT,
        database=database,
        user="root",
        secret="",
        options={},
        allow_writes=False,
    )
    values.update(overrides)
    return MySQLConnector(ConnectionSettings(**values))


def count(database, table):
    connection = admin()
    cursor = connection.cursor()
    cursor.execute(f"SELECT COUNT(*) FROM `{database}`.`{table}`")
    (rows,) = cursor.fetchone()
    connection.close()
    return rows


def test_connection_test_describes_server(database):
    assert "MariaDB" in make(database).test()


def test_read_rows_values_and_dtypes(database):
    frame = make(database).read("SELECT * FROM items ORDER BY id;")
    assert list(frame.columns) == ["id", "name", "price", "weight", "created"]
    assert frame["id"].tolist() == [1, 2, 3]
    assert frame["name"].tolist() == ["apple", "pear", "fig"]
    assert pd.api.types.is_integer_dtype(frame["id"])
    assert pd.api.types.is_float_dtype(frame["price"])
    assert frame["price"].tolist() == [1.5, 2.25, 10.0]
    assert pd.api.types.is_float_dtype(frame["weight"]) and np.isnan(frame["weight"][1])
    assert frame["created"][0] == pd.Timestamp("2024-01-02 03:04:05")


def test_read_in_several_chunks(database):
    frame = make(database)._fetch("SELECT id, price FROM items ORDER BY id", None, chunk_rows=2)
    assert frame["id"].tolist() == [1, 2, 3] and frame["price"].dtype == float


def test_read_empty_result_keeps_columns(database):
    frame = make(database).read("SELECT id, name FROM items WHERE id > 100")
    assert list(frame.columns) == ["id", "name"] and len(frame) == 0


def test_limit_applied(database):
    frame = make(database).read("SELECT * FROM items ORDER BY id -- trailing comment", limit=2)
    assert frame["id"].tolist() == [1, 2]


def test_preview_table_and_query(database):
    connector = make(database)
    assert len(connector.preview("items", 2)) == 2
    frame = connector.preview("SELECT name FROM items WHERE id = 3")
    assert frame["name"].tolist() == ["fig"]
    with pytest.raises(ConnectorError):
        connector.preview("items`; DROP TABLE items")


def test_list_tables_and_columns(database):
    connector = make(database)
    assert connector.list_tables() == ["items", "log"]
    columns = connector.columns("items")
    assert [name for name, _ in columns] == ["id", "name", "price", "weight", "created"]
    assert columns[2][1] == "decimal(8,2)"
    with pytest.raises(ConnectorError, match="does not exist"):
        connector.columns("nosuch")


@pytest.mark.parametrize(
    "query",
    [
        "INSERT INTO items VALUES (9, 'x', 1, 1, NULL)",
        "DROP TABLE items",
        "SELECT 1; DROP TABLE items",
        "SELECT 1 INTO OUTFILE '/tmp/mlops_conn_test_outfile.txt'",
        "LOAD DATA LOCAL INFILE '/etc/hostname' INTO TABLE log",
        "SET GLOBAL max_connections = 151",
        "/*!50000 DROP TABLE items */",
    ],
)
def test_writes_refused(database, query):
    with pytest.raises(QueryRefused, match="read-only|one SQL statement|not allowed"):
        make(database).read(query)
    assert count(database, "items") == 3
    assert not os.path.exists("/tmp/mlops_conn_test_outfile.txt")


@pytest.mark.parametrize(
    "query",
    [
        "INSERT INTO log VALUES (1)",
        "DROP TABLE log",
        "CREATE TABLE other (a INT)",
        "LOAD DATA LOCAL INFILE '/etc/hostname' INTO TABLE log",
    ],
)
def test_server_enforces_read_only_without_the_query_check(database, query):
    # _fetch skips the client-side check: the server itself must refuse.
    with pytest.raises(QueryRefused, match="read-only"):
        make(database)._fetch(query, None)
    assert "log" in make(database).list_tables() and count(database, "log") == 0


def test_server_refuses_stacked_statements(database):
    with pytest.raises(ConnectorError):
        make(database)._fetch("SELECT 1; DROP TABLE log", None)
    assert "log" in make(database).list_tables()


def test_stored_function_cannot_write(database):
    with pytest.raises(QueryRefused, match="read-only"):
        make(database).read("SELECT evil()")
    assert count(database, "log") == 0


def test_semicolons_inside_strings_and_comments_are_fine(database):
    frame = make(database).read("SELECT ';' AS a /* ; */ -- ;\n;")
    assert frame["a"].tolist() == [";"]


def test_time_limit(database):
    with pytest.raises(ConnectorError, match="exceeded the time limit"):
        make(database).read("SELECT SLEEP(5)", timeout=1)


def test_default_time_limit_from_options(database):
    connector = make(database, options={"statement_timeout": 1})
    with pytest.raises(ConnectorError, match="exceeded the time limit of 1 s"):
        connector.read("SELECT SLEEP(5)")


def test_bad_password_message_hides_secret(database):
    secret = "s3cret-Pa55word"
    with pytest.raises(ConnectorError, match="login refused for user 'root'") as info:
        make(database, secret=secret).test()
    assert secret not in str(info.value)


def test_closed_port_message(database):
    secret = "s3cret-Pa55word"
    with pytest.raises(ConnectorError, match="cannot connect to 127.0.0.1:1") as info:
        make(database, port=1, secret=secret, options={"connect_timeout": 2}).test()
    assert secret not in str(info.value)


def test_unknown_database_message():
    require_service("MariaDB", HOST, PORT)
    with pytest.raises(ConnectorError, match="database 'mlops_no_such_db' does not exist"):
        make("mlops_no_such_db").test()


def test_tls_failure_message(database):
    # The test server has TLS disabled: requiring it must fail clearly.
    with pytest.raises(ConnectorError, match="TLS"):
        make(database, options={"tls": True}).test()


def frame_to_write():
    return pd.DataFrame(
        {
            "n": [1, 2, 3],
            "x": [0.5, np.nan, 2.5],
            "s": ["a", None, "c"],
            "b": [True, False, True],
            "t": pd.to_datetime(["2024-01-01 00:00:00", None, "2024-03-01 12:00:00"]),
        }
    )


def test_write_refused_without_allow_writes(database):
    with pytest.raises(ConnectorError, match="not allowed"):
        make(database).write(frame_to_write(), "out_refused")
    assert "out_refused" not in make(database).list_tables()


def test_write_modes(database):
    connector = make(database, allow_writes=True)
    assert connector.write(frame_to_write(), "out_modes") == 3
    back = connector.read("SELECT * FROM out_modes ORDER BY n")
    assert back["n"].tolist() == [1, 2, 3]
    assert np.isnan(back["x"][1]) and pd.isna(back["s"][1]) and pd.isna(back["t"][1])
    assert back["t"][2] == pd.Timestamp("2024-03-01 12:00:00")
    types = dict(connector.columns("out_modes"))
    assert types["n"] == "bigint(20)" and types["x"] == "double" and types["s"] == "text"

    with pytest.raises(ConnectorError, match="already exists"):
        connector.write(frame_to_write(), "out_modes", mode="fail")
    assert connector.write(frame_to_write(), "out_modes", mode="append") == 3
    assert count(database, "out_modes") == 6
    assert connector.write(frame_to_write().head(1), "out_modes", mode="replace") == 1
    assert count(database, "out_modes") == 1
    assert not [t for t in connector.list_tables() if "__mlops_" in t]


def test_failing_write_leaves_nothing(database):
    connector = make(database, allow_writes=True)
    connector.write(pd.DataFrame({"a": [1, 2]}), "out_atomic")
    bad = pd.DataFrame({"a": [str(i) for i in range(12_000)] + ["not a number"]})
    with pytest.raises(ConnectorError, match="nothing written"):
        connector.write(bad, "out_atomic", mode="append")
    assert count(database, "out_atomic") == 2
    with pytest.raises(ConnectorError, match="nothing written"):
        # TEXT holds 65,535 bytes: the last row fails after 12,000 inserted ones.
        too_long = pd.DataFrame({"b": ["ok"] * 12_000 + ["x" * 70_000]})
        connector.write(too_long, "out_atomic", mode="replace")
    assert count(database, "out_atomic") == 2
    assert list(make(database).read("SELECT * FROM out_atomic").columns) == ["a"]
    assert not [t for t in connector.list_tables() if "__mlops_" in t]


def test_write_validates_table_name(database):
    connector = make(database, allow_writes=True)
    with pytest.raises(ConnectorError, match="not a valid table name"):
        connector.write(frame_to_write(), "x`; DROP TABLE items; --")
    with pytest.raises(ConnectorError, match="unknown write mode"):
        connector.write(frame_to_write(), "ok_name", mode="upsert")
