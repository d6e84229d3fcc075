"""Uploaded datasets (CSV, Parquet, Excel): adding, reading, previewing and deleting them.

Nothing is stored unless the whole file is valid: every check runs before the row and
the file are written, and the stored file gets a server-chosen name.
"""

import codecs
import csv
import hashlib
import io
import json
import re
from pathlib import PurePosixPath
from typing import BinaryIO

import pandas as pd
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files import File
from django.db import transaction

from datasources.models import FORMAT_EXTENSIONS, Dataset, DatasetFormat

_CHUNK = 1024 * 1024
_SNIFF_BYTES = 64 * 1024
DELIMITERS = ",;\t|"
EXTENSION_FORMATS = {
    ".csv": DatasetFormat.CSV,
    ".tsv": DatasetFormat.CSV,
    ".txt": DatasetFormat.CSV,
    ".parquet": DatasetFormat.PARQUET,
    ".pq": DatasetFormat.PARQUET,
    ".xlsx": DatasetFormat.EXCEL,
}
# Null counts in a preview come from every row when the stored file is at most this big.
PREVIEW_FULL_SCAN_BYTES = 20 * 1024 * 1024
_PARQUET_MAGIC = b"PAR1"
_ZIP_MAGIC = b"PK\x03\x04"
# Bytes that real Latin-1 text does not contain: C0 controls but tab/CR/LF, DEL and C1.
_LATIN1_CONTROL = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def add_dataset(handle: BinaryIO, name: str, filename: str = "", user=None) -> Dataset:
    """Store a CSV, Parquet or .xlsx file as the next version of `name`.

    `filename` is the user's file name: it picks the format by extension and is kept as a
    label only. Raises ValidationError keyed by "name" or "file"; nothing is stored then.
    """
    name = name.strip()
    if not name:
        raise ValidationError({"name": "A dataset needs a name."})
    if len(name) > Dataset._meta.get_field("name").max_length:
        raise ValidationError({"name": "A dataset name has at most 100 characters."})
    label = clean_filename(filename)
    checksum, size = _digest(handle)
    if size == 0:
        raise ValidationError({"file": "The file is empty."})
    file_format = _detect_format(handle, label)
    encoding = delimiter = ""
    if file_format == DatasetFormat.PARQUET:
        frame = _load_parquet(handle)
    elif file_format == DatasetFormat.EXCEL:
        frame = _load_excel(handle)
    else:
        frame, encoding, delimiter = _load_csv(handle)
    with transaction.atomic():
        latest = Dataset.objects.select_for_update().filter(name=name).order_by("-version").first()
        dataset = Dataset(
            name=name,
            version=(latest.version + 1) if latest else 1,
            format=file_format,
            encoding=encoding,
            delimiter=delimiter,
            original_filename=label,
            checksum=checksum,
            size_bytes=size,
            row_count=len(frame),
            column_count=len(frame.columns),
            schema={str(column): str(dtype) for column, dtype in frame.dtypes.items()},
            uploaded_by=user,
        )
        handle.seek(0)
        dataset.file.save(f"upload{FORMAT_EXTENSIONS[file_format]}", File(handle), save=False)
        try:
            dataset.save()
        except BaseException:
            dataset.file.delete(save=False)
            raise
    return dataset


def clean_filename(filename: str) -> str:
    """The user's file name without any folder part, or ValidationError."""
    label = str(filename or "").replace("\\", "/").rsplit("/", 1)[-1].strip()
    if label in ("", ".", "..") or "\x00" in label:
        raise ValidationError(
            {
                "file": f"The file name {filename!r} is not usable: no name is left once the "
                "folder part is removed."
            }
        )
    if len(label) > 255:
        suffix = PurePosixPath(label).suffix[:20]
        label = label[: 255 - len(suffix)] + suffix
    return label


