import io

import pandas as pd
import pytest
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.urls import reverse

from datasources.models import Dataset
from datasources.services import add_dataset, delete_dataset, preview_dataset, read_dataset

pytestmark = pytest.mark.django_db

FRAME = pd.DataFrame({"city": ["Lyon", "Oslo", None], "amount": [1.5, None, 3.0], "n": [1, 2, 3]})


def stored_files():
    folder = settings.MEDIA_ROOT / "datasets"
    return sorted(path.name for path in folder.iterdir()) if folder.exists() else []


def upload(data: bytes, filename: str, name: str = "sales") -> Dataset:
    return add_dataset(io.BytesIO(data), name, filename)


def parquet_bytes(frame=FRAME) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


def xlsx_bytes(frame=FRAME) -> bytes:
    buffer = io.BytesIO()
    frame.to_excel(buffer, index=False)
    return buffer.getvalue()


# Formats


def test_csv_upload_counts_schema_and_server_chosen_name():
    dataset = upload(FRAME.to_csv(index=False).encode(), "../../etc/sales.csv")

    assert (dataset.format, dataset.encoding, dataset.delimiter) == ("csv", "utf-8", ",")
    assert (dataset.row_count, dataset.column_count) == (3, 3)
    assert dataset.schema == {"city": "str", "amount": "float64", "n": "int64"}
    assert dataset.original_filename == "sales.csv"
    assert dataset.file.name.startswith("datasets/") and dataset.file.name.endswith(".csv")
    assert "sales" not in dataset.file.name
    pd.testing.assert_frame_equal(read_dataset(dataset), FRAME)


def test_parquet_upload():
    dataset = upload(parquet_bytes(), "sales.parquet")

    assert dataset.format == "parquet"
    assert dataset.file.name.endswith(".parquet")
    assert (dataset.row_count, dataset.column_count) == (3, 3)
    assert dataset.schema == {"city": "str", "amount": "float64", "n": "int64"}
    assert read_dataset(dataset, columns=["n"], limit=2)["n"].tolist() == [1, 2]
    with pytest.raises(ValueError, match="not found"):
        read_dataset(dataset, columns=["nope"])


def test_excel_upload():
    dataset = upload(xlsx_bytes(), "sales.xlsx")

    assert dataset.format == "excel"
    assert dataset.file.name.endswith(".xlsx")
    assert (dataset.row_count, dataset.column_count) == (3, 3)
    assert dataset.schema == {"city": "str", "amount": "float64", "n": "int64"}
    assert read_dataset(dataset, limit=1).to_dict("records") == [
        {"city": "Lyon", "amount": 1.5, "n": 1}
    ]


def test_semicolon_delimited_utf8_bom_csv():
    data = "\ufeffproduit;prix\ncafé;2\nthé;3\n".encode()

    dataset = upload(data, "prix.csv")

    assert (dataset.delimiter, dataset.encoding) == (";", "utf-8-sig")
    assert dataset.schema == {"produit": "str", "prix": "int64"}
    assert read_dataset(dataset)["produit"].tolist() == ["café", "thé"]


def test_latin1_tab_delimited_csv_is_read_as_windows_1252():
    data = "ville\tmontant\nGenève\t1\nZürich €\t2\n".encode("cp1252")

    dataset = upload(data, "villes.tsv")

    assert (dataset.delimiter, dataset.encoding) == ("\t", "cp1252")
    assert read_dataset(dataset)["ville"].tolist() == ["Genève", "Zürich €"]


def test_utf8_file_with_one_latin1_byte_is_refused_naming_line_and_byte():
    data = "produit,prix\ncafé,2\nth".encode() + b"\xe9,3\n"

    with pytest.raises(ValidationError) as caught:
        upload(data, "prix.csv")

    assert caught.value.message_dict["file"] == [
        "The file is not valid UTF-8 at line 3, byte 0xe9 (column 3), though other text in "
        "it is UTF-8: save the file as UTF-8 or choose its encoding."
    ]
    assert not Dataset.objects.exists()


def test_a_mixed_file_is_read_with_the_encoding_chosen():
    data = "produit;prix\ncafé;2\n".encode() + b"th\xe9;3\n"

    dataset = add_dataset(io.BytesIO(data), "prix", "prix.csv", encoding="cp1252")

    assert dataset.encoding == "cp1252"
    assert read_dataset(dataset)["produit"].tolist() == ["cafÃ©", "thé"]  # as chosen


def test_a_chosen_encoding_that_does_not_fit_is_refused():
    with pytest.raises(ValidationError) as caught:
        add_dataset(io.BytesIO("a\ncafé\n".encode()), "x", "x.csv", encoding="ascii")
    assert caught.value.message_dict["file"] == [
        "The file is not valid ascii at line 2, byte 0xc3 (column 4)."
    ]

    with pytest.raises(ValidationError) as caught:
        add_dataset(io.BytesIO(b"a\n1\n"), "x", "x.csv", encoding="klingon")
    assert caught.value.message_dict == {"encoding": ["Unknown encoding 'klingon'."]}


