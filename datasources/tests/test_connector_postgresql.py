"""PostgreSQLConnector against a real PostgreSQL at 127.0.0.1:5432 (postgres, trust)."""

import time
import uuid

import numpy as np
import pandas as pd
import pytest

from conftest import require_service
from datasources.connectors.base import ConnectionSettings, ConnectorError, QueryRefused
from datasources.connectors.postgresql import PostgreSQLConnector

HOST, PORT = "127.0.0.1", 5432


def admin(dbname="postgres"):
    import psycopg

    return psycopg.connect(host=HOST, port=PORT, user="postgres", dbname=dbname, autocommit=True)


@pytest.fixture(scope="module")
def database():
    require_service("PostgreSQL", HOST, PORT)
    name = f"mlops_conn_test_{uuid.uuid4().hex[:10]}"
    with admin() as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    with admin(name) as connection:
        connection.execute(
            "CREATE TABLE items (id INT PRIMARY KEY, name TEXT, price NUMERIC(8,2),"
            " weight DOUBLE PRECISION NULL, created TIMESTAMP)"
        )
        connection.execute(
            "INSERT INTO items VALUES (1, 'apple', 1.50, 0.2, '2024-01-02 03:04:05'),"
            " (2, 'pear', 2.25, NULL, '2024-02-03 04:05:06'), (3, 'fig', 10.00, 0.05, NULL)"
        )
        connection.execute("CREATE TABLE log (x INT)")
        connection.execute(
            "CREATE FUNCTION evil() RETURNS INT LANGUAGE plpgsql AS"
            " $$ BEGIN INSERT INTO log VALUES (1); RETURN 1; END $$"
        )
    yield name
    with admin() as connection:
        connection.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def make(database, **overrides):
    values = dict(
        host=HOST,
        port=PORT,
        database=database,
        user="postgres",
        secret="",
        options={},
        allow_writes=False,
    )
    values.update(overrides)
    return PostgreSQLConnector(ConnectionSettings(**values))


def count(database, table):
    with admin(database) as connection:
        return connection.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]


def test_connection_test_describes_server(database):
    assert make(database).test().startswith("PostgreSQL ")


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
        connector.preview('items"; DROP TABLE items')


def test_list_tables_and_columns(database):
    connector = make(database)
    assert connector.list_tables() == ["items", "log"]
    columns = connector.columns("items")
    assert [name for name, _ in columns] == ["id", "name", "price", "weight", "created"]
    assert columns[2][1] == "numeric"
    assert connector.columns("public.items") == columns
    with pytest.raises(ConnectorError, match="does not exist"):
        connector.columns("nosuch")


@pytest.mark.parametrize(
    "query",
    [
        "INSERT INTO items VALUES (9, 'x', 1, 1, NULL)",
        "DROP TABLE items",
        "SELECT 1; DROP TABLE items",
        "COPY items TO PROGRAM 'true'",
        "SET default_transaction_read_only = off",
    ],
)
def test_writes_refused(database, query):
    with pytest.raises(QueryRefused, match="read-only|one SQL statement"):
        make(database).read(query)
    assert count(database, "items") == 3


@pytest.mark.parametrize(
    "query",
    [
        "INSERT INTO log VALUES (1)",
        "DROP TABLE log",
        "CREATE TABLE other (a INT)",
        "SELECT * INTO other FROM log",
        "WITH d AS (DELETE FROM items RETURNING *) SELECT * FROM d",
    ],
)
def test_server_refuses_writes_without_the_query_check(database, query):
    # _fetch skips the client-side check: the server (a read cursor) must refuse.
    with pytest.raises(ConnectorError):
        make(database)._fetch(query, None)
    assert make(database).list_tables() == ["items", "log"]
    assert count(database, "items") == 3 and count(database, "log") == 0


def test_data_modifying_cte_refused_as_read_only(database):
    with pytest.raises(QueryRefused, match="read-only"):
        make(database).read("WITH d AS (DELETE FROM items RETURNING *) SELECT * FROM d")
    assert count(database, "items") == 3


@pytest.mark.parametrize("query", ["INSERT INTO log VALUES (1)", "DROP TABLE log"])
def test_read_transaction_is_read_only_on_the_server(database, query):
    import psycopg

    connection = make(database)._connect(read_only=True)
    try:
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            connection.execute(query)
    finally:
        connection.close()
    assert count(database, "log") == 0


