"""Helpers shared by the SQL connectors: the single-statement read check, names,
chunked and Arrow DataFrame building and writing checks."""

import contextlib
import ctypes
import re
from typing import Any

import numpy as np
import pandas as pd
import sqlparse

from datasources.connectors.base import (
    ConnectionSettings,
    Connector,
    ConnectorError,
    QueryRefused,
    check_write_allowed,
)

CHUNK_ROWS = 50_000
INSERT_CHUNK_ROWS = 5_000
# Converting Arrow columns, freed memory is handed back each time this much was freed.
RELEASE_BYTES = 8 * 2**20

# First keyword of a query a read may run; anything else is refused as a write.
READ_KEYWORDS = {"SELECT", "WITH", "VALUES", "TABLE", "SHOW", "EXPLAIN", "DESCRIBE", "DESC"}
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,62}$")
READ_ONLY_MESSAGE = "the data source is read-only here: the query tried to write"
# Words of SELECT ... INTO OUTFILE/DUMPFILE, which MySQL allows in a read-only transaction.
FILE_WRITE_WORDS = re.compile(r"\b(OUTFILE|DUMPFILE)\b", re.IGNORECASE)


def scrub(message: str, secret: str) -> str:
    """A message with the secret blanked out, should a driver ever echo it."""
    return message.replace(secret, "***") if secret else message


def single_read_statement(query: str, *, mysql: bool) -> str:
    """The one statement of a query, without its trailing semicolon, or QueryRefused.

    A first line of defence only (the server enforces read-only): refuses a second
    statement, a query that does not start like a read, and on MySQL executable
    comments and SELECT ... INTO OUTFILE/DUMPFILE, which a read-only transaction allows
    (on MySQL the words OUTFILE and DUMPFILE are refused anywhere in the query).
    """
    from sqlparse import tokens as T

    if not isinstance(query, str) or not query.strip():
        raise QueryRefused("the query is empty")
    statements = [
        statement
        for statement in sqlparse.parse(query)
        if any(
            not token.is_whitespace and token.ttype not in T.Comment
            for token in statement.flatten()
        )
    ]
    if len(statements) != 1:
        raise QueryRefused("only one SQL statement may be run: the query has several")
    tokens = list(statements[0].flatten())
    # Drop trailing whitespace/comments and one trailing semicolon.
    end = len(tokens)
    while end and (tokens[end - 1].is_whitespace or tokens[end - 1].ttype in T.Comment):
        end -= 1
    if end and tokens[end - 1].match(T.Punctuation, ";"):
        end -= 1
    tokens = tokens[:end]
    significant = [t for t in tokens if not t.is_whitespace and t.ttype not in T.Comment]
    if any(t.match(T.Punctuation, ";") for t in significant):
        raise QueryRefused("only one SQL statement may be run: the query has a second one")
    if mysql and any(t.ttype in T.Comment and re.match(r"/\*M?!", t.value) for t in tokens):
        raise QueryRefused("executable comments (/*! ... */) are not allowed in a query")
    if not significant:
        raise QueryRefused("the query is empty")
    first = significant[0].value.upper()
    if first != "(" and first not in READ_KEYWORDS:
        raise QueryRefused(f"{READ_ONLY_MESSAGE} ({first} is not a read)")
    # Searched in the whole text, comments and strings included: MySQL reads `--x`
    # (no space) as code where sqlparse sees a comment, so a token check can be fooled.
    if mysql and FILE_WRITE_WORDS.search(query):
        raise QueryRefused(f"{READ_ONLY_MESSAGE} (SELECT ... INTO OUTFILE/DUMPFILE)")
    return "".join(t.value for t in tokens).strip()


def check_table_name(table: str) -> list[str]:
    """The parts of `table` or `schema.table`, each a plain identifier, or ConnectorError."""
    parts = table.split(".") if isinstance(table, str) else []
    if not 1 <= len(parts) <= 2 or not all(IDENTIFIER.match(part) for part in parts):
        raise ConnectorError(
            f"{table!r} is not a valid table name (letters, digits and _, optionally schema.table)"
        )
    return parts


def frame_from_chunks(chunks: list[pd.DataFrame], names: list[str], numeric: list[bool]):
    """Concatenate chunk frames, making the columns the server says are numeric numeric."""
    if chunks:
        frame = pd.concat(chunks, ignore_index=True) if len(chunks) > 1 else chunks[0]
    else:
        frame = pd.DataFrame({name: pd.Series([], dtype=object) for name in names})
        frame.columns = names
    for index, is_numeric in enumerate(numeric):
        column = frame.iloc[:, index]
        if is_numeric and column.dtype == object:
            frame.isetitem(index, pd.to_numeric(column, errors="coerce"))
    return frame


def chunk_frame(rows, names: list[str], numeric: list[bool]) -> pd.DataFrame:
    """A DataFrame of a list of row tuples, built column by column.

    Numeric columns (by the cursor description) go straight to numpy arrays; one with a
    NULL becomes float with NaN. Other columns let pandas infer the type (datetimes,
    strings, booleans).
    """
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in names]
    data = {}
    for index, values in enumerate(columns):
        array = None
        if numeric[index] and values:
            array = np.array(values)
            if array.dtype.kind not in "iufb":
                array = pd.to_numeric(pd.Series(np.array(values, dtype=object)), errors="coerce")
        if array is None:
            array = np.array(values, dtype=object) if values else np.array([], dtype=object)
            array = pd.Series(array, copy=False).infer_objects()
        data[index] = array
    frame = pd.DataFrame(data, copy=False)
    frame.columns = names
    return frame