def test_a_utf8_sequence_cut_by_the_read_chunk_is_still_utf8(monkeypatch):
    from datasources import services

    monkeypatch.setattr(services, "_CHUNK", 8)
    data = "name\nabcdé\nxyz\n".encode()  # "é" straddles bytes 8 and 9

    assert upload(data, "cut.csv").encoding == "utf-8"
    with pytest.raises(ValidationError, match="line 4, byte 0xe9 \\(column 1\\)"):
        upload(data + b"\xe9\n", "cut.csv")


def test_semicolon_file_with_decimal_commas_reads_numbers():
    data = b"article;prix;code;note\npain;12,5;007;a,b\nlait;3;010;\nbeurre;-0,25;;c\n"

    dataset = upload(data, "prix.csv")

    assert dataset.schema == {"article": "str", "prix": "float64", "code": "float64", "note": "str"}
    frame = read_dataset(dataset)
    assert frame["prix"].tolist() == [12.5, 3.0, -0.25]
    assert frame["note"].tolist()[0] == "a,b"  # text with a comma stays text
    assert read_dataset(dataset, columns=["prix"], limit=1)["prix"].tolist() == [12.5]
    assert preview_dataset(dataset, 2)["rows"][0]["prix"] == 12.5


def test_comma_delimited_file_keeps_quoted_commas_as_text():
    dataset = upload(b'label,value\nx,"12,5"\n', "quoted.csv")

    assert read_dataset(dataset)["value"].tolist() == ["12,5"]


def test_pipe_delimited_csv():
    dataset = upload(b"a|b\n1|x\n2|y\n", "pipes.csv")

    assert dataset.delimiter == "|"
    assert (dataset.row_count, dataset.column_count) == (2, 2)


# Bad files: a clear message keyed by field, and nothing stored


@pytest.mark.parametrize(
    ("data", "filename", "message"),
    [
        (b"", "empty.csv", "The file is empty"),
        (b"\x00\x01\x02\x03binary", "blob.csv", "binary"),
        (b"a,b\n1,2\n3\n", "short.csv", "Line 3 has 1 field but the header has 2"),
        (b"a,b\n1,2\n3,4\n5,6,7\n", "long.csv", "Line 4 has 3 fields but the header has 2"),
        (b"a,b,a\n1,2,3\n", "dup.csv", "Duplicate column names: 'a'"),
        (b"a,,c\n1,2,3\n", "blank.csv", "Column 2 has a blank name"),
        (b"a,b\n\x81\x8d,1\n", "mojibake.csv", "neither UTF-8 nor Latin-1 (Windows-1252): line 2"),
        (b"PAR1 not really parquet", "fake.parquet", "not a valid Parquet file"),
        (b"PK\x03\x04 not really a workbook", "fake.xlsx", "not a valid Excel .xlsx"),
        (b"\x00\x01garbage", "noext", "binary"),
        (b"a,b\n1,2\n", "../", "The file name '../' is not usable"),
        (b"a,b\n1,2\n", "", "The file name '' is not usable"),
        (b"a,b\n1,2\n", "old.xls", "save it as .xlsx"),
    ],
)
def test_bad_files_store_nothing(data, filename, message):
    with pytest.raises(ValidationError) as caught:
        upload(data, filename)

    assert list(caught.value.message_dict) == ["file"]
    assert message in caught.value.message_dict["file"][0]
    assert not Dataset.objects.exists()
    assert stored_files() == []


def test_duplicate_and_blank_columns_in_parquet_and_excel_are_refused():
    blank_header = pd.DataFrame([["x", 1]], columns=["a", " "])
    duplicate_header = pd.DataFrame([[1, 2]], columns=["a", "a"])

    with pytest.raises(ValidationError, match="blank name"):
        upload(xlsx_bytes(blank_header), "blank.xlsx")
    with pytest.raises(ValidationError, match="Duplicate column names"):
        upload(xlsx_bytes(duplicate_header), "dup.xlsx")
    with pytest.raises(ValidationError, match="blank name"):
        upload(parquet_bytes(blank_header), "blank.parquet")
    assert not Dataset.objects.exists()
    assert stored_files() == []


def test_blank_name_is_keyed_by_name():
    with pytest.raises(ValidationError) as caught:
        upload(b"a\n1\n", "a.csv", name="  ")

    assert caught.value.message_dict == {"name": ["A dataset needs a name."]}