def test_server_refuses_stacked_statements(database):
    with pytest.raises(ConnectorError):
        make(database)._fetch("SELECT 1; DROP TABLE log", None)
    assert "log" in make(database).list_tables()


def test_stored_function_cannot_write(database):
    with pytest.raises(QueryRefused, match="read-only"):
        make(database).read("SELECT evil()")
    assert count(database, "log") == 0


def test_semicolons_inside_strings_and_comments_are_fine(database):
    frame = make(database).read("SELECT ';' AS a, $$;$$ AS b /* ; */ -- ;\n;")
    assert frame["a"].tolist() == [";"] and frame["b"].tolist() == [";"]


def test_time_limit(database):
    with pytest.raises(ConnectorError, match="exceeded the time limit"):
        make(database).read("SELECT pg_sleep(5)", timeout=1)


def test_default_time_limit_from_options(database):
    connector = make(database, options={"statement_timeout": 1})
    with pytest.raises(ConnectorError, match="exceeded the time limit of 1 s"):
        connector.read("SELECT pg_sleep(5)")


def test_bad_login_message_hides_secret(database):
    # The test server trusts every password, so an unknown user stands for a bad login.
    secret = "s3cret-Pa55word"
    with pytest.raises(ConnectorError, match="login refused for user 'nobody_here'") as info:
        make(database, user="nobody_here", secret=secret).test()
    assert secret not in str(info.value)


def test_closed_port_message(database):
    secret = "s3cret-Pa55word"
    with pytest.raises(ConnectorError, match="cannot connect to 127.0.0.1:1") as info:
        make(database, port=1, secret=secret, options={"connect_timeout": 2}).test()
    assert secret not in str(info.value)


def test_silent_server_times_out_with_a_clear_message(silent_port):
    started = time.monotonic()
    with pytest.raises(ConnectorError, match=f"127.0.0.1:{silent_port}: timed out after 1 s"):
        make("any", port=silent_port, options={"connect_timeout": 1}).test()
    assert time.monotonic() - started < 10


def test_unknown_database_message():
    require_service("PostgreSQL", HOST, PORT)
    with pytest.raises(ConnectorError, match="database 'mlops_no_such_db' does not exist"):
        make("mlops_no_such_db").test()


def test_tls_failure_message(database, tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("not a certificate")
    with pytest.raises(ConnectorError, match="TLS"):
        make(database, options={"tls": True, "ca": str(ca)}).test()


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
    assert back["b"].tolist() == [True, False, True]
    assert back["t"][2] == pd.Timestamp("2024-03-01 12:00:00")
    types = dict(connector.columns("out_modes"))
    assert types == {
        "n": "bigint",
        "x": "double precision",
        "s": "text",
        "b": "boolean",
        "t": "timestamp without time zone",
    }
    with pytest.raises(ConnectorError, match="already exists"):
        connector.write(frame_to_write(), "out_modes", mode="fail")
    assert connector.write(frame_to_write(), "out_modes", mode="append") == 3
    assert count(database, "out_modes") == 6
    assert connector.write(frame_to_write().head(1), "out_modes", mode="replace") == 1
    assert count(database, "out_modes") == 1


def test_failing_write_leaves_nothing(database):
    connector = make(database, allow_writes=True)
    connector.write(pd.DataFrame({"a": [1, 2]}), "out_atomic")
    bad = pd.DataFrame({"a": [str(i) for i in range(12_000)] + ["not a number"]})
    with pytest.raises(ConnectorError, match="nothing written"):
        connector.write(bad, "out_atomic", mode="append")
    assert count(database, "out_atomic") == 2
    # A NUL byte cannot be stored in TEXT: fails after 12,000 rows, after the DROP.
    bad_text = pd.DataFrame({"b": ["ok"] * 12_000 + ["a\x00b"]})
    with pytest.raises(ConnectorError, match="nothing written"):
        connector.write(bad_text, "out_atomic", mode="replace")
    assert count(database, "out_atomic") == 2
    assert list(connector.read("SELECT * FROM out_atomic").columns) == ["a"]


def test_write_validates_table_name(database):
    connector = make(database, allow_writes=True)
    with pytest.raises(ConnectorError, match="not a valid table name"):
        connector.write(frame_to_write(), 'x"; DROP TABLE items; --')
