"""The pipelines list page and its actions: search, filter, pages, New, Import, Duplicate,
Export, Delete, with their permissions, through Django's test client (and one download
through a real server)."""

import io
import json
import urllib.request
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from pipelines import services
from pipelines.choices import RunStatus
from pipelines.models import Pipeline, PipelineRun, PipelineSchedule, PipelineStep, PipelineVersion

LOAD = {"type": "sklearn_dataset", "name": "Load", "params": {"name": "iris"}}
CLEAN = {"type": "drop_na", "name": "Clean", "params": {"columns": ["target"]}}
HTMX = {"HX-Request": "true", "HX-Current-URL": "http://testserver/pipelines/"}
ALL_PERMISSIONS = ("add_pipeline", "delete_pipeline", "add_pipelinerun")


def with_permissions(user, *codenames):
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    return user


@pytest.fixture
def analyst(django_user_model):
    return with_permissions(django_user_model.objects.create_user("analyst"), *ALL_PERMISSIONS)


@pytest.fixture
def analyst_client(client, analyst):
    client.force_login(analyst)
    return client


@pytest.fixture
def iris(analyst):
    return services.create_pipeline(
        "iris", "Iris flowers, cleaned", owner=analyst, steps=[LOAD, CLEAN], user=analyst
    )


def make_pipelines(count: int, start: int = 0) -> None:
    for index in range(start, start + count):
        pipeline = services.create_pipeline(f"pipeline-{index:02}", steps=[LOAD])
        PipelineRun.objects.create(pipeline=pipeline, status=RunStatus.SUCCEEDED)
        PipelineSchedule.objects.create(pipeline=pipeline, interval_seconds=3600)


def content(response) -> str:
    return response.content.decode()


def names_in(response) -> list[str]:
    return [p.name for p in response.context["page"].object_list]


def database_state() -> tuple:
    return (
        list(Pipeline.objects.values()),
        list(PipelineStep.objects.values()),
        list(PipelineVersion.objects.values()),
    )


# The list


@pytest.mark.database
def test_list_row_shows_link_description_steps_last_run_and_next_tick(
    analyst_client, iris, settings
):
    settings.TIME_ZONE = "Europe/Paris"
    run = PipelineRun.objects.create(pipeline=iris, status=RunStatus.FAILED)
    PipelineRun.objects.filter(pk=run.pk).update(created_at=datetime(2026, 7, 1, 10, 0, tzinfo=UTC))
    soon = datetime(2030, 1, 15, 5, 0, tzinfo=UTC)
    later = soon + timedelta(days=3)
    PipelineSchedule.objects.create(pipeline=iris, interval_seconds=60, next_tick_at=later)
    PipelineSchedule.objects.create(pipeline=iris, interval_seconds=60, next_tick_at=soon)
    PipelineSchedule.objects.create(
        pipeline=iris, interval_seconds=60, next_tick_at=soon - timedelta(days=1), enabled=False
    )

    page = content(analyst_client.get("/pipelines/"))

    assert f'<a href="/pipelines/{iris.pk}/">iris</a>' in page
    assert "Iris flowers, cleaned" in page
    assert '<td class="num">2</td>' in page
    assert f'<a href="/runs/{run.pk}/" title="Open run #{run.pk}">' in page
    assert '<span class="status failed">failed</span>' in page
    # Times in the site's time zone, with the zone named.
    assert "2026-07-01 12:00 CEST" in page
    assert "2030-01-15 06:00 CET" in page


def test_long_description_is_truncated_with_the_whole_text_as_title(analyst_client, iris):
    long = "Classifies irises " + "by petal and sepal " * 10
    services.update_pipeline(iris, settings={"description": long})

    page = content(analyst_client.get("/pipelines/"))

    assert f'title="{long}"' in page
    assert long not in page.replace(f'title="{long}"', "")
    assert long[:79] + "…" in page


def test_never_run_and_unscheduled_pipelines_say_so(analyst_client, iris):
    page = content(analyst_client.get("/pipelines/"))

    assert '<span class="status never">never run</span>' in page
    assert "not scheduled" in page


@pytest.mark.database
def test_search_by_name_and_filter_by_last_run_status(analyst_client, iris):
    make_pipelines(2)
    failed = services.create_pipeline("iris-failing", steps=[LOAD])
    PipelineRun.objects.create(pipeline=failed, status=RunStatus.FAILED)

    assert names_in(analyst_client.get("/pipelines/?q=IRIS")) == ["iris", "iris-failing"]
    assert names_in(analyst_client.get("/pipelines/?status=never")) == ["iris"]
    assert names_in(analyst_client.get("/pipelines/?q=iris&status=failed")) == ["iris-failing"]
    assert len(names_in(analyst_client.get("/pipelines/?status=bogus"))) == 4