def read_dataset(dataset: Dataset, columns=None, limit: int | None = None) -> pd.DataFrame:
    """The dataset as a frame; `columns` missing from it raise ValueError."""
    columns = list(columns) if columns else None
    path = dataset.file.path
    if dataset.format == DatasetFormat.PARQUET:
        return _read_parquet_file(path, columns, limit)
    if dataset.format == DatasetFormat.EXCEL:
        return pd.read_excel(path, sheet_name=0, engine="openpyxl", usecols=columns, nrows=limit)
    return pd.read_csv(
        path,
        sep=dataset.delimiter or ",",
        encoding=dataset.encoding or "utf-8",
        usecols=columns,
        nrows=limit,
    )


def preview_dataset(dataset: Dataset, n: int = 20) -> dict:
    """The first `n` rows, the stored column types, null counts and the row count.

    `null_counts_scope` says whether the null counts cover "all rows" (a full read of a
    CSV or Parquet file up to PREVIEW_FULL_SCAN_BYTES) or only the rows shown.
    """
    head = _read_head(dataset, n)
    if len(head) >= dataset.row_count:
        counted, scope = head, "all rows"
    elif dataset.format != DatasetFormat.EXCEL and dataset.size_bytes <= PREVIEW_FULL_SCAN_BYTES:
        counted, scope = read_dataset(dataset), "all rows"
    else:
        counted, scope = head, f"first {len(head)} rows"
    return {
        "columns": [str(column) for column in head.columns],
        "column_types": dict(dataset.schema),
        "rows": json.loads(head.to_json(orient="records", date_format="iso", default_handler=str)),
        "row_count": dataset.row_count,
        "null_counts": {str(column): int(count) for column, count in counted.isna().sum().items()},
        "null_counts_scope": scope,
    }


def pipelines_using(dataset: Dataset) -> list[str]:
    """Names of the pipelines with a csv step that reads this dataset (name, id or name@v)."""
    from pipelines.models import PipelineStep

    references = {dataset.name, f"{dataset.name}@{dataset.version}"}
    digit_id_is_a_name = Dataset.objects.filter(name=str(dataset.pk)).exists()
    names = set()
    for step in PipelineStep.objects.filter(step_type="csv").select_related("pipeline"):
        reference = step.params.get("dataset") if isinstance(step.params, dict) else None
        if isinstance(reference, bool) or reference is None:
            continue
        if (
            reference in references
            or reference == dataset.pk
            or (reference == str(dataset.pk) and not digit_id_is_a_name)
        ):
            names.add(step.pipeline.name)
    return sorted(names)


def delete_dataset(dataset: Dataset) -> None:
    """Delete the dataset and its stored file; refused while a pipeline reads it."""
    users = pipelines_using(dataset)
    if users:
        listed = ", ".join(repr(name) for name in users)
        plural = "s" if len(users) > 1 else ""
        raise ValidationError(
            f"Dataset {dataset} is used by pipeline{plural} {listed}: change their csv steps "
            "before deleting it."
        )
    storage, stored_name = dataset.file.storage, dataset.file.name
    with transaction.atomic():
        dataset.delete()
        if stored_name:
            # The file goes only once the row is surely gone.
            transaction.on_commit(lambda: storage.delete(stored_name))


# Reading helpers


def _read_head(dataset: Dataset, n: int) -> pd.DataFrame:
    if dataset.format == DatasetFormat.CSV and dataset.schema:
        # The stored schema comes from the whole file: the first rows alone can mislead.
        try:
            return pd.read_csv(
                dataset.file.path,
                sep=dataset.delimiter or ",",
                encoding=dataset.encoding or "utf-8",
                nrows=n,
                dtype=dataset.schema,
            )
        except (TypeError, ValueError):
            pass
    return read_dataset(dataset, limit=n)


def _read_parquet_file(path, columns, limit) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(path)
    if columns:
        missing = [column for column in columns if column not in parquet.schema_arrow.names]
        if missing:
            raise ValueError(
                f"Usecols do not match columns, columns expected but not found: {missing}"
            )
    if limit is None:
        table = parquet.read(columns=columns, use_pandas_metadata=True)
    else:
        batches, total = [], 0
        for batch in parquet.iter_batches(
            batch_size=min(limit, 65536), columns=columns, use_pandas_metadata=True
        ):
            batches.append(batch)
            total += batch.num_rows
            if total >= limit:
                break
        if batches:
            table = pa.Table.from_batches(batches).slice(0, limit)
        else:
            table = parquet.schema_arrow.empty_table()
            if columns:
                table = table.select(columns)
    return _arrow_to_frame(table)


