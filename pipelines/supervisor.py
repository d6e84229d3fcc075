"""Runs the engine in a child process that the worker watches.

The worker process records the heartbeat, enforces the run's time limit and, when a
cancelled run's current step does not stop within the grace period, ends the child.
A forked child starts at once (no re-import), which keeps the per-run cost low.

A database outage shorter than the heartbeat timeout does not end a run: the worker
keeps watching the child and tries its writes again each second, and the child's own
writes wait for the database (`db_retry.call`). A longer outage ends the child, and the
run is failed once the database is back. The child is ended and reaped before
`supervise` returns or raises, whatever went wrong.
"""

import ctypes
import gc
import os
import signal
import sys
import time
import traceback

from django.conf import settings
from django.db import connections
from django.utils.text import capfirst

from experiments import tracking
from mlops_site import db_retry
from pipelines.engine.runner import PipelineEngine
from pipelines.models import PipelineRun

_POLL_SECONDS = 0.02
_CANCEL_CHECK_SECONDS = 1.0
_OUTAGE_RETRY_SECONDS = 1.0
_PR_SET_PDEATHSIG = 1
_INHERITED: list = []


def supervise(run: PipelineRun) -> None:
    """Execute a claimed run in a forked child and watch it until it ends."""
    tracking.preload()
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:
        _child(run.pk, parent)
    child = _Child(pid)
    try:
        watch = _Watch(run, child)
        outcome = watch.until_done()
    finally:
        child.kill()  # whatever went wrong, no engine is left unwatched or unreaped
    if outcome is not None:
        from pipelines.runs import close_interrupted

        db_retry.call(close_interrupted, run, outcome, patience=watch.patience())


def _child(run_pk: int, parent: int) -> None:
    code = 1
    # The inherited heap is never freed here; keeping the collector off it saves a
    # full collection (hundreds of ms) per run.
    gc.freeze()
    try:
        _die_with(parent)
        # The parent's database connections must not be shared: open fresh ones. The
        # inherited ones are kept referenced, never closed: closing (or garbage-collecting)
        # them would end the parent's session on the shared socket.
        for connection in connections.all(initialized_only=True):
            _INHERITED.append(connection.connection)
            connection.connection = None
        tracking.after_fork()
        run = db_retry.call(PipelineRun.objects.select_related("pipeline").get, pk=run_pk)
        PipelineEngine(run).execute(start_at=run.start_step)
        code = 0
    except BaseException:
        traceback.print_exc(file=sys.stderr)
    finally:
        os._exit(code)


def _die_with(parent: int) -> None:
    """Ask Linux to kill this child if the worker dies, so no orphan finishes the run."""
    try:
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:
        os._exit(1)


class _Child:
    """The forked engine process. It is reaped exactly once, so its pid is never
    signalled after the kernel may have handed it to another process."""

    def __init__(self, pid: int):
        self.pid = pid
        self.exit_code: int | None = None

    def poll(self) -> int | None:
        if self.exit_code is None:
            finished, status = os.waitpid(self.pid, os.WNOHANG)
            if finished:
                self.exit_code = os.waitstatus_to_exitcode(status)
        return self.exit_code

    def kill(self) -> None:
        """End the child if it is still running, and reap it."""
        if self.exit_code is None:
            os.kill(self.pid, signal.SIGKILL)
            _, status = os.waitpid(self.pid, 0)
            self.exit_code = os.waitstatus_to_exitcode(status)


class _Watch:
    """The worker's side of a run: heartbeat, time limit, cancellation and outages of
    the database, checked every poll while the child runs."""

    def __init__(self, run: PipelineRun, child: _Child):
        self.run, self.child = run, child
        self.timeout = run.pipeline.run_timeout
        self.started = time.monotonic()
        self.database = db_retry.Outage()
        self.next_beat = self.next_cancel_check = self.cancel_deadline = 0.0

    def until_done(self) -> str | None:
        """Wait for the child; returns why it was stopped from outside, if it was."""
        while True:
            code = self.child.poll()
            if code is not None:
                return self._exited(code)
            now = time.monotonic()
            self._keep_in_touch(now)
            outcome = self._stop_reason(now)
            if outcome is not None:
                self.child.kill()
                db_retry.call(self._record_stop, outcome, patience=self.patience())
                return outcome
            time.sleep(_POLL_SECONDS)

    def patience(self) -> float:
        """How long to wait for the database to record how the run ended: a run may
        hold its worker until its time limit, and a failure recorded late says more
        than the reaper's "worker lost"."""
        remaining = self.timeout - (time.monotonic() - self.started)
        return max(remaining, settings.MLOPS_HEARTBEAT_TIMEOUT)

    def _keep_in_touch(self, now: float) -> None:
        """Beat and check for cancellation; while the database is away, every second."""
        if now >= self.next_beat:
            self.database.attempt(self.run.beat)
            interval = settings.MLOPS_HEARTBEAT_SECONDS
            if self.database.ongoing:
                interval = min(interval, _OUTAGE_RETRY_SECONDS)
            self.next_beat = now + interval
        if not self.cancel_deadline and now >= self.next_cancel_check:
            self.next_cancel_check = now + _CANCEL_CHECK_SECONDS
            if self.database.attempt(self.run.cancel_was_requested):
                self.cancel_deadline = now + settings.MLOPS_CANCEL_GRACE_SECONDS

    def _stop_reason(self, now: float) -> str | None:
        if self.cancel_deadline and now >= self.cancel_deadline:
            return "cancelled"
        if now - self.started >= self.timeout:
            return "timed out"
        if self.database.seconds >= settings.MLOPS_HEARTBEAT_TIMEOUT:
            return "database unreachable"
        return None

    def _record_stop(self, outcome: str) -> bool:
        if outcome == "cancelled":
            grace = settings.MLOPS_CANCEL_GRACE_SECONDS
            return self.run.mark_cancelled(
                f"Cancelled; the running step was stopped after {grace} s."
            )
        if outcome == "timed out":
            return self.run.mark_failed(f"Timed out after {self.timeout} s.")
        return self.run.mark_failed(self._unreachable_message())

    def _unreachable_message(self) -> str:
        # Written once the database is back: the outage lasted until now.
        return f"{capfirst(self.database.describe())}."

    def _exited(self, code: int) -> str | None:
        if code == 0:
            return None
        if self.database.ongoing:  # the child gave up waiting for the database first
            message = self._unreachable_message()
        else:
            message = f"The engine process ended unexpectedly (exit code {code})."
        failed = db_retry.call(self._fail, message, patience=self.patience())
        return "engine process died" if failed else None

    def _fail(self, message: str) -> bool:
        self.run.refresh_from_db()
        return self.run.mark_failed(message)
