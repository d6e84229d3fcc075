"""Tests of the CrateDB connector.

No CrateDB server can run on this machine, so only the protocol is tested: the REAL
`crate` client talks to a small HTTP server started here (127.0.0.1, port 0) that speaks
CrateDB's HTTP endpoint: `GET /` (node info, asked by the client on connect) and
`POST /_sql?types=true` with JSON {"stmt", "args" | "bulk_args"}, answering
{"cols", "col_types", "rows", "rowcount", "duration"}, {"results": [...]} for bulk
statements, and HTTP 4xx {"error": {"message", "code"}} on errors. The SELECTs it
receives run on an in-memory SQLite table; the few other statements the connector sends
are pattern-matched. It records every statement, so the tests can assert that refused
queries never reached the server. CrateDB's own SQL semantics are not tested.
"""

import base64
import datetime
import gzip
import json
import re
import socket
import sqlite3
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pandas as pd
import pytest

from datasources.connectors import connector_class
from datasources.connectors.base import ConnectionSettings, ConnectorError, QueryRefused
from datasources.connectors.cratedb import CrateConnector, check_read_only

SECRET = "crate-s3cret"
USER = "analyst"

# Wire type ids, as in crate.client.converter.DataType.
TYPES = {"id": 10, "name": 4, "value": 6, "ts": 11, "ok": 3}
TS_2024 = int(datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC).timestamp() * 1000)


class FakeCrate:
    """The state of the fake server: a SQLite table and the statements received."""

    def __init__(self):
        self.statements: list[str] = []
        self.requests: list[dict] = []
        self.bulk_rows: dict[str, list] = {}
        self.gets: list[str] = []
        self.tables = {("doc", "metrics")}
        self.lock = threading.Lock()
        self.db = sqlite3.connect(":memory:", check_same_thread=False)
        self.db.executescript(
            f"""
            CREATE TABLE metrics (id INTEGER, name TEXT, value REAL, ts INTEGER, ok INTEGER);
            INSERT INTO metrics VALUES (1, 'cpu', 0.5, {TS_2024}, 1);
            INSERT INTO metrics VALUES (2, 'mem', 1.5, {TS_2024 + 60_000}, 0);
            INSERT INTO metrics VALUES (3, 'disk', NULL, NULL, 1);
            """
        )

    def answer(self, payload: dict) -> tuple[int, dict]:
        stmt = payload["stmt"]
        with self.lock:
            self.statements.append(stmt)
            self.requests.append(payload)
        upper = " ".join(stmt.split()).upper()
        if "PG_SLEEP" in upper:
            time.sleep(1)
            return 200, self.result(["x"], [9], [[1]])
        if "BULK_ARGS" in payload or "bulk_args" in payload:
            return self.bulk(stmt, payload["bulk_args"])
        if "INFORMATION_SCHEMA.TABLES" in upper:
            return self.information_tables(upper, payload.get("args") or [])
        if "INFORMATION_SCHEMA.COLUMNS" in upper:
            rows = [[c, t] for c, t in [("id", "bigint"), ("name", "text"), ("value", "double")]]
            return 200, self.result(["column_name", "data_type"], [4, 4], rows)
        if upper.startswith(("SELECT", "WITH")):
            return self.select(stmt, payload.get("args") or [])
        match = re.match(
            r'(CREATE TABLE IF NOT EXISTS|DROP TABLE IF EXISTS) "(\w+)"\."(\w+)"', stmt
        )
        if match:
            key = (match.group(2), match.group(3))
            if match.group(1).startswith("CREATE"):
                self.tables.add(key)
            else:
                self.tables.discard(key)
                self.bulk_rows.pop(key[1], None)
            return 200, {"cols": [], "rows": [], "rowcount": 1, "duration": 1.0}
        if upper.startswith("REFRESH TABLE"):
            return 200, {"cols": [], "rows": [], "rowcount": 1, "duration": 1.0}
        return 400, self.error(f"SQLParseException[line 1:1: mismatched input '{stmt[:20]}']", 4000)

    @staticmethod
    def result(cols, col_types, rows):
        return {
            "cols": cols,
            "col_types": col_types,
            "rows": rows,
            "rowcount": len(rows),
            "duration": 0.5,
        }

    @staticmethod
    def error(message, code):
        return {"error": {"message": message, "code": code}}

    def select(self, stmt, args):
        sql = re.sub(r'"doc"\.|\bdoc\.', "", stmt)
        try:
            cursor = self.db.execute(sql, args)
        except sqlite3.Error as exc:
            found = re.search(r"no such table: (\w+)", str(exc))
            if found:
                return 404, self.error(
                    f"RelationUnknown[Relation '{found.group(1)}' unknown]", 4041
                )
            return 400, self.error(f"SQLParseException[{exc}]", 4000)
        cols = [d[0] for d in cursor.description]
        rows = [list(r) for r in cursor.fetchall()]
        col_types = []
        for i, col in enumerate(cols):
            type_id = TYPES.get(col)
            if type_id is None:
                sample = next((r[i] for r in rows if r[i] is not None), None)
                type_id = {int: 10, float: 6, str: 4}.get(type(sample), 0)
            col_types.append(type_id)
            if type_id == 3:
                for row in rows:
                    row[i] = None if row[i] is None else bool(row[i])
        return 200, self.result(cols, col_types, rows)

    def information_tables(self, upper, args):
        if "COUNT(*)" in upper:
            found = int(tuple(args) in self.tables)
            return 200, self.result(["count(*)"], [10], [[found]])
        rows = sorted([s, t] for s, t in self.tables if s not in args)
        return 200, self.result(["table_schema", "table_name"], [4, 4], rows)

    def bulk(self, stmt, bulk_args):
        match = re.match(r'INSERT INTO "\w+"\."(\w+)"', stmt)
        if not match:
            return 400, self.error("SQLParseException[bulk only for INSERT here]", 4000)
        self.bulk_rows.setdefault(match.group(1), []).extend(bulk_args)
        return 200, {"cols": [], "duration": 1.0, "results": [{"rowcount": 1} for _ in bulk_args]}


