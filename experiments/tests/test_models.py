"""The model registry pages, aliases and the promotion gate."""

import re
import socket
import urllib.request
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission

from experiments import registry, tracking
from experiments.models import AliasChange, ModelPolicy
from pipelines import runs
from pipelines.templatetags.mlops_format import sig3

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
MODEL = "iris-classifier"


def training_steps(features=None, alias="champion") -> list[dict]:
    """Iris, a classifier (on `features` only when given), and a register_model step."""
    train = {"task": "classification", "estimator": "logistic_regression", "target": "target"}
    if features:
        train["features"] = features
    register = {"name": MODEL, "description": "Iris species."}
    if alias:
        register["alias"] = alias
    return [
        {"type": "sklearn_dataset", "params": {"name": "iris"}},
        {"type": "train_sklearn", "params": train},
        {"type": "register_model", "params": register},
    ]


@pytest.fixture
def train(make_pipeline):
    """Run a pipeline that registers the next version of MODEL; returns the run."""
    made = {}

    def run(name="strong", features=None, alias="champion"):
        if name not in made:
            made[name] = make_pipeline(training_steps(features, alias), name=name)
        return runs.start_run(made[name], wait=True)

    return run


@pytest.fixture
def two_versions(train):
    """v1: a strong model that is champion; v2: a weak one (one feature), no alias."""
    strong = train("strong")
    weak = train("weak", features=["sepal width (cm)"], alias=None)
    assert strong.status == weak.status == "succeeded", strong.error_message + weak.error_message
    assert strong.metrics["accuracy"] > weak.metrics["accuracy"]
    return strong, weak


@pytest.fixture
def gate(db):
    return ModelPolicy.objects.create(name=MODEL, gate_metric="accuracy", higher_is_better=True)


def login(client, django_user_model, *permissions, staff=False, name="analyst"):
    user = django_user_model.objects.create_user(name, is_staff=staff)
    for permission in permissions:
        app_label, codename = permission.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    client.force_login(user)
    return user


@pytest.fixture
def viewer(client, django_user_model):
    login(client, django_user_model)
    return client


@pytest.fixture
def editor(client, django_user_model):
    login(client, django_user_model, "experiments.set_alias", "experiments.change_modelpolicy")
    return client


def rows(html: str, table: str) -> list[str]:
    body = html.split(f'<table class="{table}">', 1)[1].split("</tbody>", 1)[0]
    return re.findall(r"<tr[^>]*>(.*?)</tr>", body.split("<tbody>", 1)[1], re.S)


def champion() -> int | None:
    return tracking.alias_version(MODEL, "champion")


def text(response) -> str:
    return re.sub(r"\s+", " ", response.content.decode())


# The pages


def test_list_shows_each_model_with_latest_version_aliases_and_gate(viewer, two_versions, gate):
    response = viewer.get("/models/")
    assert response.status_code == 200
    (row,) = rows(response.content.decode(), "models")
    assert f'href="/models/{MODEL}/"' in row
    assert '<td class="num">v2</td>' in row
    assert "champion" in row and "→ v1" in row
    assert '<td class="num">2</td>' in row
    assert "accuracy" in row and "higher is better" in row


def test_list_reads_gates_in_one_query(viewer, two_versions, gate, django_assert_num_queries):
    with django_assert_num_queries(3):  # session, user, gates
        response = viewer.get("/models/")
    assert MODEL in response.content.decode()


def test_list_without_models_says_how_to_register_one(viewer):
    html = text(viewer.get("/models/"))
    assert "No registered models yet" in html
    assert "<code>register_model</code>" in html
    assert 'href="/pipelines/"' in html


def test_detail_lists_versions_newest_first_with_runs_metrics_and_links(viewer, two_versions):
    strong, weak = two_versions
    response = viewer.get(f"/models/{MODEL}/")
    assert response.status_code == 200
    versions = rows(response.content.decode(), "model-versions")
    assert [re.search(r"<strong>v(\d+)</strong>", row)[1] for row in versions] == ["2", "1"]
    for row, run in zip(versions, [weak, strong], strict=True):
        assert f'href="/runs/{run.pk}/"' in row
        assert f'href="/pipelines/{run.pipeline_id}/"' in row and run.pipeline.name in row
        assert f'<td class="num">{sig3(run.metrics["accuracy"])}</td>' in row
        assert run.mlflow_run_id in row  # the source run, linked when its page exists
    assert "champion" in versions[1] and "champion" not in versions[0]
    assert "Iris species." in versions[0]


def test_detail_of_an_unknown_model_is_404(viewer, db):
    assert viewer.get("/models/no-such-model/").status_code == 404


@pytest.mark.parametrize("url", ["/models/", f"/models/{MODEL}/"])
def test_pages_say_when_the_store_is_unreachable(viewer, settings, monkeypatch, url):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    settings.MLFLOW_TRACKING_URI = f"http://127.0.0.1:{port}"
    response = viewer.get(url)
    assert response.status_code == 200
    assert f"http://127.0.0.1:{port}" in response.content.decode()
    assert "cannot be reached" in response.content.decode()


# Aliases