def test_size_limit(settings):
    settings.MLOPS_MAX_UPLOAD_BYTES = 10

    with pytest.raises(ValidationError, match=r"larger than the upload limit of 10 bytes"):
        upload(b"a,b\n1,2\n3,4\n", "big.csv")

    assert not Dataset.objects.exists()
    assert stored_files() == []
    settings.MLOPS_MAX_UPLOAD_BYTES = 12
    assert upload(b"a,b\n1,2\n3,4\n", "fits.csv").size_bytes == 12


# Versions


def test_same_name_makes_versions_and_resolve_pins_one():
    first = upload(b"a\n1\n", "v1.csv")
    second = upload(parquet_bytes(), "v2.parquet")

    assert (first.version, second.version) == (1, 2)
    assert Dataset.objects.resolve("sales") == second
    assert Dataset.objects.resolve("sales@1") == first
    assert Dataset.objects.resolve(first.pk) == first
    with pytest.raises(Dataset.DoesNotExist):
        Dataset.objects.resolve("sales@3")
    assert len(stored_files()) == 2


# Preview


def test_preview_reads_first_rows_with_types_and_nulls():
    frame = pd.DataFrame({"x": [1, 2, 3, None], "y": ["a", None, "c", "d"]})
    dataset = upload(frame.to_csv(index=False).encode(), "p.csv")

    preview = preview_dataset(dataset, n=2)

    assert preview["rows"] == [{"x": 1.0, "y": "a"}, {"x": 2.0, "y": None}]
    assert preview["columns"] == ["x", "y"]
    assert preview["column_types"] == {"x": "float64", "y": "str"}  # the whole file's types
    assert preview["row_count"] == 4
    assert preview["null_counts"] == {"x": 1, "y": 1}
    assert preview["null_counts_scope"] == "all rows"


def test_preview_of_big_file_counts_nulls_in_shown_rows(monkeypatch):
    monkeypatch.setattr("datasources.services.PREVIEW_FULL_SCAN_BYTES", 1)
    frame = pd.DataFrame({"x": [1, 2, 3, None]})
    dataset = upload(parquet_bytes(frame), "p.parquet")

    preview = preview_dataset(dataset, n=3)

    assert preview["null_counts"] == {"x": 0}
    assert preview["null_counts_scope"] == "first 3 rows"
    assert len(preview["rows"]) == 3


# Delete


def test_delete_refused_while_a_pipeline_uses_the_dataset(make_pipeline):
    dataset = upload(b"a\n1\n", "sales.csv")
    make_pipeline([{"type": "csv", "params": {"dataset": "sales"}}], name="uses-sales")

    with pytest.raises(ValidationError, match="used by pipeline 'uses-sales'"):
        delete_dataset(dataset)

    assert Dataset.objects.filter(pk=dataset.pk).exists()
    assert len(stored_files()) == 1


def test_delete_refused_when_a_pipeline_names_the_id(make_pipeline):
    dataset = upload(b"a\n1\n", "sales.csv")
    make_pipeline([{"type": "csv", "params": {"dataset": dataset.pk}}], name="by-id")

    with pytest.raises(ValidationError, match="'by-id'"):
        delete_dataset(dataset)


def test_delete_removes_row_and_file(make_pipeline, django_capture_on_commit_callbacks):
    dataset = upload(b"a\n1\n", "sales.csv")
    other = upload(b"a\n1\n", "other.csv", name="other")
    make_pipeline([{"type": "csv", "params": {"dataset": "other"}}], name="uses-other")

    with django_capture_on_commit_callbacks(execute=True):
        delete_dataset(dataset)

    assert list(Dataset.objects.all()) == [other]
    assert stored_files() == [other.file.name.rsplit("/", 1)[-1]]


# Admin


def test_admin_uploads_parquet(admin_client):
    upload_file = SimpleUploadedFile("../sales.parquet", parquet_bytes())

    response = admin_client.post(
        reverse("admin:datasources_dataset_add"), {"name": "sales", "upload": upload_file}
    )

    assert response.status_code == 302
    dataset = Dataset.objects.get(name="sales")
    assert (dataset.format, dataset.row_count, dataset.column_count) == ("parquet", 3, 3)
    assert dataset.original_filename == "sales.parquet"


def test_admin_shows_bad_file_error_on_the_upload_field(admin_client):
    upload_file = SimpleUploadedFile("dup.csv", b"a,a\n1,2\n")

    response = admin_client.post(
        reverse("admin:datasources_dataset_add"), {"name": "dup", "upload": upload_file}
    )

    assert response.status_code == 200
    assert "Duplicate column names" in response.context["adminform"].form.errors["upload"][0]
    assert not Dataset.objects.exists()
    assert stored_files() == []


def test_admin_change_page_shows_preview_table(admin_client):
    dataset = upload(FRAME.to_csv(index=False).encode(), "sales.csv")

    response = admin_client.get(reverse("admin:datasources_dataset_change", args=[dataset.pk]))

    page = response.content.decode()
    assert "<th>city<br><small>str</small></th>" in page
    assert "<td>Lyon</td>" in page
    assert "First 3 of 3 rows" in page