def test_a_search_without_match_says_so_with_a_way_back(analyst_client, iris):
    page = content(analyst_client.get("/pipelines/?q=zebra"))

    assert "No pipeline matches “zebra”" in page
    assert 'href="/pipelines/">clear the search</a>' in page


def test_an_empty_list_offers_new_and_import(analyst_client):
    page = content(analyst_client.get("/pipelines/"))

    assert "No pipelines yet." in page
    assert page.count('href="/pipelines/new/"') == 2  # the page's button and the hint's


def test_an_empty_list_tells_a_viewer_which_permission_creating_needs(viewer_client):
    page = content(viewer_client.get("/pipelines/"))

    assert "No pipelines yet." in page and "pipelines.add_pipeline" in page
    assert "/pipelines/new/" not in page


def test_htmx_search_returns_the_table_fragment_and_varies_on_hx_request(analyst_client, iris):
    response = analyst_client.get("/pipelines/?q=ir", headers=HTMX)

    assert [t.name for t in response.templates][0] == "pipelines/htmx/pipeline_table.html"
    assert "<html" not in content(response) and 'id="pipeline-table"' in content(response)
    assert "HX-Request" in response["Vary"]


def test_history_restore_gets_the_whole_page(analyst_client, iris):
    headers = {**HTMX, "HX-History-Restore-Request": "true"}

    response = analyst_client.get("/pipelines/?q=ir", headers=headers)

    assert response.templates[0].name == "pipelines/pipeline_list.html"


def test_search_as_you_type_is_wired_to_swap_the_table(analyst_client, iris):
    page = content(analyst_client.get("/pipelines/"))

    assert 'hx-trigger="submit, input changed delay:300ms from:#id_q' in page
    assert 'hx-target="#pipeline-table"' in page and 'hx-push-url="true"' in page


# Pages


def test_pages_of_25_keep_the_search_in_their_links(analyst_client):
    make_pipelines(30)

    first = analyst_client.get("/pipelines/?q=pipeline")
    second = analyst_client.get("/pipelines/?q=pipeline&page=2")

    assert len(names_in(first)) == 25 and len(names_in(second)) == 5
    assert "Page 1 of 2" in content(first)
    assert 'href="?q=pipeline&amp;page=2"' in content(first)
    assert "30 pipelines match the search; showing 1–25." in content(first)


@pytest.mark.parametrize("asked", ["99", "-1", "0"])
def test_a_page_past_the_end_shows_the_last_page_with_a_note(analyst_client, asked):
    make_pipelines(30)

    response = analyst_client.get(f"/pipelines/?page={asked}")

    assert response.status_code == 200
    assert response.context["page"].number == 2
    assert f"There is no page “{asked}”; this is page 2 of 2." in content(response)


def test_a_malformed_page_number_shows_the_first_page(analyst_client):
    make_pipelines(30)

    response = analyst_client.get("/pipelines/?page=abc")

    assert response.status_code == 200 and response.context["page"].number == 1


@pytest.mark.database
def test_query_count_does_not_grow_with_pipelines(analyst_client, django_assert_max_num_queries):
    make_pipelines(3)
    with CaptureQueriesContext(connection) as few:
        response = analyst_client.get("/pipelines/")
    assert content(response).count('class="status succeeded"') == 3
    make_pipelines(27, start=3)

    with django_assert_max_num_queries(len(few)):
        response = analyst_client.get("/pipelines/")

    assert content(response).count('class="status succeeded"') == 25
    assert content(response).count("<time") == 50  # last run and next tick of each row
    # Session, user, the user's and the groups' permissions, the pager's count, the page.
    assert len(few) <= 6


# Buttons and permissions


def test_buttons_follow_the_users_permissions(client, django_user_model, iris):
    runner = with_permissions(django_user_model.objects.create_user("runner"), "add_pipelinerun")
    client.force_login(runner)

    page = content(client.get("/pipelines/"))

    assert f"/pipelines/{iris.pk}/run/" in page
    assert f"/pipelines/{iris.pk}/export/" in page
    for hidden in ("/pipelines/new/", "/pipelines/import/", "/duplicate/", "/delete/"):
        assert hidden not in page


