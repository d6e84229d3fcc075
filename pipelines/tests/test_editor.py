"""The pipeline editor (/pipelines/<id>/): step cards of one form, saved through
`update_pipeline`, edited without JavaScript, run by range, with permissions; through
Django's test client, posting what a browser posts for the rendered form."""

import html
import re
from html.parser import HTMLParser

import pytest
from django.contrib.auth.models import Permission
from django.http import QueryDict
from django.test import Client

from pipelines import runs, services
from pipelines.engine.registry import STEP_TYPES
from pipelines.models import PipelineRun, PipelineStep, PipelineVersion
from pipelines.views import editor

HTMX = {"HX-Request": "true"}


class EditorForm(HTMLParser):
    """What a browser posts for the editor's form: its enabled inputs, checked boxes,
    selected options (the first of a plain select when none is), textarea text."""

    def __init__(self, html: str):
        super().__init__()
        start = html.index('<form id="editor-form"')
        self.data = QueryDict(mutable=True)
        self._select, self._options, self._textarea, self._text = None, [], None, []
        self._disabled = 0  # depth inside a disabled fieldset
        self.feed(html[start : html.index("</form>", start)])
        self.close()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "fieldset":
            self._disabled += 1 if (self._disabled or "disabled" in attrs) else 0
        if self._disabled or "disabled" in attrs:
            return
        if tag == "input" and attrs.get("type") == "checkbox":
            if "checked" in attrs:
                self.data.appendlist(attrs["name"], attrs.get("value", "on"))
        elif tag == "input" and "name" in attrs:
            self.data.appendlist(attrs["name"], attrs.get("value", ""))
        elif tag == "select":
            self._select, self._options = attrs, []
        elif tag == "option" and self._select is not None:
            self._options.append((attrs.get("value", ""), "selected" in attrs))
        elif tag == "textarea":
            self._textarea, self._text = attrs["name"], []

    def handle_data(self, data):
        if self._textarea is not None:
            self._text.append(data)

    def handle_endtag(self, tag):
        if tag == "fieldset" and self._disabled:
            self._disabled -= 1
        elif tag == "select" and self._select is not None:
            chosen = [value for value, selected in self._options if selected]
            if not chosen and "multiple" not in self._select and self._options:
                chosen = [self._options[0][0]]
            for value in chosen:
                self.data.appendlist(self._select["name"], value)
            self._select = None
        elif tag == "textarea" and self._textarea is not None:
            self.data.appendlist(self._textarea, "".join(self._text).removeprefix("\n"))
            self._textarea = None


def with_permissions(user, *codenames):
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    return user


@pytest.fixture
def analyst(django_user_model):
    user = django_user_model.objects.create_user("analyst")
    return with_permissions(user, "change_pipeline", "add_pipelinerun")


@pytest.fixture
def analyst_client(client, analyst):
    client.force_login(analyst)
    return client


def url(pipeline, tail="") -> str:
    return f"/pipelines/{pipeline.pk}/{tail}"


def page_of(client, pipeline) -> str:
    response = client.get(url(pipeline))
    assert response.status_code == 200
    return response.content.decode()


def form_of(client, pipeline) -> QueryDict:
    return EditorForm(page_of(client, pipeline)).data


def post(client, pipeline, data: QueryDict, action="save", **extra):
    data = data.copy()
    data["action"] = action
    return client.post(
        url(pipeline), data.urlencode(), "application/x-www-form-urlencoded", **extra
    )


def definition(pipeline) -> list[dict]:
    return [step.definition() for step in PipelineStep.objects.filter(pipeline=pipeline)]


def database_state(pipeline) -> tuple:
    return definition(pipeline), PipelineVersion.objects.filter(pipeline=pipeline).count()


def field_error(page: str, name: str) -> str:
    """The text of the error shown beside input `name`, "" without one."""
    found = re.search(
        rf'<p class="field-error" id="id_{re.escape(name)}-error"[^>]*>(.*?)</p>', page
    )
    text = html.unescape(re.sub(r"<[^>]+>", "", found[1])).strip() if found else ""
    return text.removeprefix("Error:").strip()


def freshness_badges(page: str) -> list[str]:
    return re.findall(r'<div class="step-state">\s*<span class="status (\w+)"', page)


