"""The step cache: one joblib file of the context after each step.

Files are written to a temporary name and renamed into place, so a reader never sees
half a file. Beside each file a small JSON record holds the step's fingerprint and an
HMAC (keyed by SECRET_KEY) of the fingerprint and the file's bytes: a planted or edited
file fails the check and is never unpickled. The record also names the columns of the data
passed on, so the editor can suggest them without loading the file.

For the step inspector the writer also leaves, beside the file, a Parquet copy of each
frame of the context and a JSON profile of its columns (`pipelines.inspector`). The
record of those files (their SHA-256 among it) is signed with the same key, so the
inspector checks each file against it before reading, and never unpickles anything.
"""

import hashlib
import hmac
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import joblib
import pandas as pd
from django.conf import settings
from django.utils import timezone

_CHUNK = 1024 * 1024
# Column names recorded beside a cache, for the editor to suggest without unpickling it.
MAX_RECORDED_COLUMNS = 1000


@dataclass(frozen=True)
class Fingerprint:
    """What a step's output depends on; two equal fingerprints mean the same output."""

    step_type: str
    params: dict
    upstream: str
    source: str = ""
    digest: str = field(init=False)

    def __post_init__(self):
        object.__setattr__(self, "digest", _sha256(self.parts()))

    def parts(self) -> dict:
        return {
            "step_type": self.step_type,
            "params": _sha256(self.params),
            "upstream": self.upstream,
            "source": self.source,
        }

    def why_different(self, recorded: dict) -> str:
        """The first reason a recorded fingerprint differs from this one."""
        parts = self.parts()
        reasons = {
            "step_type": "the step type changed",
            "params": "its parameters changed",
            "upstream": "an earlier step changed",
            "source": "its source data changed",
        }
        for key, reason in reasons.items():
            if recorded.get(key) != parts[key]:
                return reason
        return "its fingerprint changed"


class CacheRefused(Exception):
    """The cached file is missing, stale or failed its integrity check."""


class SidecarMissing(Exception):
    """The cache has no inspector files: written by an older version, or removed."""


@dataclass(frozen=True)
class CacheState:
    fresh: bool
    reason: str
    meta: dict


