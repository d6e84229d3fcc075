"""MySQL and MariaDB, through mysqlclient (`MySQLdb`) and, on MariaDB, ConnectorX.

Both drivers are imported inside the methods.

Reads are read-only by the server. Through mysqlclient, on MariaDB every query runs as
`SET STATEMENT tx_read_only=1, max_statement_time=N FOR <query>`, on MySQL inside
`START TRANSACTION READ ONLY` with `MAX_EXECUTION_TIME`; the session is read-only too,
so DDL is refused as well. The client never sends several statements (multi-statements
off, a query with a second statement is refused before it is sent) and has
`LOAD DATA LOCAL` disabled.

On MariaDB the rows come through ConnectorX, several times faster (binary protocol
straight into Arrow, no Python object per value). It opens its own connection, prepares
the query, runs `SET SESSION TRANSACTION READ ONLY` and `SET SESSION max_statement_time
= N` on that connection, then executes the query once (no COUNT or schema query: Arrow
output, no partitioning). A prepared statement is one statement only; preparing resolves
names without executing anything (no stored function runs), and the read-only session
refuses writes, DDL and `LOAD DATA`.

mysqlclient reads instead when ConnectorX is not installed, on MySQL (whose time limit
is another variable), for sources with TLS or a CA file or another character set (its
URL cannot carry them), and when ConnectorX fails on its own side, such as a column
type it cannot convert (then within what is left of the time limit; the session was
read-only, so the first attempt changed nothing).

What the server allows a read-only transaction to do that is still a write
(`SELECT ... INTO OUTFILE`) is refused by the query check, on both paths: it refuses the
words OUTFILE and DUMPFILE anywhere in a query.
"""

import contextlib
import logging
import re
import time
import uuid
from typing import Any
from urllib.parse import quote

import pandas as pd

from datasources.connectors.base import AccountRights, ConnectorError, QueryRefused
from datasources.connectors.sql import (
    CHUNK_ROWS,
    INSERT_CHUNK_ROWS,
    READ_ONLY_MESSAGE,
    SqlConnector,
    check_table_name,
    check_write,
    chunk_frame,
    frame_from_arrow,
    frame_from_chunks,
    python_rows,
    scrub,
    sql_type,
)

logger = logging.getLogger(__name__)

# A server error in a ConnectorX message: "MySqlError { ERROR 1792 (25006): Cannot ... }".
CONNECTORX_SERVER_ERROR = re.compile(r"ERROR (?P<code>\d+) \(\w+\): (?P<text>.*?)\s*\}?\s*$", re.S)

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


# Privileges that only read, or whose effects end with the session. Any privilege in
# neither this set, WRITE_PRIVILEGES nor FILE (SUPER, PROCESS, SHUTDOWN, CREATE USER,
# REPLICATION ..., the *_ADMIN privileges, PROXY) counts as administering the server.
READ_PRIVILEGES = frozenset(
    {
        "USAGE",
        "SELECT",
        "SHOW VIEW",
        "SHOW DATABASES",
        "SHOW CREATE ROUTINE",
        "EXECUTE",
        "LOCK TABLES",
        "CREATE TEMPORARY TABLES",
        "REFERENCES",
    }
)
WRITE_PRIVILEGES = frozenset(
    {
        "INSERT",
        "UPDATE",
        "DELETE",
        "DELETE HISTORY",
        "DELETE VERSIONING ROWS",
        "CREATE",
        "DROP",
        "ALTER",
        "INDEX",
        "CREATE VIEW",
        "CREATE ROUTINE",
        "ALTER ROUTINE",
        "TRIGGER",
        "EVENT",
    }
)
# Roles followed from the account, at most: a guard against a cycle.
MAX_ROLES = 20


def _scan_top_level(text: str, needle: str) -> int:
    """Where `needle` (upper case) starts in `text` outside quotes and parentheses, or -1."""
    upper, depth, quote = text.upper(), 0, ""
    for index, char in enumerate(text):
        if quote:
            quote = "" if char == quote else quote
        elif char in "`'\"":
            quote = char
        elif char in "()":
            depth += 1 if char == "(" else -1
        elif depth == 0 and upper.startswith(needle, index):
            return index
    return -1


def _split_top_level(text: str) -> list[str]:
    parts = []
    while (comma := _scan_top_level(text, ",")) >= 0:
        parts.append(text[:comma].strip())
        text = text[comma + 1 :]
    return [*parts, text.strip()]