# The page


def test_the_page_shows_every_step_with_its_values_and_freshness(
    analyst_client, classifier_pipeline
):
    runs.start_run(classifier_pipeline, wait=True)
    PipelineStep.objects.filter(pipeline=classifier_pipeline, order=3).update(
        params={"task": "classification", "estimator": "random_forest", "target": "label"}
    )

    page = page_of(analyst_client, classifier_pipeline)

    assert "<h1>classifier</h1>" in page
    for index, (slug, name) in enumerate(
        [
            ("csv", "Extract"),
            ("drop_na", "Clean"),
            ("train_sklearn", "Train"),
            ("predict", "Predict"),
        ]
    ):
        assert f'name="step-{index}-_type" value="{slug}"' in page
        assert f'name="step-{index}-_name" value="{name}"' in page
        assert f'name="step-{index}-order" value="{index + 1}"' in page
    assert "Uploaded CSV dataset" in page and "Read an uploaded CSV dataset." in page
    assert 'name="step-0-dataset" value="data"' in page
    assert 'name="step-2-estimator" value="random_forest"' in page
    assert '<option value="classification" selected>classification</option>' in page
    assert freshness_badges(page) == ["fresh", "fresh", "stale", "stale"]
    assert "its parameters changed" in page and "an earlier step changed" in page


def test_column_fields_suggest_the_columns_the_step_before_output(
    analyst_client, classifier_pipeline
):
    runs.start_run(classifier_pipeline, wait=True)

    page = page_of(analyst_client, classifier_pipeline)

    # Train's target suggests the columns the cached output of Clean holds.
    options = re.search(r'<datalist id="id_step-2-target-options">(.*?)</datalist>', page, re.S)
    assert re.findall(r'value="([^"]+)"', options[1]) == ["x1", "x2", "colour", "label"]
    assert '<option value="x1" selected>x1</option>' in page  # Clean's columns, a select


def test_steps_never_run_say_they_have_no_cache(analyst_client, classifier_pipeline):
    PipelineStep.objects.filter(pipeline=classifier_pipeline, order=4).update(enabled=False)

    page = page_of(analyst_client, classifier_pipeline)

    assert freshness_badges(page) == ["never", "never", "never", "skipped"]
    assert page.count("no cache") == 3 and "runs skip it" in page


def test_an_empty_pipeline_says_how_to_add_steps(analyst_client, analyst):
    pipeline = services.create_pipeline("draft", user=analyst)

    page = page_of(analyst_client, pipeline)

    assert "No steps yet." in page and "Add step</button>" in page
    assert 'id="next-index" name="next_index" value="0"' in page


def test_the_add_select_groups_the_step_types_by_kind(analyst_client, classifier_pipeline):
    page = page_of(analyst_client, classifier_pipeline)

    groups = re.findall(r'<optgroup label="([^"]+)">', page)
    assert groups[:3] == ["Extraction", "Preprocessing", "Features"]
    assert '<option value="csv" title="Read an uploaded CSV dataset.">' in page
    assert len(re.findall(r'<option value="[a-z_]+" title=', page)) == len(STEP_TYPES)


def test_tabs_link_the_pages_that_exist(analyst_client, classifier_pipeline, monkeypatch):
    monkeypatch.setattr(editor, "TABS", (*editor.TABS, ("Lineage", "pipelines:no_such_page")))

    page = page_of(analyst_client, classifier_pipeline)

    assert f'<a href="{url(classifier_pipeline)}" aria-current="page">Steps</a>' in page
    assert f'href="/runs/?pipeline={classifier_pipeline.pk}">Runs</a>' in page
    assert "Lineage" not in page


def test_the_header_links_the_last_run(analyst_client, classifier_pipeline):
    assert "never run" in page_of(analyst_client, classifier_pipeline)
    run = PipelineRun.objects.create(pipeline=classifier_pipeline, status="failed")

    page = page_of(analyst_client, classifier_pipeline)

    assert (
        f'<a href="/runs/{run.pk}/">#{run.pk} <span class="status failed">failed</span></a>' in page
    )