def make_handler(state: FakeCrate, credentials: tuple[str, str] | None):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def send_json(self, status, body):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=UTF-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def authorized(self):
            if credentials is None:
                return True
            expected = base64.b64encode(":".join(credentials).encode()).decode()
            if self.headers.get("Authorization") == f"Basic {expected}":
                return True
            self.send_json(
                401,
                FakeCrate.error("Authentication failed for user 'who': wrong password", 4011),
            )
            return False

        def do_GET(self):
            state.gets.append(self.path)
            if not self.authorized():
                return
            if self.path == "/":
                self.send_json(
                    200,
                    {
                        "ok": True,
                        "status": 200,
                        "name": "fake-node",
                        "cluster_name": "fake",
                        "version": {"number": "5.10.3", "build_snapshot": False},
                    },
                )
            else:
                self.send_json(404, FakeCrate.error("not found", 4040))

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if not self.authorized():
                return
            if not self.path.startswith("/_sql"):
                self.send_json(404, FakeCrate.error("not found", 4040))
                return
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            status, answer = state.answer(json.loads(body))
            self.send_json(status, answer)

    return Handler


@pytest.fixture
def server():
    started = []

    def start(credentials=(USER, SECRET)):
        state = FakeCrate()
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(state, credentials))
        thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        started.append(httpd)
        state.port = httpd.server_address[1]
        return state

    yield start
    for httpd in started:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def crate(server):
    return server()


def settings(port, **overrides):
    values = dict(
        host="127.0.0.1",
        port=port,
        database="",
        user=USER,
        secret=SECRET,
        options={"connect_timeout": 2, "statement_timeout": 5},
        allow_writes=False,
    )
    values.update(overrides)
    return ConnectionSettings(**values)


def connector(state, **overrides):
    return CrateConnector(settings(state.port, **overrides))


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_registered_kind_and_port():
    assert connector_class("cratedb") is CrateConnector
    assert CrateConnector(settings(None)).port == 4200
    assert CrateConnector(settings(None, options={"tls": True})).url == "https://127.0.0.1:4200"


