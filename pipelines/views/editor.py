"""The pipeline editor (`/pipelines/<id>/`): every step a card of one form.

GET shows the saved steps. POST saves them through `services.update_pipeline`, or applies
an edit that waits for Save (add, move up or down, delete) and shows the form again with
a notice. A card's run buttons post to `run_steps`, which calls `start_run` with the step
range. HTMX requests get the form, or one new card, as a fragment.

The inputs of card i: `step-<i>-<param path>` for its params (`pipelines.params_form`),
`step-<i>-order` (renumbered by static/js/editor.js when a card is dragged), and
`step-<i>-_type`, `-_name`, `-_enabled` and `-_saved` (the order of the stored step the
card shows, empty for a new one). Pydantic field names never start with "_", so those
never collide with a parameter: sklearn_dataset has a `name`.
"""

import inspect
import re
from dataclasses import dataclass, field, replace

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ObjectDoesNotExist
from django.http import HttpResponseBadRequest
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import NoReverseMatch, reverse
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_http_methods, require_POST, require_safe
from django_htmx.http import HttpResponseClientRedirect
from pydantic import ValidationError

from datasources.models import Dataset, DataSource
from mlops_site.htmx import htmx_partial
from mlops_site.permissions import permission_needed
from pipelines import services
from pipelines.choices import RunTrigger, StepKind
from pipelines.engine.cache import StepCache
from pipelines.engine.registry import STEP_TYPES, StepType
from pipelines.models import Pipeline, PipelineStep
from pipelines.params_form import (
    ParamField,
    ParamOptions,
    describe_fields,
    parse_params,
    unplaced_errors,
)
from pipelines.runs import PipelineBusy, start_run
from pipelines.services import StepFreshness
from pipelines.templatetags.mlops_format import MESSAGE_WORDS
from pipelines.validation import PipelineInvalid, StepError, params_errors, validate_steps

EDITOR_PAGE = "pipelines/pipeline_editor.html"
EDITOR_FORM = "pipelines/htmx/editor_form.html"
CHANGE = "pipelines.change_pipeline"
RUN = "pipelines.add_pipelinerun"
CARD_TYPE_INPUT = re.compile(r"step-(\d+)-_type")
# Validation names a step whose order is unreadable by its place in the list.
LIST_PLACE = re.compile(r"steps\[(\d+)\]\.order")
FIELD_LABELS = {"order": "Order", "type": "Step type", "params": "Parameters", "step": "Step"}
SUGGESTED_NAMES = 500  # datasets and data sources offered in a field's suggestions
UNSAVED = "Unsaved changes: press Save to keep them."
TABS = (
    ("Steps", "pipelines:detail"),
    ("Settings", "pipelines:settings"),
    ("History", "pipelines:history"),
)


@dataclass
class StepCard:
    """One step as the editor shows it, stored or as posted, with what is wrong with it."""

    index: int  # its place in the form: inputs are named step-<index>-...
    step_type: str
    name: str = ""
    enabled: bool = True
    params: dict = field(default_factory=dict)
    order: int | str = 0  # as posted: validation reports a bad one
    saved: int | None = None  # the order of the stored step this card shows
    parse_errors: dict[str, str] = field(default_factory=dict)  # inputs that could not be read
    errors: dict[str, str] = field(default_factory=dict)  # params.<path> -> message
    notes: list[str] = field(default_factory=list)  # errors no input of the card shows
    fields: list[ParamField] = field(default_factory=list)
    freshness: StepFreshness | None = None

    @property
    def prefix(self) -> str:
        return f"step-{self.index}-"

    @property
    def step_class(self) -> type[StepType] | None:
        return STEP_TYPES.get(self.step_type)

    @property
    def label(self) -> str:
        cls = self.step_class
        return (cls.label or cls.slug) if cls else self.step_type

    @property
    def description(self) -> str:
        return first_line(self.step_class)

    @property
    def has_errors(self) -> bool:
        return bool(self.notes or self.errors or self.parse_errors)

    def definition(self) -> dict:
        return {
            "order": self.order,
            "type": self.step_type,
            "name": self.name,
            "params": self.params,
            "enabled": self.enabled,
        }


