"""MySQLConnector against a real MariaDB at 127.0.0.1:3306 (root, no password).

Tests taking the `reader` fixture run twice: through ConnectorX (failing if the read is
handed over to mysqlclient) and through mysqlclient alone.
"""

import os
import sys
import time
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


@pytest.fixture(params=["connectorx", "mysqlclient"])
def reader(request, monkeypatch):
    if request.param == "mysqlclient":
        monkeypatch.setattr(MySQLConnector, "_connectorx_usable", lambda self: False)
    else:
        pytest.importorskip("connectorx")

        def handed_over(*args, **kwargs):
            pytest.fail("ConnectorX handed the read over to mysqlclient")

        monkeypatch.setattr(MySQLConnector, "_fetch_rows", handed_over)
    return request.param


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


def test_read_rows_values_and_dtypes(database, reader):
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
    connector = make(database)
    connection = connector._connect()
    try:
        sql = "SELECT id, price FROM items ORDER BY id"
        frame = connector._fetch_rows(connection, sql, 10, chunk_rows=2)
    finally:
        connection.close()
    assert frame["id"].tolist() == [1, 2, 3] and frame["price"].dtype == float


def test_read_empty_result_keeps_columns(database, reader):
    frame = make(database).read("SELECT id, name FROM items WHERE id > 100")
    assert list(frame.columns) == ["id", "name"] and len(frame) == 0


def test_limit_applied(database, reader):
    frame = make(database).read("SELECT * FROM items ORDER BY id -- trailing comment", limit=2)
    assert frame["id"].tolist() == [1, 2]


def test_preview_table_and_query(database, reader):
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
        # MariaDB reads "--1" as minus minus one, where sqlparse sees a comment.
        "SELECT 1 --1 INTO OUTFILE '/tmp/mlops_conn_test_outfile.txt'\nFROM DUAL",
    ],
)
def test_writes_refused(database, reader, query):
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
def test_server_enforces_read_only_without_the_query_check(database, reader, query):
    # _fetch skips the client-side check: the server itself must refuse.
    with pytest.raises(QueryRefused, match="read-only"):
        make(database)._fetch(query, None)
    assert "log" in make(database).list_tables() and count(database, "log") == 0


def test_server_refuses_stacked_statements(database):
    with pytest.raises(ConnectorError):
        make(database)._fetch("SELECT 1; DROP TABLE log", None)
    assert "log" in make(database).list_tables()


def test_server_refuses_a_second_statement_hidden_from_the_parsers(database, reader):
    # "--1" is code to MariaDB but a comment to sqlparse (read() would drop it as a
    # trailing comment) and to ConnectorX's parser.
    with pytest.raises(ConnectorError, match="syntax"):
        make(database)._fetch("SELECT 1 --1; DROP TABLE log", None)
    assert "log" in make(database).list_tables()


@pytest.mark.parametrize("query", ["SELECT evil()", "SELECT id, evil() AS e FROM items"])
def test_stored_function_cannot_write(database, reader, query):
    # Only the server can tell: the query is a plain SELECT to any parser.
    with pytest.raises(QueryRefused, match="read-only"):
        make(database).read(query)
    assert count(database, "log") == 0


def test_semicolons_inside_strings_and_comments_are_fine(database, reader):
    frame = make(database).read("SELECT ';' AS a /* ; */ -- ;\n;")
    assert frame["a"].tolist() == [";"]


def test_time_limit(database, reader):
    started = time.monotonic()
    with pytest.raises(ConnectorError, match="exceeded the time limit of 1 s"):
        make(database).read("SELECT SLEEP(5)", timeout=1)
    assert time.monotonic() - started < 4


def test_the_query_runs_read_only_with_the_time_limit(database, reader):
    query = "SELECT @@tx_read_only AS read_only, @@max_statement_time AS seconds"
    frame = make(database).read(query, timeout=7)
    assert frame["read_only"][0] == 1 and frame["seconds"][0] == pytest.approx(7, abs=0.1)


def test_default_time_limit_from_options(database, reader):
    connector = make(database, options={"statement_timeout": 1})
    with pytest.raises(ConnectorError, match="exceeded the time limit of 1 s"):
        connector.read("SELECT SLEEP(5)")


# -- ConnectorX and the hand-over to mysqlclient ---------------------------------------