def test_a_user_with_every_permission_sees_every_button(analyst_client, iris):
    page = content(analyst_client.get("/pipelines/"))

    for url in ("new/", "import/", f"{iris.pk}/run/", f"{iris.pk}/duplicate/"):
        assert f'"/pipelines/{url}"' in page
    assert f'hx-post="/pipelines/{iris.pk}/delete/"' in page
    assert 'hx-confirm="Delete the pipeline iris with its runs' in page
    assert f'<form method="get" action="/pipelines/{iris.pk}/delete/">' in page


@pytest.mark.parametrize(
    "method, url, permission",
    [
        ("get", "/pipelines/new/", "pipelines.add_pipeline"),
        ("post", "/pipelines/new/", "pipelines.add_pipeline"),
        ("get", "/pipelines/import/", "pipelines.add_pipeline"),
        ("post", "/pipelines/import/", "pipelines.add_pipeline"),
        ("get", "/pipelines/{pk}/duplicate/", "pipelines.add_pipeline"),
        ("post", "/pipelines/{pk}/duplicate/", "pipelines.add_pipeline"),
        ("get", "/pipelines/{pk}/delete/", "pipelines.delete_pipeline"),
        ("post", "/pipelines/{pk}/delete/", "pipelines.delete_pipeline"),
    ],
)
def test_actions_without_permission_are_403_naming_it_and_change_nothing(
    viewer_client, iris, method, url, permission
):
    before = database_state()

    response = getattr(viewer_client, method)(url.format(pk=iris.pk), {"name": "sneaky"})

    assert response.status_code == 403
    assert f"you need the “{permission}” permission" in content(response)
    assert database_state() == before


@pytest.mark.parametrize(
    "url",
    [
        "/pipelines/new/",
        "/pipelines/import/",
        "/pipelines/1/",
        "/pipelines/1/duplicate/",
        "/pipelines/1/export/",
        "/pipelines/1/delete/",
    ],
)
def test_every_page_requires_login(client, db, url):
    response = client.get(url)

    assert response.status_code == 302
    assert response.url == f"/accounts/login/?next={url}"


def test_forms_refuse_a_post_without_csrf_token(analyst, iris):
    client = Client(enforce_csrf_checks=True)
    client.force_login(analyst)

    for url in (
        "/pipelines/new/",
        f"/pipelines/{iris.pk}/duplicate/",
        f"/pipelines/{iris.pk}/delete/",
    ):
        assert client.post(url, {"name": "x"}).status_code == 403
    assert list(Pipeline.objects.values_list("name", flat=True)) == ["iris"]


def test_every_form_carries_a_csrf_token(analyst_client, iris):
    for url in ("/pipelines/", "/pipelines/new/", "/pipelines/import/"):
        page = content(analyst_client.get(url))
        assert page.count('method="post"') <= page.count("csrfmiddlewaretoken"), url


# New


def test_new_creates_the_pipeline_and_opens_its_page(analyst_client, analyst):
    response = analyst_client.post(
        "/pipelines/new/", {"name": " churn ", "description": "Who leaves"}, follow=True
    )

    pipeline = Pipeline.objects.get(name="churn")
    assert response.redirect_chain == [(f"/pipelines/{pipeline.pk}/", 302)]
    assert "Pipeline churn created: add its steps." in content(response)
    assert (pipeline.description, pipeline.owner) == ("Who leaves", analyst)
    assert pipeline.versions.get().changed_by == analyst


@pytest.mark.parametrize(
    "name, message", [("iris", "a pipeline named &#x27;iris&#x27; exists"), ("", "cannot be blank")]
)
def test_new_with_a_bad_name_shows_the_error_on_the_field(analyst_client, iris, name, message):
    before = database_state()

    response = analyst_client.post("/pipelines/new/", {"name": name, "description": "kept"})

    assert response.status_code == 200
    page = content(response)
    assert 'id="id_name_errors"' in page and message in page
    assert ">kept</textarea>" in page
    assert database_state() == before


# Import


def upload(data, name="pipeline.json"):
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    file = io.BytesIO(raw)
    file.name = name
    return file


def test_import_creates_the_pipeline_and_records_it(analyst_client, analyst):
    data = {"name": "imported", "steps": [{**LOAD, "order": 1}]}

    response = analyst_client.post("/pipelines/import/", {"file": upload(data)}, follow=True)

    pipeline = Pipeline.objects.get(name="imported")
    assert response.redirect_chain == [(f"/pipelines/{pipeline.pk}/", 302)]
    assert "Pipeline imported imported." in content(response)
    assert (pipeline.owner, pipeline.versions.get().summary) == (analyst, "imported")