def first_line(step_class: type[StepType] | None) -> str:
    """The first line of a step type's own docstring (not its base class's)."""
    doc = inspect.cleandoc(step_class.__dict__.get("__doc__") or "") if step_class else ""
    return doc.splitlines()[0] if doc else ""


# -- Views ---------------------------------------------------------------------------------


@login_required
@require_http_methods(["GET", "POST"])
def pipeline_editor(request, pk):
    if request.method == "POST":
        return _edit(request, pk)
    pipeline = _pipeline(pk)
    return _render(request, pipeline, stored_cards(pipeline))


@permission_needed(CHANGE, "edit pipelines")
def _edit(request, pk):
    pipeline = _pipeline(pk)
    cards = posted_cards(request.POST)
    action = request.POST.get("action") or "save"  # Enter in a text input saves
    if action == "save":
        return _save(request, pipeline, cards)
    try:
        done = apply_edit(cards, action, request.POST.get("new_type", ""))
    except ValueError as exc:
        return HttpResponseBadRequest(str(exc))
    return _render(request, pipeline, cards, notice=_notice(messages.INFO, f"{done} {UNSAVED}"))


def _save(request, pipeline: Pipeline, cards: list[StepCard]):
    renumber_if_valid(cards)
    keep_stored_params(cards, {step.order: step for step in pipeline.steps.all()})
    steps = [card.definition() for card in cards]
    before = _latest_version(pipeline)
    try:
        if any(card.parse_errors for card in cards):
            raise PipelineInvalid(validate_steps(steps))  # never save text that was not read
        services.update_pipeline(pipeline, steps=steps, user=request.user)
    except PipelineInvalid as exc:
        page_errors = place_errors(cards, exc.errors)
        notice = _notice(messages.ERROR, "Nothing was saved: correct the errors shown below.")
        return _render(request, pipeline, cards, notice=notice, page_errors=page_errors)
    after = _latest_version(pipeline)
    text = f"Saved version {after}." if after != before else "Nothing changed: nothing to save."
    if not htmx_partial(request):
        messages.success(request, text)
        return redirect("pipelines:detail", pk=pipeline.pk)
    pipeline = _pipeline(pipeline.pk)
    notice = _notice(messages.SUCCESS, text)
    return _render(request, pipeline, stored_cards(pipeline), notice=notice, saved=True)


@login_required
@permission_needed(CHANGE, "edit pipelines")
@require_safe
def step_new(request, pk):
    """One new card with its default params, appended by HTMX to the editor's list."""
    pipeline = _pipeline(pk)
    if not htmx_partial(request):
        return redirect("pipelines:detail", pk=pk)
    slug = request.GET.get("new_type", "")
    index = _number(request.GET.get("next_index")) or len(pipeline.steps.all())
    context = {"pipeline": pipeline, "next_index": index + 1, "can_edit": True}
    if slug not in STEP_TYPES:
        return render(request, "pipelines/htmx/editor_new_step.html", context)
    card = StepCard(index, slug, order=index + 1)
    steps = [step for step in pipeline.steps.all() if step.enabled]
    columns = _cached_columns(StepCache(pipeline.pk), steps[-1].order) if steps else []
    card.fields = describe_fields(slug, {}, {}, card.prefix, replace(_options(), columns=columns))
    return render(request, "pipelines/htmx/editor_new_step.html", {**context, "card": card})


