"""/api/v1/datasets/: list, upload, versions, preview, profile, download and delete, with
their permissions and error bodies; uploads and downloads also through a real server."""

import io
import json
from urllib.parse import quote
from wsgiref.util import setup_testing_defaults

import pandas as pd
import pytest
import requests
from django.core.cache import cache
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext

from datasources import services
from datasources.models import Dataset
from datasources.services import FORM_OVERHEAD_BYTES
from mlops_site.wsgi import application
from pipelines.api.tokens import issue_token
from pipelines.models import Pipeline

pytestmark = pytest.mark.django_db

LIST = "/api/v1/datasets/"
CSV = b"city,amount,n\nLyon,1.5,1\nOslo,,2\nLyon,3.0,3\n"
ADD = "datasources.add_dataset"
DELETE = "datasources.delete_dataset"


def add(name="sales", data=CSV, filename="sales.csv", user=None) -> Dataset:
    return services.add_dataset(io.BytesIO(data), name, filename, user)


def url(name="sales", version=None, view="") -> str:
    path = f"{LIST}{quote(name)}/"
    if version is not None:
        path += f"versions/{version}/"
    return path + (f"{view}/" if view else "")


def upload(client, data=CSV, filename="sales.csv", name="sales", **fields):
    body = {"file": SimpleUploadedFile(filename, data), "name": name, **fields}
    return client.post(LIST, body, format="multipart")


def stored_files(settings) -> list[str]:
    folder = settings.MEDIA_ROOT / "datasets"
    return sorted(path.name for path in folder.iterdir()) if folder.exists() else []


def error(field, message, code="invalid") -> dict:
    return {
        "code": code,
        "message": f"{field}: {message}",
        "errors": [{"field": field, "message": message}],
    }


@pytest.fixture
def reader(api_as):
    return api_as(username="reader")


@pytest.fixture
def uploader(api_as):
    return api_as(ADD, username="uploader")


@pytest.fixture
def deleter(api_as):
    return api_as(DELETE, username="deleter")


# Reading: list, a name, a version


def test_list_shows_the_latest_version_of_each_name_with_its_counts(reader, uploader):
    add()
    latest = add(data=b"a,b\n1,2\n", filename="v2.csv", user=uploader.user)
    add(name="kept")

    response = reader.get(LIST)

    assert response.status_code == 200
    assert response.data["count"] == 2
    kept, sales = response.json()["results"]
    assert (kept["name"], kept["version"], kept["version_count"]) == ("kept", 1, 1)
    assert sales == {
        "id": latest.pk,
        "url": "http://testserver/api/v1/datasets/sales/versions/2/",
        "name": "sales",
        "version": 2,
        "format": "csv",
        "original_filename": "v2.csv",
        "size_bytes": 8,
        "checksum": latest.checksum,
        "row_count": 1,
        "column_count": 2,
        "column_types": {"a": "int64", "b": "int64"},
        "encoding": "utf-8",
        "delimiter": ",",
        "uploaded_at": sales["uploaded_at"],
        "uploaded_by": "uploader",
        "download_url": "http://testserver/api/v1/datasets/sales/versions/2/download/",
        "version_count": 2,
        "versions_url": "http://testserver/api/v1/datasets/sales/",
    }
    assert sales["uploaded_at"].startswith(str(latest.created_at.date()))
    assert kept["uploaded_by"] is None


def test_list_search_and_pages(reader):
    for name in ["sales-eu", "Sales-us", "costs"]:
        add(name=name)

    found = reader.get(LIST, {"search": "SALES"}).json()
    paged = reader.get(LIST, {"page_size": 2}).json()
    beyond = reader.get(LIST, {"page": 9})

    assert [row["name"] for row in found["results"]] == ["Sales-us", "sales-eu"]
    assert [row["name"] for row in paged["results"]] == ["Sales-us", "costs"]
    assert paged["next"] == "http://testserver/api/v1/datasets/?page=2&page_size=2"
    assert beyond.status_code == 404 and beyond.json()["code"] == "not_found"


