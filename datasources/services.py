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
# Bytes that Windows-1252 (Latin-1) text does not contain: C0 controls but tab/CR/LF,
# DEL, and the five bytes cp1252 leaves undefined.
_NOT_CP1252 = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\x81\x8d\x8f\x90\x9d]")
# A well-formed UTF-8 sequence of two to four bytes. Latin-1 text hardly ever has one
# ("Ã©" is the rare case), so a file with one that is not all UTF-8 mixes encodings.
_UTF8_MULTIBYTE = re.compile(
    rb"[\xc2-\xdf][\x80-\xbf]|\xe0[\xa0-\xbf][\x80-\xbf]|[\xe1-\xec\xee\xef][\x80-\xbf]{2}"
    rb"|\xed[\x80-\x9f][\x80-\xbf]|\xf0[\x90-\xbf][\x80-\xbf]{2}|[\xf1-\xf3][\x80-\xbf]{3}"
    rb"|\xf4[\x80-\x8f][\x80-\xbf]{2}"
)
# A number written with a decimal comma, as in ;-separated files from European locales.
_DECIMAL_COMMA = r"\s*[-+]?(?:\d+(?:,\d+)?|,\d+)\s*"


def add_dataset(
    handle: BinaryIO, name: str, filename: str = "", user=None, *, encoding: str = ""
) -> Dataset:
    """Store a CSV, Parquet or .xlsx file as the next version of `name`.

    `filename` is the user's file name: it picks the format by extension and is kept as a
    label only. A CSV file's `encoding` is detected (UTF-8, else Windows-1252) unless
    given. Raises ValidationError keyed by "name", "file" or "encoding"; nothing is
    stored then.
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
    chosen, encoding, delimiter = encoding, "", ""
    if file_format == DatasetFormat.PARQUET:
        frame = _load_parquet(handle)
    elif file_format == DatasetFormat.EXCEL:
        frame = _load_excel(handle)
    else:
        frame, encoding, delimiter = _load_csv(handle, chosen)
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
    frame = pd.read_csv(
        path,
        sep=dataset.delimiter or ",",
        encoding=dataset.encoding or "utf-8",
        usecols=columns,
        nrows=limit,
    )
    return _numbers_from_schema(frame, dataset.schema) if dataset.delimiter == ";" else frame


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
    """Names of the pipelines with a step that reads this dataset (name, id or name@v).

    Each step type says which datasets its params name: this app knows no step's params.
    """
    references = {dataset.name, f"{dataset.name}@{dataset.version}", dataset.pk}
    if not Dataset.objects.filter(name=str(dataset.pk)).exists():
        references.add(str(dataset.pk))  # digits name the id unless a dataset has that name
    return pipelines_referencing(references, "datasets")


def pipelines_phrase(names: list[str]) -> str:
    """ "pipeline 'a'" or "pipelines 'a', 'b'": what uses a dataset or source, in a message."""
    listed = ", ".join(repr(name) for name in names)
    return f"pipeline{'s' if len(names) > 1 else ''} {listed}"


def pipelines_referencing(references: set, kind: str) -> list[str]:
    """Names of the pipelines with a step whose params name one of `references`, among
    its `kind` of references ("datasets" or "sources")."""
    from pipelines.engine.registry import STEP_TYPES
    from pipelines.models import PipelineStep

    names = set()
    steps = PipelineStep.objects.select_related("pipeline").only(
        "step_type", "params", "pipeline__name"
    )
    for step in steps:
        step_type = STEP_TYPES.get(step.step_type)
        if step_type and references & set(getattr(step_type.references(step.params), kind)):
            names.add(step.pipeline.name)
    return sorted(names)


def delete_dataset(dataset: Dataset) -> None:
    """Delete the dataset and its stored file; refused while a pipeline reads it."""
    users = pipelines_using(dataset)
    if users:
        raise ValidationError(
            f"Dataset {dataset} is used by {pipelines_phrase(users)}: change their csv steps "
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
            raise ValidationError({"file": too_large_message()})
        digest.update(chunk)
    return digest.hexdigest(), size


# The multipart envelope around an uploaded file: boundaries, the name and encoding fields.
# A request declaring more than the limit plus this is refused before its body is read.
FORM_OVERHEAD_BYTES = 64 * 1024


def too_large_message() -> str:
    """Why a file over MLOPS_MAX_UPLOAD_BYTES is refused, also for the checks made while
    it is still arriving, before `add_dataset` sees it."""
    return f"The file is larger than the upload limit of {_bytes(settings.MLOPS_MAX_UPLOAD_BYTES)}."


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


def _load_csv(handle: BinaryIO, encoding: str = "") -> tuple[pd.DataFrame, str, str]:
    encoding = _check_encoding(handle, encoding) if encoding else _detect_encoding(handle)
    delimiter = _detect_delimiter(handle, encoding)
    _scan_csv(handle, encoding, delimiter)
    handle.seek(0)
    # Decoded here: pandas takes an uploaded file (Django's File, no `mode`) for a text
    # stream and would read its bytes as UTF-8 whatever the encoding.
    text = io.TextIOWrapper(handle, encoding=encoding, newline="")
    try:
        frame = pd.read_csv(text, sep=delimiter)
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise ValidationError({"file": f"The file is not a readable CSV: {exc}"}) from None
    finally:
        text.detach()  # leave the caller's handle open
    if delimiter == ";":
        frame = _decimal_commas(frame)
    return frame, encoding, delimiter


def _decimal_commas(frame: pd.DataFrame) -> pd.DataFrame:
    """Text columns whose every value is a number with a decimal comma ("12,5"), as
    numbers: in a ;-separated file the comma is the decimal separator."""
    for name in frame.columns:
        column = frame[name]
        if not pd.api.types.is_string_dtype(column.dtype):
            continue
        values = column.dropna().astype(str)
        if values.empty or not values.str.fullmatch(_DECIMAL_COMMA).all():
            continue
        if values.str.contains(",", regex=False).any():
            frame[name] = pd.to_numeric(column.str.replace(",", ".", regex=False))
    return frame


def _numbers_from_schema(frame: pd.DataFrame, schema: dict) -> pd.DataFrame:
    """Columns the stored schema says are numbers, read as text (decimal commas)."""
    for name in frame.columns:
        numeric = str(schema.get(str(name), "")).startswith(("float", "int"))
        if numeric and pd.api.types.is_string_dtype(frame[name].dtype):
            frame[name] = pd.to_numeric(frame[name].str.replace(",", ".", regex=False))
    return frame


def _detect_encoding(handle: BinaryIO) -> str:
    """UTF-8 (with or without BOM), else Windows-1252 when no byte of the file is UTF-8.

    A file that is partly UTF-8 is refused, naming the first byte that is not: reading
    it all as Windows-1252 would silently turn its "é" into "Ã©".
    """
    _refuse_utf16(handle)
    handle.seek(0)
    start = handle.read(len(codecs.BOM_UTF8))
    invalid = _first_undecodable(handle, "utf-8")
    if invalid is None:
        return "utf-8-sig" if start == codecs.BOM_UTF8 else "utf-8"
    if _has_utf8_sequence(handle):
        raise ValidationError(
            {
                "file": f"The file is not valid UTF-8 at {_where(handle, invalid, 'utf-8-sig')}, "
                "though other text in it is UTF-8: save the file as UTF-8 or choose its encoding."
            }
        )
    handle.seek(0)
    offset = 0
    while chunk := handle.read(_CHUNK):
        if found := _NOT_CP1252.search(chunk):
            where = _where(handle, offset + found.start(), "cp1252")
            raise ValidationError(
                {
                    "file": "The file's text can't be decoded: it is neither UTF-8 nor Latin-1 "
                    f"(Windows-1252): {where}. Save it as UTF-8 or choose its encoding."
                }
            )
        offset += len(chunk)
    return "cp1252"


def _check_encoding(handle: BinaryIO, encoding: str) -> str:
    """The canonical name of a chosen encoding, once the whole file decodes with it."""
    try:
        name = codecs.lookup(encoding).name
    except LookupError:
        raise ValidationError({"encoding": f"Unknown encoding {encoding!r}."}) from None
    if name.startswith("utf-16") or name.startswith("utf-32"):
        raise ValidationError({"encoding": "UTF-16 and UTF-32 are not supported: use UTF-8."})
    _refuse_utf16(handle)
    invalid = _first_undecodable(handle, name)
    if invalid is not None:
        raise ValidationError(
            {"file": f"The file is not valid {name} at {_where(handle, invalid, name)}."}
        )
    handle.seek(0)
    if name == "utf-8" and handle.read(len(codecs.BOM_UTF8)) == codecs.BOM_UTF8:
        return "utf-8-sig"  # so the first column's name does not start with the BOM
    return name


def _refuse_utf16(handle: BinaryIO) -> None:
    handle.seek(0)
    if handle.read(2) in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
        raise ValidationError({"file": "UTF-16 text is not supported: save the file as UTF-8."})


def _first_undecodable(handle: BinaryIO, encoding: str) -> int | None:
    """The offset of the first byte `encoding` cannot decode, or None; refuses NUL bytes."""
    handle.seek(0)
    decoder = codecs.getincrementaldecoder(encoding)()
    offset = 0
    while True:
        chunk = handle.read(_CHUNK)
        _refuse_nul(chunk, offset)
        pending = decoder.getstate()[0]  # bytes of a sequence the last chunk cut
        try:
            decoder.decode(chunk, final=not chunk)
        except UnicodeDecodeError as exc:
            return offset - len(pending) + exc.start
        if not chunk:
            return None
        offset += len(chunk)


def _has_utf8_sequence(handle: BinaryIO) -> bool:
    handle.seek(0)
    carry = b""
    while chunk := handle.read(_CHUNK):
        if _UTF8_MULTIBYTE.search(carry + chunk):
            return True
        carry = chunk[-3:]  # a sequence cut by the chunk boundary
    return False


def _where(handle: BinaryIO, position: int, encoding: str) -> str:
    """Where a byte offset of the file is: "line 3, byte 0xe9 (column 17)"."""
    handle.seek(0)
    line, line_start, offset = 1, 0, 0
    while offset < position and (chunk := handle.read(min(_CHUNK, position - offset))):
        newlines = chunk.count(b"\n")
        if newlines:
            line += newlines
            line_start = offset + chunk.rindex(b"\n") + 1
        offset += len(chunk)
    handle.seek(line_start)
    before = handle.read(position - line_start).decode(encoding, errors="replace")
    byte = handle.read(1)[0]
    return f"line {line}, byte 0x{byte:02x} (column {len(before) + 1})"


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


# The analyst pages: the list of names, the page of a dataset, whole-name deletion.
# Shared with the API; views call these and render.

PROFILE_CACHE_PREFIX = "dataset-profile"
PROFILE_TOP_VALUES = 3
CONTENT_TYPES = {
    DatasetFormat.CSV: "text/csv",
    DatasetFormat.PARQUET: "application/vnd.apache.parquet",
    DatasetFormat.EXCEL: "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}


def latest_datasets(search: str = ""):
    """The latest version of each dataset name (matching `search`), with `version_count`."""
    from django.db.models import Count, Exists, OuterRef, Subquery

    newer = Dataset.objects.filter(name=OuterRef("name"), version__gt=OuterRef("version"))
    counts = (
        Dataset.objects.filter(name=OuterRef("name"))
        .order_by()
        .values("name")
        .annotate(n=Count("pk"))
        .values("n")
    )
    latest = Dataset.objects.filter(~Exists(newer))
    if search:
        latest = latest.filter(name__icontains=search)
    return (
        latest.select_related("uploaded_by")
        .annotate(version_count=Subquery(counts))
        .order_by("name")
    )


def pipelines_reading(names) -> dict[str, list[dict]]:
    """For each dataset name, the pipelines ({"pk", "name"}) with a step reading any version.

    A constant number of queries for any number of names (every step is read once), so a
    page of datasets asks it once rather than `pipelines_using` per row.
    """
    from pipelines.engine.registry import STEP_TYPES
    from pipelines.models import PipelineStep

    names = set(names)
    found: dict[str, dict[int, str]] = {name: {} for name in names}
    by_reference: list[tuple[str | int, int, str]] = []
    steps = PipelineStep.objects.select_related("pipeline").only(
        "step_type", "params", "pipeline__name"
    )
    for step in steps:
        step_type = STEP_TYPES.get(step.step_type)
        if step_type:
            for reference in step_type.references(step.params).datasets:
                by_reference.append((reference, step.pipeline_id, step.pipeline.name))
    ids = _ids_to_names(reference for reference, _, _ in by_reference)
    for reference, pipeline_pk, pipeline_name in by_reference:
        name = _referenced_name(reference, names, ids)
        if name is not None:
            found[name][pipeline_pk] = pipeline_name
    return {
        name: [{"pk": pk, "name": title} for pk, title in sorted(users.items(), key=lambda i: i[1])]
        for name, users in found.items()
    }


def _ids_to_names(references) -> dict[int, str]:
    """Dataset names of the ids among `references`, in one query (digits name an id
    unless a dataset has that name, as `DatasetQuerySet.matching` reads them)."""
    from django.db.models import Q

    references = list(references)
    digits = {r for r in references if isinstance(r, str) and r.isascii() and r.isdigit()}
    ints = {r for r in references if isinstance(r, int)}
    if not digits and not ints:
        return {}
    rows = list(
        Dataset.objects.filter(Q(pk__in=ints | {int(d) for d in digits}) | Q(name__in=digits))
        .values_list("pk", "name")
        .order_by()
    )
    taken = {name for _, name in rows if name in digits}
    return {pk: name for pk, name in rows if pk in ints or str(pk) in digits - taken}


def _referenced_name(reference, names: set[str], ids: dict[int, str]) -> str | None:
    if isinstance(reference, int):
        return ids.get(reference)
    if reference in names:
        return reference
    if reference.isascii() and reference.isdigit() and int(reference) in ids:
        return ids[int(reference)]
    name, at, version = reference.rpartition("@")
    if at and name in names and version.isascii() and version.isdigit():
        return name
    return None


def dataset_versions(name: str):
    """Every version of a name, newest first (empty when no dataset has that name)."""
    return Dataset.objects.filter(name=name).select_related("uploaded_by").order_by("-version")


def dataset_head(dataset: Dataset, n: int = 20) -> dict:
    """The first `n` rows as {"columns": [...], "rows": [[...], ...]} of JSON values."""
    head = _read_head(dataset, n)
    records = json.loads(head.to_json(orient="values", date_format="iso", default_handler=str))
    return {"columns": [str(column) for column in head.columns], "rows": records}


def profile_dataset(dataset: Dataset) -> list[dict]:
    """Per column: dtype, nulls, distinct values, and min/max (numbers, dates) or the top
    values with their counts (everything else).

    Computed from the whole stored file once per version: the result is kept in Django's
    cache under the file's checksum and how it is read, with no expiry (a version's file
    never changes).
    """
    from django.core.cache import cache

    key = ":".join(
        [PROFILE_CACHE_PREFIX, dataset.checksum, dataset.format, dataset.encoding or "-"]
        + [f"{ord(dataset.delimiter or ','):x}"]
    )
    profile = cache.get(key)
    if profile is None:
        profile = _profile_frame(read_dataset(dataset), dataset.schema)
        cache.set(key, profile, timeout=None)
    return profile


def _profile_frame(frame: pd.DataFrame, schema: dict) -> list[dict]:
    return [_profile_column(str(name), frame[name], schema) for name in frame.columns]


def _profile_column(name: str, column: pd.Series, schema: dict) -> dict:
    values = column.dropna()
    entry = {
        "name": name,
        "dtype": str(schema.get(name) or column.dtype),
        "nulls": int(column.isna().sum()),
        "distinct": int(values.nunique()),
        "min": None,
        "max": None,
        "top": [],
    }
    numeric = pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)
    if (numeric or pd.api.types.is_datetime64_any_dtype(column)) and not values.empty:
        entry["min"], entry["max"] = _plain(values.min()), _plain(values.max())
    elif not values.empty:
        counts = values.astype(str).value_counts().head(PROFILE_TOP_VALUES)
        entry["top"] = [{"value": str(k), "count": int(v)} for k, v in counts.items()]
    return entry


def _plain(value):
    """A numpy or pandas scalar as a plain Python value the cache and templates take."""
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return value.item() if hasattr(value, "item") else value


def download_filename(dataset: Dataset) -> str:
    """The user's original file name, or "<name>-v<version>.<ext>" when none was kept."""
    extension = FORMAT_EXTENSIONS.get(dataset.format, ".csv")
    fallback = re.sub(r"[\\/\x00-\x1f\x7f]", "_", dataset.name) + f"-v{dataset.version}{extension}"
    return dataset.original_filename or fallback


def delete_dataset_versions(name: str) -> int:
    """Delete every version of `name` with their files; all or nothing, refused while a
    pipeline reads any version. Returns how many versions were deleted."""
    users = pipelines_reading([name]).get(name, [])
    if users:
        used_by = pipelines_phrase([user["name"] for user in users])
        raise ValidationError(
            f"Dataset {name} is used by {used_by}: change their steps before deleting it."
        )
    with transaction.atomic():
        versions = list(Dataset.objects.select_for_update().filter(name=name))
        for dataset in versions:
            delete_dataset(dataset)  # the per-version guard still runs
    return len(versions)