@require_POST
@login_required
@permission_needed(RUN, "start runs")
def run_steps(request, pk):
    """Start a run of the saved pipeline (`run`: all, from:k, only:k or upto:k); open it."""
    pipeline = get_object_or_404(Pipeline, pk=pk)
    asked = run_range(request.POST.get("run") or "all")
    if asked is None:
        return HttpResponseBadRequest("run must be all, from:<order>, only:<order> or upto:<order>")
    try:
        run = start_run(pipeline, trigger=RunTrigger.MANUAL, user=request.user, **asked)
    except (PipelineBusy, PipelineInvalid) as exc:
        messages.error(request, f"{pipeline} was not started: {exc}")
        return _go(request, reverse("pipelines:detail", args=[pk]))
    messages.success(request, f"Run #{run.pk} of {pipeline} queued: {describe_range(**asked)}.")
    if asked.get("from_step") is not None and asked.get("from_step") == asked.get("to_step"):
        # One step alone: its result is what the analyst wants to see, in the inspector.
        step = reverse("pipelines:step", args=[pk, asked["to_step"]])
        return _go(request, f"{step}?run={run.pk}")
    return _go(request, reverse("runs:detail", args=[run.pk]))


# -- The cards: read, edited, checked ------------------------------------------------------


def stored_cards(pipeline: Pipeline) -> list[StepCard]:
    return [
        StepCard(
            index,
            step.step_type,
            name=step.name,
            enabled=step.enabled,
            params=step.params,
            order=step.order,
            saved=step.order,
        )
        for index, step in enumerate(pipeline.steps.all())
    ]


def posted_cards(data) -> list[StepCard]:
    """The cards of a posted form, in the order their `order` inputs give (unreadable
    orders last); each keeps its posted index until `reindex`."""
    indexes = sorted({int(m[1]) for key in data if (m := CARD_TYPE_INPUT.fullmatch(key))})
    cards = [_posted_card(data, index) for index in indexes]
    return sorted(cards, key=lambda c: (0, c.order) if isinstance(c.order, int) else (1, 0))


def _posted_card(data, index: int) -> StepCard:
    prefix = f"step-{index}-"
    card = StepCard(
        index,
        data.get(f"{prefix}_type", ""),
        name=data.get(f"{prefix}_name", "").strip(),
        enabled=bool(data.get(f"{prefix}_enabled")),
        order=_number(data.get(f"{prefix}order")) or data.get(f"{prefix}order", ""),
        saved=_number(data.get(f"{prefix}_saved")),
    )
    if card.step_class:
        card.params, card.parse_errors = parse_params(card.step_type, data, prefix)
    return card


def apply_edit(cards: list[StepCard], action: str, new_type: str = "") -> str:
    """Add, move or delete a card (`add`, `up:<index>`, `down:<index>`, `delete:<index>`);
    the cards are numbered 1..n again. Returns what was done, in words."""
    verb, _, target = action.partition(":")
    if verb == "add":
        done = _add(cards, new_type)
    else:
        card = next((c for c in cards if str(c.index) == target), None)
        if card is None or verb not in ("up", "down", "delete"):
            raise ValueError(f"unknown editor action {action!r}")
        done = _delete(cards, card) if verb == "delete" else _move(cards, card, verb)
    for position, card in enumerate(cards):
        card.index, card.order = position, position + 1
    return done


def _add(cards: list[StepCard], slug: str) -> str:
    if slug not in STEP_TYPES:
        return "No step was added: choose its type first."
    cards.append(StepCard(len(cards), slug))
    return f"Added step {len(cards)}, {cards[-1].label}."


def _delete(cards: list[StepCard], card: StepCard) -> str:
    position = cards.index(card)
    cards.remove(card)
    return f"Removed step {position + 1}, {card.name or card.label}."


def _move(cards: list[StepCard], card: StepCard, direction: str) -> str:
    position = cards.index(card)
    to = max(0, min(len(cards) - 1, position + (-1 if direction == "up" else 1)))
    cards.insert(to, cards.pop(position))
    return f"Moved {card.name or card.label} to position {to + 1}."


def renumber_if_valid(cards: list[StepCard]) -> None:
    """Number the cards 1..n in their order; duplicate or unreadable orders are left for
    validation to report on the steps that have them."""
    orders = [card.order for card in cards]
    if all(isinstance(order, int) for order in orders) and len(set(orders)) == len(orders):
        for position, card in enumerate(cards, start=1):
            card.order = position
    reindex(cards)


