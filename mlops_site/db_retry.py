"""Riding out a short outage of the Django database in long-lived processes.

Django replaces a broken connection only between requests; a worker that holds one
through a database restart gets OperationalError ("server has gone away") on every query
until the connection is closed. These helpers close it, so the next query reconnects,
and track for how long the database has been unreachable.
"""

import contextlib
import logging
import time
from collections.abc import Callable
from typing import TypeVar

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DatabaseError, InterfaceError, OperationalError, connections

T = TypeVar("T")
logger = logging.getLogger(__name__)

# What a lost or refused connection raises; a deadlock is an OperationalError too, and
# calling again is the right answer to it as well.
LOST_CONNECTION = (OperationalError, InterfaceError)
_FIRST_DELAY = 0.1
_MAX_DELAY = 2.0


class DatabaseUnreachable(Exception):
    """The database stayed unreachable for longer than the caller could wait."""

    def __init__(self, seconds: float, error: Exception):
        self.seconds, self.error = seconds, error
        super().__init__(describe_outage(seconds, error))


def describe_outage(seconds: float, error: Exception) -> str:
    return f"the database was unreachable for {seconds:.0f} s ({type(error).__name__}: {error})"


class Outage:
    """When the calls made through it started failing, and the last error they raised.

    `attempt` never raises a connection error: a polling loop calls it each round and
    asks `seconds` whether it is time to give up.
    """

    def __init__(self, using: str = DEFAULT_DB_ALIAS):
        self.using = using
        self.since: float | None = None
        self.error: Exception | None = None

    @property
    def ongoing(self) -> bool:
        return self.since is not None

    @property
    def seconds(self) -> float:
        return 0.0 if self.since is None else time.monotonic() - self.since

    def describe(self) -> str:
        return describe_outage(self.seconds, self.error)

    def attempt(self, func: Callable[..., T], *args, **kwargs) -> T | None:
        """The result of `func`, or None when the database could not be reached."""
        try:
            result = func(*args, **kwargs)
        except LOST_CONNECTION as exc:
            self.failed(exc)
            return None
        self.ended()
        return result

    def failed(self, error: Exception) -> None:
        """Record a failed call and drop the broken connection; re-raises inside a
        transaction, which a new connection could not continue."""
        if connections[self.using].in_atomic_block:
            raise error
        if self.since is None:
            self.since = time.monotonic()
            logger.warning(
                "The database is unreachable (%s: %s); trying again.", type(error).__name__, error
            )
        self.error = error
        close_connection(self.using)

    def ended(self) -> None:
        if self.since is not None:
            logger.warning("The database is reachable again after %.0f s.", self.seconds)
        self.since = self.error = None


def call(func: Callable[..., T], *args, patience: float | None = None, **kwargs) -> T:
    """Call `func`, reconnecting and calling it again with backoff while the database is
    unreachable, for up to `patience` seconds (default: the heartbeat timeout).

    `func` must be safe to call twice: a write whose reply was lost may have committed.
    """
    patience = settings.MLOPS_HEARTBEAT_TIMEOUT if patience is None else patience
    outage, delay = Outage(), _FIRST_DELAY
    while True:
        try:
            result = func(*args, **kwargs)
        except LOST_CONNECTION as exc:
            outage.failed(exc)
        else:
            outage.ended()
            return result
        if outage.seconds >= patience:
            raise DatabaseUnreachable(outage.seconds, outage.error) from outage.error
        time.sleep(min(delay, patience - outage.seconds))
        delay = min(delay * 2, _MAX_DELAY)


def close_connection(using: str = DEFAULT_DB_ALIAS) -> None:
    """Close a connection that failed, so the next query opens a new one."""
    # Closing a dead connection can fail too; Django forgets it either way.
    with contextlib.suppress(DatabaseError):
        connections[using].close()
