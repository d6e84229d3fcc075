"""Reading a pipeline run's MLflow artifacts for the pages: list, preview, download.

Paths come from URLs, so every one passes `safe_artifact_path` before it reaches the
tracking store, and a file is opened only once it is known to lie, without symlinks,
inside the run's artifact root.
"""

import csv
import json
import re
from itertools import islice
from pathlib import Path, PurePosixPath
from urllib.parse import unquote

from experiments import tracking
from pipelines.models import PipelineRun

PREVIEW_ROWS = 200
# Larger JSON and text files are offered for download only.
PREVIEW_MAX_BYTES = 1_000_000

CONTENT_TYPES = {
    ".csv": "text/csv",
    ".json": "application/json",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
}
# SVG is missing on purpose: it can carry script, so it is only ever downloaded.
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif"}
TEXT_SUFFIXES = {".txt", ".log", ".md", ".yaml", ".yml", ".py", ""}

_MLFLOW_RUN_ID = re.compile(r"[0-9a-f]{32}")
_DRIVE = re.compile(r"[A-Za-z]:")
# Percent-decoding stops here: anything still changing after this many passes is hostile.
_MAX_DECODE_PASSES = 10


class ArtifactPathRefused(ValueError):
    """An artifact path that could name a file outside the run's artifact root."""


class ArtifactNotFound(LookupError):
    """No such run of this platform, or no such artifact in it."""


def safe_artifact_path(raw: str) -> str:
    """`raw` as a normalised path relative to the artifact root ("" for the root).

    Percent-encodings are decoded until the text is stable, so that double-encoded
    forms are judged by what they finally say.
    """
    path = _fully_decoded(raw)
    if "\x00" in path or any(ord(char) < 32 for char in path):
        raise ArtifactPathRefused("the path contains a NUL byte or a control character")
    if "\\" in path:
        raise ArtifactPathRefused("the path contains a backslash")
    if path.startswith("/"):
        raise ArtifactPathRefused("the path is absolute")
    if _DRIVE.match(path):
        raise ArtifactPathRefused("the path starts with a drive letter")
    parts = [part for part in path.split("/") if part not in ("", ".")]
    for part in parts:
        if part.startswith("~"):
            raise ArtifactPathRefused("the path names a home folder (~)")
        if set(part) == {"."}:
            raise ArtifactPathRefused("the path leaves the artifact folder (..)")
    return "/".join(parts)


def _fully_decoded(raw: str) -> str:
    for _ in range(_MAX_DECODE_PASSES):
        decoded = unquote(raw)
        if decoded == raw:
            return raw
        raw = decoded
    raise ArtifactPathRefused("the path is percent-encoded too many times")


def check_run(mlflow_run_id: str) -> None:
    """ArtifactNotFound unless the MLflow run exists and a PipelineRun here recorded it."""
    if not _MLFLOW_RUN_ID.fullmatch(mlflow_run_id):
        raise ArtifactNotFound(f"{mlflow_run_id!r} is not an MLflow run id")
    if not PipelineRun.objects.filter(mlflow_run_id=mlflow_run_id).exists():
        raise ArtifactNotFound(f"no pipeline run recorded MLflow run {mlflow_run_id}")
    if not tracking.run_exists(mlflow_run_id):
        raise ArtifactNotFound(f"MLflow run {mlflow_run_id} is not in the tracking store")


def browse(mlflow_run_id: str, path: str) -> dict:
    """What the page shows at `path`: a folder's entries, or one file and its preview."""
    if not path:
        return {"folder": "", "entries": _entries(mlflow_run_id, "")}
    parent = str(PurePosixPath(path).parent).removeprefix(".")
    found = [e for e in _entries(mlflow_run_id, parent) if e["path"] == path]
    if not found:
        raise ArtifactNotFound(f"the run has no artifact {path}")
    if found[0]["is_dir"]:
        return {"folder": path, "entries": _entries(mlflow_run_id, path)}
    return {"folder": parent, "file": found[0], "preview": preview(mlflow_run_id, path)}


def _entries(mlflow_run_id: str, folder: str) -> list[dict]:
    entries = tracking.list_artifacts(mlflow_run_id, folder)
    for entry in entries:
        entry["name"] = PurePosixPath(entry["path"]).name
    return sorted(entries, key=lambda e: (not e["is_dir"], e["name"]))


def preview(mlflow_run_id: str, path: str) -> dict:
    """How the page shows a file: kind is table, json, image, text or none."""
    suffix = PurePosixPath(path).suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return {"kind": "image"}
    if suffix not in {".csv", ".json", *TEXT_SUFFIXES}:
        return {"kind": "none"}
    local = open_artifact(mlflow_run_id, path)
    if suffix == ".csv":
        return {"kind": "table", **_csv_rows(local)}
    if local.stat().st_size > PREVIEW_MAX_BYTES:
        return {"kind": "none", "reason": "too large to show"}
    text = local.read_text(errors="replace")
    if suffix == ".json":
        try:
            return {"kind": "json", "text": json.dumps(json.loads(text), indent=2)}
        except ValueError:
            pass
    return {"kind": "text", "text": text}


def _csv_rows(local: Path) -> dict:
    with local.open(newline="", errors="replace") as handle:
        reader = csv.reader(handle)
        header = next(reader, [])
        rows = list(islice(reader, PREVIEW_ROWS + 1))
    return {"header": header, "rows": rows[:PREVIEW_ROWS], "truncated": len(rows) > PREVIEW_ROWS}


def open_artifact(mlflow_run_id: str, path: str) -> Path:
    """The local file of one artifact, checked to be a regular file inside the root."""
    if not path:
        raise ArtifactNotFound("no artifact named")
    root = tracking.local_artifact_root(mlflow_run_id)
    if root is None:
        # A remote store: MLflow copies the file into a fresh temporary folder.
        local = tracking.download_artifact(mlflow_run_id, path)
        root = local.parent
    else:
        local = root / path
    _check_inside(root, local)
    return local


def _check_inside(root: Path, local: Path) -> None:
    current = local
    while current != root and current != current.parent:
        if current.is_symlink():
            raise ArtifactPathRefused("the artifact is a symbolic link")
        current = current.parent
    if not local.resolve().is_relative_to(root.resolve()):
        raise ArtifactPathRefused("the artifact lies outside the run's artifact folder")
    if not local.is_file():
        raise ArtifactNotFound(f"the run has no artifact file {local.name}")


def content_type(path: str) -> str:
    return CONTENT_TYPES.get(PurePosixPath(path).suffix.lower(), "application/octet-stream")


def breadcrumbs(folder: str) -> list[dict]:
    """The folders from the root down to `folder`, each with its path, for navigation."""
    parts = folder.split("/") if folder else []
    return [{"name": part, "path": "/".join(parts[: i + 1])} for i, part in enumerate(parts)]