def test_list_queries_do_not_grow_with_datasets_or_versions(reader):
    add()

    def dataset_queries():
        with CaptureQueriesContext(connection) as captured:
            assert reader.get(LIST).status_code == 200
        return [q["sql"] for q in captured.captured_queries if "datasources_dataset" in q["sql"]]

    few = dataset_queries()
    for name in ["a", "b", "c"]:
        add(name=name)
        add(name=name)

    assert len(dataset_queries()) == len(few) == 2  # the count, and the page


def test_a_name_lists_its_versions_newest_first_and_the_pipelines_reading_it(reader, make_pipeline):
    add()
    add(data=b"v\n2\n", filename="two.csv")
    make_pipeline([{"type": "csv", "params": {"dataset": "sales@1"}}], name="pinned")

    body = reader.get(url("sales")).json()

    assert body["name"] == "sales" and body["version_count"] == 2
    assert body["used_by"] == ["pinned"]
    assert [(v["version"], v["original_filename"]) for v in body["versions"]] == [
        (2, "two.csv"),
        (1, "sales.csv"),
    ]


def test_one_version(reader):
    first = add()
    add()

    response = reader.get(url("sales", 1))

    assert response.status_code == 200
    assert (response.data["id"], response.data["version"]) == (first.pk, 1)
    assert response.data["column_types"] == {"city": "str", "amount": "float64", "n": "int64"}


@pytest.mark.parametrize(
    "path, message",
    [
        (url("nothing"), "No dataset is named 'nothing'."),
        (url("sales", 2), "Dataset 'sales' has no version 2."),
        (url("sales", 0, "preview"), "Dataset 'sales' has no version 0."),
        (url("sales", 2**31, "download"), f"Dataset 'sales' has no version {2**31}."),
        (url("sales", 3, "profile"), "Dataset 'sales' has no version 3."),
    ],
)
def test_unknown_names_and_versions_are_404(reader, path, message):
    add()

    response = reader.get(path)

    assert response.status_code == 404
    assert response.json() == {"code": "not_found", "message": message, "errors": []}


@pytest.mark.parametrize("name", ["team/sales", "a b?#%", "versions", "2024", "upload"])
def test_any_name_is_reachable_by_the_links_the_api_gives(reader, name):
    add(name=name)

    listed = reader.get(LIST).json()["results"][0]
    versions = reader.get(listed["versions_url"]).json()
    version = reader.get(listed["url"])
    download = reader.get(listed["download_url"])

    assert versions["name"] == name and versions["version_count"] == 1
    assert version.status_code == 200 and version.data["name"] == name
    assert b"".join(download.streaming_content) == CSV


def test_the_unversioned_alias_serves_the_same_views_linking_to_v1(reader):
    add()

    body = reader.get("/api/datasets/").json()

    assert body["results"][0]["url"] == "http://testserver/api/v1/datasets/sales/versions/1/"
    assert reader.get("/api/datasets/sales/versions/1/preview/").status_code == 200


@pytest.mark.parametrize(
    "path",
    [LIST, url(), url("sales", 1), *(url("sales", 1, view) for view in ["preview", "profile"])]
    + [url("sales", 1, "download")],
)
def test_reading_needs_a_login_and_no_permission(client, reader, path):
    add()

    anonymous = client.get(path)

    assert anonymous.status_code == 401
    assert anonymous.json()["code"] == "not_authenticated"
    assert reader.get(path).status_code == 200


# Preview and profile


def test_preview_shows_the_first_rows_with_json_values(reader):
    add(data=b"city,amount,n\n" + b"".join(b"Lyon,%d.5,\n" % i for i in range(30)))

    default = reader.get(url("sales", 1, "preview")).json()
    five = reader.get(url("sales", 1, "preview"), {"rows": 5}).json()

    assert default["columns"] == ["city", "amount", "n"]
    assert default["row_count"] == 30 and len(default["rows"]) == 20
    assert five["rows"][:2] == [["Lyon", 0.5, None], ["Lyon", 1.5, None]]
    assert len(five["rows"]) == 5


@pytest.mark.parametrize(
    "rows, message",
    [
        ("0", "Ensure this value is greater than or equal to 1."),
        ("1001", "Ensure this value is less than or equal to 1000."),
        ("ten", "A valid integer is required."),
    ],
)
def test_preview_rows_out_of_range_is_400_naming_rows(reader, rows, message):
    add()

    response = reader.get(url("sales", 1, "preview"), {"rows": rows})

    assert response.status_code == 400
    assert response.json() == error("rows", message)


