import socket
import urllib.error
import urllib.request

import pytest
from django.test import Client

from experiments import tracking
from experiments.artifacts import ArtifactPathRefused, open_artifact, safe_artifact_path
from pipelines.models import PipelineRun
from pipelines.runs import start_run

IRIS_STEPS = [
    {"type": "sklearn_dataset", "params": {"name": "iris"}},
    {
        "type": "train_sklearn",
        "params": {"task": "classification", "estimator": "random_forest", "target": "target"},
    },
]
SECRET = "TOP-SECRET-OUTSIDE-THE-ARTIFACT-ROOT"
# Paths that try to leave the run's artifact root; `secret.txt` sits four folders up.
TRAVERSALS = [
    "../../../../secret.txt",
    "step_2/../../../../../secret.txt",
    "%2e%2e/%2e%2e/%2e%2e/%2e%2e/secret.txt",
    "%252e%252e/%252e%252e/%252e%252e/%252e%252e/secret.txt",
    "%25252e%25252e/%25252e%25252e/%25252e%25252e/%25252e%25252e/secret.txt",
    "..%2f..%2f..%2f..%2fsecret.txt",
    "..%252f..%252f..%252f..%252fsecret.txt",
    "..\\..\\..\\..\\secret.txt",
    "%2e%2e%5c%2e%2e%5c%2e%2e%5c%2e%2e%5csecret.txt",
    "/etc/passwd",
    "%2fetc%2fpasswd",
    "....//....//....//....//secret.txt",
    "step_2/metrics.json%00.png",
    "~root/.ssh/id_rsa",
    "C:\\Windows\\win.ini",
    "C:/Windows/win.ini",
]


@pytest.fixture
def user_client(client, django_user_model):
    client.force_login(django_user_model.objects.create_user("analyst"))
    return client


@pytest.fixture
def iris_run(make_pipeline, isolated_storage):
    run = start_run(make_pipeline(IRIS_STEPS, name="iris"), wait=True)
    (isolated_storage / "secret.txt").write_text(SECRET)
    return run


def artifact_root(run: PipelineRun):
    return tracking.local_artifact_root(run.mlflow_run_id)


def list_url(run_id: str) -> str:
    return f"/experiments/runs/{run_id}/artifacts/"


def download_url(run_id: str, path: str) -> str:
    return f"/experiments/runs/{run_id}/artifacts/download/{path}"


@pytest.mark.parametrize("raw", TRAVERSALS)
def test_safe_artifact_path_refuses_paths_leaving_the_root(raw):
    with pytest.raises(ArtifactPathRefused):
        safe_artifact_path(raw)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("", ""), ("step_2/", "step_2"), ("./step_2//metrics.json", "step_2/metrics.json")],
)
def test_safe_artifact_path_normalises_plain_paths(raw, expected):
    assert safe_artifact_path(raw) == expected


def test_traversals_are_refused_through_the_urls(user_client, iris_run):
    root = artifact_root(iris_run)
    assert (root / "../../../../secret.txt").resolve().read_text() == SECRET
    for raw in TRAVERSALS:
        download = user_client.get(download_url(iris_run.mlflow_run_id, raw))
        listing = user_client.get(list_url(iris_run.mlflow_run_id), {"path": raw})
        for response in (download, listing):
            assert response.status_code in (400, 404), raw
            assert SECRET not in b"".join(getattr(response, "streaming_content", [])).decode()
            assert SECRET not in getattr(response, "content", b"").decode()
    refused = user_client.get(download_url(iris_run.mlflow_run_id, "%252e%252e/secret.txt"))
    assert refused.status_code == 400
    assert b"Refused artifact path: the path leaves the artifact folder" in refused.content


def test_a_symlink_in_the_artifact_folder_is_refused(user_client, iris_run, isolated_storage):
    root = artifact_root(iris_run)
    (root / "step_2" / "leak.csv").symlink_to(isolated_storage / "secret.txt")
    (root / "linked").symlink_to(isolated_storage, target_is_directory=True)

    for path in ("step_2/leak.csv", "linked/secret.txt"):
        response = user_client.get(download_url(iris_run.mlflow_run_id, path))
        assert response.status_code == 400, path
        assert b"symbolic link" in response.content
        with pytest.raises(ArtifactPathRefused):
            open_artifact(iris_run.mlflow_run_id, path)
    preview = user_client.get(list_url(iris_run.mlflow_run_id), {"path": "step_2/leak.csv"})
    assert preview.status_code == 400
    assert SECRET not in preview.content.decode()


def test_run_not_recorded_by_a_pipeline_run_is_404(user_client, iris_run):
    iris_run.mlflow_run_id, run_id = "", iris_run.mlflow_run_id
    iris_run.save()

    assert user_client.get(list_url(run_id)).status_code == 404
    assert user_client.get(download_url(run_id, "step_2/metrics.json")).status_code == 404


def test_run_ids_missing_from_the_store_or_malformed_are_404(user_client, iris_run):
    missing = "0" * 32
    PipelineRun.objects.filter(pk=iris_run.pk).update(mlflow_run_id=missing)

    assert user_client.get(list_url(missing)).status_code == 404
    assert user_client.get(list_url("not-a-run")).status_code == 404