def grant_rights(lines: list[str]) -> tuple[AccountRights, list[str]]:
    """The rights in the lines of SHOW GRANTS, and the roles those lines grant.

    Labels name the privilege and, unless it is *.*, where it applies ("INSERT on
    shop.*"); nothing after TO (the grantee, a password hash) is ever kept.
    """
    write, files, admin, roles = [], [], [], []
    for line in lines:
        if not line.upper().startswith("GRANT "):
            continue  # SET DEFAULT ROLE ...
        body = line[len("GRANT ") :]
        to = _scan_top_level(body, " TO ")
        head, tail = (body[:to], body[to:]) if to >= 0 else (body, "")
        on = _scan_top_level(head, " ON ")
        if on < 0:
            roles.extend(_split_top_level(head))
            continue
        target = head[on + len(" ON ") :].strip().replace("`", "")
        where = "" if target == "*.*" else f" on {target}"
        for privilege in _split_top_level(head[:on]):
            name = " ".join(re.sub(r"\(.*\)", "", privilege).split()).upper()
            if name in ("ALL", "ALL PRIVILEGES"):
                write.append(f"ALL PRIVILEGES on {target}")
                if target == "*.*":
                    files.append("FILE, by ALL PRIVILEGES")
                    admin.append("SUPER, by ALL PRIVILEGES")
            elif name in WRITE_PRIVILEGES:
                write.append(f"{name} on {target}")
            elif name == "FILE":
                files.append(f"FILE{where}")
            elif name not in READ_PRIVILEGES:
                admin.append(f"{name}{where}")
        if _scan_top_level(tail, " GRANT OPTION") >= 0:
            admin.append(f"GRANT OPTION{where}")
    rights = AccountRights(
        write=tuple(dict.fromkeys(write)),
        server_files=tuple(dict.fromkeys(files)),
        admin=tuple(dict.fromkeys(admin)),
    )
    return rights, roles


def statement_seconds(seconds: float) -> str:
    """`seconds` for max_statement_time, never rounded down to 0, which means no limit."""
    return f"{max(seconds, 0.001):.3f}"


class ConnectorXFailed(Exception):
    """ConnectorX could not read the rows itself (not a refusal by the server)."""