def test_profile_of_every_column(reader):
    add()

    response = reader.get(url("sales", 1, "profile"))

    assert response.status_code == 200
    city, amount, n = response.json()["columns"]
    assert response.json()["row_count"] == 3
    assert city == {
        "name": "city",
        "dtype": "str",
        "nulls": 0,
        "distinct": 2,
        "min": None,
        "max": None,
        "top": [{"value": "Lyon", "count": 2}, {"value": "Oslo", "count": 1}],
    }
    assert (amount["nulls"], amount["min"], amount["max"], amount["top"]) == (1, 1.5, 3.0, [])
    assert (n["dtype"], n["distinct"], n["min"], n["max"]) == ("int64", 3, 1, 3)


@pytest.mark.parametrize("view", ["preview", "profile", "download"])
def test_a_version_whose_stored_file_is_missing_is_404_saying_so(reader, view):
    dataset = add()
    dataset.file.storage.delete(dataset.file.name)
    cache.clear()

    response = reader.get(url("sales", 1, view))

    assert response.status_code == 404
    assert response.json()["message"] == "The stored file of sales v1 is missing."


# Download


def test_download_sends_the_file_as_stored_even_to_a_client_accepting_only_it(reader):
    add(filename="Ventes 2024.csv")
    add(data=b"v\n2\n", filename="café.csv")

    first = reader.get(url("sales", 1, "download"), HTTP_ACCEPT="text/csv")
    second = reader.get(url("sales", 2, "download"))

    assert first.status_code == 200
    assert b"".join(first.streaming_content) == CSV
    assert first["Content-Type"] == "text/csv"
    assert first["Content-Length"] == str(len(CSV))
    assert first["Content-Disposition"] == 'attachment; filename="Ventes 2024.csv"'
    assert b"".join(second.streaming_content) == b"v\n2\n"
    assert second["Content-Disposition"] == f"attachment; filename*=utf-8''{quote('café.csv')}"


def test_download_of_a_parquet_version(reader):
    buffer = io.BytesIO()
    pd.DataFrame({"x": [1, 2]}).to_parquet(buffer, index=False)
    add(name="pq", data=buffer.getvalue(), filename="x.parquet")

    response = reader.get(url("pq", 1, "download"))

    assert response["Content-Type"] == "application/vnd.apache.parquet"
    assert b"".join(response.streaming_content) == buffer.getvalue()


# Upload


def test_upload_stores_a_new_dataset_and_points_at_it(uploader, settings):
    response = upload(uploader, filename="Ventes.csv")

    assert response.status_code == 201
    dataset = Dataset.objects.get()
    assert response["Location"] == f"http://testserver/api/v1/datasets/sales/versions/{1}/"
    assert response.data["url"] == response["Location"]
    assert (response.data["name"], response.data["version"]) == ("sales", 1)
    assert (response.data["row_count"], response.data["column_count"]) == (3, 3)
    assert response.data["original_filename"] == "Ventes.csv"
    assert response.data["uploaded_by"] == "uploader"
    assert dataset.uploaded_by == uploader.user
    assert dataset.file.read() == CSV
    assert len(stored_files(settings)) == 1


def test_upload_under_an_existing_name_makes_the_next_version(uploader):
    add()

    response = upload(uploader, data=b"a\n1\n")

    assert response.status_code == 201 and response.data["version"] == 2
    assert response["Location"].endswith("/api/v1/datasets/sales/versions/2/")
    assert list(Dataset.objects.values_list("version", flat=True)) == [2, 1]


def test_upload_with_a_chosen_encoding(uploader):
    response = upload(uploader, data="ville\nMâcon\n".encode("cp1252"), encoding="cp1252")

    assert response.status_code == 201
    assert response.data["encoding"] == "cp1252"
    preview = uploader.get(url("sales", 1, "preview")).json()
    assert preview["rows"] == [["Mâcon"]]


def test_upload_of_a_parquet_file(uploader):
    buffer = io.BytesIO()
    pd.DataFrame({"x": [1, 2], "y": ["a", "b"]}).to_parquet(buffer, index=False)

    response = upload(uploader, data=buffer.getvalue(), filename="data.parquet")

    assert response.status_code == 201
    assert (response.data["format"], response.data["row_count"]) == ("parquet", 2)


