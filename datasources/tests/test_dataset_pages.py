"""The dataset pages: list, upload, a dataset's page (versions, preview, profile),
download and delete, with their permissions and query counts, through Django's test
client (and downloads through a real server)."""

import io
import urllib.request
from urllib.parse import quote

import pandas as pd
import pytest
from django.contrib.auth.models import Permission
from django.core.cache import cache
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from datasources import services
from datasources.models import Dataset

pytestmark = pytest.mark.django_db

LIST = "/data/datasets/"
UPLOAD = "/data/datasets/upload/"
CSV = b"city,amount,n\nLyon,1.5,1\nOslo,,2\nLyon,3.0,3\n"


def with_permissions(user, *codenames):
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    return user


@pytest.fixture
def analyst(django_user_model):
    user = django_user_model.objects.create_user("analyst")
    return with_permissions(user, "add_dataset", "delete_dataset")


@pytest.fixture
def analyst_client(client, analyst):
    client.force_login(analyst)
    return client


def add(name="sales", data=CSV, filename="sales.csv", user=None):
    return services.add_dataset(io.BytesIO(data), name, filename, user)


def detail_url(name, version=None):
    url = reverse("data:dataset_detail", kwargs={"name": name})
    return f"{url}?version={version}" if version else url


def post_file(client, data, filename, name="sales", encoding=""):
    upload = SimpleUploadedFile(filename, data)
    return client.post(UPLOAD, {"name": name, "file": upload, "encoding": encoding})