def _arrow_to_frame(table) -> pd.DataFrame:
    frame = table.to_pandas()
    if not isinstance(frame.index, pd.RangeIndex):
        # An index saved by pandas is data too: keep it as columns.
        frame = frame.reset_index()
    return frame


# Upload checks


def _digest(handle: BinaryIO) -> tuple[str, int]:
    limit = settings.MLOPS_MAX_UPLOAD_BYTES
    handle.seek(0)
    digest, size = hashlib.sha256(), 0
    while chunk := handle.read(_CHUNK):
        size += len(chunk)
        if size > limit:
            raise ValidationError(
                {"file": f"The file is larger than the upload limit of {_bytes(limit)}."}
            )
        digest.update(chunk)
    return digest.hexdigest(), size


def _bytes(count: int) -> str:
    for unit, scale in (("GB", 1024**3), ("MB", 1024**2), ("KB", 1024)):
        if count >= scale:
            return f"{count / scale:.4g} {unit} ({count} bytes)"
    return f"{count} bytes"


def _detect_format(handle: BinaryIO, label: str) -> str:
    suffix = PurePosixPath(label).suffix.lower()
    if suffix in EXTENSION_FORMATS:
        return EXTENSION_FORMATS[suffix]
    if suffix == ".xls":
        raise ValidationError(
            {"file": f"{label!r} is an old-style .xls workbook: save it as .xlsx or CSV."}
        )
    handle.seek(0)
    head = handle.read(len(_ZIP_MAGIC))
    if head.startswith(_PARQUET_MAGIC):
        return DatasetFormat.PARQUET
    if head.startswith(_ZIP_MAGIC):
        return DatasetFormat.EXCEL
    return DatasetFormat.CSV


def _check_columns(names) -> None:
    names = ["" if name is None else str(name) for name in names]
    if not names:
        raise ValidationError({"file": "The file has no columns."})
    blank = [str(position) for position, name in enumerate(names, start=1) if not name.strip()]
    if blank:
        raise ValidationError(
            {"file": f"Column {', '.join(blank)} has a blank name: every column needs a name."}
        )
    seen, duplicates = set(), []
    for name in names:
        if name in seen and name not in duplicates:
            duplicates.append(name)
        seen.add(name)
    if duplicates:
        listed = ", ".join(repr(name) for name in duplicates)
        raise ValidationError({"file": f"Duplicate column names: {listed}."})


def _load_csv(handle: BinaryIO) -> tuple[pd.DataFrame, str, str]:
    encoding = _detect_encoding(handle)
    delimiter = _detect_delimiter(handle, encoding)
    _scan_csv(handle, encoding, delimiter)
    handle.seek(0)
    try:
        frame = pd.read_csv(handle, sep=delimiter, encoding=encoding)
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise ValidationError({"file": f"The file is not a readable CSV: {exc}"}) from None
    return frame, encoding, delimiter


def _detect_encoding(handle: BinaryIO) -> str:
    """UTF-8 (with or without BOM), else Latin-1 when the bytes look like Latin-1 text."""
    handle.seek(0)
    start = handle.read(4)
    if start.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise ValidationError({"file": "UTF-16 text is not supported: save the file as UTF-8."})
    handle.seek(0)
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0
    try:
        while chunk := handle.read(_CHUNK):
            _refuse_nul(chunk, offset)
            decoder.decode(chunk)
            offset += len(chunk)
        decoder.decode(b"", final=True)
        return "utf-8-sig" if start.startswith(codecs.BOM_UTF8) else "utf-8"
    except UnicodeDecodeError:
        pass
    handle.seek(0)
    offset = 0
    while chunk := handle.read(_CHUNK):
        _refuse_nul(chunk, offset)
        if control := _LATIN1_CONTROL.search(chunk):
            raise ValidationError(
                {
                    "file": "The file's text can't be decoded: it is neither UTF-8 nor Latin-1 "
                    f"(byte 0x{control.group()[0]:02x} at offset {offset + control.start()})."
                }
            )
        offset += len(chunk)
    return "latin-1"