def test_select_into_dataframe_with_types(crate):
    frame = connector(crate).read("SELECT id, name, value, ts, ok FROM metrics ORDER BY id")
    assert list(frame.columns) == ["id", "name", "value", "ts", "ok"]
    assert frame["id"].tolist() == [1, 2, 3]
    assert str(frame["id"].dtype) == "int64"
    assert frame["name"].tolist() == ["cpu", "mem", "disk"]
    assert str(frame["value"].dtype) == "float64"
    assert frame["value"].isna().tolist() == [False, False, True]
    assert frame.loc[0, "ts"] == pd.Timestamp("2024-01-01", tz="UTC")
    assert pd.api.types.is_datetime64_any_dtype(frame["ts"])
    assert frame["ok"].tolist() == [True, False, True]
    assert frame["ok"].dtype == bool
    # The client asks GET / (node info) on connect, then sends the statement as given.
    assert crate.gets == ["/"]
    assert crate.statements == ["SELECT id, name, value, ts, ok FROM metrics ORDER BY id"]


def test_limit_wraps_the_query(crate):
    frame = connector(crate).read("SELECT id FROM metrics ORDER BY id -- first ones;", limit=2)
    assert frame["id"].tolist() == [1, 2]
    sent = crate.statements[-1]
    assert sent.startswith("SELECT * FROM (\n")
    assert sent.endswith(") AS _limited LIMIT 2")


def test_with_and_union_are_accepted(crate):
    frame = connector(crate).read(
        "WITH big AS (SELECT id FROM metrics WHERE value > 1) "
        "SELECT id FROM big UNION ALL SELECT 10 AS id;"
    )
    assert sorted(frame["id"].tolist()) == [2, 10]
    assert not crate.statements[-1].endswith(";")


@pytest.mark.parametrize(
    "sql, reason",
    [
        ("INSERT INTO metrics (id) VALUES (9)", "only SELECT"),
        ("DROP TABLE metrics", "only SELECT"),
        ("SELECT 1; DROP TABLE t", "exactly one statement"),
        ("SELEC id FRM metrics", "could not be parsed"),
        ("this is not sql", "only SELECT"),
        ("", "empty"),
        ("DELETE FROM metrics", "only SELECT"),
        ("UPDATE metrics SET value = 0", "only SELECT"),
        ("COPY metrics TO DIRECTORY '/tmp'", "only SELECT"),
        ("REFRESH TABLE metrics", "only SELECT"),
        ("ALTER TABLE metrics ADD COLUMN x INT", "only SELECT"),
        ("CREATE TABLE t AS SELECT * FROM metrics", "only SELECT"),
        ("WITH gone AS (DELETE FROM metrics RETURNING id) SELECT * FROM gone", "DELETE"),
        ("SELECT * INTO copy FROM metrics", "INTO"),
    ],
)
def test_refused_queries_never_reach_the_server(crate, sql, reason):
    with pytest.raises(QueryRefused, match=reason):
        connector(crate).read(sql)
    assert crate.statements == []
    assert crate.db.execute("SELECT count(*) FROM metrics").fetchone() == (3,)


def test_check_read_only_returns_the_statement():
    assert check_read_only("  SELECT 1 ;  ") == "SELECT 1"
    assert check_read_only("(SELECT 1)") == "(SELECT 1)"
    assert check_read_only("SELECT obj['key'] FROM t") == "SELECT obj['key'] FROM t"


def test_server_error_surfaces_as_connector_error(crate):
    with pytest.raises(ConnectorError, match=r"RelationUnknown\[Relation 'nope' unknown\]") as info:
        connector(crate).read("SELECT * FROM nope")
    assert not isinstance(info.value, QueryRefused)
    assert crate.statements == ["SELECT * FROM nope"]


def test_read_timeout(crate):
    started = time.monotonic()
    with pytest.raises(ConnectorError, match="no answer within the time limit"):
        connector(crate).read("SELECT pg_sleep(1)", timeout=0.3)
    assert time.monotonic() - started < 0.9
    assert crate.statements == ["SELECT pg_sleep(1)"]  # sent once, not retried


def test_test_success(crate):
    assert connector(crate).test() == f"CrateDB 5.10.3 at http://127.0.0.1:{crate.port}"
    assert crate.statements == ["SELECT 1"]


def test_unreachable_port():
    conn = CrateConnector(settings(free_port()))
    with pytest.raises(ConnectorError, match="is unreachable") as info:
        conn.test()
    assert f"http://127.0.0.1:{conn.port}" in str(info.value)
    assert SECRET not in str(info.value)


