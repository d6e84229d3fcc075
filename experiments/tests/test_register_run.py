"""Registering a run's model from the MLflow run page: the form, its refusals, the gate."""

import re
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission

from experiments import registry, tracking
from experiments.models import AliasChange, ModelPolicy
from pipelines import runs

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
NAME = "iris"


def training_steps(features=None) -> list[dict]:
    train = {"task": "classification", "estimator": "logistic_regression", "target": "target"}
    if features:
        train["features"] = features
    return [
        {"type": "sklearn_dataset", "params": {"name": "iris"}},
        {"type": "train_sklearn", "params": train},
    ]


@pytest.fixture
def trained(make_pipeline):
    """A finished run of "iris classifier" (no register step): its model is logged only."""
    run = runs.start_run(make_pipeline(training_steps(), name="iris classifier"), wait=True)
    assert run.status == "succeeded", run.error_message
    return run


@pytest.fixture
def weak(make_pipeline):
    """A run of a classifier trained on one weak feature: a worse accuracy."""
    steps = training_steps(features=["sepal width (cm)"])
    run = runs.start_run(make_pipeline(steps, name="iris weak"), wait=True)
    assert run.status == "succeeded", run.error_message
    return run


def login(client, django_user_model, *codenames, name="analyst"):
    user = django_user_model.objects.create_user(name)
    user.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="experiments", codename__in=codenames)
    )
    client.force_login(user)
    return user


@pytest.fixture
def registrar(client, django_user_model):
    login(client, django_user_model, "register_model", "set_alias")
    return client


def text(response) -> str:
    return re.sub(r"\s+", " ", response.content.decode())


def panel(response) -> str:
    """The model panel of the run page (or the panel HTMX swapped in)."""
    html = text(response)
    if '<section id="run-register"' in html:
        html = html.split('<section id="run-register"', 1)[1].split("</section>", 1)[0]
    return html


def register_url(run) -> str:
    return f"/experiments/runs/{run.mlflow_run_id}/register/"


def page_url(run) -> str:
    return f"/experiments/runs/{run.mlflow_run_id}/"


def versions() -> list[int]:
    model = tracking.registered_model(NAME)
    return [v["version"] for v in model["versions"]] if model else []


# The form on the page


def test_page_offers_the_form_with_the_pipelines_name_and_existing_models(registrar, trained, weak):
    registry.register_run_model(weak.mlflow_run_id, "iris-baseline")
    html = panel(registrar.get(page_url(trained)))
    assert "This run logged a model: <code>models:/m-" in html
    assert "It is not registered yet." in html
    assert "<h3" in html and "Register this model" in html
    # "iris classifier" is no model name (a space): the suggestion makes it one.
    assert (
        'name="name" required maxlength="256" list="register-model-names" value="iris-classifier"'
        in html
    )
    assert '<datalist id="register-model-names"><option value="iris-baseline"></datalist>' in html
    assert 'name="alias"' in html and '<option value="champion">' in html


def test_without_the_permission_the_page_says_which_one_and_a_post_is_refused(
    client, django_user_model, trained
):
    login(client, django_user_model)
    html = panel(client.get(page_url(trained)))
    assert "you need the “experiments.register_model” permission" in html
    assert "<form" not in html

    response = client.post(register_url(trained), {"name": NAME})
    assert response.status_code == 403
    assert "you need the “experiments.register_model” permission" in text(response)
    assert tracking.registered_model_names() == []


def test_an_alias_needs_the_set_alias_permission_too(client, django_user_model, trained):
    login(client, django_user_model, "register_model")
    html = panel(client.get(page_url(trained)))
    assert 'name="alias"' not in html
    assert "To give the new version an alias you need the “experiments.set_alias”" in html

    response = client.post(register_url(trained), {"name": NAME, "alias": "champion"})
    assert response.status_code == 403
    assert "you need the “experiments.set_alias” permission" in text(response)
    assert tracking.registered_model_names() == []

    response = client.post(register_url(trained), {"name": NAME}, follow=True)
    assert f"Registered {NAME} version 1." in text(response)


def test_the_page_needs_a_login_and_only_posts(client, registrar, trained):
    assert registrar.get(register_url(trained)).status_code == 405
    client.logout()
    response = client.post(register_url(trained), {"name": NAME})
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


# Refusals: the message beside its field, nothing registered