class StepCache:
    """The cached contexts of one pipeline's steps."""

    def __init__(self, pipeline_id: int, directory: Path | None = None):
        self.pipeline_id = pipeline_id
        self.directory = Path(directory or settings.MLOPS_CACHE_DIR)

    def path(self, order: int) -> Path:
        return self.directory / f"pipeline_{int(self.pipeline_id)}_step_{int(order)}.joblib"

    def meta_path(self, order: int) -> Path:
        return self.path(order).with_suffix(".json")

    def save(
        self,
        order: int,
        context: dict,
        fingerprint: Fingerprint,
        summary: dict,
        source: dict | None = None,
    ) -> None:
        """Write a step's context; `source` records what it read (version, time) for replays
        and pages to judge its freshness by, without querying the source again."""
        self.directory.mkdir(parents=True, exist_ok=True)
        target = self.path(order)
        data_tmp = self._temp_path(target)
        try:
            with open(data_tmp, "wb") as handle:
                writer = _MacWriter(handle, self._new_mac(fingerprint.digest))
                joblib.dump(context, writer)
            mac = writer.mac.hexdigest()
            meta = {
                "fingerprint": fingerprint.digest,
                "parts": fingerprint.parts(),
                "mac": mac,
                "written_at": timezone.now().isoformat(),
                "summary": summary,
                "source": source or {},
                "columns": data_columns(context),
            }
            meta_tmp = self._temp_path(self.meta_path(order))
            meta_tmp.write_text(json.dumps(meta))
            os.replace(data_tmp, target)
            os.replace(meta_tmp, self.meta_path(order))
        finally:
            data_tmp.unlink(missing_ok=True)

    def add_inspection(self, order: int, digest: str, context: dict | None = None) -> bool:
        """Write the inspector's profile and columnar copies of a step's cached context,
        and sign them into its record; False when the cache changed or went meanwhile.

        Profiling costs about as much as the step's cache write, so workers do it off
        the run's path (`pipelines.tasks.inspect_step_cache`); the context is read back
        through the HMAC check when it is not given.
        """
        meta = self.read_meta(order)
        if meta is None or meta.get("fingerprint") != digest:
            return False
        if context is None:
            try:
                context = self._load_verified(order, digest, meta)
            except CacheRefused:
                return False
        meta["inspect"] = self._write_inspection(order, context)
        meta["inspect_mac"] = self.sign(digest, meta["mac"], meta)
        if (self.read_meta(order) or {}).get("mac") != meta["mac"]:
            return False  # a newer run rewrote this step's cache while we profiled
        meta_tmp = self._temp_path(self.meta_path(order))
        meta_tmp.write_text(json.dumps(meta))
        os.replace(meta_tmp, self.meta_path(order))
        return True

    def state(self, order: int, fingerprint: Fingerprint) -> CacheState:
        """Whether the cache of a step matches its current definition, and why not."""
        meta = self.read_meta(order)
        if meta is None:
            return CacheState(False, "it has no cached output", {})
        if meta.get("fingerprint") != fingerprint.digest:
            return CacheState(False, fingerprint.why_different(meta.get("parts", {})), meta)
        return CacheState(True, "", meta)

    def read_meta(self, order: int) -> dict | None:
        try:
            return json.loads(self.meta_path(order).read_text())
        except (FileNotFoundError, ValueError):
            return None

    def load(self, order: int, fingerprint: Fingerprint) -> dict:
        """The cached context of a step, only if it is fresh and passes its HMAC check."""
        state = self.state(order, fingerprint)
        if not state.fresh:
            raise CacheRefused(f"cache of step {order} is stale: {state.reason}")
        return self._load_verified(order, fingerprint.digest, state.meta)

    def _load_verified(self, order: int, digest: str, meta: dict) -> dict:
        path = self.path(order)
        if path.is_symlink() or path.resolve().parent != self.directory.resolve():
            raise CacheRefused(f"cache of step {order} is not a file in the cache directory")
        try:
            with open(path, "rb") as handle:
                mac = self._mac(digest, handle)
                if not hmac.compare_digest(mac, meta.get("mac", "")):
                    raise CacheRefused(f"cache of step {order} failed its integrity check")
                handle.seek(0)
                return joblib.load(handle)
        except FileNotFoundError:
            raise CacheRefused(f"cache of step {order} has no data file") from None

    def sidecar_path(self, order: int, name: str) -> Path:
        """A file written beside a step's cache: `pipeline_<id>_step_<order>.<name>`."""
        return self.directory / f"pipeline_{int(self.pipeline_id)}_step_{int(order)}.{name}"

    def sign(self, fingerprint: str, data_mac: str, meta: dict) -> str:
        """The HMAC of what the inspector trusts in a record: its sidecars and summary."""
        mac = self._new_mac(fingerprint)
        signed = {"mac": data_mac, "inspect": meta.get("inspect"), "summary": meta.get("summary")}
        mac.update(json.dumps(signed, sort_keys=True, separators=(",", ":"), default=str).encode())
        return mac.hexdigest()

    def inspection(self, order: int, fingerprint: Fingerprint, check_data: bool = True) -> dict:
        """The cache record of a fresh step for the inspector, after checking the HMAC of
        the data file (unless `check_data` is false) and of the record's signed part.

        Raises CacheRefused (stale, missing, failed check) or SidecarMissing (written by
        a version that left no inspector files). Nothing is unpickled.
        """
        state = self.state(order, fingerprint)
        if not state.fresh:
            raise CacheRefused(f"cache of step {order} is stale: {state.reason}")
        meta = state.meta
        if check_data:
            path = self.path(order)
            if path.is_symlink() or path.resolve().parent != self.directory.resolve():
                raise CacheRefused(f"cache of step {order} is not a file in the cache directory")
            try:
                with open(path, "rb") as handle:
                    expected = meta.get("mac", "")
                    if not _verified(
                        handle, expected, lambda: self._mac(fingerprint.digest, handle)
                    ):
                        raise CacheRefused(f"cache of step {order} failed its integrity check")
            except FileNotFoundError:
                raise CacheRefused(f"cache of step {order} has no data file") from None
        if not isinstance(meta.get("inspect"), dict):
            raise SidecarMissing(
                f"the cache of step {order} was written by an older version, without the "
                "inspector's profile and columnar copy"
            )
        signed = self.sign(fingerprint.digest, meta.get("mac", ""), meta)
        if not hmac.compare_digest(signed, meta.get("inspect_mac") or ""):
            raise CacheRefused(f"the inspector record of step {order} failed its integrity check")
        return meta

    def open_sidecar(self, order: int, name: str, sha256: str):
        """An open binary handle on a sidecar whose bytes match the signed SHA-256."""
        path = self.sidecar_path(order, name)
        if path.is_symlink() or path.resolve().parent != self.directory.resolve():
            raise CacheRefused(f"{path.name} is not a file in the cache directory")
        try:
            handle = open(path, "rb")  # noqa: SIM115  (returned to the caller)
        except FileNotFoundError:
            raise SidecarMissing(f"{path.name} is missing") from None
        if not _verified(handle, sha256, lambda: _file_sha256(handle)):
            handle.close()
            raise CacheRefused(f"{path.name} failed its integrity check")
        handle.seek(0)
        return handle

    def _write_inspection(self, order: int, context: dict) -> dict:
        """Profile and columnar copies of the context's frames; an error is recorded,
        never raised: the inspector then says why it has nothing to show."""
        from pipelines import inspector

        try:
            return inspector.write_sidecars(self, order, context)
        except Exception as exc:  # noqa: BLE001  (a step must not fail over its preview)
            return {"version": inspector.SIDECAR_VERSION, "error": f"{type(exc).__name__}: {exc}"}

    def clear(self) -> int:
        """Delete every cache file of the pipeline; returns how many data files went."""
        removed = 0
        for path in self.directory.glob(f"pipeline_{int(self.pipeline_id)}_step_*"):
            removed += path.suffix == ".joblib"
            path.unlink(missing_ok=True)
        return removed

    def remove_partial_files(self) -> int:
        """Delete temporary files left by a writer that was killed mid-write."""
        partial = list(self.directory.glob(f".pipeline_{int(self.pipeline_id)}_step_*.tmp"))
        for path in partial:
            path.unlink(missing_ok=True)
        return len(partial)

    def _temp_path(self, target: Path) -> Path:
        fd, name = tempfile.mkstemp(dir=self.directory, prefix=f".{target.name}.", suffix=".tmp")
        os.close(fd)
        return Path(name)

    @staticmethod
    def _new_mac(fingerprint: str):
        key = hashlib.sha256(b"mlops.step-cache:" + settings.SECRET_KEY.encode()).digest()
        return hmac.new(key, fingerprint.encode(), hashlib.sha256)

    def _mac(self, fingerprint: str, handle) -> str:
        mac = self._new_mac(fingerprint)
        while chunk := handle.read(_CHUNK):
            mac.update(chunk)
        return mac.hexdigest()


