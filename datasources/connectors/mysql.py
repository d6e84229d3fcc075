"""MySQL and MariaDB, through mysqlclient (`MySQLdb`, imported inside the methods).

Reads are read-only by the server: on MariaDB every query runs as
`SET STATEMENT tx_read_only=1, max_statement_time=N FOR <query>`, on MySQL inside
`START TRANSACTION READ ONLY` with `MAX_EXECUTION_TIME`; the session is read-only too,
so DDL is refused as well. The client never sends several statements (multi-statements
off, a query with a second statement is refused before it is sent) and has
`LOAD DATA LOCAL` disabled. What the server allows a read-only transaction to do that
is still a write (`SELECT ... INTO OUTFILE`) is refused by the query check.
"""

import contextlib
import time
import uuid
from typing import Any

import pandas as pd

from datasources.connectors.base import ConnectorError, QueryRefused
from datasources.connectors.sql import (
    CHUNK_ROWS,
    INSERT_CHUNK_ROWS,
    READ_ONLY_MESSAGE,
    SqlConnector,
    check_table_name,
    check_write,
    chunk_frame,
    frame_from_chunks,
    python_rows,
    scrub,
    sql_type,
)

# mysqlclient error codes.
ER_DBACCESS_DENIED = 1044
ER_ACCESS_DENIED = 1045
ER_BAD_DB = 1049
ER_TABLE_EXISTS = 1050
ER_NO_SUCH_TABLE = 1146
ER_NOT_ALLOWED_COMMAND = 1148
ER_READ_ONLY_TRANSACTION = 1792
ER_STATEMENT_TIMEOUT = 1969  # MariaDB max_statement_time
ER_QUERY_TIMEOUT = 3024  # MySQL MAX_EXECUTION_TIME
ER_LOAD_INFILE_DISABLED = (3948, 4166)
CR_CONNECTION_ERROR = 2002
CR_CONN_HOST_ERROR = 2003
CR_UNKNOWN_HOST = 2005
CR_SERVER_GONE = 2006
CR_SERVER_LOST = 2013
CR_SSL_CONNECTION_ERROR = 2026


