"""Runs the engine in a child process that the worker watches.

The worker process records the heartbeat, enforces the run's time limit and, when a
cancelled run's current step does not stop within the grace period, ends the child.
A forked child starts at once (no re-import), which keeps the per-run cost low.
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

from experiments import tracking
from pipelines.engine.runner import PipelineEngine
from pipelines.models import PipelineRun

_POLL_SECONDS = 0.02
_CANCEL_CHECK_SECONDS = 1.0
_PR_SET_PDEATHSIG = 1
_INHERITED: list = []


def supervise(run: PipelineRun) -> None:
    """Execute a claimed run in a forked child and watch it until it ends."""
    tracking.preload()
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:
        _child(run.pk, parent)
    outcome = _watch(run, pid)
    if outcome is not None:
        from pipelines.runs import close_interrupted

        close_interrupted(run, outcome)


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
        run = PipelineRun.objects.select_related("pipeline").get(pk=run_pk)
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


def _watch(run: PipelineRun, pid: int) -> str | None:
    """Wait for the child; returns why it was stopped from outside, if it was."""
    timeout = run.pipeline.run_timeout
    started = time.monotonic()
    next_beat = next_cancel_check = cancel_deadline = 0.0
    while True:
        finished, status = os.waitpid(pid, os.WNOHANG)
        if finished:
            return _exit_outcome(run, status)
        now = time.monotonic()
        if now >= next_beat:
            run.beat()
            next_beat = now + settings.MLOPS_HEARTBEAT_SECONDS
        if not cancel_deadline and now >= next_cancel_check:
            next_cancel_check = now + _CANCEL_CHECK_SECONDS
            if run.cancel_was_requested():
                cancel_deadline = now + settings.MLOPS_CANCEL_GRACE_SECONDS
        if cancel_deadline and now >= cancel_deadline:
            _kill(pid)
            grace = settings.MLOPS_CANCEL_GRACE_SECONDS
            run.mark_cancelled(f"Cancelled; the running step was stopped after {grace} s.")
            return "cancelled"
        if now - started >= timeout:
            _kill(pid)
            run.mark_failed(f"Timed out after {timeout} s.")
            return "timed out"
        time.sleep(_POLL_SECONDS)


def _exit_outcome(run: PipelineRun, status: int) -> str | None:
    code = os.waitstatus_to_exitcode(status)
    if code == 0:
        return None
    run.refresh_from_db()
    if run.mark_failed(f"The engine process ended unexpectedly (exit code {code})."):
        return "engine process died"
    return None


def _kill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