def _refuse_nul(chunk: bytes, offset: int) -> None:
    position = chunk.find(b"\x00")
    if position >= 0:
        raise ValidationError(
            {
                "file": "The file is binary, not CSV text (NUL byte at offset "
                f"{offset + position}); upload .csv, .parquet or .xlsx files."
            }
        )


def _detect_delimiter(handle: BinaryIO, encoding: str) -> str:
    handle.seek(0)
    raw = handle.read(_SNIFF_BYTES)
    complete = len(raw) < _SNIFF_BYTES
    sample = raw.decode(encoding, errors="ignore")
    if not complete and "\n" in sample:
        sample = sample[: sample.rindex("\n") + 1]  # whole lines only
    try:
        delimiter = csv.Sniffer().sniff(sample, delimiters=DELIMITERS).delimiter
    except csv.Error:
        return ","
    header = next((line for line in sample.splitlines() if line.strip()), "")
    return delimiter if delimiter in header else ","


def _scan_csv(handle: BinaryIO, encoding: str, delimiter: str) -> None:
    """Check the header's names and that every row has as many fields as the header."""
    handle.seek(0)
    text = io.TextIOWrapper(handle, encoding=encoding, newline="")
    reader = csv.reader(text, delimiter=delimiter)
    header = None
    try:
        for row in reader:
            if not row:
                continue  # a blank line, which pandas skips too
            if header is None:
                header = row
                _check_columns(header)
            elif len(row) != len(header):
                raise ValidationError(
                    {
                        "file": f"Line {reader.line_num} has {len(row)} field{'' if len(row) == 1 else 's'} but the header "
                        f"has {len(header)}."
                    }
                )
    except csv.Error as exc:
        raise ValidationError(
            {"file": f"The file is not a readable CSV (line {reader.line_num}): {exc}"}
        ) from None
    except UnicodeDecodeError as exc:
        raise ValidationError({"file": f"The file's text can't be decoded: {exc}"}) from None
    finally:
        text.detach()  # leave the caller's handle open
    if header is None:
        raise ValidationError({"file": "The file has no header row."})


def _load_parquet(handle: BinaryIO) -> pd.DataFrame:
    import pyarrow.parquet as pq

    handle.seek(0)
    try:
        table = pq.read_table(handle)
    except Exception as exc:  # noqa: BLE001 - any failure means an unreadable file
        raise ValidationError({"file": f"The file is not a valid Parquet file: {exc}"}) from None
    _check_columns(table.column_names)
    return _arrow_to_frame(table)


def _load_excel(handle: BinaryIO) -> pd.DataFrame:
    import openpyxl

    handle.seek(0)
    try:
        workbook = openpyxl.load_workbook(handle, read_only=True, data_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure means an unreadable file
        raise ValidationError(
            {"file": f"The file is not a valid Excel .xlsx workbook: {exc}"}
        ) from None
    try:
        header = None
        for number, row in enumerate(workbook.worksheets[0].iter_rows(values_only=True), 1):
            if header is None:
                if any(value is not None for value in row):
                    header = list(row)
                    while header and header[-1] is None:
                        header.pop()
                    _check_columns(header)
            elif any(value is not None for value in row[len(header) :]):
                raise ValidationError(
                    {"file": f"Row {number} has values beyond the header's {len(header)} columns."}
                )
    finally:
        workbook.close()
    if header is None:
        raise ValidationError({"file": "The workbook's first sheet is empty."})
    handle.seek(0)
    try:
        return pd.read_excel(handle, sheet_name=0, engine="openpyxl")
    except Exception as exc:  # noqa: BLE001
        raise ValidationError({"file": f"The workbook can't be read: {exc}"}) from None