@pytest.mark.parametrize(
    "raw, expected",
    [
        (b"{not json", "bad.json is not valid JSON: Expecting property name"),
        (b"\xff\xfe", "bad.json is not valid JSON"),
        (b"[1, 2]", "file: must hold a JSON object"),
        (b'{"steps": []}', "pipeline, name: is required"),
        (b'{"name": "x", "steps": [{"order": 1, "type": "predict"}]}', "step 1, type: predict"),
        (
            b'{"name": "iris", "steps": [{"order": 1, "type": "sklearn_dataset", '
            b'"params": {"name": "iris"}}]}',
            "pipeline, name: a pipeline named 'iris' exists",
        ),
        (
            b'{"name": "x", "run_settings": {"max_retries": -1}, "steps": [{"order": 1, '
            b'"type": "sklearn_dataset", "params": {"name": "iris"}}]}',
            "run_settings.max_retries",
        ),
    ],
)
def test_import_of_a_file_that_is_not_a_pipeline_names_the_problem(
    analyst_client, iris, raw, expected
):
    before = database_state()

    response = analyst_client.post("/pipelines/import/", {"file": upload(raw, "bad.json")})

    assert response.status_code == 200
    page = content(response).replace("&#x27;", "'")
    assert 'class="form-errors"' in page and expected in page
    assert database_state() == before


def test_import_without_a_file_asks_for_one(analyst_client, db):
    response = analyst_client.post("/pipelines/import/", {})

    assert "Choose a JSON file to import." in content(response)


def test_import_refuses_a_file_over_the_limit(analyst_client, db, monkeypatch):
    monkeypatch.setattr("pipelines.views.pipelines.IMPORT_MAX_BYTES", 10)

    response = analyst_client.post("/pipelines/import/", {"file": upload({"name": "big"})})

    assert "pipeline.json is 15 bytes; the limit is 10." in content(response)
    assert not Pipeline.objects.exists()


# Duplicate


def test_duplicate_from_the_list_derives_the_name_and_comes_back(analyst_client, analyst, iris):
    response = analyst_client.post(f"/pipelines/{iris.pk}/duplicate/", follow=True)

    copy = Pipeline.objects.get(name="iris-copy")
    assert response.redirect_chain == [("/pipelines/", 302)]
    assert "Pipeline iris duplicated as iris-copy." in content(response)
    assert copy.owner == analyst and copy.steps.count() == 2

    analyst_client.post(f"/pipelines/{iris.pk}/duplicate/")
    assert Pipeline.objects.filter(name="iris-copy-2").exists()


def test_duplicate_page_asks_for_the_name_with_the_derived_one_filled_in(analyst_client, iris):
    page = content(analyst_client.get(f"/pipelines/{iris.pk}/duplicate/"))

    assert 'name="name" value="iris-copy"' in page

    analyst_client.post(f"/pipelines/{iris.pk}/duplicate/", {"name": "iris-v2"})
    assert Pipeline.objects.filter(name="iris-v2").exists()


def test_duplicate_under_a_taken_name_shows_the_error_and_changes_nothing(analyst_client, iris):
    services.create_pipeline("taken")
    before = database_state()

    response = analyst_client.post(f"/pipelines/{iris.pk}/duplicate/", {"name": "taken"})

    assert response.status_code == 200
    assert "a pipeline named &#x27;taken&#x27; exists" in content(response)
    assert database_state() == before


def test_htmx_duplicate_swaps_the_table_with_the_copy_and_a_message(analyst_client, iris):
    headers = {**HTMX, "HX-Current-URL": "http://testserver/pipelines/?q=iri"}

    response = analyst_client.post(f"/pipelines/{iris.pk}/duplicate/", headers=headers)

    assert response.templates[0].name == "pipelines/htmx/pipeline_table.html"
    assert names_in(response) == ["iris", "iris-copy"]
    assert "Pipeline iris duplicated as iris-copy." in content(response)


# Export


def test_export_downloads_a_json_file_that_imports_back(analyst_client, iris):
    services.update_pipeline(iris, settings={"max_retries": 2})

    response = analyst_client.get(f"/pipelines/{iris.pk}/export/")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response["Content-Disposition"] == 'attachment; filename="iris.json"'
    data = json.loads(response.content)
    assert data == services.export_pipeline(iris)
    data["name"] = "iris-again"
    analyst_client.post("/pipelines/import/", {"file": upload(data)})
    assert services.export_pipeline(Pipeline.objects.get(name="iris-again")) == data