def frame_from_arrow(table) -> pd.DataFrame:
    """A DataFrame of a pyarrow Table, with the dtypes `chunk_frame` gives.

    Integers become int64 (float64 with NaN when they hold a NULL), floats float64,
    decimals float64 and times of day timedelta64. Columns are converted one at a time,
    each dropped from the Table once converted, so the peak stays near the size of the
    Table plus one column rather than twice the Table.
    """
    names = table.column_names
    columns = {}
    freed = 0
    for index in range(len(names)):
        column = table.column(0)
        table = table.remove_column(0)
        cast = _arrow_column(column, column.type)
        columns[index] = (column if cast is None else cast).to_pandas()
        del cast
        freed += column.nbytes
        del column
        if freed >= RELEASE_BYTES:
            release_free_memory()
            freed = 0
    frame = pd.DataFrame(columns, copy=False)
    frame.columns = names
    return frame


def release_free_memory() -> None:
    """Give memory that native code freed back to the system.

    glibc keeps what other threads free (ConnectorX fills its Arrow buffers in its own
    threads) in those threads' arenas, where the main thread's allocations cannot reuse
    it: without this, converting a Table would need its size twice over.
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).malloc_trim(0)


def _arrow_column(column, kind):
    """`column` cast to the type the frame should hold, or None when it already does."""
    import pyarrow as pa
    import pyarrow.compute as pc

    types = pa.types
    if kind == pa.uint64():
        # numpy makes Python ints int64 unless one needs the 64th bit: the same here.
        largest = pc.max(column).as_py() or 0
        return column.cast(pa.int64()) if largest < 2**63 else None
    if types.is_integer(kind) and kind != pa.int64():
        return column.cast(pa.int64())
    if types.is_decimal(kind) or (types.is_floating(kind) and kind != pa.float64()):
        return column.cast(pa.float64())
    if types.is_time(kind):
        whole = pa.int64() if types.is_time64(kind) else pa.int32()
        return column.cast(whole).cast(pa.int64()).cast(pa.duration(kind.unit))
    return None


def python_rows(frame: pd.DataFrame, start: int, stop: int) -> list[tuple]:
    """Rows of a slice of a frame as Python values, NaN/NaT/NA as None."""
    part = frame.iloc[start:stop]
    columns = []
    for _, column in part.items():
        mask = column.isna().to_numpy()
        if pd.api.types.is_datetime64_any_dtype(column.dtype):
            values = list(column.dt.to_pydatetime())
        elif pd.api.types.is_bool_dtype(column.dtype):
            values = [bool(v) if v is not pd.NA else None for v in column]
        else:
            values = column.astype(object).tolist()
            values = [v.item() if isinstance(v, np.generic) else v for v in values]
        columns.append(
            [None if missing else value for value, missing in zip(values, mask, strict=True)]
        )
    return list(zip(*columns, strict=True))


def sql_type(dtype, *, mysql: bool) -> str:
    types = pd.api.types
    if types.is_bool_dtype(dtype):
        return "BOOLEAN"
    if types.is_integer_dtype(dtype):
        return "BIGINT"
    if types.is_float_dtype(dtype):
        return "DOUBLE" if mysql else "DOUBLE PRECISION"
    if types.is_datetime64_any_dtype(dtype):
        if mysql:
            return "DATETIME(6)"
        return "TIMESTAMPTZ" if getattr(dtype, "tz", None) else "TIMESTAMP"
    return "TEXT"


def check_write(settings: ConnectionSettings, frame: pd.DataFrame, table: str, mode: str):
    check_write_allowed(settings, mode)
    if not isinstance(frame, pd.DataFrame):
        raise ConnectorError("only a DataFrame can be written to a table")
    names = [str(name) for name in frame.columns]
    if not names or any(not name or "\x00" in name or len(name) > 63 for name in names):
        raise ConnectorError("every column needs a name of 1 to 63 characters to be written")
    if len(set(name.lower() for name in names)) != len(names):
        raise ConnectorError("column names must be unique (ignoring case) to be written")
    return check_table_name(table)


class SqlConnector(Connector):
    """Reading shared by the SQL connectors; subclasses run the statement in `_fetch`."""

    mysql_dialect: bool = False

    def read(
        self, query: Any, limit: int | None = None, timeout: int | None = None
    ) -> pd.DataFrame:
        sql = single_read_statement(query, mysql=self.mysql_dialect)
        self.check_read_account()
        if limit is not None:
            limit = int(limit)
            if limit < 0:
                raise ConnectorError("the row limit cannot be negative")
            sql = f"SELECT * FROM (\n{sql}\n) AS q LIMIT {limit}"
        return self._fetch(sql, timeout)

    def preview(self, table_or_query: str, n: int = 20) -> pd.DataFrame:
        text = (table_or_query or "").strip()
        if re.match(r"^[\w$]+(\.[\w$]+)?$", text) and text.upper() not in READ_KEYWORDS:
            self.check_read_account()
            return self._fetch(self._table_preview_sql(check_table_name(text), int(n)), None)
        return self.read(text, limit=n)

    def _where(self) -> str:
        """host:port, as connection errors name it."""
        return f"{self.settings.host}:{self.port}"

    def _fetch(self, sql, timeout: int | None) -> pd.DataFrame:
        raise NotImplementedError

    def _table_preview_sql(self, parts: list[str], n: int):
        raise NotImplementedError