def parquet_bytes(frame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


# Login


@pytest.mark.parametrize(
    "url", [LIST, UPLOAD, "/data/datasets/view/sales/", "/data/datasets/download/1/sales/"]
)
def test_every_page_needs_a_login(client, url):
    add()

    response = client.get(url)

    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


# List


def test_empty_list_says_what_to_do_with_the_upload_button(analyst_client):
    response = analyst_client.get(LIST)

    assert response.status_code == 200
    assert "No datasets yet." in response.text
    assert response.text.count(f'href="{UPLOAD}"') == 2  # page head and empty state


def test_empty_list_without_permission_names_it_and_hides_upload(viewer_client):
    response = viewer_client.get(LIST)

    assert "“datasources.add_dataset” permission" in response.text
    assert UPLOAD not in response.text


def test_list_shows_one_row_per_name_with_its_latest_version(
    analyst_client, analyst, make_pipeline
):
    add(user=analyst)
    big = "n\n" + "".join(f"{i}\n" for i in range(2000))
    add(data=big.encode(), filename="sales-v2.csv", user=analyst)
    add(name="cities", data=b"city\nLyon\n")
    pipeline = make_pipeline([{"type": "csv", "params": {"dataset": "sales"}}], name="uses-sales")

    response = analyst_client.get(LIST)

    text = response.text
    assert response.status_code == 200
    assert "2 datasets." in text
    assert text.count("<tr>") == 3  # header + two names
    assert f'href="{detail_url("sales")}">sales</a>' in text
    assert "v2" in text and "(2 versions)" in text
    assert "2,000" in text  # rows of v2, with a thousands separator
    assert "8.7\xa0KB" in text and 'title="8,892 bytes"' in text  # size, human
    assert "analyst" in text and " UTC</time>" in text
    assert f'href="/pipelines/{pipeline.pk}/">uses-sales</a>' in text


def test_list_search_and_htmx_fragment(analyst_client):
    add()
    add(name="cities", data=b"city\nLyon\n")

    page = analyst_client.get(LIST, {"q": "CIT"})
    fragment = analyst_client.get(LIST, {"q": "cit"}, headers={"HX-Request": "true"})

    assert "1 dataset match" in page.text and ">cities</a>" in page.text
    assert ">sales</a>" not in page.text
    assert fragment.text.lstrip().startswith('<div id="dataset-table">') or (
        '<div id="dataset-table">' in fragment.text and "<html" not in fragment.text
    )
    assert analyst_client.get(LIST, {"q": "nope"}).text.count("No dataset matches “nope”") == 1


def test_list_pages_by_25(analyst_client):
    for index in range(30):
        add(name=f"set-{index:02}", data=b"a\n1\n")

    first = analyst_client.get(LIST)
    second = analyst_client.get(LIST, {"page": 2})

    assert "showing 1–25" in first.text and ">set-24</a>" in first.text
    assert ">set-25</a>" not in first.text
    assert "showing 26–30" in second.text and ">set-29</a>" in second.text
    assert "Page 2 of 2" in second.text


def test_pipelines_reading_maps_names_pinned_versions_and_ids(make_pipeline):
    sales = add()
    digits = add(name="2024")
    add(name="other")
    by_name = make_pipeline([{"type": "csv", "params": {"dataset": "sales"}}], name="by-name")
    pinned = make_pipeline([{"type": "csv", "params": {"dataset": "sales@1"}}], name="pinned")
    by_id = make_pipeline([{"type": "csv", "params": {"dataset": sales.pk}}], name="by-id")
    year = make_pipeline([{"type": "csv", "params": {"dataset": "2024"}}], name="year")

    users = services.pipelines_reading(["sales", "2024", "other", "gone"])

    assert [user["name"] for user in users["sales"]] == ["by-id", "by-name", "pinned"]
    assert {user["pk"] for user in users["sales"]} == {by_name.pk, pinned.pk, by_id.pk}
    assert users["2024"] == [{"pk": year.pk, "name": "year"}]
    assert users["other"] == users["gone"] == []
    assert services.pipelines_using(digits) == ["year"]


def count_queries(client, url) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(url).status_code == 200
    return len(queries)


def test_list_queries_do_not_grow_with_datasets_versions_or_pipelines(
    analyst_client, analyst, make_pipeline
):
    sales = add(user=analyst)
    make_pipeline([{"type": "csv", "params": {"dataset": "sales"}}], name="p0")
    make_pipeline([{"type": "csv", "params": {"dataset": sales.pk}}], name="by-id")
    few = count_queries(analyst_client, LIST)
    for index in range(8):
        add(name=f"set-{index}", user=analyst)
        add(name=f"set-{index}", user=analyst)
        dataset = add(name=f"set-{index}", user=analyst)
        make_pipeline([{"type": "csv", "params": {"dataset": dataset.pk}}], name=f"p{index + 1}")

    many = count_queries(analyst_client, LIST)

    assert many == few
    assert 'href="/pipelines/' in analyst_client.get(LIST).text


# Upload


def test_upload_form_shows_the_size_limit(analyst_client, settings):
    settings.MLOPS_MAX_UPLOAD_BYTES = 5 * 1024 * 1024

    response = analyst_client.get(UPLOAD)

    assert response.status_code == 200
    assert "at most 5.0\xa0MB" in response.text
    assert 'data-max-bytes="5242880"' in response.text
    assert "<progress" in response.text and "js/upload.js" in response.text
    assert 'name="csrfmiddlewaretoken"' in response.text


def test_upload_needs_the_add_permission(viewer_client):
    add()

    get = viewer_client.get(UPLOAD)
    post = post_file(viewer_client, CSV, "sales.csv")
    detail = viewer_client.get(detail_url("sales"))

    assert get.status_code == post.status_code == 403
    assert "“datasources.add_dataset” permission" in post.text
    assert Dataset.objects.count() == 1
    assert UPLOAD not in detail.text and "Delete" not in detail.text


def test_upload_good_csv_opens_the_new_version_with_preview_and_profile(analyst_client):
    response = post_file(analyst_client, CSV, "sales.csv")

    dataset = Dataset.objects.get()
    assert response.status_code == 302
    assert response["Location"] == detail_url("sales", 1)
    page = analyst_client.get(response["Location"])
    assert "Uploaded sales.csv as sales version 1: 3 rows, 3 columns." in page.text
    assert "<td>Oslo</td>" in page.text and '<td class="null num">null</td>' in page.text
    assert "The first 3 of 3 rows." in page.text
    # the profile: amount has one null, city's top value is Lyon twice
    assert "<q>Lyon</q> × 2" in page.text
    assert "<code>float64</code>" in page.text
    assert dataset.uploaded_by.username == "analyst"


def test_upload_under_an_existing_name_adds_a_version(analyst_client):
    add()

    response = post_file(analyst_client, b"a,b\n1,2\n", "v2.csv")

    assert response["Location"] == detail_url("sales", 2)
    assert list(Dataset.objects.values_list("version", flat=True).order_by("version")) == [1, 2]


def test_upload_semicolon_decimal_comma_csv(analyst_client):
    data = "produit;prix\ncafé;2,5\nthé;3,25\n".encode("cp1252")

    response = post_file(analyst_client, data, "prix.csv", name="prix")

    dataset = Dataset.objects.get()
    assert response.status_code == 302
    assert (dataset.encoding, dataset.delimiter) == ("cp1252", ";")
    assert dataset.schema["prix"] == "float64"
    page = analyst_client.get(response["Location"])
    assert "cp1252 / semicolon" in page.text
    assert "<td>café</td>" in page.text and '<td class="num">2.5</td>' in page.text
    assert ">3.25<" in page.text  # the profile's max, as a number


def test_upload_mixed_encoding_csv_is_refused_with_the_reason(analyst_client):
    data = "name\ncafé\n".encode() + "thé\n".encode("cp1252")

    response = post_file(analyst_client, data, "mixed.csv")

    assert response.status_code == 400
    assert "nothing was stored" in response.text
    assert "not valid UTF-8 at line 3" in response.text
    assert 'value="sales"' in response.text  # the form keeps what was typed
    assert not Dataset.objects.exists()


def test_upload_with_a_chosen_encoding(analyst_client):
    response = post_file(analyst_client, "v\nthé\n".encode("latin-1"), "t.csv", encoding="latin-1")

    assert response.status_code == 302
    assert Dataset.objects.get().encoding == "iso8859-1"


def test_upload_of_an_unknown_encoding_is_refused_on_the_encoding_field(analyst_client):
    response = post_file(analyst_client, CSV, "sales.csv", encoding="klingon")

    assert response.status_code == 400
    assert "Unknown encoding &#x27;klingon&#x27;." in response.text


def test_upload_over_the_limit_is_refused(analyst_client, settings):
    settings.MLOPS_MAX_UPLOAD_BYTES = 20

    response = post_file(analyst_client, CSV, "sales.csv")

    assert response.status_code == 400
    assert "larger than the upload limit" in response.text
    assert not Dataset.objects.exists()


def test_upload_far_over_the_limit_is_refused_before_the_body_is_read(
    analyst_client, settings, monkeypatch
):
    settings.MLOPS_MAX_UPLOAD_BYTES = 1000
    read = []
    monkeypatch.setattr(services, "add_dataset", lambda *args, **kw: read.append(args))

    response = post_file(analyst_client, b"a\n" + b"1\n" * 100_000, "big.csv")

    assert response.status_code == 413
    assert "larger than the upload limit of 1000\xa0bytes (1,000 bytes)" in response.text
    assert read == []


def test_upload_without_a_file_or_name(analyst_client):
    no_file = analyst_client.post(UPLOAD, {"name": "sales"})
    no_name = post_file(analyst_client, CSV, "sales.csv", name="  ")

    assert no_file.status_code == no_name.status_code == 400
    assert "Choose a file to upload." in no_file.text
    assert "A dataset needs a name." in no_name.text


def test_upload_parquet(analyst_client):
    frame = pd.DataFrame({"x": [1.5, 2.5, None], "label": ["a", "b", "a"]})

    response = post_file(analyst_client, parquet_bytes(frame), "frame.parquet", name="pq")

    dataset = Dataset.objects.get()
    assert response.status_code == 302
    assert (dataset.format, dataset.row_count, dataset.column_count) == ("parquet", 3, 2)
    page = analyst_client.get(response["Location"])
    assert '<td class="num">2.5</td>' in page.text and "Parquet" in page.text


def test_upload_needs_a_csrf_token(analyst):
    client = Client(enforce_csrf_checks=True)
    client.force_login(analyst)

    response = post_file(client, CSV, "sales.csv")

    assert response.status_code == 403
    assert not Dataset.objects.exists()


# A dataset's page


def test_dataset_page_lists_versions_newest_first(analyst_client, analyst):
    first = add(user=analyst)
    second = add(data=b"a;b\n1;2\n", filename="second.csv", user=analyst)

    response = analyst_client.get(detail_url("sales"))

    text = response.text
    assert response.status_code == 200
    assert text.index(">v2</a>") < text.index(">v1</a>")
    assert f'title="SHA-256 {first.checksum}">{first.checksum[:12]}</code>' in text
    assert f"{second.checksum[:12]}</code>" in text
    assert "second.csv" in text and "utf-8 / semicolon" in text and "utf-8 / comma" in text
    assert "Preview of v2" in text and '<td class="num">1</td><td class="num">2</td>' in text
    assert " UTC</time>" in text


def test_dataset_page_shows_any_version(analyst_client):
    add()
    add(data=b"other\nx\n")

    response = analyst_client.get(detail_url("sales", 1))

    assert "Preview of v1" in response.text and "<td>Oslo</td>" in response.text
    assert "Download v1" in response.text
    assert analyst_client.get(detail_url("sales", 9)).status_code == 404
    assert analyst_client.get(detail_url("nope")).status_code == 404


def test_preview_shows_the_first_20_rows(analyst_client):
    add(data=("n\n" + "".join(f"{i}\n" for i in range(100))).encode())

    response = analyst_client.get(detail_url("sales"))

    assert "The first 20 of 100 rows." in response.text
    assert '<td class="rownum">20</td><td class="num">19</td>' in response.text
    assert '<td class="num">20</td></tr>' not in response.text
    assert ">99<" in response.text  # the profile's max covers every row


@pytest.mark.parametrize("name", ["upload", "team/sales", "a b?#%"])
def test_any_name_has_its_own_page(analyst_client, name):
    add(name=name)

    response = analyst_client.get(detail_url(name))

    assert response.status_code == 200
    assert "Preview of v1" in response.text


def test_profile_is_computed_once_per_version_and_cached(analyst_client, monkeypatch):
    dataset = add()
    cache.clear()
    profile = services.profile_dataset(dataset)
    monkeypatch.setattr(services, "read_dataset", lambda *a, **k: pytest.fail("read again"))

    assert services.profile_dataset(Dataset.objects.get()) == profile
    assert analyst_client.get(detail_url("sales")).status_code == 200
    amount = next(column for column in profile if column["name"] == "amount")
    assert amount == {
        "name": "amount", "dtype": "float64", "nulls": 1, "distinct": 2,
        "min": 1.5, "max": 3.0, "top": [],
    }  # fmt: skip


def test_dataset_page_queries_do_not_grow_with_versions(analyst_client, make_pipeline):
    add()
    make_pipeline([{"type": "csv", "params": {"dataset": "sales"}}], name="p")
    services.profile_dataset(Dataset.objects.get())
    few = count_queries(analyst_client, detail_url("sales", 1))
    for _ in range(6):
        add()
    for dataset in Dataset.objects.all():
        services.profile_dataset(dataset)

    many = count_queries(analyst_client, detail_url("sales", 1))

    assert many == few


def test_dataset_page_with_a_missing_file_says_so(analyst_client):
    dataset = add()
    dataset.file.storage.delete(dataset.file.name)
    cache.clear()

    response = analyst_client.get(detail_url("sales"))

    assert response.status_code == 200
    assert "can't be read" in response.text


# Download


def fetch(live_server, client, path):
    request = urllib.request.Request(
        f"{live_server.url}{path}",
        headers={"Cookie": f"sessionid={client.cookies['sessionid'].value}"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.headers, response.read()


def test_download_through_a_real_server_sends_the_original_file(live_server, analyst):
    add(filename="Ventes 2024.csv")
    frame = pd.DataFrame({"x": [1, 2]})
    add(name="pq", data=parquet_bytes(frame), filename="x.parquet")
    client = Client()
    client.force_login(analyst)

    headers, body = fetch(live_server, client, reverse("data:dataset_download", args=[1, "sales"]))
    pq_headers, pq_body = fetch(
        live_server, client, reverse("data:dataset_download", args=[1, "pq"])
    )

    assert body == CSV
    assert headers["Content-Type"] == "text/csv"
    assert headers["Content-Disposition"] == 'attachment; filename="Ventes 2024.csv"'
    assert headers["Content-Length"] == str(len(CSV))
    assert pq_body == parquet_bytes(frame)
    assert pq_headers["Content-Type"] == "application/vnd.apache.parquet"
    assert pq_headers["Content-Disposition"] == 'attachment; filename="x.parquet"'


def test_download_of_any_version_and_unknown_ones(analyst_client):
    add()
    add(data=b"v\n2\n", filename="two.csv")

    first = analyst_client.get(reverse("data:dataset_download", args=[1, "sales"]))
    second = analyst_client.get(reverse("data:dataset_download", args=[2, "sales"]))

    assert b"".join(first.streaming_content) == CSV
    assert b"".join(second.streaming_content) == b"v\n2\n"
    assert "two.csv" in second["Content-Disposition"]
    assert (
        analyst_client.get(reverse("data:dataset_download", args=[3, "sales"])).status_code == 404
    )


def test_download_name_with_unicode(analyst_client):
    add(filename="café.csv")

    response = analyst_client.get(reverse("data:dataset_download", args=[1, "sales"]))

    assert response["Content-Disposition"] == f"attachment; filename*=utf-8''{quote('café.csv')}"


# Delete


def test_delete_version_refused_while_a_pipeline_uses_it(analyst_client, make_pipeline):
    add()
    pipeline = make_pipeline([{"type": "csv", "params": {"dataset": "sales"}}], name="uses-sales")
    url = reverse("data:dataset_version_delete", args=[1, "sales"])

    page = analyst_client.get(url)
    post = analyst_client.post(url)

    assert page.status_code == 200 and "“uses-sales”" in page.text
    assert "Yes, delete" not in page.text
    assert post.status_code == 409
    assert "Nothing was deleted." in post.text and "&#x27;uses-sales&#x27;" in post.text
    assert Dataset.objects.count() == 1
    detail = analyst_client.get(detail_url("sales"))
    assert "can't be deleted while pipelines read it" in detail.text
    assert f'href="/pipelines/{pipeline.pk}/">uses-sales</a>' in detail.text


def test_delete_version_allowed_when_unused(analyst_client, django_capture_on_commit_callbacks):
    add()
    second = add()
    url = reverse("data:dataset_version_delete", args=[2, "sales"])

    page = analyst_client.get(url)
    with django_capture_on_commit_callbacks(execute=True):
        response = analyst_client.post(url)

    assert "Yes, delete version 2" in page.text and "The other 1 version stays." in page.text
    assert response.status_code == 302 and response["Location"] == detail_url("sales")
    assert list(Dataset.objects.values_list("version", flat=True)) == [1]
    assert not second.file.storage.exists(second.file.name)
    assert "Deleted version 2 of sales." in analyst_client.get(detail_url("sales")).text


def test_deleting_the_last_version_goes_back_to_the_list(analyst_client):
    add()

    response = analyst_client.post(reverse("data:dataset_version_delete", args=[1, "sales"]))

    assert response["Location"] == LIST
    assert not Dataset.objects.exists()


def test_delete_whole_dataset_refused_while_used_then_allowed(analyst_client, make_pipeline):
    add()
    dataset = add()
    add(name="kept")
    url = reverse("data:dataset_delete", args=["sales"])
    make_pipeline([{"type": "csv", "params": {"dataset": f"sales@{dataset.version}"}}], name="pin")

    refused = analyst_client.post(url)

    assert refused.status_code == 409 and "&#x27;pin&#x27;" in refused.text
    assert Dataset.objects.filter(name="sales").count() == 2

    from pipelines.models import Pipeline

    Pipeline.objects.get(name="pin").delete()
    page = analyst_client.get(url)
    response = analyst_client.post(url)

    assert "with all 2 versions" in page.text
    assert response["Location"] == LIST
    assert list(Dataset.objects.values_list("name", flat=True)) == ["kept"]
    assert "Deleted sales and its 2 version(s)." in analyst_client.get(LIST).text


def test_delete_needs_the_delete_permission(viewer_client):
    add()

    for url in (
        reverse("data:dataset_version_delete", args=[1, "sales"]),
        reverse("data:dataset_delete", args=["sales"]),
    ):
        assert viewer_client.get(url).status_code == 403
        response = viewer_client.post(url)
        assert response.status_code == 403
        assert "“datasources.delete_dataset” permission" in response.text
    assert Dataset.objects.count() == 1


def test_delete_of_unknown_dataset_is_404(analyst_client):
    assert analyst_client.get(reverse("data:dataset_delete", args=["nope"])).status_code == 404
    url = reverse("data:dataset_version_delete", args=[1, "nope"])
    assert analyst_client.post(url).status_code == 404
