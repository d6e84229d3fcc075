"""The interface every data source connector implements.

A connector wraps one database driver (imported lazily, inside the connector) and is
built from a DataSource. It never imports the pipelines app: it takes queries and
returns DataFrames.
"""

from dataclasses import dataclass
from typing import Any, ClassVar

import pandas as pd


class ConnectorError(Exception):
    """A failure the user can act on; the message says what went wrong, never a secret."""


class QueryRefused(ConnectorError):
    """The query was refused before or by the server: not read-only, several statements..."""


WRITE_MODES = ("fail", "append", "replace")


@dataclass(frozen=True)
class ConnectionSettings:
    host: str
    port: int | None
    database: str
    user: str
    secret: str
    options: dict[str, Any]
    allow_writes: bool


class Connector:
    """Base class: subclasses set `kind` and `default_port` and implement every method."""

    kind: ClassVar[str]
    default_port: ClassVar[int]
    # Option names the connector understands, with a short description each.
    options: ClassVar[dict[str, str]] = {}

    def __init__(self, settings: ConnectionSettings):
        self.settings = settings

    @property
    def port(self) -> int:
        return self.settings.port or self.default_port

    def test(self) -> str:
        """Connect and run a trivial read; returns a short description of the server.

        Raises ConnectorError with a clear message: host unreachable, timeout, bad login,
        unknown database, TLS failure.
        """
        raise NotImplementedError

    def list_tables(self) -> list[str]:
        raise NotImplementedError

    def columns(self, table: str) -> list[tuple[str, str]]:
        """(name, database type) of each column of a table."""
        raise NotImplementedError

    def preview(self, table_or_query: str, n: int = 20) -> pd.DataFrame:
        raise NotImplementedError

    def read(
        self, query: Any, limit: int | None = None, timeout: int | None = None
    ) -> pd.DataFrame:
        """Run a read-only query (enforced by the server where it can) into a DataFrame."""
        raise NotImplementedError

    def write(self, frame: pd.DataFrame, table: str, mode: str = "fail") -> int:
        """Write a frame to a table (mode fail | append | replace); returns rows written."""
        raise NotImplementedError


def check_write_allowed(settings: ConnectionSettings, mode: str) -> None:
    """Refuse a write to a source whose writes are off, or in a mode that does not exist."""
    if not settings.allow_writes:
        raise QueryRefused("writes are not allowed to this data source (allow_writes is off)")
    if mode not in WRITE_MODES:
        raise ConnectorError(f"unknown write mode {mode!r}: use one of {', '.join(WRITE_MODES)}")
