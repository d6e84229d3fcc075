"""PostgreSQL, through psycopg 3 (imported inside the methods).

Reads are read-only by the server: each runs in `BEGIN READ ONLY` with a
`statement_timeout` set for the transaction, through a server-side (named) cursor
fetched in chunks. A named cursor is declared over the extended protocol, so the server
itself refuses a second statement; the query check refuses it before it is sent.
Writes run in one transaction (PostgreSQL DDL is transactional): any error rolls back
the create/drop and every row.
"""

import time
from typing import Any

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
    frame_from_chunks,
    python_rows,
    scrub,
    sql_type,
)

# OIDs of int2, int4, int8, oid, float4, float8, numeric.
NUMERIC_OIDS = {21, 23, 20, 26, 700, 701, 1700}

# Predefined roles by what membership gives (pg_has_role MEMBER: SET ROLE, or
# set_config('role', ...) from a function, reaches them even without INHERIT).
WRITE_ROLES = ("pg_write_all_data",)
FILE_ROLES = ("pg_read_server_files", "pg_write_server_files", "pg_execute_server_program")
ADMIN_ROLES = ("pg_signal_backend", "pg_checkpoint", "pg_create_subscription", "pg_maintain")
# dblink opens a second connection, outside the read-only transaction.
DBLINK_FUNCTIONS = ("dblink_exec", "dblink", "dblink_connect", "dblink_connect_u")
# Tables, views and foreign tables the account may change, and how many are listed.
LISTED_TABLES = 3
RIGHTS_SQL = """
SELECT r.rolsuper, r.rolcreaterole, r.rolcreatedb, r.rolreplication,
    ARRAY(SELECT b.rolname::text FROM pg_roles b WHERE b.rolname = ANY(%(roles)s)
          AND pg_has_role(current_user, b.oid, 'MEMBER') ORDER BY 1),
    has_database_privilege(current_database(), 'CREATE'),
    ARRAY(SELECT n.nspname::text FROM pg_namespace n
          WHERE has_schema_privilege(n.oid, 'CREATE') AND n.nspname NOT LIKE 'pg\\_%%'
          AND n.nspname <> 'information_schema' ORDER BY 1),
    ARRAY(SELECT format('%%I.%%I', n.nspname, c.relname) FROM pg_class c
          JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE c.relkind IN ('r', 'p', 'v', 'f') AND n.nspname NOT LIKE 'pg\\_%%'
          AND n.nspname <> 'information_schema'
          AND has_table_privilege(c.oid, 'INSERT, UPDATE, DELETE, TRUNCATE')
          ORDER BY 1 LIMIT %(listed)s + 1),
    ARRAY(SELECT DISTINCT p.proname::text FROM pg_proc p
          WHERE p.proname = ANY(%(dblink)s) AND has_function_privilege(p.oid, 'EXECUTE')
          ORDER BY 1)
FROM pg_roles r WHERE r.rolname = current_user
"""


def role_rights(row: tuple) -> AccountRights:
    """AccountRights from the row of RIGHTS_SQL."""
    superuser, createrole, createdb, replication, roles, create_db, schemas, tables, dblink = row
    if superuser:
        return AccountRights(
            write=("superuser",), server_files=("superuser",), admin=("superuser",)
        )
    write = [f"member of {role}" for role in roles if role in WRITE_ROLES]
    write += [f"INSERT/UPDATE/DELETE on {table}" for table in tables[:LISTED_TABLES]]
    if len(tables) > LISTED_TABLES:
        write.append("INSERT/UPDATE/DELETE on more tables")
    write += ["CREATE on the database"] if create_db else []
    write += [f"CREATE on schema {schema}" for schema in schemas]
    write += ["CREATEDB"] if createdb else []
    write += [f"{name} (dblink: a second connection, not read-only)" for name in dblink]
    admin = [f"member of {role}" for role in roles if role in ADMIN_ROLES]
    admin += ["CREATEROLE"] if createrole else []
    admin += ["REPLICATION"] if replication else []
    files = tuple(f"member of {role}" for role in roles if role in FILE_ROLES)
    return AccountRights(write=tuple(write), server_files=files, admin=tuple(admin))