@pytest.fixture
def handed_over(monkeypatch):
    """Records the reads ConnectorX hands over to mysqlclient."""
    calls = []
    original = MySQLConnector._fetch_rows

    def record(self, connection, sql, timeout, **kwargs):
        calls.append(sql)
        return original(self, connection, sql, timeout, **kwargs)

    monkeypatch.setattr(MySQLConnector, "_fetch_rows", record)
    return calls


def test_both_readers_give_the_same_frame(database, monkeypatch):
    pytest.importorskip("connectorx")
    query = (
        "SELECT id, name, price, weight, created, DATE(created) AS day, TIME(created) AS at,"
        " CAST(id AS UNSIGNED) AS u, id * 1.5 AS product, CAST(weight AS FLOAT) AS small,"
        " 1 AS one, NULLIF(id, 2) AS holes FROM items ORDER BY id"
    )
    fast = make(database).read(query)
    monkeypatch.setattr(MySQLConnector, "_connectorx_usable", lambda self: False)
    slow = make(database).read(query)
    pd.testing.assert_frame_equal(fast, slow)
    assert str(fast["at"].dtype).startswith("timedelta64") and fast["holes"].dtype == float


def test_columns_connectorx_cannot_read_are_read_through_mysqlclient(database, handed_over):
    # ConnectorX has no NULL column type, nor TIME values outside 00:00-24:00.
    frame = make(database).read("SELECT NULL AS nothing, CAST('100:00:00' AS TIME) AS long_time")
    assert pd.isna(frame["nothing"][0]) and frame["long_time"][0] == pd.Timedelta(hours=100)
    assert len(handed_over) == 1


def test_hand_over_keeps_read_only(database, handed_over):
    # ConnectorX fails on the NULL column before it runs the query; mysqlclient runs it.
    with pytest.raises(QueryRefused, match="read-only"):
        make(database).read("SELECT NULL AS nothing, evil() AS e")
    assert handed_over and count(database, "log") == 0


def test_hand_over_keeps_the_time_left(database, monkeypatch):
    def slow_failure(self, sql, timeout):
        time.sleep(1.2)
        return None

    monkeypatch.setattr(MySQLConnector, "_fetch_arrow", slow_failure)
    with pytest.raises(QueryRefused, match="exceeded the time limit of 1 s"):
        make(database).read("SELECT 1", timeout=1)


def test_mysqlclient_reads_when_connectorx_is_missing(database, monkeypatch, handed_over):
    monkeypatch.setitem(sys.modules, "connectorx", None)
    assert make(database).read("SELECT id FROM items ORDER BY id")["id"].tolist() == [1, 2, 3]
    assert len(handed_over) == 1


def test_tls_sources_read_through_mysqlclient(database):
    # ConnectorX's URL cannot carry TLS settings: mysqlclient fails the same way test() does.
    with pytest.raises(ConnectorError, match="TLS"):
        make(database, options={"tls": True}).read("SELECT 1")


@pytest.fixture
def reading_user(database):
    """An account with a password full of URL delimiters, allowed to read `database`."""
    user, password = f"mlops_ro_{uuid.uuid4().hex[:8]}", "p@ss:w/rd?#%&=+ x"
    connection = admin()
    cursor = connection.cursor()
    cursor.execute("CREATE USER %s@'127.0.0.1' IDENTIFIED BY %s", (user, password))
    cursor.execute(f"GRANT SELECT ON `{database}`.* TO %s@'127.0.0.1'", (user,))
    yield user, password
    cursor.execute("DROP USER %s@'127.0.0.1'", (user,))
    connection.close()


def test_connectorx_url_quotes_the_password_and_errors_hide_it(database, reader, reading_user):
    user, password = reading_user
    connector = make(database, user=user, secret=password)
    assert connector.read("SELECT CURRENT_USER() AS me")["me"][0] == f"{user}@127.0.0.1"
    with pytest.raises(ConnectorError) as info:
        connector.read("SELECT * FROM items WHERE nosuch = 1")
    assert password not in str(info.value) and "nosuch" in str(info.value)
    with pytest.raises(ConnectorError, match="login refused") as info:
        make(database, user=user, secret=password + "!").read("SELECT 1")
    assert password not in str(info.value)


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


def test_silent_server_times_out_with_a_clear_message(silent_port):
    started = time.monotonic()
    with pytest.raises(ConnectorError, match=f"127.0.0.1:{silent_port}: timed out after 1 s"):
        make("any", port=silent_port, options={"connect_timeout": 1}).test()
    assert time.monotonic() - started < 10


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