@pytest.mark.parametrize(
    "fields, field, message",
    [
        ({"data": b""}, "file", "The file is empty."),
        ({"data": b"a,b\n1,2\n3\n"}, "file", "Line 3 has 1 field but the header has 2."),
        ({"data": b"a,a\n1,2\n"}, "file", "Duplicate column names: 'a'."),
        (
            {"data": b"a\n\x00\n"},
            "file",
            "The file is binary, not CSV text (NUL byte at offset 2); "
            "upload .csv, .parquet or .xlsx files.",
        ),
        (
            {"filename": "old.xls"},
            "file",
            "'old.xls' is an old-style .xls workbook: save it as .xlsx or CSV.",
        ),
        ({"encoding": "klingon"}, "encoding", "Unknown encoding 'klingon'."),
        ({"name": "   "}, "name", "A dataset needs a name."),
        ({"name": "x" * 101}, "name", "A dataset name has at most 100 characters."),
    ],
)
def test_a_refused_upload_names_the_field_with_the_reason_and_stores_nothing(
    uploader, settings, fields, field, message
):
    response = upload(uploader, **fields)

    assert response.status_code == 400
    assert response.json() == error(field, message)
    assert not Dataset.objects.exists()
    assert stored_files(settings) == []


def test_an_upload_needs_a_file_and_a_name_and_takes_no_other_field(uploader):
    missing = uploader.post(LIST, {}, format="multipart")
    unknown = upload(uploader, delimiter=";")

    assert missing.status_code == 400
    assert missing.json()["errors"] == [
        {"field": "file", "message": "No file was submitted."},
        {"field": "name", "message": "This field is required."},
    ]
    assert unknown.json() == error(
        "delimiter", "Unknown field; an upload accepts: file, name, encoding."
    )
    assert not Dataset.objects.exists()


def test_an_upload_must_be_multipart(uploader):
    response = uploader.post(LIST, {"name": "sales", "file": "a,b"}, format="json")

    assert response.status_code == 415
    assert response.json()["code"] == "unsupported_media_type"


@pytest.mark.parametrize("size", [21, 100_000])
def test_an_upload_over_the_limit_is_413_naming_file_and_stores_nothing(uploader, settings, size):
    settings.MLOPS_MAX_UPLOAD_BYTES = 20

    response = upload(uploader, data=b"a\n" + b"1" * (size - 2))

    assert response.status_code == 413
    assert response.json() == error(
        "file", "The file is larger than the upload limit of 20 bytes.", code="too_large"
    )
    assert not Dataset.objects.exists()
    assert stored_files(settings) == []


def test_an_upload_at_the_limit_is_stored(uploader, settings):
    settings.MLOPS_MAX_UPLOAD_BYTES = len(CSV)

    assert upload(uploader).status_code == 201


def test_uploading_needs_a_login_and_the_add_permission(client, reader, deleter, settings):
    anonymous = client.post(LIST, {"name": "sales", "file": SimpleUploadedFile("s.csv", CSV)})
    refused = [upload(reader), upload(deleter)]

    assert anonymous.status_code == 401
    for response in refused:
        assert response.status_code == 403
        assert response.json() == {
            "code": "permission_denied",
            "message": "This needs the datasources.add_dataset permission.",
            "errors": [],
        }
    assert not Dataset.objects.exists()
    assert stored_files(settings) == []


# Delete


def test_deleting_a_version_removes_it_and_its_file(deleter, django_capture_on_commit_callbacks):
    add()
    second = add()

    with django_capture_on_commit_callbacks(execute=True):
        response = deleter.delete(url("sales", 2))

    assert response.status_code == 204
    assert list(Dataset.objects.values_list("version", flat=True)) == [1]
    assert not second.file.storage.exists(second.file.name)
    assert deleter.get(url("sales", 2)).status_code == 404


def test_deleting_a_version_a_pipeline_reads_is_409_naming_it(deleter, make_pipeline, settings):
    dataset = add()
    make_pipeline([{"type": "csv", "params": {"dataset": "sales"}}], name="uses-sales")

    response = deleter.delete(url("sales", 1))

    assert response.status_code == 409
    assert response.json() == {
        "code": "conflict",
        "message": "Dataset sales v1 is used by pipeline 'uses-sales': change their csv "
        "steps before deleting it.",
        "errors": [],
    }
    assert Dataset.objects.get() == dataset
    assert dataset.file.storage.exists(dataset.file.name)


