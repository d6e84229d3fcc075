"""The pipelines page and its Run button, through Django's test client."""

import pytest
from django.contrib.auth.models import Permission

from pipelines.choices import RunStatus, RunTrigger
from pipelines.models import Pipeline, PipelineRun, PipelineStep

IRIS_STEPS = [
    {"type": "sklearn_dataset", "name": "Load", "params": {"name": "iris"}},
    {"type": "drop_na", "name": "Clean", "params": {"columns": ["target"]}},
]
HTMX = {"HX-Request": "true"}


@pytest.fixture
def analyst(django_user_model):
    user = django_user_model.objects.create_user("analyst")
    user.user_permissions.add(Permission.objects.get(codename="add_pipelinerun"))
    return user


@pytest.fixture
def analyst_client(client, analyst):
    client.force_login(analyst)
    return client


@pytest.fixture
def iris(make_pipeline):
    return make_pipeline(IRIS_STEPS, name="iris")


def run_url(pipeline) -> str:
    return f"/pipelines/{pipeline.pk}/run/"


def test_list_shows_pipelines_with_steps_and_last_run(analyst_client, iris, make_pipeline):
    make_pipeline(IRIS_STEPS[:1], name="loader")
    PipelineRun.objects.create(pipeline=iris, status=RunStatus.SUCCEEDED)
    Pipeline.objects.filter(pk=iris.pk).update(description="Iris, cleaned")

    page = analyst_client.get("/pipelines/").content.decode()

    assert "iris" in page and "Iris, cleaned" in page and "loader" in page
    assert "succeeded" in page and "never run" in page
    assert '<td class="num">2</td>' in page and '<td class="num">1</td>' in page
    assert f'hx-post="{run_url(iris)}"' in page


def test_list_query_count_does_not_grow_with_pipelines(
    analyst_client, make_pipeline, django_assert_max_num_queries
):
    for index in range(5):
        make_pipeline(IRIS_STEPS, name=f"pipeline-{index}")
    # Session, user, permissions (the user's and their groups'), the pager's count, the page.
    with django_assert_max_num_queries(6):
        analyst_client.get("/pipelines/")


def test_run_button_is_absent_without_permission(viewer_client, iris):
    page = viewer_client.get("/pipelines/").content.decode()

    assert "iris" in page
    assert run_url(iris) not in page and ">Run</button>" not in page


def test_htmx_run_returns_the_partial_and_queues_a_manual_run(analyst_client, analyst, iris):
    response = analyst_client.post(run_url(iris), headers=HTMX)

    run = PipelineRun.objects.get(pipeline=iris)
    assert response.status_code == 200
    assert [t.name for t in response.templates] == ["pipelines/htmx/run_outcome.html"]
    assert f"Run #{run.pk} queued" in response.content.decode()
    assert (run.status, run.trigger, run.started_by) == (
        RunStatus.QUEUED,
        RunTrigger.MANUAL,
        analyst,
    )


def test_htmx_run_refused_names_the_active_run(analyst_client, make_pipeline):
    pipeline = make_pipeline(IRIS_STEPS, name="iris", concurrency_policy="refuse")
    active = PipelineRun.objects.create(pipeline=pipeline, status=RunStatus.RUNNING)

    response = analyst_client.post(run_url(pipeline), headers=HTMX)

    page = response.content.decode()
    assert 'class="run-error"' in page
    assert f"run #{active.pk} is running" in page
    assert "queued" not in page
    assert PipelineRun.objects.filter(pipeline=pipeline).count() == 1


def test_htmx_run_of_an_invalid_pipeline_shows_one_line_per_step_and_field(analyst_client):
    pipeline = Pipeline.objects.create(name="broken")
    PipelineStep.objects.create(pipeline=pipeline, order=1, step_type="sklearn_dataset")
    PipelineStep.objects.create(pipeline=pipeline, order=2, step_type="no_such_type")

    page = analyst_client.post(run_url(pipeline), headers=HTMX).content.decode()

    assert 'class="run-error"' in page
    assert page.count("<li>") == 2
    assert "step 1, params.name:" in page
    assert "step 2, type: unknown step type" in page
    assert not PipelineRun.objects.exists()


def test_plain_post_redirects_to_the_list_with_a_message(analyst_client, iris):
    response = analyst_client.post(run_url(iris), follow=True)

    run = PipelineRun.objects.get(pipeline=iris)
    assert response.redirect_chain == [("/pipelines/", 302)]
    assert f"Run #{run.pk} of iris queued." in response.content.decode()


def test_plain_post_refused_redirects_with_an_error_message(analyst_client, make_pipeline):
    pipeline = make_pipeline(IRIS_STEPS, name="iris", concurrency_policy="refuse")
    analyst_client.post(run_url(pipeline))
    first = PipelineRun.objects.get(pipeline=pipeline)

    page = analyst_client.post(run_url(pipeline), follow=True).content.decode()

    assert 'class="message error"' in page
    assert f"iris was not started: iris is at its limit of 1 active run(s): run #{first.pk}" in page
    assert PipelineRun.objects.filter(pipeline=pipeline).count() == 1


def test_run_without_permission_is_403(viewer_client, iris):
    response = viewer_client.post(run_url(iris), headers=HTMX)

    assert response.status_code == 403
    assert not PipelineRun.objects.exists()


def test_run_is_post_only(analyst_client, iris):
    assert analyst_client.get(run_url(iris)).status_code == 405
    assert not PipelineRun.objects.exists()


def test_run_of_an_unknown_pipeline_is_404(analyst_client):
    assert analyst_client.post("/pipelines/999/run/", headers=HTMX).status_code == 404


@pytest.mark.parametrize("method, url", [("get", "/pipelines/"), ("post", "/pipelines/1/run/")])
def test_pages_require_login(client, db, method, url):
    response = getattr(client, method)(url)

    assert response.status_code == 302
    assert response.url == f"/accounts/login/?next={url}"
    assert not PipelineRun.objects.exists()


def test_an_analyst_logs_in_on_the_site_and_lands_on_the_page_asked_for(client, django_user_model):
    django_user_model.objects.create_user("analyst", password="s3cret-enough")

    response = client.post(
        "/accounts/login/",
        {"username": "analyst", "password": "s3cret-enough", "next": "/pipelines/"},
    )

    assert response.status_code == 302 and response.url == "/pipelines/"
    assert client.get("/pipelines/").status_code == 200
    wrong = client.post("/accounts/login/", {"username": "analyst", "password": "nope"})
    assert "Please enter a correct username and password" in wrong.content.decode()


def test_an_htmx_click_after_the_session_expired_opens_the_login_page(client, db):
    headers = {"HX-Request": "true", "HX-Current-URL": "http://testserver/pipelines/?page=2"}

    response = client.post("/pipelines/1/run/", headers=headers)

    assert response.status_code == 200
    assert response["HX-Redirect"] == "/accounts/login/?next=%2Fpipelines%2F%3Fpage%3D2"
    assert not PipelineRun.objects.exists()
