"""The interface every data source connector implements.

A connector wraps one database driver (imported lazily, inside the connector) and is
built from a DataSource. It never imports the pipelines app: it takes queries and
returns DataFrames.
"""

import hashlib
import threading
import time
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
    # Refuse to read unless the account can only read (MLOPS_REQUIRE_READONLY_ACCOUNTS).
    require_read_only_account: bool = False


def _listed(items: tuple[str, ...], most: int = 4) -> str:
    shown = ", ".join(items[:most])
    return shown if len(items) <= most else f"{shown} and {len(items) - most} more"


def _joined(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else f"{', '.join(parts[:-1])} and {parts[-1]}"


@dataclass(frozen=True)
class AccountRights:
    """What a data source's account may do besides reading, as its server reports it.

    Each tuple names the grants found, spelled as the server spells them ("INSERT on
    *.*", "FILE", "pg_read_server_files"); `unverified` says why they could not all be
    read. A read-only transaction stops a query's writes, but not what a stored function
    it calls does with these rights (SET GLOBAL, reading server files, dblink).
    """

    write: tuple[str, ...] = ()
    server_files: tuple[str, ...] = ()
    admin: tuple[str, ...] = ()
    unverified: str = ""

    @property
    def read_only(self) -> bool:
        """True when the server reported no right beyond reading."""
        return not (self.write or self.server_files or self.admin or self.unverified)

    def merged(self, other: "AccountRights") -> "AccountRights":
        """The rights of both, each grant once."""
        return AccountRights(
            write=tuple(dict.fromkeys(self.write + other.write)),
            server_files=tuple(dict.fromkeys(self.server_files + other.server_files)),
            admin=tuple(dict.fromkeys(self.admin + other.admin)),
            unverified="; ".join(note for note in (self.unverified, other.unverified) if note),
        )

    def summary(self, *, skip_write: bool = False) -> str:
        """Like "write data (INSERT on *.*) and administer the server (SUPER)", or "".

        `skip_write` leaves the write rights out (a source that allows writes).
        """
        parts = []
        if self.write and not skip_write:
            parts.append(f"write data ({_listed(self.write)})")
        if self.server_files:
            parts.append(f"read or write server files ({_listed(self.server_files)})")
        if self.admin:
            parts.append(f"administer the server ({_listed(self.admin)})")
        return _joined(parts) if parts else ""

    def warning(self, risk: str, advice: str, *, allow_writes: bool = False) -> str:
        """What a test of the source shows about these rights, or "" for a read-only account.

        A source that allows writes needs write rights: they are stated, not warned about.
        """
        sentences = []
        if summary := self.summary(skip_write=allow_writes):
            sentences.append(f"Warning: this account can {summary}; {risk}.")
        if self.unverified:
            sentences.append(
                f"Warning: what this account may do could not all be checked ({self.unverified})."
            )
        if sentences:
            sentences.append("Use an account without them." if allow_writes else advice)
        if allow_writes and self.write:
            sentences.append(
                f"It can write data ({_listed(self.write)}), as save steps to this source need."
            )
        return " ".join(sentences)

    def refusal(self, *, allow_writes: bool) -> str:
        """Why extraction must be refused with MLOPS_REQUIRE_READONLY_ACCOUNTS on, or "".

        A source that allows writes needs an account that writes: its write rights are
        expected (a save step can write them anyway); server-file and admin rights never.
        """
        reasons = []
        if summary := self.summary(skip_write=allow_writes):
            reasons.append(f"its account can {summary}")
        if self.unverified:
            reasons.append(f"its account's rights could not be checked ({self.unverified})")
        if not reasons:
            return ""
        return (
            f"extraction from this data source is refused: {'; '.join(reasons)} "
            "(MLOPS_REQUIRE_READONLY_ACCOUNTS is on)"
        )


# Rights found per account, per process: checked again after this many seconds.
RIGHTS_CACHE_SECONDS = 300
_rights_cache: dict[tuple, tuple[float, AccountRights]] = {}
_rights_lock = threading.Lock()


def forget_account_rights() -> None:
    """Empty the per-process cache of account rights (tests, or after a GRANT)."""
    with _rights_lock:
        _rights_cache.clear()


class Connector:
    """Base class: subclasses set `kind` and `default_port` and implement every method."""

    kind: ClassVar[str]
    default_port: ClassVar[int]
    # Option names the connector understands, with a short description each.
    options: ClassVar[dict[str, str]] = {}
    # What rights beyond reading put at risk, and what to use instead (AccountRights).
    rights_risk: ClassVar[str] = (
        "extraction's read-only guard cannot stop a stored function it calls from using them"
    )
    read_only_advice: ClassVar[str] = "Use an account with SELECT only."

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

    def account_rights(self) -> AccountRights:
        """What the account may do besides reading, asked of the server.

        Raises ConnectorError when the server cannot be reached; rights the server does
        not let the account see go in `unverified`, never silently left out.
        """
        return AccountRights(unverified=f"the {self.kind} connector cannot list them")

    def cached_account_rights(self) -> AccountRights:
        """`account_rights()`, remembered for RIGHTS_CACHE_SECONDS in this process."""
        key = self._account_key()
        with _rights_lock:
            found = _rights_cache.get(key)
        if found and time.monotonic() - found[0] < RIGHTS_CACHE_SECONDS:
            return found[1]
        rights = self.account_rights()
        self.remember_account_rights(rights)
        return rights

    def remember_account_rights(self, rights: AccountRights) -> None:
        with _rights_lock:
            _rights_cache[self._account_key()] = (time.monotonic(), rights)

    def check_read_account(self) -> None:
        """Refuse a read when read-only accounts are required and this one is not."""
        if not self.settings.require_read_only_account:
            return
        try:
            rights = self.cached_account_rights()
        except ConnectorError as exc:
            rights = AccountRights(unverified=str(exc))
        allow_writes = self.settings.allow_writes
        refusal = rights.refusal(allow_writes=allow_writes)
        if refusal:
            advice = "Use an account without them." if allow_writes else self.read_only_advice
            raise QueryRefused(f"{refusal}. {advice}")

    def _account_key(self) -> tuple:
        settings = self.settings
        secret = hashlib.sha256((settings.secret or "").encode()).hexdigest()
        return (self.kind, settings.host, self.port, settings.database, settings.user, secret)

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