def reindex(cards: list[StepCard]) -> None:
    for position, card in enumerate(cards):
        card.index = position


def keep_stored_params(cards: list[StepCard], stored: dict[int, PipelineStep]) -> None:
    """Give an untouched step its stored params back, so that a form's 0.0 for a stored 0
    neither records a change nor makes its cache stale."""
    for card in cards:
        step = stored.get(card.saved)
        if step is None or step.step_type != card.step_type or card.parse_errors:
            continue
        if same_params(card.step_type, card.params, step.params):
            card.params = step.params


def same_params(step_type: str, posted: dict, stored: dict) -> bool:
    declaration = STEP_TYPES[step_type].Params
    try:
        return declaration.model_validate(posted) == declaration.model_validate(stored)
    except ValidationError:
        return False


def place_errors(cards: list[StepCard], errors: list[StepError]) -> list[str]:
    """Put each error on the card (and field) it names; returns those of no card."""
    unplaced = []
    for error in errors:
        named = _cards_named(cards, error)
        if not named:
            unplaced.append(str(error))
        for card in named:
            if error.field.startswith("params."):
                previous = card.errors.get(error.field)
                card.errors[error.field] = (
                    f"{previous}; {error.message}" if previous else error.message
                )
            else:
                card.notes.append(f"{_field_label(error.field)}: {error.message}")
    return unplaced


def _cards_named(cards: list[StepCard], error: StepError) -> list[StepCard]:
    if error.order is None:
        place = LIST_PLACE.fullmatch(error.field)
        position = int(place[1]) - 1 if place else -1
        return [cards[position]] if 0 <= position < len(cards) else []
    named = [card for card in cards if card.order == error.order]
    if len(named) > 1 and error.field.startswith("params"):
        # Two cards share an order: the error goes to the one whose params have it.
        named = [c for c in named if _has_error(c, error.field)] or named
    return named


def _has_error(card: StepCard, field_name: str) -> bool:
    found = params_errors(card.order, card.step_type, card.params)
    return any(error.field == field_name for error in found)


def _field_label(name: str) -> str:
    if LIST_PLACE.fullmatch(name):
        return "Order"
    return FIELD_LABELS.get(name, name.removeprefix("params."))


# -- Runs ----------------------------------------------------------------------------------


def run_range(text: str) -> dict | None:
    """The start_run arguments a run button stands for, None when it names nothing."""
    mode, _, order = text.partition(":")
    step = _number(order)
    if mode == "all" and not order:
        return {}
    if step is None:
        return None
    ranges = {
        "from": {"from_step": step},
        "only": {"from_step": step, "to_step": step},
        "upto": {"to_step": step},
    }
    return ranges.get(mode)


def describe_range(from_step: int | None = None, to_step: int | None = None) -> str:
    if from_step is not None and from_step == to_step:
        return f"step {from_step} only"
    if from_step is not None:
        return f"from step {from_step}"
    if to_step is not None:
        return f"up to step {to_step}"
    return "every step"


# -- Rendering -----------------------------------------------------------------------------


def _render(request, pipeline, cards, *, notice=None, page_errors=(), saved=False):
    """The editor page, or its form alone for HTMX. Unless just saved, a posted form
    shows the cards as edited: their run buttons wait for a save."""
    can_edit = request.user.has_perm(CHANGE)
    unsaved = request.method == "POST" and not saved
    freshness, freshness_problem = _freshness(pipeline)
    reindex(cards)
    _prepare(pipeline, cards, freshness)
    context = {
        "pipeline": pipeline,
        "cards": cards,
        "can_edit": can_edit,
        "can_run": request.user.has_perm(RUN),
        "unsaved": unsaved,
        "notice": notice,
        "page_errors": page_errors,
        "freshness_problem": freshness_problem,
        "step_groups": step_type_groups() if can_edit else [],
        "next_index": len(cards),
        "tabs": _tabs(pipeline.pk),
    }
    response = render(request, EDITOR_FORM if htmx_partial(request) else EDITOR_PAGE, context)
    patch_vary_headers(response, ["HX-Request"])
    return response