def test_export_is_open_to_any_logged_in_user(viewer_client, iris):
    assert viewer_client.get(f"/pipelines/{iris.pk}/export/").status_code == 200
    assert viewer_client.post(f"/pipelines/{iris.pk}/export/").status_code == 405
    assert viewer_client.get("/pipelines/999/export/").status_code == 404


def test_export_file_name_of_an_unusual_pipeline_name_is_safe(analyst_client, db):
    pipeline = services.create_pipeline('a/b "été"')

    response = analyst_client.get(f"/pipelines/{pipeline.pk}/export/")

    assert response["Content-Disposition"] == (
        "attachment; filename*=utf-8''a_b%20%22%C3%A9t%C3%A9%22.json"
    )


@pytest.mark.django_db(transaction=True)
def test_export_through_a_real_server_sends_attachment_headers(live_server, django_user_model):
    user = django_user_model.objects.create_user("reader")
    pipeline = services.create_pipeline("iris", steps=[LOAD])
    client = Client()
    client.force_login(user)
    request = urllib.request.Request(
        f"{live_server.url}/pipelines/{pipeline.pk}/export/",
        headers={"Cookie": f"sessionid={client.cookies['sessionid'].value}"},
    )

    with urllib.request.urlopen(request, timeout=10) as response:
        headers, body = response.headers, response.read()

    assert headers["Content-Disposition"] == 'attachment; filename="iris.json"'
    assert headers["Content-Type"] == "application/json"
    assert int(headers["Content-Length"]) == len(body)
    assert json.loads(body)["steps"][0]["type"] == "sklearn_dataset"


# Delete


def test_delete_confirmation_page_says_what_goes_and_posts_with_a_token(analyst_client, iris):
    PipelineRun.objects.create(pipeline=iris, status=RunStatus.SUCCEEDED)

    page = content(analyst_client.get(f"/pipelines/{iris.pk}/delete/"))

    assert "Delete iris?" in page and "1 run with its log" in page
    assert f'<form method="post" action="/pipelines/{iris.pk}/delete/"' in page
    assert "csrfmiddlewaretoken" in page and "Yes, delete iris" in page


def test_delete_removes_the_pipeline_and_comes_back_with_a_message(analyst_client, iris):
    response = analyst_client.post(f"/pipelines/{iris.pk}/delete/", follow=True)

    assert response.redirect_chain == [("/pipelines/", 302)]
    assert "Pipeline iris deleted." in content(response)
    assert not Pipeline.objects.exists()


def test_htmx_delete_swaps_the_table_without_the_row(analyst_client, iris):
    services.create_pipeline("other")

    response = analyst_client.post(f"/pipelines/{iris.pk}/delete/", headers=HTMX)

    assert response.templates[0].name == "pipelines/htmx/pipeline_table.html"
    assert names_in(response) == ["other"]
    assert "Pipeline iris deleted." in content(response)


def test_delete_is_refused_while_a_run_is_active_and_says_which(analyst_client, iris):
    run = PipelineRun.objects.create(pipeline=iris, status=RunStatus.RUNNING)
    refusal = f"iris has an active run (#{run.pk}, running); cancel it or wait before deleting."
    before = database_state()

    plain = analyst_client.post(f"/pipelines/{iris.pk}/delete/", follow=True)
    htmx = analyst_client.post(f"/pipelines/{iris.pk}/delete/", headers=HTMX)
    confirm = analyst_client.get(f"/pipelines/{iris.pk}/delete/")

    assert f"iris was not deleted: {refusal}" in content(plain)
    assert 'class="message error"' in content(plain)
    assert f"iris was not deleted: {refusal}" in content(htmx)
    assert names_in(htmx) == ["iris"]
    assert refusal in content(confirm) and "Yes, delete" not in content(confirm)
    assert database_state() == before


def test_delete_of_an_unknown_pipeline_is_404(analyst_client, db):
    assert analyst_client.post("/pipelines/999/delete/").status_code == 404


# The pipeline page (read-only until the editor replaces it)


def test_pipeline_history_tab_shows_who_changed_what(analyst_client, analyst, iris):
    services.update_pipeline(iris, steps=[LOAD], user=analyst)

    page = content(analyst_client.get(f"/pipelines/{iris.pk}/history/"))

    assert "removed step 2" in page and "created" in page


def test_pipeline_page_of_an_unknown_pipeline_is_404(analyst_client, db):
    assert analyst_client.get("/pipelines/999/").status_code == 404