def test_no_step_type_declares_a_parameter_named_like_the_order_input():
    # The card's `order` input shares the params' prefix (editor.js renumbers it).
    assert not [slug for slug, cls in STEP_TYPES.items() if "order" in cls.Params.model_fields]


# Saving


def test_save_with_a_changed_param_records_a_version_and_changes_the_step(
    analyst_client, analyst, classifier_pipeline
):
    data = form_of(analyst_client, classifier_pipeline)
    data["step-2-test_size"] = "0.3"
    data["step-1-_name"] = "Drop missing"

    response = post(analyst_client, classifier_pipeline, data, follow=True)

    version = classifier_pipeline.versions.order_by("-number").first()
    assert response.redirect_chain == [(url(classifier_pipeline), 302)]
    assert f"Saved version {version.number}." in response.content.decode()
    assert version.changed_by == analyst
    assert version.summary == "changed step 2 name; changed step 3 params"
    steps = definition(classifier_pipeline)
    assert steps[2]["params"]["test_size"] == 0.3 and steps[1]["name"] == "Drop missing"


def test_htmx_save_answers_the_form_with_the_version(analyst_client, classifier_pipeline):
    data = form_of(analyst_client, classifier_pipeline)
    del data["step-3-_enabled"]  # unticked: a browser sends nothing

    response = post(analyst_client, classifier_pipeline, data, headers=HTMX)

    assert [t.name for t in response.templates][0] == "pipelines/htmx/editor_form.html"
    assert "Saved version 2." in response.content.decode()
    assert definition(classifier_pipeline)[3]["enabled"] is False


def test_an_untouched_save_changes_nothing_and_keeps_the_caches_fresh(
    analyst_client, make_dataset, make_pipeline, classification_frame
):
    make_dataset(classification_frame, "data")
    steps = [
        {"type": "csv", "params": {"dataset": "data"}},
        {"type": "sample", "params": {"fraction": 1}},  # the form shows 1, posts back 1.0
        {"type": "drop_na", "params": {"columns": ["x1"]}},
    ]
    pipeline = make_pipeline(steps, name="sampled")
    runs.start_run(pipeline, wait=True)
    before = database_state(pipeline)

    response = post(analyst_client, pipeline, form_of(analyst_client, pipeline), follow=True)

    assert "Nothing changed: nothing to save." in response.content.decode()
    assert database_state(pipeline) == before
    assert [f.state for f in services.step_freshness(pipeline)] == ["fresh"] * 3


@pytest.mark.parametrize(
    "change, field, message",
    [
        ({"step-2-test_size": "abc"}, "step-2-test_size", "Input should be a valid number"),
        ({"step-2-hyperparams": '{"max_depth" 3}'}, "step-2-hyperparams", "not valid JSON"),
        ({"step-2-test_size": "1.5"}, "step-2-test_size", "Input should be less than 1"),
    ],
)
def test_invalid_input_is_shown_beside_its_field_kept_and_nothing_saved(
    analyst_client, classifier_pipeline, change, field, message
):
    before = database_state(classifier_pipeline)
    data = form_of(analyst_client, classifier_pipeline)
    data.update(change)
    data["step-0-_name"] = "Renamed meanwhile"

    response = post(analyst_client, classifier_pipeline, data)

    page = response.content.decode()
    assert response.status_code == 200
    assert message in field_error(page, field)
    assert "Nothing was saved: correct the errors shown below." in page
    assert 'value="Renamed meanwhile"' in page
    kept = html.escape(change[field])
    assert f'value="{kept}"' in page or f">\n{kept}</textarea>" in page, "the input is kept"
    assert database_state(classifier_pipeline) == before


def test_an_unknown_column_type_is_shown_on_the_types_field(
    analyst_client, make_dataset, make_pipeline, classification_frame
):
    make_dataset(classification_frame, "data")
    pipeline = make_pipeline(
        [
            {"type": "csv", "params": {"dataset": "data"}},
            {"type": "cast_types", "params": {"types": {"x1": "float"}}},
        ],
        name="typed",
    )
    before = database_state(pipeline)
    data = form_of(analyst_client, pipeline)
    data["step-1-types"] = '{"x1": "decimal"}'

    page = post(analyst_client, pipeline, data).content.decode()

    assert field_error(page, "step-1-types").startswith("x1: Input should be")
    assert "&quot;decimal&quot;" in page
    assert database_state(pipeline) == before