def test_bad_password(server):
    state = server(credentials=(USER, "the-right-one"))
    with pytest.raises(ConnectorError, match="authentication failed for user 'analyst'") as info:
        connector(state).test()
    assert SECRET not in str(info.value)


def test_no_credentials_sends_no_authorization(server):
    state = server(credentials=None)
    assert connector(state, user="", secret="").test().startswith("CrateDB")


def test_list_tables_columns_preview(crate):
    conn = connector(crate)
    crate.tables.add(("other", "events"))
    assert conn.list_tables() == ["metrics", "other.events"]
    assert crate.requests[-1]["args"] == ["information_schema", "sys", "pg_catalog", "blob"]
    assert conn.columns("metrics") == [("id", "bigint"), ("name", "text"), ("value", "double")]
    assert crate.requests[-1]["args"] == ["doc", "metrics"]
    frame = conn.preview("metrics", n=2)
    assert len(frame) == 2
    assert 'FROM "doc"."metrics"' in crate.statements[-1]
    assert conn.preview("SELECT name FROM metrics ORDER BY id DESC", n=1)["name"].tolist() == [
        "disk"
    ]
    with pytest.raises(QueryRefused):
        conn.preview("metrics; DROP TABLE metrics")


FRAME = pd.DataFrame(
    {
        "id": [1, 2, 3, 4, 5],
        "score": [0.5, float("nan"), 2.0, 3.0, 4.0],
        "label": ["a", "b", None, "d", "e"],
        "flag": [True, False, True, True, False],
        "at": pd.to_datetime(["2024-01-01", None, "2024-01-03", "2024-01-04", "2024-01-05"]),
    }
)


def test_write_refused_without_allow_writes(crate):
    with pytest.raises(QueryRefused, match="not allowed"):
        connector(crate).write(FRAME, "scores")
    assert crate.statements == []


def test_write_sends_bulk_inserts(crate, monkeypatch):
    monkeypatch.setattr("datasources.connectors.cratedb.INSERT_CHUNK", 2)
    conn = connector(crate, allow_writes=True)
    assert conn.write(FRAME, "scores") == 5
    create = next(s for s in crate.statements if s.startswith("CREATE"))
    assert create == (
        'CREATE TABLE IF NOT EXISTS "doc"."scores" ("id" BIGINT, "score" DOUBLE PRECISION, '
        '"label" TEXT, "flag" BOOLEAN, "at" TIMESTAMP WITH TIME ZONE)'
    )
    bulk = [r for r in crate.requests if "bulk_args" in r]
    assert len(bulk) == 3  # chunks of 2, 2, 1
    assert all(
        r["stmt"] == 'INSERT INTO "doc"."scores" ("id", "score", "label", "flag", "at") '
        "VALUES (?, ?, ?, ?, ?)"
        for r in bulk
    )
    rows = crate.bulk_rows["scores"]
    assert rows[0] == [1, 0.5, "a", True, TS_2024]
    assert rows[1] == [2, None, "b", False, None]
    assert rows[2][2] is None
    assert crate.statements[-1] == 'REFRESH TABLE "doc"."scores"'

    # fail mode refuses an existing table; append adds; replace drops first.
    with pytest.raises(ConnectorError, match="already exists"):
        conn.write(FRAME, "scores")
    assert conn.write(FRAME, "scores", mode="append") == 5
    assert len(crate.bulk_rows["scores"]) == 10
    assert conn.write(FRAME.head(1), "scores", mode="replace") == 1
    assert 'DROP TABLE IF EXISTS "doc"."scores"' in crate.statements
    assert len(crate.bulk_rows["scores"]) == 1


def test_large_bulk_insert_is_gzipped_and_accepted(crate):
    frame = pd.DataFrame({"id": range(3000), "name": ["x" * 10] * 3000})
    assert connector(crate, allow_writes=True).write(frame, "big") == 3000
    assert len(crate.bulk_rows["big"]) == 3000


def test_write_rejects_unknown_mode(crate):
    with pytest.raises(ConnectorError, match="unknown write mode"):
        connector(crate, allow_writes=True).write(FRAME, "scores", mode="upsert")
    assert crate.statements == []
