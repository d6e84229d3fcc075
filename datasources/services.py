"""Adding uploaded files as datasets."""

import hashlib
from pathlib import Path
from typing import BinaryIO

import pandas as pd
from django.core.exceptions import ValidationError
from django.core.files import File
from django.db import transaction

from datasources.models import Dataset

_CHUNK = 1024 * 1024


def add_dataset(handle: BinaryIO, name: str, filename: str = "", user=None) -> Dataset:
    """Store a CSV file as the next version of `name`; nothing is stored if it is invalid."""
    name = name.strip()
    if not name:
        raise ValidationError({"name": "A dataset needs a name."})
    checksum, size = _digest(handle)
    if size == 0:
        raise ValidationError({"file": "The file is empty."})
    frame = _read_csv(handle)
    with transaction.atomic():
        latest = Dataset.objects.select_for_update().filter(name=name).order_by("-version").first()
        dataset = Dataset(
            name=name,
            version=(latest.version + 1) if latest else 1,
            original_filename=Path(filename).name,
            checksum=checksum,
            size_bytes=size,
            row_count=len(frame),
            column_count=len(frame.columns),
            schema={str(column): str(dtype) for column, dtype in frame.dtypes.items()},
            uploaded_by=user,
        )
        handle.seek(0)
        dataset.file.save("upload.csv", File(handle), save=False)
        dataset.save()
    return dataset


def read_dataset(dataset: Dataset, columns=None, limit: int | None = None) -> pd.DataFrame:
    return pd.read_csv(dataset.file.path, usecols=columns, nrows=limit)


def _digest(handle: BinaryIO) -> tuple[str, int]:
    handle.seek(0)
    digest, size = hashlib.sha256(), 0
    while chunk := handle.read(_CHUNK):
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


def _read_csv(handle: BinaryIO) -> pd.DataFrame:
    handle.seek(0)
    try:
        frame = pd.read_csv(handle)
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise ValidationError({"file": f"The file is not a readable CSV: {exc}"}) from None
    if len(frame.columns) == 0:
        raise ValidationError({"file": "The file has no columns."})
    return frame