def test_two_steps_with_one_order_are_both_named_and_nothing_saved(
    analyst_client, classifier_pipeline
):
    before = database_state(classifier_pipeline)
    data = form_of(analyst_client, classifier_pipeline)
    data["step-1-order"] = "1"

    page = post(analyst_client, classifier_pipeline, data).content.decode()

    assert page.count("Order: is used by more than one step") == 2
    assert database_state(classifier_pipeline) == before


def test_an_unreadable_order_is_named_on_its_card(analyst_client, classifier_pipeline):
    before = database_state(classifier_pipeline)
    data = form_of(analyst_client, classifier_pipeline)
    data["step-1-order"] = "first"

    page = post(analyst_client, classifier_pipeline, data).content.decode()

    # Cards with an unreadable order go last.
    card = page.split('id="step-card-3"')[1].split("</li>")[0]
    assert 'value="first"' in card and "Order: must be a positive integer" in card
    assert database_state(classifier_pipeline) == before


def test_a_step_whose_needs_no_earlier_step_produces_is_flagged_on_its_card(
    analyst_client, classifier_pipeline
):
    before = database_state(classifier_pipeline)
    data = form_of(analyst_client, classifier_pipeline)
    data["step-3-order"], data["step-2-order"] = "3", "4"  # predict before train

    page = post(analyst_client, classifier_pipeline, data).content.decode()

    card = page.split('id="step-card-2"')[1].split("</li>")[0]
    assert "predict" in card and "Step type: predict needs &#x27;model&#x27;" in card
    assert database_state(classifier_pipeline) == before


# Editing without JavaScript


def test_add_step_without_javascript_shows_the_new_card_unsaved(
    analyst_client, classifier_pipeline
):
    before = database_state(classifier_pipeline)
    data = form_of(analyst_client, classifier_pipeline)
    data["new_type"] = "drop_duplicates"

    page = post(analyst_client, classifier_pipeline, data, action="add").content.decode()

    assert "Added step 5, Drop duplicate rows. Unsaved changes: press Save" in page
    assert 'name="step-4-_type" value="drop_duplicates"' in page
    assert 'name="step-4-order" value="5"' in page
    assert database_state(classifier_pipeline) == before

    post(analyst_client, classifier_pipeline, EditorForm(page).data)

    assert [step["type"] for step in definition(classifier_pipeline)][-1] == "drop_duplicates"


def test_delete_step_without_javascript_then_save(analyst_client, classifier_pipeline):
    data = form_of(analyst_client, classifier_pipeline)

    page = post(analyst_client, classifier_pipeline, data, action="delete:1").content.decode()

    assert "Removed step 2, Clean." in page and 'value="Clean"' not in page
    assert len(definition(classifier_pipeline)) == 4
    post(analyst_client, classifier_pipeline, EditorForm(page).data)
    assert [s["type"] for s in definition(classifier_pipeline)] == [
        "csv",
        "train_sklearn",
        "predict",
    ]


def test_move_step_without_javascript_then_save(analyst_client, classifier_pipeline):
    data = form_of(analyst_client, classifier_pipeline)

    page = post(analyst_client, classifier_pipeline, data, action="down:1").content.decode()

    assert "Moved Clean to position 3." in page
    assert re.findall(r'name="step-\d-_type" value="([a-z_]+)"', page) == [
        "csv",
        "train_sklearn",
        "drop_na",
        "predict",
    ]
    assert re.findall(r'name="step-\d-order" value="(\d)"', page) == ["1", "2", "3", "4"]
    assert "Save to run from here." in page and 'value="from:' not in page
    post(analyst_client, classifier_pipeline, EditorForm(page).data)
    assert [(s["order"], s["type"]) for s in definition(classifier_pipeline)] == [
        (1, "csv"),
        (2, "train_sklearn"),
        (3, "drop_na"),
        (4, "predict"),
    ]


