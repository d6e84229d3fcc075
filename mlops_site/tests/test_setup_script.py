"""bin/setup waits for apt's lock instead of failing when another install holds it."""

import fcntl
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LOCK = Path("/var/lib/dpkg/lock-frontend")

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("apt-get") or not LOCK.exists(),
    reason="needs root and apt (as on the machines bin/setup installs on)",
)


def apt_get_with_lock_held(
    seconds: float, wait_limit: int
) -> tuple[subprocess.CompletedProcess, float]:
    """Run apt_get on an installed package while this process holds apt's lock."""
    with LOCK.open("w") as lock:
        fcntl.lockf(lock, fcntl.LOCK_EX)
        release = threading.Timer(seconds, fcntl.lockf, (lock, fcntl.LOCK_UN))
        release.start()
        started = time.monotonic()
        try:
            result = subprocess.run(
                ["bash", "-c", "source bin/apt.sh && apt_get install -y hostname"],
                cwd=ROOT,
                env={**os.environ, "APT_LOCK_WAIT_SECONDS": str(wait_limit)},
                capture_output=True,
                text=True,
                timeout=120,
            )
        finally:
            release.cancel()
        return result, time.monotonic() - started


@pytest.mark.slow
def test_apt_get_waits_for_the_lock_and_says_what_it_waits_for():
    result, elapsed = apt_get_with_lock_held(seconds=3, wait_limit=60)

    assert result.returncode == 0, result.stderr
    assert "Waiting for another package install to release apt's lock" in result.stdout
    assert "held by process" in result.stdout
    assert elapsed >= 3


def test_apt_get_gives_up_after_its_wait_limit():
    result, _ = apt_get_with_lock_held(seconds=15, wait_limit=0)

    assert result.returncode == 1
    assert "Gave up after 0 s waiting for apt's lock" in result.stderr
