"""CrateDB connector (driver: crate.client over HTTP, imported inside the methods).

CrateDB has no transactions and no read-only session, so reads are kept read-only on
this side: a query is parsed with sqlglot (PostgreSQL dialect, which CrateDB speaks)
and accepted only if it is exactly one SELECT / set operation / WITH ... SELECT
statement with no data-changing or DDL node anywhere in it.
"""

import re
from typing import Any

import pandas as pd

from datasources.connectors.base import (
    AccountRights,
    ConnectionSettings,
    Connector,
    ConnectorError,
    QueryRefused,
    check_write_allowed,
)

SYSTEM_SCHEMAS = ("information_schema", "sys", "pg_catalog", "blob")
FETCH_CHUNK = 10_000
INSERT_CHUNK = 1_000
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")

# CrateDB wire type ids (crate.client.converter.DataType) to pandas dtypes.
_INTEGER_TYPES = {8, 9, 10}  # SMALLINT, INTEGER, BIGINT
_FLOAT_TYPES = {6, 7}  # DOUBLE, REAL
_BOOLEAN = 3


def check_read_only(sql: str) -> str:
    """The statement, without a trailing semicolon, if it is one read-only query.

    Raises QueryRefused saying why otherwise.
    """
    import sqlglot
    from sqlglot import exp
    from sqlglot.errors import SqlglotError

    if not isinstance(sql, str) or not sql.strip():
        raise QueryRefused("the query is empty")
    try:
        statements = [s for s in sqlglot.parse(sql, read="postgres") if s is not None]
    except SqlglotError as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise QueryRefused(f"the query could not be parsed: {reason}") from None
    if len(statements) != 1:
        raise QueryRefused(f"exactly one statement is allowed, the query has {len(statements)}")
    root = statements[0]
    while isinstance(root, exp.Subquery):
        root = root.this
    if not isinstance(root, (exp.Select, exp.SetOperation)):
        raise QueryRefused(f"only SELECT queries are allowed, not {root.key.upper()}")
    forbidden = (
        exp.Insert,
        exp.Update,
        exp.Delete,
        exp.Create,
        exp.Drop,
        exp.Alter,
        exp.Copy,
        exp.Merge,
        exp.TruncateTable,
        exp.Command,
        exp.Into,
    )
    for node in root.walk():
        if isinstance(node, forbidden):
            raise QueryRefused(
                f"the query contains a {node.key.upper()} statement: only reads are allowed"
            )
    return sql.strip().rstrip(";").rstrip()


def quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def privilege_rights(superuser: bool, privileges: list, roles: list) -> AccountRights:
    """AccountRights of a CrateDB user: sys.users' superuser flag and granted roles,
    and its own GRANT rows of sys.privileges (class, ident, type).

    DQL reads; DML and DDL write; AL administers (CREATE USER, SET GLOBAL). The
    privileges of granted roles are not followed: they are reported as unverified.
    """
    if superuser:
        return AccountRights(write=("superuser",), admin=("superuser",))
    write, admin = [], []
    for privilege_class, ident, privilege_type in privileges:
        where = "the cluster" if privilege_class == "CLUSTER" else f"{privilege_class} {ident}"
        label = f"{privilege_type} on {where}"
        if privilege_type in ("DML", "DDL"):
            write.append(label)
        elif privilege_type == "AL":
            admin.append(label)
    names = [role.get("role", "?") if isinstance(role, dict) else str(role) for role in roles]
    unverified = f"the privileges of role {', '.join(names)} are not read" if names else ""
    return AccountRights(write=tuple(write), admin=tuple(admin), unverified=unverified)