def test_set_move_and_remove_an_alias_each_recorded(editor, two_versions):
    url = f"/models/{MODEL}/aliases/"
    response = editor.post(url, {"alias": "challenger", "version": "2"}, follow=True)
    assert "Alias challenger now points at version 2." in text(response)
    assert tracking.alias_version(MODEL, "challenger") == 2

    response = editor.post(url, {"alias": "challenger", "version": "1"}, follow=True)
    assert "Alias challenger now points at version 1 (was version 2)." in text(response)

    response = editor.post(url, {"alias": "challenger", "remove": "1"}, follow=True)
    assert "Alias challenger removed from version 1." in text(response)
    assert tracking.alias_version(MODEL, "challenger") is None

    history = rows(response.content.decode(), "alias-history")
    assert [re.sub(r"<.*?>|\s+", " ", row).split()[3:6] for row in history][:3] == [
        ["challenger", "removed", "from"],
        ["challenger", "moved", "v2"],
        ["challenger", "set", "to"],
    ]
    changes = AliasChange.objects.filter(alias="challenger")
    assert [(c.previous_version, c.version) for c in changes] == [(1, None), (2, 1), (None, 2)]
    assert {c.changed_by.username for c in changes} == {"analyst"}


def test_alias_change_over_htmx_swaps_the_versions_table_and_history(editor, two_versions):
    response = editor.post(
        f"/models/{MODEL}/aliases/", {"alias": "challenger", "version": "2"}, HTTP_HX_REQUEST="true"
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert "<html" not in html
    assert "Alias challenger now points at version 2." in html
    assert "challenger" in rows(html, "model-versions")[0]
    assert 'id="model-history" hx-swap-oob="true"' in html


@pytest.mark.parametrize(
    "alias, message",
    [
        ("latest", "“latest” is reserved by MLflow"),
        ("V3", "“V3” is reserved by MLflow"),
        ("best model", "“best model” is not an alias"),
    ],
)
def test_an_invalid_alias_is_refused(editor, two_versions, alias, message):
    response = editor.post(
        f"/models/{MODEL}/aliases/", {"alias": alias, "version": "2"}, follow=True
    )
    assert "Refused:" in text(response) or "Error:" in text(response)
    assert message in text(response)
    assert not AliasChange.objects.filter(alias=alias).exists()


def test_changing_aliases_needs_the_permission(viewer, two_versions):
    page = text(viewer.get(f"/models/{MODEL}/"))
    assert "you need the “experiments.set_alias” permission" in page
    assert 'name="remove"' not in page

    response = viewer.post(f"/models/{MODEL}/aliases/", {"alias": "champion", "version": "2"})
    assert response.status_code == 403
    assert "experiments.set_alias" in text(response)
    assert champion() == 1
    assert not AliasChange.objects.filter(version=2).exists()


# The promotion gate


def test_gate_refuses_a_worse_champion_naming_both_values(editor, two_versions, gate):
    strong, weak = two_versions
    response = editor.post(f"/models/{MODEL}/aliases/", {"alias": "champion", "version": "2"})
    html = text(editor.get(response["Location"]))
    expected = (
        f"accuracy {weak.metrics['accuracy']:.3g} of version 2 is worse than "
        f"{strong.metrics['accuracy']:.3g} of champion version 1 (higher is better)"
    )
    assert expected in html
    assert champion() == 1
    assert not AliasChange.objects.filter(alias="champion", version=2).exists()


def test_gate_passes_a_better_version(editor, two_versions):
    registry.set_alias(MODEL, "champion", 2)  # the weak version, before there is a gate
    ModelPolicy.objects.create(name=MODEL, gate_metric="accuracy")
    response = editor.post(f"/models/{MODEL}/aliases/", {"alias": "champion", "version": "1"})
    assert "now points at version 1 (was version 2)" in text(editor.get(response["Location"]))
    change = AliasChange.objects.get(alias="champion", version=1, previous_version=2)
    assert (change.gate_metric, change.overridden) == ("accuracy", False)
    assert change.new_value > change.previous_value


def test_gate_refuses_a_version_whose_run_lacks_the_metric(editor, two_versions):
    ModelPolicy.objects.create(name=MODEL, gate_metric="auc_pr")
    registry.remove_alias(MODEL, "champion")
    response = editor.post(
        f"/models/{MODEL}/aliases/", {"alias": "champion", "version": "1"}, follow=True
    )
    assert "the source run of version 1 has no auc_pr metric" in text(response)
    assert champion() is None


def test_gate_is_only_for_champion(editor, two_versions, gate):
    editor.post(f"/models/{MODEL}/aliases/", {"alias": "challenger", "version": "2"})
    assert tracking.alias_version(MODEL, "challenger") == 2


def test_staff_override_passes_the_gate_and_is_recorded(
    client, django_user_model, two_versions, gate
):
    login(client, django_user_model, "experiments.set_alias", staff=True, name="lead")
    url = f"/models/{MODEL}/aliases/"
    form = {"alias": "champion", "version": "2", "override": "1"}

    response = client.post(url, form, follow=True)
    assert "reason: say why the promotion gate is overridden" in text(response)
    assert champion() == 1

    response = client.post(url, {**form, "reason": "v1 leaks the test set"}, follow=True)
    assert "The promotion gate was overridden." in text(response)
    assert champion() == 2
    change = AliasChange.objects.get(alias="champion", version=2)
    assert (change.overridden, change.reason, change.changed_by.username) == (
        True,
        "v1 leaks the test set",
        "lead",
    )
    (latest, *_) = rows(response.content.decode(), "alias-history")
    assert "overridden" in latest and "v1 leaks the test set" in latest


def test_only_staff_may_override(editor, two_versions, gate):
    form = {"alias": "champion", "version": "2", "override": "1", "reason": "trust me"}
    response = editor.post(f"/models/{MODEL}/aliases/", form, follow=True)
    assert "override: only staff may override the promotion gate" in text(response)
    assert champion() == 1


def test_register_model_step_refused_by_the_gate_leaves_no_new_version(train, gate):
    assert train("strong").status == "succeeded"
    weak = train("weak", features=["sepal width (cm)"])

    assert weak.status == "failed"
    assert "Promotion gate: accuracy" in weak.error_message
    assert "of the new version is worse than" in weak.error_message
    assert tracking.registered_model(MODEL)["versions"][0]["version"] == 1
    assert champion() == 1


def test_register_model_step_records_its_alias_change(train, gate):
    strong = train("strong")
    again = train("strong")
    assert again.status == "succeeded", again.error_message
    first, second = AliasChange.objects.order_by("id")
    assert (first.version, second.previous_version, second.version) == (1, 1, 2)
    assert second.reason == f"register_model step of pipeline run #{again.pk}"
    assert second.gate_metric == "accuracy"
    assert strong.pk != again.pk


def test_gate_settings_need_their_permission_and_are_saved(client, django_user_model, two_versions):
    login(client, django_user_model, "experiments.set_alias")
    url = f"/models/{MODEL}/gate/"
    response = client.post(url, {"gate_metric": "accuracy", "higher_is_better": "1"})
    assert response.status_code == 403
    assert "experiments.change_modelpolicy" in text(response)

    login(client, django_user_model, "experiments.change_modelpolicy", name="owner")
    response = client.post(url, {"gate_metric": "rmse", "higher_is_better": "0"}, follow=True)
    assert "at least as good on rmse" in text(response)
    policy = ModelPolicy.objects.get(name=MODEL)
    assert (policy.gate_metric, policy.higher_is_better, policy.updated_by.username) == (
        "rmse",
        False,
        "owner",
    )
    response = client.post(url, {"gate_metric": "a;b"}, HTTP_HX_REQUEST="true")
    assert "gate_metric: “a;b” is not a metric name" in text(response)


# The admin


def test_admin_sets_aliases_through_the_gate(admin_client, two_versions, gate):
    url = "/admin/experiments/aliaschange/add/"
    refused = admin_client.post(url, {"model_name": MODEL, "alias": "champion", "version": "2"})
    assert refused.status_code == 200
    assert "is worse than" in text(refused)
    assert champion() == 1

    form = {"model_name": MODEL, "alias": "champion", "version": "2", "overridden": "on"}
    admin_client.post(url, {**form, "reason": "rollback"})
    assert champion() == 2
    assert AliasChange.objects.get(version=2).overridden

    listing = admin_client.get("/admin/experiments/aliaschange/?overridden__exact=1")
    assert listing.status_code == 200 and "rollback" not in text(listing)  # a list, not reasons
    assert MODEL in text(listing)


# Through a real server


@pytest.mark.django_db(transaction=True)
def test_pages_through_a_real_server(live_server, client, django_user_model, train):
    assert train("strong").status == "succeeded"
    login(client, django_user_model)
    cookie = f"sessionid={client.cookies['sessionid'].value}"
    for path in ("/models/", f"/models/{MODEL}/"):
        request = urllib.request.Request(live_server.url + path, headers={"Cookie": cookie})
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 200
            assert MODEL in response.read().decode()


@pytest.mark.screenshots
@pytest.mark.django_db(transaction=True)
def test_screenshots_of_the_model_pages(train, live_server, django_user_model, monkeypatch):
    from pipelines.tests.browser import PASSWORD, chromium_page, log_in

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    assert train("strong").status == "succeeded"
    assert train("weak", features=["sepal width (cm)"], alias="challenger").status == "succeeded"
    ModelPolicy.objects.create(name=MODEL, gate_metric="accuracy")
    user = django_user_model.objects.create_user("lead", password=PASSWORD, is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(codename__in=["set_alias", "change_modelpolicy"])
    )
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with chromium_page() as page:
        log_in(page, live_server.url, "lead", next_path="/models/")
        page.screenshot(path=str(SCREENSHOTS / "models.png"), full_page=True)
        page.get_by_role("link", name=MODEL).click()
        page.wait_for_selector("table.model-versions")
        page.select_option("#id_version", "2")
        page.get_by_role("button", name="Set alias").click()
        page.wait_for_selector("text=Promotion gate: accuracy")
        page.screenshot(path=str(SCREENSHOTS / "model-detail.png"), full_page=True)
