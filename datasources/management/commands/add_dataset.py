from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from datasources.services import add_dataset


class Command(BaseCommand):
    help = (
        "Store a CSV, Parquet (.parquet) or Excel (.xlsx) file as a dataset, the format "
        "chosen by extension (a new version when the name exists)."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", help="Path of the .csv, .parquet or .xlsx file.")
        parser.add_argument("--name", help="Dataset name; defaults to the file name's stem.")
        parser.add_argument(
            "--encoding",
            default="",
            help="A CSV file's text encoding (utf-8, cp1252, ...); detected when not given.",
        )

    def handle(self, *args, file, name, encoding, **options):
        path = Path(file)
        try:
            with path.open("rb") as handle:
                dataset = add_dataset(handle, name or path.stem, path.name, encoding=encoding)
        except OSError as exc:
            raise CommandError(f"cannot read {file}: {exc.strerror}") from None
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from None
        text = f", {dataset.encoding}, delimiter {dataset.delimiter!r}" if dataset.encoding else ""
        self.stdout.write(
            f"Added dataset {dataset} (id {dataset.pk}, {dataset.format}{text}): "
            f"{dataset.row_count} rows, {dataset.column_count} columns, "
            f"sha256 {dataset.checksum[:12]}"
        )