def test_pages_need_a_login(client, iris_run):
    response = client.get(list_url(iris_run.mlflow_run_id))
    assert response.status_code == 302
    assert "/accounts/login/" in response["Location"]


def test_listing_shows_folders_files_sizes_and_download_links(user_client, iris_run):
    run_id = iris_run.mlflow_run_id

    root = user_client.get(list_url(run_id))
    folder = user_client.get(list_url(run_id), {"path": "step_2"})

    assert root.status_code == 200
    assert f'href="{list_url(run_id)}?path=step_2"' in root.content.decode()
    page = folder.content.decode()
    assert "confusion_matrix.csv" in page and "feature_importance.csv" in page
    assert f'href="{download_url(run_id, "step_2/confusion_matrix.csv")}"' in page
    size = (artifact_root(iris_run) / "step_2/confusion_matrix.csv").stat().st_size
    assert f"{size}\xa0bytes" in page


def test_csv_artifact_renders_as_a_table(user_client, iris_run):
    response = user_client.get(
        list_url(iris_run.mlflow_run_id), {"path": "step_2/feature_importance.csv"}
    )

    page = response.content.decode()
    assert response.status_code == 200
    assert '<table class="artifact-table">' in page
    assert '<th scope="col">feature</th>' in page
    assert "petal length (cm)" in page


def test_json_and_text_artifacts_are_shown_preformatted(user_client, iris_run):
    folder = artifact_root(iris_run) / "step_2"
    (folder / "residuals.json").write_text('{"mean": 0.5, "values": [1, 2]}')
    (folder / "notes.txt").write_text("<script>alert(1)</script>")

    as_json = user_client.get(list_url(iris_run.mlflow_run_id), {"path": "step_2/residuals.json"})
    as_text = user_client.get(list_url(iris_run.mlflow_run_id), {"path": "step_2/notes.txt"})

    assert '<pre class="json">{\n  &quot;mean&quot;: 0.5,' in as_json.content.decode()
    assert "<pre>&lt;script&gt;alert(1)&lt;/script&gt;</pre>" in as_text.content.decode()


def test_images_show_inline_but_svg_only_as_a_download(user_client, iris_run):
    folder = artifact_root(iris_run) / "step_2"
    (folder / "plot.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (folder / "plot.svg").write_text("<svg><script>alert(1)</script></svg>")
    run_id = iris_run.mlflow_run_id

    png = user_client.get(list_url(run_id), {"path": "step_2/plot.png"}).content.decode()
    svg_page = user_client.get(list_url(run_id), {"path": "step_2/plot.svg"}).content.decode()
    svg = user_client.get(download_url(run_id, "step_2/plot.svg"))

    assert f'<img src="{download_url(run_id, "step_2/plot.png")}"' in png
    assert "<img" not in svg_page and "No preview for this file" in svg_page
    assert svg["Content-Type"] == "application/octet-stream"
    assert svg["Content-Disposition"] == 'attachment; filename="plot.svg"'


def test_download_is_an_attachment_with_a_safe_content_type(user_client, iris_run):
    path = "step_2/confusion_matrix.csv"

    response = user_client.get(download_url(iris_run.mlflow_run_id, path))

    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv"
    assert response["Content-Disposition"] == 'attachment; filename="confusion_matrix.csv"'
    assert response["X-Content-Type-Options"] == "nosniff"
    body = b"".join(response.streaming_content)
    assert body == (artifact_root(iris_run) / path).read_bytes()


def test_missing_artifact_is_404(user_client, iris_run):
    run_id = iris_run.mlflow_run_id
    assert user_client.get(download_url(run_id, "step_2/nothing.csv")).status_code == 404
    assert user_client.get(list_url(run_id), {"path": "step_9"}).status_code == 404
    assert user_client.get(download_url(run_id, "step_2")).status_code == 404


def test_unreachable_store_shows_a_notice_naming_it(user_client, iris_run, settings):
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    settings.MLFLOW_TRACKING_URI = f"http://user:hunter2@127.0.0.1:{port}"

    response = user_client.get(list_url(iris_run.mlflow_run_id))

    assert response.status_code == 503
    page = response.content.decode()
    assert f"The MLflow tracking store at <code>http://127.0.0.1:{port}</code>" in page
    assert "hunter2" not in page


def test_download_headers_through_a_real_server(live_server, django_user_model, iris_run):
    client = Client()
    client.force_login(django_user_model.objects.create_user("downloader"))
    cookie = f"sessionid={client.cookies['sessionid'].value}"
    run_id = iris_run.mlflow_run_id

    def fetch(path):
        request = urllib.request.Request(f"{live_server.url}{path}", headers={"Cookie": cookie})
        return urllib.request.urlopen(request)

    with fetch(download_url(run_id, "step_2/confusion_matrix.csv")) as response:
        assert response.headers["Content-Type"] == "text/csv"
        assert response.headers["Content-Disposition"] == (
            'attachment; filename="confusion_matrix.csv"'
        )
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        expected = artifact_root(iris_run) / "step_2/confusion_matrix.csv"
        assert response.read() == expected.read_bytes()
    for raw in ("%252e%252e/%252e%252e/%252e%252e/%252e%252e/secret.txt", "..%5csecret.txt"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            fetch(download_url(run_id, raw))
        assert refused.value.code == 400
        assert SECRET not in refused.value.read().decode()