def test_cards_dragged_in_the_browser_are_saved_in_their_numbered_order(
    analyst_client, classifier_pipeline
):
    data = form_of(analyst_client, classifier_pipeline)
    data["step-1-order"], data["step-2-order"] = "3", "2"  # what editor.js writes

    post(analyst_client, classifier_pipeline, data)

    assert [s["type"] for s in definition(classifier_pipeline)] == [
        "csv",
        "train_sklearn",
        "drop_na",
        "predict",
    ]


def test_htmx_add_answers_one_card_with_default_params(analyst_client, classifier_pipeline):
    response = analyst_client.get(
        url(classifier_pipeline, "steps/new/"),
        {"new_type": "sort", "next_index": "4"},
        headers=HTMX,
    )

    page = response.content.decode()
    assert page.count('class="step-card') == 1
    assert 'name="step-4-_type" value="sort"' in page and 'name="step-4-descending"' in page
    assert (
        '<input type="hidden" id="next-index" name="next_index" value="5" hx-swap-oob="true">'
        in page
    )


def test_htmx_add_without_a_type_asks_for_one(analyst_client, classifier_pipeline):
    page = analyst_client.get(url(classifier_pipeline, "steps/new/"), headers=HTMX).content.decode()

    assert 'class="step-card' not in page and "choose a step type first" in page


# Running


@pytest.mark.parametrize(
    "button, start_step, stop_step",
    [("all", None, None), ("from:3", 3, None), ("upto:2", None, 2)],
)
def test_run_buttons_start_the_range_and_open_the_run(
    analyst_client, classifier_pipeline, button, start_step, stop_step
):
    response = analyst_client.post(url(classifier_pipeline, "run-steps/"), {"run": button})

    run = PipelineRun.objects.get()
    assert response.status_code == 302 and response.url == f"/runs/{run.pk}/"
    assert (run.start_step, run.stop_step, run.trigger) == (start_step, stop_step, "manual")


def test_run_only_this_step_opens_the_inspector_following_the_run(
    analyst_client, classifier_pipeline
):
    response = analyst_client.post(url(classifier_pipeline, "run-steps/"), {"run": "only:3"})

    run = PipelineRun.objects.get()
    assert (run.start_step, run.stop_step) == (3, 3)
    inspector = f"/pipelines/{classifier_pipeline.pk}/steps/3/?run={run.pk}"
    assert response.status_code == 302 and response.url == inspector
    waiting = analyst_client.get(inspector).content.decode()
    assert f"Run #{run.pk} is queued: this page shows its output when it ends." in waiting
    assert '<meta http-equiv="refresh" content="2">' in waiting

    runs.execute_run(run.pk, isolated=False)  # run 3 alone: steps 1-2 run first, no cache

    done = analyst_client.get(inspector).content.decode()
    assert f"Run #{run.pk} succeeded." in done and "http-equiv" not in done
    assert "RandomForestClassifier" in done or "Estimator" in done


def test_each_card_offers_its_three_run_actions(analyst_client, classifier_pipeline):
    page = page_of(analyst_client, classifier_pipeline)

    for order in range(1, 5):
        for mode in ("from", "only", "upto"):
            assert f'name="run" value="{mode}:{order}"' in page
    assert page.count(f'formaction="{url(classifier_pipeline, "run-steps/")}"') == 12


def test_htmx_run_opens_the_run_page(analyst_client, classifier_pipeline):
    response = analyst_client.post(
        url(classifier_pipeline, "run-steps/"), {"run": "upto:2"}, headers=HTMX
    )

    run = PipelineRun.objects.get()
    assert response["HX-Redirect"] == f"/runs/{run.pk}/"


def test_a_refused_run_comes_back_with_the_reason(analyst_client, classifier_pipeline):
    PipelineStep.objects.filter(pipeline=classifier_pipeline, order=2).update(enabled=False)

    response = analyst_client.post(
        url(classifier_pipeline, "run-steps/"), {"run": "only:2"}, follow=True
    )

    assert response.redirect_chain == [(url(classifier_pipeline), 302)]
    assert "classifier was not started: step 2, from_step: this step is disabled" in (
        response.content.decode()
    )
    assert not PipelineRun.objects.exists()


def test_a_malformed_run_range_is_a_bad_request(analyst_client, classifier_pipeline):
    response = analyst_client.post(url(classifier_pipeline, "run-steps/"), {"run": "sideways:2"})

    assert response.status_code == 400 and not PipelineRun.objects.exists()