def test_deleting_a_name_is_refused_while_read_then_removes_every_version(
    deleter, make_pipeline, settings, django_capture_on_commit_callbacks
):
    add()
    add()
    add(name="kept")
    make_pipeline([{"type": "csv", "params": {"dataset": "sales@2"}}], name="pin")

    refused = deleter.delete(url("sales"))

    assert refused.status_code == 409
    assert refused.json()["message"] == (
        "Dataset sales is used by pipeline 'pin': change their steps before deleting it."
    )
    assert Dataset.objects.filter(name="sales").count() == 2
    assert len(stored_files(settings)) == 3

    Pipeline.objects.get(name="pin").delete()
    with django_capture_on_commit_callbacks(execute=True):
        response = deleter.delete(url("sales"))

    assert response.status_code == 204
    assert list(Dataset.objects.values_list("name", flat=True)) == ["kept"]
    assert len(stored_files(settings)) == 1
    assert deleter.delete(url("sales")).status_code == 404


@pytest.mark.parametrize("path", [url("sales"), url("sales", 1)])
def test_deleting_needs_a_login_and_the_delete_permission(client, reader, uploader, path):
    dataset = add()

    anonymous = client.delete(path)
    refused = [reader.delete(path), uploader.delete(path)]

    assert anonymous.status_code == 401
    for response in refused:
        assert response.status_code == 403
        assert response.json()["message"] == "This needs the datasources.delete_dataset permission."
    assert Dataset.objects.get() == dataset
    assert dataset.file.storage.exists(dataset.file.name)


# Through a real server


@pytest.mark.django_db(transaction=True)
def test_upload_and_download_through_a_real_server(live_server, api_as, settings):
    # Past this size Django writes an upload to a temporary file as it arrives.
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 1024
    headers = {"Authorization": f"Token {issue_token(api_as(ADD).user, 'live')[1]}"}
    data = b"id,label\n" + b"".join(b"%d,row %d\n" % (i, i) for i in range(20_000))

    created = requests.post(
        f"{live_server.url}{LIST}",
        data={"name": "big"},
        files={"file": ("Grand fichier.csv", data, "text/csv")},
        headers=headers,
        timeout=30,
    )
    location = created.headers["Location"]
    with requests.get(
        created.json()["download_url"],
        headers=headers,
        stream=True,
        timeout=30,
    ) as download:
        body = b"".join(download.iter_content(chunk_size=64 * 1024))

    assert created.status_code == 201
    assert location == f"{live_server.url}/api/v1/datasets/big/versions/1/"
    assert created.json()["row_count"] == 20_000
    assert download.status_code == 200
    assert download.headers["Content-Length"] == str(len(data))
    assert download.headers["Content-Type"] == "text/csv"
    assert download.headers["Content-Disposition"] == 'attachment; filename="Grand fichier.csv"'
    assert body == data


@pytest.mark.django_db(transaction=True)
def test_an_upload_far_over_the_limit_is_refused_before_its_body_is_read(api_as, settings):
    settings.MLOPS_MAX_UPLOAD_BYTES = 1000
    token = issue_token(api_as(ADD).user, "wsgi")[1]
    body = io.BytesIO(b"--xyz\r\n" + b"1" * 100_000)
    environ = {}
    setup_testing_defaults(environ)
    environ.update(
        REQUEST_METHOD="POST",
        PATH_INFO=LIST,
        HTTP_HOST="testserver",
        HTTP_AUTHORIZATION=f"Token {token}",
        CONTENT_TYPE="multipart/form-data; boundary=xyz",
        CONTENT_LENGTH=str(1000 + FORM_OVERHEAD_BYTES + 1),
    )
    environ["wsgi.input"] = body
    started = {}

    answer = b"".join(application(environ, lambda status, headers: started.update(s=status)))

    assert started["s"].startswith("413")
    assert json.loads(answer)["errors"] == [
        {"field": "file", "message": "The file is larger than the upload limit of 1000 bytes."}
    ]
    assert body.tell() == 0
    assert not Dataset.objects.exists()