@pytest.mark.parametrize(
    "form, field, message",
    [
        ({"name": "my model"}, "name", "“my model” is not a model name"),
        ({"name": ".hidden"}, "name", "“.hidden” is not a model name"),
        ({"name": ""}, "name", "“” is not a model name"),
        ({"name": NAME, "alias": "latest"}, "alias", "“latest” is reserved by MLflow"),
        ({"name": NAME, "alias": "best one"}, "alias", "“best one” is not an alias"),
        ({"name": NAME, "description": "x" * 5001}, "description", "at most 5,000 characters"),
    ],
)
def test_an_invalid_field_is_refused_beside_it(registrar, trained, form, field, message):
    response = registrar.post(register_url(trained), form)
    assert response.status_code == 400
    html = panel(response)
    error = re.search(
        rf'<p class="field-error" id="register-{field}-error" role="alert">(.*?)</p>', html
    )
    assert error and message in error[1]
    assert f'aria-invalid="true" aria-describedby="register-{field}-error"' in html
    if form["name"]:
        assert f'value="{form["name"]}"' in html  # what was typed stays in the form
    assert tracking.registered_model_names() == []
    assert not AliasChange.objects.exists()


def test_an_invalid_name_over_htmx_swaps_the_panel_only(registrar, trained):
    response = registrar.post(register_url(trained), {"name": "a/b"}, HTTP_HX_REQUEST="true")
    html = text(response)
    assert response.status_code == 200
    assert "<html" not in html
    assert '<h2 id="model">Model</h2>' in html
    assert "“a/b” is not a model name" in html
    assert tracking.registered_model_names() == []


def test_the_gate_refuses_a_worse_champion_and_registers_nothing(registrar, trained, weak):
    registrar.post(register_url(trained), {"name": NAME, "alias": "champion"})
    ModelPolicy.objects.create(name=NAME, gate_metric="accuracy", higher_is_better=True)

    response = registrar.post(register_url(weak), {"name": NAME, "alias": "champion"})
    html = panel(response)
    assert response.status_code == 400
    error = re.search(r'id="register-alias-error" role="alert">(.*?)</p>', html)[1]
    strong_accuracy = trained.metrics["accuracy"]
    assert f"Promotion gate: accuracy {weak.metrics['accuracy']:.3g} of the new version" in error
    assert f"is worse than {strong_accuracy:.3g} of champion version 1" in error
    assert versions() == [1]
    assert tracking.alias_version(NAME, "champion") == 1
    assert "It is not registered yet." in html

    # Without the alias the weak model may still be registered.
    response = registrar.post(register_url(weak), {"name": NAME}, follow=True)
    assert f"Registered {NAME} version 2." in text(response)
    assert tracking.alias_version(NAME, "champion") == 1


def test_a_run_without_a_model_has_nothing_to_register(registrar, make_pipeline):
    run = runs.start_run(make_pipeline(training_steps()[:1], name="just data"), wait=True)
    html = panel(registrar.get(page_url(run)))
    assert "This run logged no model, so there is nothing to register." in html
    assert "<form" not in html
    response = registrar.post(register_url(run), {"name": NAME})
    assert response.status_code == 400
    assert f"MLflow run {run.mlflow_run_id} logged no model to register." in text(response)


def test_an_unknown_run_is_not_found(registrar, db):
    assert (
        registrar.post(f"/experiments/runs/{'0' * 32}/register/", {"name": NAME}).status_code == 404
    )