class PostgreSQLConnector(SqlConnector):
    kind = "postgresql"
    default_port = 5432
    options = {
        "connect_timeout": "Seconds to wait for the connection (default 10).",
        "statement_timeout": "Seconds a read may run before the server stops it (default 300).",
        "tls": "true to require TLS; with `ca`, the server certificate and name are verified.",
        "ca": "Path of the CA certificate (PEM) that signed the server certificate.",
    }

    # -- connection -------------------------------------------------------------

    def _connect(self, *, read_only: bool = True):
        import psycopg
        from psycopg.types.numeric import FloatLoader

        settings = self.settings
        options = settings.options or {}
        timeout = int(options.get("connect_timeout", 10))
        kwargs: dict[str, Any] = {
            "host": settings.host,
            "port": self.port,
            "dbname": settings.database or "postgres",
            "user": settings.user,
            "password": settings.secret or "",
            "connect_timeout": max(timeout, 2),  # libpq treats 1 as 2
            "application_name": "mlops",
        }
        if options.get("tls"):
            if options.get("ca"):
                kwargs.update(sslmode="verify-full", sslrootcert=options["ca"])
            else:
                kwargs["sslmode"] = "require"
        else:
            kwargs["sslmode"] = "prefer"
        try:
            connection = psycopg.connect(**kwargs)
        except psycopg.Error as exc:
            raise self._connect_error(exc, timeout) from None
        connection.read_only = read_only
        # numeric as float: numeric columns get a numeric dtype, not Decimal objects.
        connection.adapters.register_loader("numeric", FloatLoader)
        return connection

    def _connect_error(self, exc, timeout: int) -> ConnectorError:
        text = scrub(str(exc).strip(), self.settings.secret)
        lower = text.lower()
        settings = self.settings
        if "password authentication failed" in lower or (
            "role" in lower and "does not exist" in lower
        ):
            message = f"login refused for user {settings.user!r} (wrong user or password)"
        elif "no pg_hba.conf entry" in lower or "authentication failed" in lower:
            message = f"login refused for user {settings.user!r}: {text}"
        elif "database" in lower and "does not exist" in lower:
            message = f"database {settings.database or 'postgres'!r} does not exist"
        elif "ssl" in lower or "certificate" in lower:
            message = f"TLS failure connecting to {self._where()}: {text}"
        elif "timeout expired" in lower or "timed out" in lower:
            message = f"cannot connect to {self._where()}: timed out after {timeout} s"
        elif "could not translate host name" in lower or "name or service not known" in lower:
            message = f"cannot connect to {self._where()}: unknown host"
        else:
            message = f"cannot connect to {self._where()}: {text}"
        return ConnectorError(message)

    def _query_error(self, exc, timeout: float | None) -> ConnectorError:
        from psycopg import errors

        text = scrub(str(exc).strip(), self.settings.secret)
        if isinstance(exc, errors.ReadOnlySqlTransaction) or "data-modifying" in text:
            return QueryRefused(f"{READ_ONLY_MESSAGE}: {text}")
        if isinstance(exc, errors.QueryCanceled):
            limit = f" of {timeout:g} s" if timeout else ""
            return QueryRefused(f"the query exceeded the time limit{limit}")
        if "multiple commands" in text:
            return QueryRefused("only one SQL statement may be run: the query has several")
        if isinstance(exc, errors.UndefinedTable):
            return ConnectorError(f"table does not exist: {text}")
        return ConnectorError(f"query failed: {text}")

    # -- reading ----------------------------------------------------------------

    def _fetch(self, sql, timeout: float | None, *, chunk_rows: int = CHUNK_ROWS):
        """Run one read-only statement with a server time limit into a DataFrame."""
        import psycopg

        if timeout is None:
            timeout = float((self.settings.options or {}).get("statement_timeout", 300))
        timeout = float(timeout)
        if timeout <= 0:
            raise ConnectorError("the time limit must be a positive number of seconds")
        connection = self._connect(read_only=True)
        started = time.monotonic()
        try:
            with connection.cursor() as setup:
                # Starts the transaction: BEGIN READ ONLY (connection.read_only).
                setup.execute(
                    "SELECT set_config('statement_timeout', %s, true)",
                    [str(max(1, int(timeout * 1000)))],
                )
            with connection.cursor(name="mlops_read") as cursor:
                cursor.itersize = chunk_rows
                cursor.execute(sql)
                description = cursor.description or ()
                names = [column.name for column in description]
                numeric = [column.type_code in NUMERIC_OIDS for column in description]
                chunks = []
                while True:
                    rows = cursor.fetchmany(chunk_rows)
                    if not rows:
                        break
                    chunks.append(chunk_frame(rows, names, numeric))
                    # statement_timeout counts each FETCH; this bounds the whole read.
                    if time.monotonic() - started > timeout:
                        raise QueryRefused(f"the query exceeded the time limit of {timeout:g} s")
            connection.rollback()
        except psycopg.Error as exc:
            raise self._query_error(exc, timeout) from None
        finally:
            connection.close()
        return frame_from_chunks(chunks, names, numeric)

    def _table_preview_sql(self, parts: list[str], n: int):
        from psycopg import sql

        return sql.SQL("SELECT * FROM {} LIMIT {}").format(sql.Identifier(*parts), n)

    def _rows(self, query, params=()) -> list[tuple]:
        import psycopg

        connection = self._connect(read_only=True)
        try:
            with connection.cursor() as cursor:
                cursor.execute(query, params)
                return list(cursor.fetchall())
        except psycopg.Error as exc:
            raise self._query_error(exc, None) from None
        finally:
            connection.close()

    def test(self) -> str:
        (version, database, user), *_ = self._rows(
            "SELECT current_setting('server_version'), current_database(), current_user"
        )
        return f"PostgreSQL {version.split()[0]}, database {database} as {user}"

    def account_rights(self) -> AccountRights:
        """Superuser, role attributes, predefined roles, CREATE on the database and its
        schemas, tables it may change, and dblink, as the server reports them."""
        params = {
            "roles": [*WRITE_ROLES, *FILE_ROLES, *ADMIN_ROLES],
            "dblink": list(DBLINK_FUNCTIONS),
            "listed": LISTED_TABLES,
        }
        (row,) = self._rows(RIGHTS_SQL, params)
        return role_rights(row)

    def list_tables(self) -> list[str]:
        rows = self._rows(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = current_schema() ORDER BY table_name"
        )
        return [row[0] for row in rows]

    def columns(self, table: str) -> list[tuple[str, str]]:
        parts = check_table_name(table)
        schema = parts[0] if len(parts) == 2 else None
        rows = self._rows(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = coalesce(%s, current_schema()) AND table_name = %s "
            "ORDER BY ordinal_position",
            (schema, parts[-1]),
        )
        if not rows:
            raise ConnectorError(f"table {table!r} does not exist")
        return [(name, kind) for name, kind in rows]

    # -- writing ----------------------------------------------------------------

    def write(self, frame: pd.DataFrame, table: str, mode: str = "fail") -> int:
        import psycopg
        from psycopg import sql

        parts = check_write(self.settings, frame, table, mode)
        target = sql.Identifier(*parts)
        names = [str(name) for name in frame.columns]
        definition = sql.SQL(", ").join(
            sql.SQL("{} {} NULL").format(
                sql.Identifier(name), sql.SQL(sql_type(dtype, mysql=False))
            )
            for name, dtype in zip(names, frame.dtypes, strict=True)
        )
        copy_sql = sql.SQL("COPY {} ({}) FROM STDIN").format(
            target, sql.SQL(", ").join(sql.Identifier(name) for name in names)
        )
        connection = self._connect(read_only=False)
        try:
            with connection.transaction(), connection.cursor() as cursor:
                cursor.execute(
                    "SELECT count(*) FROM information_schema.tables "
                    "WHERE table_schema = coalesce(%s, current_schema()) AND table_name = %s",
                    (parts[0] if len(parts) == 2 else None, parts[-1]),
                )
                exists = cursor.fetchone()[0] > 0
                if exists and mode == "fail":
                    raise ConnectorError(f"table {table!r} already exists (mode fail)")
                if exists and mode == "replace":
                    cursor.execute(sql.SQL("DROP TABLE {}").format(target))
                if not exists or mode == "replace":
                    cursor.execute(sql.SQL("CREATE TABLE {} ({})").format(target, definition))
                for start in range(0, len(frame), INSERT_CHUNK_ROWS):
                    rows = python_rows(frame, start, start + INSERT_CHUNK_ROWS)
                    with cursor.copy(copy_sql) as copy:
                        for row in rows:
                            copy.write_row(row)
            return len(frame)
        except psycopg.Error as exc:
            text = scrub(str(exc).strip(), self.settings.secret)
            raise ConnectorError(
                f"writing table {table!r} failed, nothing written: {text}"
            ) from None
        finally:
            connection.close()