def test_admin_delete_refused_with_message(admin_client, make_pipeline):
    dataset = upload(b"a\n1\n", "sales.csv")
    make_pipeline([{"type": "csv", "params": {"dataset": "sales"}}], name="uses-sales")

    response = admin_client.post(
        reverse("admin:datasources_dataset_delete", args=[dataset.pk]), {"post": "yes"}, follow=True
    )

    shown = [str(message) for message in response.context["messages"]]
    assert any("used by pipeline 'uses-sales'" in message for message in shown)
    assert not any("deleted successfully" in message for message in shown)
    assert Dataset.objects.filter(pk=dataset.pk).exists()


def test_admin_bulk_delete_refused_with_message(admin_client, make_pipeline):
    dataset = upload(b"a\n1\n", "sales.csv")
    make_pipeline([{"type": "csv", "params": {"dataset": "sales"}}], name="uses-sales")

    response = admin_client.post(
        reverse("admin:datasources_dataset_changelist"),
        {"action": "delete_selected", "_selected_action": [dataset.pk], "post": "yes"},
        follow=True,
    )

    shown = [str(message) for message in response.context["messages"]]
    assert any("'uses-sales'" in message for message in shown)
    assert not any("Successfully deleted" in message for message in shown)
    assert Dataset.objects.filter(pk=dataset.pk).exists()


def test_admin_delete_allowed(admin_client, django_capture_on_commit_callbacks):
    dataset = upload(b"a\n1\n", "sales.csv")

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            reverse("admin:datasources_dataset_delete", args=[dataset.pk]), {"post": "yes"}
        )

    assert response.status_code == 302
    assert not Dataset.objects.exists()
    assert stored_files() == []


# Command


def test_add_dataset_command_accepts_excel_and_parquet(tmp_path):
    (tmp_path / "book.xlsx").write_bytes(xlsx_bytes())
    (tmp_path / "table.parquet").write_bytes(parquet_bytes())
    out = io.StringIO()

    call_command("add_dataset", str(tmp_path / "book.xlsx"), stdout=out)
    call_command("add_dataset", str(tmp_path / "table.parquet"), "--name", "book", stdout=out)

    assert [(d.format, d.version) for d in Dataset.objects.order_by("version")] == [
        ("excel", 1),
        ("parquet", 2),
    ]
    assert "Added dataset book v2" in out.getvalue()


def test_add_dataset_command_takes_an_encoding_and_reports_it(tmp_path):
    path = tmp_path / "villes.csv"
    path.write_bytes("ville,n\ncafé,1\n".encode() + b"caf\xe9,2\n")
    out = io.StringIO()

    with pytest.raises(CommandError, match="not valid UTF-8 at line 3, byte 0xe9"):
        call_command("add_dataset", str(path), stdout=out)
    call_command("add_dataset", str(path), "--encoding", "latin-1", stdout=out)

    assert "(id " in out.getvalue() and "csv, iso8859-1, delimiter ','" in out.getvalue()


def test_admin_upload_of_a_windows_1252_file_is_decoded_as_such(admin_client):
    data = "ville,n\nGenève,1\nZürich €,2\n".encode("cp1252")

    response = admin_client.post(
        reverse("admin:datasources_dataset_add"),
        {"name": "villes", "upload": SimpleUploadedFile("v.csv", data, "text/csv")},
    )

    assert response.status_code == 302
    dataset = Dataset.objects.get()
    assert dataset.encoding == "cp1252"
    assert read_dataset(dataset)["ville"].tolist() == ["Genève", "Zürich €"]


def test_admin_upload_names_the_bad_byte_and_accepts_an_encoding(admin_client):
    data = "ville,n\ncafé,1\n".encode() + b"caf\xe9,2\n"
    url = reverse("admin:datasources_dataset_add")

    refused = admin_client.post(
        url, {"name": "villes", "upload": SimpleUploadedFile("v.csv", data, "text/csv")}
    )
    bad_encoding = admin_client.post(
        url,
        {
            "name": "villes",
            "upload": SimpleUploadedFile("v.csv", data, "text/csv"),
            "encoding": "klingon",
        },
    )
    accepted = admin_client.post(
        url,
        {
            "name": "villes",
            "upload": SimpleUploadedFile("v.csv", data, "text/csv"),
            "encoding": "cp1252",
        },
    )

    assert "not valid UTF-8 at line 3, byte 0xe9 (column 4)" in refused.content.decode()
    assert "Unknown encoding" in bad_encoding.content.decode()
    assert accepted.status_code == 302
    assert Dataset.objects.get().encoding == "cp1252"