def test_an_unreachable_store_says_so_and_registers_nothing(registrar, db, settings, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    settings.MLFLOW_TRACKING_URI = "http://127.0.0.1:1"  # nothing listens on port 1
    response = registrar.post(f"/experiments/runs/{'a' * 32}/register/", {"name": NAME})
    assert response.status_code == 503
    assert "<code>http://127.0.0.1:1</code> cannot be reached" in text(response)


# Success


def test_register_with_an_alias_redirects_with_a_message_and_records_who(registrar, trained):
    form = {"name": NAME, "alias": "champion", "description": "  First try.  "}
    response = registrar.post(register_url(trained), form)
    assert response.status_code == 302 and response["Location"] == page_url(trained)

    html = text(registrar.get(response["Location"]))
    assert (
        f"Registered {NAME} version 1, alias champion moved to it. "
        f'<a href="/models/{NAME}/">Open {NAME}</a>'
    ) in html
    assert tracking.alias_version(NAME, "champion") == 1
    version = tracking.model_version(NAME, 1)
    assert version["run_id"] == trained.mlflow_run_id
    assert version["description"] == "First try."
    assert version["tags"]["mlops.run_id"] == str(trained.pk)
    assert version["tags"]["mlops.registered_by"] == "analyst"
    change = AliasChange.objects.get()
    assert (change.model_name, change.alias, change.version, change.changed_by.username) == (
        NAME,
        "champion",
        1,
        "analyst",
    )
    assert change.reason == f"registered from MLflow run {trained.mlflow_run_id}"


def test_register_over_htmx_answers_the_panel_with_a_link_to_the_model(registrar, trained):
    response = registrar.post(register_url(trained), {"name": NAME}, HTTP_HX_REQUEST="true")
    html = text(response)
    assert response.status_code == 200 and "<html" not in html
    assert f'Registered {NAME} version 1. <a href="/models/{NAME}/">Open {NAME}</a>' in html
    assert f'<a href="/models/{NAME}/#version-1">{NAME} version 1</a>' in html
    assert response["Vary"] and "HX-Request" in response["Vary"]


def test_the_page_lists_the_versions_registered_from_the_run(registrar, trained, weak):
    registrar.post(register_url(trained), {"name": NAME})
    registrar.post(register_url(weak), {"name": NAME})
    registrar.post(register_url(trained), {"name": "iris-copy"})

    html = panel(registrar.get(page_url(trained)))
    listed = re.findall(r'<a href="/models/([\w-]+)/#version-(\d)">', html)
    assert listed == [("iris-copy", "1"), (NAME, "1")]
    assert "not registered yet" not in html
    # The form suggests the name it was last registered under.
    assert 'list="register-model-names" value="iris-copy"' in html
    # The model page links back to the run.
    model_page = text(registrar.get(f"/models/{NAME}/"))
    assert f'href="/experiments/runs/{trained.mlflow_run_id}/"' in model_page


def test_a_second_submit_does_not_make_a_second_version(registrar, trained):
    registrar.post(register_url(trained), {"name": NAME})
    response = registrar.post(register_url(trained), {"name": NAME})
    assert response.status_code == 400
    assert f"this run’s model is already version 1 of {NAME}." in panel(response)
    assert versions() == [1]


def test_the_registered_version_predicts_as_the_run_model(registrar, trained):
    import pandas as pd
    from sklearn import datasets

    registrar.post(register_url(trained), {"name": NAME, "alias": "champion"})
    rows = datasets.load_iris(as_frame=True).frame.drop(columns="target").iloc[:5]
    logged = tracking.load_model(
        tracking.run_details(trained.mlflow_run_id)["tags"]["mlops.model_uri"]
    )
    registered = tracking.load_model(f"models:/{NAME}@champion")
    assert list(registered.predict(rows)) == list(logged.predict(pd.DataFrame(rows)))


# The page as people see it


@pytest.mark.screenshots
@pytest.mark.django_db(transaction=True)
def test_screenshot_of_the_register_form(
    make_pipeline, live_server, django_user_model, monkeypatch
):
    from pipelines.tests.browser import PASSWORD, chromium_page, log_in

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    strong = runs.start_run(make_pipeline(training_steps(), name="iris classifier"), wait=True)
    steps = training_steps(features=["sepal width (cm)"])
    weak = runs.start_run(make_pipeline(steps, name="iris weak"), wait=True)
    registry.register_run_model(strong.mlflow_run_id, NAME, "champion")
    registry.register_run_model(weak.mlflow_run_id, "iris-baseline")
    ModelPolicy.objects.create(name=NAME, gate_metric="accuracy")
    user = django_user_model.objects.create_user("lead", password=PASSWORD)
    user.user_permissions.add(
        *Permission.objects.filter(codename__in=["register_model", "set_alias"])
    )
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with chromium_page() as page:
        log_in(page, live_server.url, "lead", next_path=page_url(weak))
        page.fill("#id_register_name", NAME)
        page.fill("#id_register_alias", "champion")
        page.get_by_role("button", name="Register").click()
        page.locator("#register-alias-error").wait_for()
        page.locator("#run-register").scroll_into_view_if_needed()
        page.screenshot(path=str(SCREENSHOTS / "experiment-run-register.png"), full_page=True)