class CrateConnector(Connector):
    kind = "cratedb"
    default_port = 4200
    rights_risk = (
        "CrateDB has no read-only transaction: only the query check keeps extraction "
        "from using them"
    )
    read_only_advice = "Use an account with DQL privileges only."
    options = {
        "tls": "true to connect over https.",
        "verify_ssl": "false to accept any server certificate (https only); true.",
        "connect_timeout": "Seconds to wait to connect to the server; 10.",
        "statement_timeout": "Seconds to wait for a query's answer; 300.",
    }

    def __init__(self, settings: ConnectionSettings):
        super().__init__(settings)

    # -- connection -------------------------------------------------------------------

    @property
    def url(self) -> str:
        scheme = "https" if self.settings.options.get("tls") else "http"
        return f"{scheme}://{self.settings.host}:{self.port}"

    @property
    def schema(self) -> str:
        return self.settings.database or "doc"

    def _scrub(self, text: Any) -> str:
        text = str(text)
        if self.settings.secret:
            text = text.replace(self.settings.secret, "***")
        return text

    def connect(self, timeout: float | None = None):
        from crate import client
        from urllib3 import Timeout

        options = self.settings.options
        connect_timeout = float(options.get("connect_timeout", 10))
        read_timeout = float(
            timeout if timeout is not None else options.get("statement_timeout", 300)
        )
        try:
            return client.connect(
                self.url,
                username=self.settings.user or None,
                password=(self.settings.secret or None) if self.settings.user else None,
                schema=self.settings.database or None,
                timeout=Timeout(connect=connect_timeout, read=read_timeout),
                verify_ssl_cert=bool(options.get("verify_ssl", True)),
            )
        except Exception as exc:
            raise self._error(exc, "could not connect") from None

    def _error(self, exc: Exception, doing: str) -> ConnectorError:
        from crate.client import exceptions

        message = self._scrub(getattr(exc, "message", None) or exc)
        lowered = message.lower()
        if isinstance(exc, exceptions.ConnectionError):
            if "read timed out" in lowered:
                return ConnectorError(
                    f"{doing}: CrateDB gave no answer within the time limit "
                    "(the statement may still run on the server)"
                )
            if "timed out" in lowered or "timeout" in lowered:
                return ConnectorError(f"{doing}: timed out waiting for CrateDB at {self.url}")
            return ConnectorError(f"{doing}: CrateDB at {self.url} is unreachable")
        if "401" in message or "unauthorized" in lowered or "authentication" in lowered:
            return ConnectorError(f"{doing}: authentication failed for user {self.settings.user!r}")
        return ConnectorError(f"{doing}: {message}")

    def _run(self, stmt: str, args: list | None = None, timeout: float | None = None):
        """Execute one statement; (column names, column type ids, rows)."""
        from crate.client.converter import DefaultTypeConverter
        from crate.client.exceptions import Error

        connection = self.connect(timeout)
        try:
            cursor = connection.cursor(converter=DefaultTypeConverter())
            try:
                cursor.execute(stmt, args)
            except Error as exc:
                raise self._error(exc, "query failed") from None
            names = [d[0] for d in cursor.description or ()]
            types = list(getattr(cursor, "_result", {}).get("col_types") or [])
            rows: list = []
            while chunk := cursor.fetchmany(FETCH_CHUNK):
                rows.extend(chunk)
            return names, types, rows
        finally:
            connection.close()

    @staticmethod
    def _frame(names: list[str], types: list, rows: list) -> pd.DataFrame:
        frame = pd.DataFrame.from_records(rows, columns=names) if names else pd.DataFrame()
        if len(types) != len(names):
            return frame
        for name, type_id in zip(names, types, strict=True):
            column = frame[name]
            if type_id in _INTEGER_TYPES:
                frame[name] = column.astype("int64" if column.notna().all() else "Int64")
            elif type_id in _FLOAT_TYPES:
                frame[name] = column.astype("float64")
            elif type_id == _BOOLEAN and column.notna().all():
                frame[name] = column.astype(bool)
        return frame

    def _split(self, table: str) -> tuple[str, str]:
        schema, _, name = table.rpartition(".")
        return (schema or self.schema), name

    def _qualified(self, table: str) -> str:
        schema, name = self._split(table)
        return f"{quote(schema)}.{quote(name)}"

    # -- interface --------------------------------------------------------------------

    def test(self) -> str:
        connection = self.connect()
        try:
            version = connection.lowest_server_version
            cursor = connection.cursor()
            cursor.execute("SELECT 1")
            cursor.fetchall()
        except ConnectorError:
            raise
        except Exception as exc:
            raise self._error(exc, "connection test failed") from None
        finally:
            connection.close()
        return f"CrateDB {version} at {self.url}"

    def account_rights(self) -> AccountRights:
        """The user's superuser flag, granted roles and privileges (sys.users,
        sys.privileges; granted_roles exists from CrateDB 5.6)."""
        try:
            _, _, users = self._run(
                "SELECT superuser, granted_roles FROM sys.users WHERE name = CURRENT_USER"
            )
        except ConnectorError:
            _, _, users = self._run("SELECT superuser FROM sys.users WHERE name = CURRENT_USER")
        if not users:
            return AccountRights(unverified="sys.users does not list the current user")
        superuser, roles = users[0][0], (users[0][1:] or [None])[0] or []
        _, _, privileges = self._run(
            "SELECT class, ident, type FROM sys.privileges "
            "WHERE grantee = CURRENT_USER AND state = 'GRANT' ORDER BY class, ident, type"
        )
        return privilege_rights(bool(superuser), privileges, roles)

    def list_tables(self) -> list[str]:
        placeholders = ", ".join("?" for _ in SYSTEM_SCHEMAS)
        _, _, rows = self._run(
            "SELECT table_schema, table_name FROM information_schema.tables "
            f"WHERE table_schema NOT IN ({placeholders}) ORDER BY 1, 2",
            list(SYSTEM_SCHEMAS),
        )
        return [name if schema == self.schema else f"{schema}.{name}" for schema, name in rows]

    def columns(self, table: str) -> list[tuple[str, str]]:
        schema, name = self._split(table)
        _, _, rows = self._run(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position",
            [schema, name],
        )
        return [(column, data_type) for column, data_type in rows]

    def preview(self, table_or_query: str, n: int = 20) -> pd.DataFrame:
        if IDENTIFIER.match(table_or_query.strip()):
            query = f"SELECT * FROM {self._qualified(table_or_query.strip())}"
            return self.read(query, limit=n)
        return self.read(table_or_query, limit=n)

    def read(
        self, query: Any, limit: int | None = None, timeout: int | None = None
    ) -> pd.DataFrame:
        sql = check_read_only(query)
        self.check_read_account()
        if limit is not None:
            if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
                raise QueryRefused("limit must be a non-negative integer")
            # The newline keeps a trailing -- comment from swallowing the parenthesis.
            sql = f"SELECT * FROM (\n{sql}\n) AS _limited LIMIT {limit}"
        return self._frame(*self._run(sql, timeout=timeout))

    def write(self, frame: pd.DataFrame, table: str, mode: str = "fail") -> int:
        check_write_allowed(self.settings, mode)
        if len(frame.columns) == 0:
            raise ConnectorError("the frame has no columns to write")
        from crate.client.exceptions import Error

        schema, name = self._split(table)
        target = self._qualified(table)
        columns = [str(c) for c in frame.columns]
        definition = ", ".join(
            f"{quote(c)} {self._column_type(frame[col])}"
            for c, col in zip(columns, frame.columns, strict=True)
        )
        insert = (
            f"INSERT INTO {target} ({', '.join(quote(c) for c in columns)}) "
            f"VALUES ({', '.join('?' for _ in columns)})"
        )
        connection = self.connect()
        try:
            cursor = connection.cursor()
            try:
                if mode == "fail":
                    cursor.execute(
                        "SELECT count(*) FROM information_schema.tables "
                        "WHERE table_schema = ? AND table_name = ?",
                        [schema, name],
                    )
                    if cursor.fetchone()[0]:
                        raise ConnectorError(
                            f"table {table!r} already exists: use mode append or replace"
                        )
                elif mode == "replace":
                    cursor.execute(f"DROP TABLE IF EXISTS {target}")
                cursor.execute(f"CREATE TABLE IF NOT EXISTS {target} ({definition})")
                written = 0
                rows = self._rows(frame)
                for start in range(0, len(rows), INSERT_CHUNK):
                    results = cursor.executemany(insert, rows[start : start + INSERT_CHUNK])
                    for result in results or []:
                        if result.get("rowcount", 0) < 0:
                            raise ConnectorError(
                                f"write to {table!r} failed: "
                                f"{self._scrub(result.get('error_message', 'a row was rejected'))}"
                            )
                        written += result.get("rowcount", 0)
                cursor.execute(f"REFRESH TABLE {target}")
            except Error as exc:
                raise self._error(exc, f"write to {table!r} failed") from None
        finally:
            connection.close()
        return written

    # -- helpers ----------------------------------------------------------------------

    @staticmethod
    def _column_type(series: pd.Series) -> str:
        from pandas.api import types

        if types.is_bool_dtype(series):
            return "BOOLEAN"
        if types.is_integer_dtype(series):
            return "BIGINT"
        if types.is_float_dtype(series):
            return "DOUBLE PRECISION"
        if types.is_datetime64_any_dtype(series):
            return "TIMESTAMP WITH TIME ZONE"
        return "TEXT"

    @staticmethod
    def _rows(frame: pd.DataFrame) -> list[list]:
        import numpy as np

        rows = []
        for record in frame.itertuples(index=False, name=None):
            row = []
            for value in record:
                if isinstance(value, np.generic):
                    value = value.item()
                missing = value is None or value is pd.NaT or value is pd.NA
                if missing or (isinstance(value, float) and value != value):
                    value = None
                elif isinstance(value, pd.Timestamp):
                    value = value.to_pydatetime()
                row.append(value)
            rows.append(row)
        return rows