def numeric_types() -> set[int]:
    """mysqlclient field types whose values are numbers."""
    from MySQLdb.constants import FIELD_TYPE as T

    return {
        T.TINY,
        T.SHORT,
        T.LONG,
        T.LONGLONG,
        T.INT24,
        T.FLOAT,
        T.DOUBLE,
        T.DECIMAL,
        T.NEWDECIMAL,
        T.YEAR,
    }


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
        return self._server_error(code, text, timeout)

    def _server_error(self, code: int | None, text: str, timeout: float | None):
        """The ConnectorError for a server error code and its (scrubbed) message."""
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

    def _fetch(self, sql: str, timeout: float | None) -> pd.DataFrame:
        """Run one read-only statement with a server time limit into a DataFrame.

        The mysqlclient connection opened first checks the login, the database and the
        server kind with clear errors (ConnectorX would retry a failing login for 30 s);
        on MariaDB the rows then come through ConnectorX when it can read them, else
        through that connection, within what is left of the time limit.
        """
        timeout = self._time_limit(timeout)
        connection = self._connect(read_only=True)
        try:
            started = time.monotonic()
            if self._is_mariadb(connection) and self._connectorx_usable():
                frame = self._fetch_arrow(sql, timeout)
                if frame is not None:
                    return frame
            spent = time.monotonic() - started
            return self._fetch_rows(connection, sql, timeout, spent=spent)
        finally:
            connection.close()

    def _time_limit(self, timeout: float | None) -> float:
        if timeout is None:
            timeout = float((self.settings.options or {}).get("statement_timeout", 300))
        timeout = float(timeout)
        if timeout <= 0:
            raise ConnectorError("the time limit must be a positive number of seconds")
        return timeout

    def _connectorx_usable(self) -> bool:
        """Whether ConnectorX is installed and can connect as mysqlclient would.

        Its connection URL has no TLS settings and no character set, so sources that use
        them read through mysqlclient.
        """
        options = self.settings.options or {}
        if options.get("tls") or options.get("ca"):
            return False
        if options.get("charset", "utf8mb4") not in ("utf8mb4", "utf8", "utf8mb3"):
            return False
        try:
            import connectorx  # noqa: F401
        except ImportError:
            return False
        return True

    def _fetch_arrow(self, sql: str, timeout: float) -> pd.DataFrame | None:
        """The rows through ConnectorX, or None when it cannot read them (the caller
        then reads through mysqlclient)."""
        try:
            # No variable holds the Table: frame_from_arrow frees it column by column.
            return frame_from_arrow(self._arrow_table(sql, timeout))
        except ConnectorXFailed as exc:
            logger.info("ConnectorX could not read, reading through mysqlclient: %s", exc)
            return None

    def _arrow_table(self, sql: str, timeout: float):
        """Run the statement through ConnectorX into a pyarrow Table (see the module
        docstring for what runs on its connection).

        Raises the server's refusals as ConnectorError, and ConnectorXFailed for what
        ConnectorX itself cannot do.
        """
        import connectorx

        session = [
            "SET SESSION TRANSACTION READ ONLY",
            f"SET SESSION max_statement_time = {statement_seconds(timeout)}",
        ]
        try:
            return connectorx.read_sql(
                self._connectorx_url(), sql, return_type="arrow", pre_execution_query=session
            )
        except Exception as exc:
            failure = exc
        except BaseException as exc:
            # A Rust panic (a type ConnectorX does not convert, such as MYSQL_TYPE_NULL)
            # arrives as pyo3's PanicException, which is not an Exception.
            if type(exc).__name__ != "PanicException":
                raise
            failure = exc
        secret = self.settings.secret
        text = scrub(scrub(str(failure), secret), quote(secret or "", safe=""))
        error = CONNECTORX_SERVER_ERROR.search(text)
        if error:
            raise self._server_error(int(error["code"]), error["text"].strip(), timeout)
        raise ConnectorXFailed(text)

    def _connectorx_url(self) -> str:
        settings = self.settings
        options = settings.options or {}
        host = f"[{settings.host}]" if ":" in settings.host else settings.host
        user = quote(settings.user or "", safe="")
        password = quote(settings.secret or "", safe="")
        database = quote(settings.database or "", safe="")
        timeout_ms = int(float(options.get("connect_timeout", 10)) * 1000)
        # mysqlclient reaches "localhost" through the Unix socket and any other host
        # over TCP; ConnectorX would use the socket for 127.0.0.1 too.
        socket = "true" if settings.host == "localhost" else "false"
        return (
            f"mysql://{user}:{password}@{host}:{self.port}/{database}"
            f"?prefer_socket={socket}&tcp_connect_timeout_ms={timeout_ms}"
        )

    def _fetch_rows(
        self, connection, sql: str, timeout: float, *, spent: float = 0.0, chunk_rows=CHUNK_ROWS
    ) -> pd.DataFrame:
        """Read through mysqlclient, in chunks; `spent` seconds of the limit are gone."""
        import MySQLdb
        from MySQLdb.cursors import SSCursor

        left = timeout - spent
        if left <= 0:
            raise QueryRefused(f"the query exceeded the time limit of {timeout:g} s")
        started = time.monotonic() - spent
        try:
            mariadb = self._is_mariadb(connection)
            cursor = connection.cursor(SSCursor)
            try:
                if mariadb:
                    statement = (
                        "SET STATEMENT tx_read_only=1, "
                        f"max_statement_time={statement_seconds(left)} FOR\n{sql}"
                    )
                else:
                    cursor.execute(f"SET SESSION MAX_EXECUTION_TIME = {max(1, int(left * 1000))}")
                    cursor.execute("START TRANSACTION READ ONLY")
                    statement = sql
                cursor.execute(statement)
                description = cursor.description or ()
                names = [column[0] for column in description]
                numbers = numeric_types()
                numeric = [column[1] in numbers for column in description]
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

    def account_rights(self) -> AccountRights:
        """The account's grants (SHOW GRANTS: on MariaDB with those of PUBLIC and of
        its default role) and those of every role granted to it, enabled or not: a role
        the account may enable is a right it has."""
        import MySQLdb

        connection = self._connect(read_only=True)
        try:
            with connection.cursor() as cursor:
                cursor.execute("SHOW GRANTS")
                rights, roles = grant_rights([row[0] for row in cursor.fetchall()])
                if roles and self._is_mariadb(connection):
                    rights = self._mariadb_role_rights(cursor, rights, roles)
                elif roles:
                    # MySQL lists a role's privileges with USING; the role names are
                    # quoted as SHOW GRANTS printed them.
                    cursor.execute(f"SHOW GRANTS FOR CURRENT_USER() USING {', '.join(roles)}")
                    rights = rights.merged(grant_rights([r[0] for r in cursor.fetchall()])[0])
                return rights
        except MySQLdb.Error as exc:
            raise self._query_error(exc, None) from None
        finally:
            connection.close()

    @staticmethod
    def _mariadb_role_rights(cursor, rights: AccountRights, roles: list[str]) -> AccountRights:
        """MariaDB shows a role's grants only while it is the current role: each is set
        in turn on this connection (closed afterwards), and its roles followed."""
        import MySQLdb

        seen, unreadable = set(), []
        while roles and len(seen) < MAX_ROLES:
            role = roles.pop(0)
            if role in seen:
                continue
            seen.add(role)
            try:
                cursor.execute(f"SET ROLE {role}")
                cursor.execute("SHOW GRANTS")
            except MySQLdb.Error:
                unreadable.append(role.replace("`", ""))
                continue
            found, more = grant_rights([row[0] for row in cursor.fetchall()])
            rights = rights.merged(found)
            roles.extend(more)
        if roles:
            unreadable.append(f"more than {MAX_ROLES} roles")
        if unreadable:
            note = f"the grants of role {', '.join(unreadable)} could not be read"
            rights = rights.merged(AccountRights(unverified=note))
        return rights

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