class _MacWriter:
    """A file wrapper that feeds every byte written to an HMAC, saving a second read."""

    def __init__(self, handle, mac):
        self.handle, self.mac = handle, mac

    def write(self, data) -> int:
        self.mac.update(data)
        return self.handle.write(data)

    def tell(self) -> int:
        return self.handle.tell()

    def flush(self) -> None:
        self.handle.flush()


# Files whose bytes were checked, by path: (inode, size, mtime, ctime) and the digest
# they matched. Any write to a file changes its ctime, so a match skips hashing it again.
_VERIFIED: dict[str, tuple[tuple, str]] = {}
_MAX_VERIFIED = 512


def _verified(handle, expected: str, digest) -> bool:
    """Whether the open file's bytes give `expected` (hashing them only when they may
    have changed since they last did)."""
    stat = os.fstat(handle.fileno())
    key = (stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
    name = handle.name
    known = _VERIFIED.get(name)
    if known is not None and known[0] == key and hmac.compare_digest(known[1], expected):
        return True
    handle.seek(0)
    actual = digest()
    if not expected or not hmac.compare_digest(actual, expected):
        _VERIFIED.pop(name, None)
        return False
    if len(_VERIFIED) >= _MAX_VERIFIED:
        _VERIFIED.clear()
    _VERIFIED[name] = (key, actual)
    return True


def _file_sha256(handle) -> str:
    return hashlib.file_digest(handle, "sha256").hexdigest()


def data_columns(context: dict) -> list[str]:
    """The column names of the data a step passes on (its `data` frame), as text."""
    frame = context.get("data")
    if not isinstance(frame, pd.DataFrame):
        return []
    return [str(column) for column in frame.columns[:MAX_RECORDED_COLUMNS]]


def _sha256(value) -> str:
    encoded = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(encoded.encode()).hexdigest()