class MySQLConnector(SqlConnector):
    mysql_dialect = True

    kind = "mysql"
    default_port = 3306
    options = {
        "connect_timeout": "Seconds to wait for the connection (default 10).",
        "statement_timeout": "Seconds a read may run before the server stops it (default 300).",
        "tls": "true to require TLS, verifying the server certificate and name.",
        "ca": "Path of the CA certificate (PEM) that signed the server certificate.",
        "charset": "Connection character set (default utf8mb4).",
    }

    # -- connection -------------------------------------------------------------

    def _connect(self, *, read_only: bool = True):
        import MySQLdb

        settings = self.settings
        options = settings.options or {}
        timeout = int(options.get("connect_timeout", 10))
        kwargs: dict[str, Any] = {
            "host": settings.host,
            "port": self.port,
            "user": settings.user,
            "password": settings.secret or "",
            "connect_timeout": timeout,
            "charset": options.get("charset", "utf8mb4"),
            "local_infile": 0,
            "multi_statements": False,
            "autocommit": False,
            "conv": self._conversions(),
        }
        if settings.database:
            kwargs["database"] = settings.database
        if options.get("tls"):
            kwargs["ssl_mode"] = "VERIFY_IDENTITY"
            kwargs["ssl"] = {"ca": options["ca"]} if options.get("ca") else {}
        try:
            connection = MySQLdb.connect(**kwargs)
        except MySQLdb.Error as exc:
            raise self._connect_error(exc, timeout) from None
        try:
            with connection.cursor() as cursor:
                if read_only:
                    cursor.execute("SET SESSION TRANSACTION READ ONLY")
        except MySQLdb.Error as exc:
            connection.close()
            raise self._query_error(exc, None) from None
        return connection

    @staticmethod
    def _conversions():
        from MySQLdb.constants import FIELD_TYPE
        from MySQLdb.converters import conversions

        conv = dict(conversions)
        # DECIMAL as float: numeric columns get a numeric dtype, not Decimal objects.
        conv[FIELD_TYPE.DECIMAL] = float
        conv[FIELD_TYPE.NEWDECIMAL] = float
        return conv

    def _connect_error(self, exc, timeout: int) -> ConnectorError:
        code = exc.args[0] if exc.args else None
        text = scrub(str(exc.args[1] if len(exc.args) > 1 else exc), self.settings.secret)
        settings = self.settings
        if code == ER_ACCESS_DENIED:
            message = f"login refused for user {settings.user!r} (wrong user or password)"
        elif code == ER_DBACCESS_DENIED:
            message = f"user {settings.user!r} may not use database {settings.database!r}"
        elif code == ER_BAD_DB:
            message = f"database {settings.database!r} does not exist"
        elif code == CR_SSL_CONNECTION_ERROR or "ssl" in text.lower() or "tls" in text.lower():
            message = f"TLS failure connecting to {self._where()}: {text}"
        elif code == CR_UNKNOWN_HOST:
            message = f"cannot connect to {self._where()}: unknown host"
        elif code in (CR_SERVER_LOST, CR_SERVER_GONE) and ("110" in text or "timeout" in text):
            message = f"cannot connect to {self._where()}: timed out after {timeout} s"
        elif code in (CR_CONNECTION_ERROR, CR_CONN_HOST_ERROR, CR_SERVER_LOST, CR_SERVER_GONE):
            message = f"cannot connect to {self._where()}: {text}"
        else:
            message = f"cannot connect to {self._where()}: {text}"
        return ConnectorError(message)

    def _query_error(self, exc, timeout: float | None) -> ConnectorError:
        code = exc.args[0] if exc.args else None
        text = scrub(str(exc.args[1] if len(exc.args) > 1 else exc), self.settings.secret)
        if code == ER_READ_ONLY_TRANSACTION:
            return QueryRefused(f"{READ_ONLY_MESSAGE}: {text}")
        if code in ER_LOAD_INFILE_DISABLED or code == ER_NOT_ALLOWED_COMMAND:
            return QueryRefused(f"{READ_ONLY_MESSAGE}: LOAD DATA LOCAL is disabled ({text})")
        if code in (ER_STATEMENT_TIMEOUT, ER_QUERY_TIMEOUT):
            return QueryRefused(f"the query exceeded the time limit of {timeout:g} s")
        if code == ER_NO_SUCH_TABLE:
            return ConnectorError(f"table does not exist: {text}")
        return ConnectorError(f"query failed: {text}")

    @staticmethod
    def _is_mariadb(connection) -> bool:
        return "mariadb" in connection.get_server_info().lower()

    # -- reading ----------------------------------------------------------------

    def _fetch(self, sql: str, timeout: float | None, *, chunk_rows: int = CHUNK_ROWS):
        """Run one read-only statement with a server time limit into a DataFrame."""
        import MySQLdb
        from MySQLdb.constants import FIELD_TYPE
        from MySQLdb.cursors import SSCursor

        if timeout is None:
            timeout = float((self.settings.options or {}).get("statement_timeout", 300))
        timeout = float(timeout)
        if timeout <= 0:
            raise ConnectorError("the time limit must be a positive number of seconds")
        numeric_types = {
            FIELD_TYPE.TINY,
            FIELD_TYPE.SHORT,
            FIELD_TYPE.LONG,
            FIELD_TYPE.LONGLONG,
            FIELD_TYPE.INT24,
            FIELD_TYPE.FLOAT,
            FIELD_TYPE.DOUBLE,
            FIELD_TYPE.DECIMAL,
            FIELD_TYPE.NEWDECIMAL,
            FIELD_TYPE.YEAR,
        }
        connection = self._connect(read_only=True)
        started = time.monotonic()
        try:
            mariadb = self._is_mariadb(connection)
            cursor = connection.cursor(SSCursor)
            try:
                if mariadb:
                    statement = (
                        f"SET STATEMENT tx_read_only=1, max_statement_time={timeout:.3f} FOR\n{sql}"
                    )
                else:
                    cursor.execute(f"SET SESSION MAX_EXECUTION_TIME = {int(timeout * 1000)}")
                    cursor.execute("START TRANSACTION READ ONLY")
                    statement = sql
                cursor.execute(statement)
                description = cursor.description or ()
                names = [column[0] for column in description]
                numeric = [column[1] in numeric_types for column in description]
                chunks = []
                while True:
                    rows = cursor.fetchmany(chunk_rows)
                    if not rows:
                        break
                    chunks.append(chunk_frame(rows, names, numeric))
                    if time.monotonic() - started > timeout:
                        raise QueryRefused(f"the query exceeded the time limit of {timeout:g} s")
            finally:
                with contextlib.suppress(MySQLdb.Error):
                    cursor.close()
            if not mariadb:
                connection.rollback()
        except MySQLdb.Error as exc:
            raise self._query_error(exc, timeout) from None
        finally:
            connection.close()
        return frame_from_chunks(chunks, names, numeric)

    def _table_preview_sql(self, parts: list[str], n: int) -> str:
        return f"SELECT * FROM {'.'.join(self._quote(part) for part in parts)} LIMIT {n}"

    @staticmethod
    def _quote(name: str) -> str:
        return "`" + name.replace("`", "``") + "`"

    def _rows(self, sql: str, params=()) -> list[tuple]:
        import MySQLdb

        connection = self._connect(read_only=True)
        try:
            with connection.cursor() as cursor:
                cursor.execute(sql, params)
                return list(cursor.fetchall())
        except MySQLdb.Error as exc:
            raise self._query_error(exc, None) from None
        finally:
            connection.close()

    def test(self) -> str:
        (version, database, user), *_ = self._rows("SELECT VERSION(), DATABASE(), CURRENT_USER()")
        kind = "MariaDB" if "mariadb" in version.lower() else "MySQL"
        return f"{kind} {version.split('-')[0]}, database {database or '(none)'} as {user}"

    def list_tables(self) -> list[str]:
        rows = self._rows(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = DATABASE() ORDER BY table_name"
        )
        return [row[0] for row in rows]

    def columns(self, table: str) -> list[tuple[str, str]]:
        parts = check_table_name(table)
        schema_sql = "%s" if len(parts) == 2 else "DATABASE()"
        params = (parts[0], parts[-1]) if len(parts) == 2 else (parts[-1],)
        rows = self._rows(
            "SELECT column_name, column_type FROM information_schema.columns "
            f"WHERE table_schema = {schema_sql} AND table_name = %s ORDER BY ordinal_position",
            params,
        )
        if not rows:
            raise ConnectorError(f"table {table!r} does not exist")
        return [(name, str(kind)) for name, kind in rows]

    # -- writing ----------------------------------------------------------------

    def write(self, frame: pd.DataFrame, table: str, mode: str = "fail") -> int:
        """Write atomically: new tables are filled under a scratch name then renamed.

        MySQL commits DDL implicitly, so CREATE/DROP cannot share the insert's
        transaction: the rows go into a scratch table in one transaction, and a single
        RENAME TABLE (atomic) puts it in place. Appends insert in one transaction.
        """
        import MySQLdb

        parts = check_write(self.settings, frame, table, mode)
        target = ".".join(self._quote(part) for part in parts)
        scratch_name = f"{parts[-1][:30]}__mlops_{uuid.uuid4().hex[:12]}"
        scratch = ".".join([*(self._quote(p) for p in parts[:-1]), self._quote(scratch_name)])
        names = [str(name) for name in frame.columns]
        # MySQLdb formats queries with %: a % in a column name must be doubled.
        columns_sql = ", ".join(self._quote(name).replace("%", "%%") for name in names)
        definition = ", ".join(
            f"{self._quote(name)} {sql_type(dtype, mysql=True)} NULL"
            for name, dtype in zip(names, frame.dtypes, strict=True)
        )
        values_sql = ", ".join(["%s"] * len(names))

        def insert(into: str) -> str:
            return f"INSERT INTO {into} ({columns_sql}) VALUES ({values_sql})"

        connection = self._connect(read_only=False)
        created_scratch = False
        try:
            cursor = connection.cursor()
            exists = self._table_exists(cursor, parts)
            if exists and mode == "fail":
                raise ConnectorError(f"table {table!r} already exists (mode fail)")
            if exists and mode == "append":
                self._insert(cursor, insert(target), frame)
                connection.commit()
                return len(frame)
            cursor.execute(f"CREATE TABLE {scratch} ({definition})")
            created_scratch = True
            self._insert(cursor, insert(scratch), frame)
            connection.commit()
            if exists:  # replace
                old = ".".join(
                    [*(self._quote(p) for p in parts[:-1]), self._quote(scratch_name + "_old")]
                )
                cursor.execute(f"RENAME TABLE {target} TO {old}, {scratch} TO {target}")
                created_scratch = False
                cursor.execute(f"DROP TABLE {old}")
            else:
                cursor.execute(f"RENAME TABLE {scratch} TO {target}")
                created_scratch = False
            return len(frame)
        except MySQLdb.Error as exc:
            connection.rollback()
            code = exc.args[0] if exc.args else None
            if code == ER_TABLE_EXISTS and mode == "fail":
                raise ConnectorError(f"table {table!r} already exists (mode fail)") from None
            text = scrub(str(exc.args[1] if len(exc.args) > 1 else exc), self.settings.secret)
            raise ConnectorError(
                f"writing table {table!r} failed, nothing written: {text}"
            ) from None
        except BaseException:
            connection.rollback()
            raise
        finally:
            if created_scratch:
                with contextlib.suppress(MySQLdb.Error):
                    connection.cursor().execute(f"DROP TABLE IF EXISTS {scratch}")
            connection.close()

    @staticmethod
    def _table_exists(cursor, parts: list[str]) -> bool:
        schema_sql = "%s" if len(parts) == 2 else "DATABASE()"
        params = (parts[0], parts[-1]) if len(parts) == 2 else (parts[-1],)
        cursor.execute(
            "SELECT COUNT(*) FROM information_schema.tables "
            f"WHERE table_schema = {schema_sql} AND table_name = %s",
            params,
        )
        return cursor.fetchone()[0] > 0

    @staticmethod
    def _insert(cursor, sql: str, frame: pd.DataFrame) -> None:
        for start in range(0, len(frame), INSERT_CHUNK_ROWS):
            cursor.executemany(sql, python_rows(frame, start, start + INSERT_CHUNK_ROWS))