def _prepare(pipeline: Pipeline, cards: list[StepCard], freshness: dict) -> None:
    """Give each card its fields, its freshness and the columns the step before it output."""
    cache, options, columns = StepCache(pipeline.pk), _options(), []
    for card in cards:
        card.freshness = freshness.get(card.saved) if card.saved is not None else None
        if card.step_class:
            errors = {**card.errors, **card.parse_errors}
            card.fields = describe_fields(
                card.step_type, card.params, errors, card.prefix, replace(options, columns=columns)
            )
            card.notes += [
                f"{_field_label(key)}: {message}"
                for key, message in unplaced_errors(card.fields, errors).items()
            ]
        else:
            card.notes.append(f"Step type: {card.step_type!r} is not a registered step type.")
        if card.enabled and card.saved is not None:
            columns = _cached_columns(cache, card.saved)


def _cached_columns(cache: StepCache, order: int) -> list[str]:
    """The columns a step's cached output holds, from its record: nothing is unpickled."""
    return list((cache.read_meta(order) or {}).get("columns") or [])


def _options() -> ParamOptions:
    datasets = Dataset.objects.order_by("name").values_list("name", flat=True).distinct()
    sources = DataSource.objects.order_by("name").values_list("name", flat=True)
    # No cheap listing of the MLflow registry exists yet: model URIs are typed.
    return ParamOptions(
        datasets=list(datasets[:SUGGESTED_NAMES]), sources=list(sources[:SUGGESTED_NAMES])
    )


def _freshness(pipeline: Pipeline) -> tuple[dict[int, StepFreshness], str]:
    try:
        states = services.step_freshness(pipeline)
    except ObjectDoesNotExist as exc:  # a dataset or data source a step names is gone
        return {}, f"The cache states are unknown: {exc}."
    if states and states[0].order == 0:
        return {}, f"The cache states are unknown: {states[0].reason}."
    return {state.order: state for state in states}, ""


def step_type_groups() -> list[dict]:
    """The registered step types by kind, in the kinds' order, for the Add step select."""
    kinds = dict(StepKind.choices)
    by_kind: dict[str, list] = {}
    for cls in sorted(STEP_TYPES.values(), key=lambda c: (c.label or c.slug).lower()):
        by_kind.setdefault(cls.kind, []).append(
            {"slug": cls.slug, "label": cls.label or cls.slug, "description": first_line(cls)}
        )
    ordered = [kind for kind in kinds if kind in by_kind]
    ordered += sorted(kind for kind in by_kind if kind not in kinds)
    return [{"label": kinds.get(kind, kind.title()), "types": by_kind[kind]} for kind in ordered]


def _tabs(pk: int) -> list[dict]:
    """The pipeline's tabs; one whose page does not exist (yet) is left out."""
    tabs = []
    for label, name in TABS:
        try:
            url = reverse(name, args=[pk])
        except NoReverseMatch:
            continue
        tabs.append({"label": label, "url": url, "current": name == "pipelines:detail"})
    tabs.append({"label": "Runs", "url": f"{reverse('runs:list')}?pipeline={pk}"})
    return tabs


def _pipeline(pk: int) -> Pipeline:
    """The pipeline with its last run and its steps: one query each, however many steps."""
    return get_object_or_404(Pipeline.objects.for_list_page().prefetch_related("steps"), pk=pk)


def _latest_version(pipeline: Pipeline) -> int | None:
    return pipeline.versions.order_by("-number").values_list("number", flat=True).first()


def _notice(level: int, text: str) -> dict:
    """An outcome shown in the form, as base.html shows a message: a word, then text."""
    return {"tag": messages.DEFAULT_TAGS[level], "word": MESSAGE_WORDS[level], "text": text}


def _number(text) -> int | None:
    text = (text or "").strip()
    return int(text) if text.isascii() and text.isdigit() and int(text) > 0 else None


def _go(request, url: str):
    return HttpResponseClientRedirect(url) if request.htmx else redirect(url)