# Permissions


def test_a_viewer_sees_the_steps_read_only(viewer_client, classifier_pipeline):
    page = page_of(viewer_client, classifier_pipeline)

    assert '<fieldset class="step-body" disabled>' in page
    assert page.count('<fieldset class="step-body" disabled>') == 4
    assert "needs the “pipelines.change_pipeline” permission" in page
    for hidden in ('value="save"', 'value="up:', 'value="delete:', "Add step", 'name="run"'):
        assert hidden not in page
    assert EditorForm(page).data.getlist("step-0-dataset") == []


def test_a_user_who_may_only_run_sees_run_buttons_and_disabled_inputs(
    client, django_user_model, classifier_pipeline
):
    client.force_login(
        with_permissions(django_user_model.objects.create_user("r"), "add_pipelinerun")
    )

    page = page_of(client, classifier_pipeline)

    assert 'value="only:3"' in page and 'value="save"' not in page
    assert '<fieldset class="step-body" disabled>' in page


@pytest.mark.parametrize(
    "method, tail, permission",
    [
        ("post", "", "pipelines.change_pipeline"),
        ("get", "steps/new/?new_type=sort", "pipelines.change_pipeline"),
        ("post", "run-steps/", "pipelines.add_pipelinerun"),
    ],
)
def test_actions_without_permission_are_403_naming_it(
    viewer_client, classifier_pipeline, method, tail, permission
):
    before = database_state(classifier_pipeline)

    response = getattr(viewer_client, method)(url(classifier_pipeline, tail), {"run": "all"})

    assert response.status_code == 403
    assert f"you need the “{permission}” permission" in response.content.decode()
    assert database_state(classifier_pipeline) == before and not PipelineRun.objects.exists()


@pytest.mark.parametrize("tail", ["", "steps/new/"])
def test_the_editor_needs_a_login(client, classifier_pipeline, tail):
    response = client.get(url(classifier_pipeline, tail))

    assert response.status_code == 302 and response.url.startswith("/accounts/login/?next=")


def test_forms_refuse_a_post_without_csrf_token(analyst, classifier_pipeline):
    client = Client(enforce_csrf_checks=True)
    client.force_login(analyst)
    before = database_state(classifier_pipeline)

    assert client.post(url(classifier_pipeline), {"action": "save"}).status_code == 403
    assert client.post(url(classifier_pipeline, "run-steps/"), {"run": "all"}).status_code == 403
    assert database_state(classifier_pipeline) == before and not PipelineRun.objects.exists()


def test_every_form_carries_a_csrf_token(analyst_client, classifier_pipeline):
    page = page_of(analyst_client, classifier_pipeline)

    # The editor, the Run button and base.html's Log out.
    assert page.count('method="post"') == page.count("csrfmiddlewaretoken") == 3
    assert "X-CSRFToken" in page  # for the HTMX requests, from base.html


def test_an_unknown_pipeline_is_404(analyst_client, db):
    assert analyst_client.get("/pipelines/999/").status_code == 404
    assert analyst_client.post("/pipelines/999/", {"action": "save"}).status_code == 404


# Queries


def many_steps(count: int) -> list[dict]:
    preparation = [
        {"type": "drop_duplicates"},
        {"type": "sort", "params": {"columns": ["target"]}},
        {"type": "limit", "params": {"rows": 100}},
    ]
    load = {"type": "sklearn_dataset", "params": {"name": "iris"}}
    return [load, *(preparation[i % 3] for i in range(count - 1))]


def test_query_count_does_not_grow_with_the_steps(
    analyst_client, make_pipeline, django_assert_max_num_queries
):
    few, many = make_pipeline(many_steps(8), name="few"), make_pipeline(many_steps(30), name="many")
    page_of(analyst_client, few)  # the session and permissions, as on any later request

    # Session, user, permissions (the user's and the groups'), the pipeline with its last
    # run, its steps, dataset names, data source names.
    for pipeline in (few, many):
        with django_assert_max_num_queries(8):
            assert page_of(analyst_client, pipeline).count('class="step-card') in (8, 30)
