"""What the web pages, the API, the admin and the commands do with pipeline definitions.

Each action is one function here; running pipelines lives in `pipelines.runs`.
"""

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import datetime
from difflib import SequenceMatcher

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils.dateparse import parse_datetime
from pydantic import ValidationError as ParamsError

from pipelines.engine.cache import StepCache
from pipelines.engine.runner import plan_steps
from pipelines.models import Pipeline, PipelineStep, PipelineVersion
from pipelines.progress import definition_diff
from pipelines.validation import PipelineInvalid, StepError, ensure_valid

logger = logging.getLogger(__name__)

STEP_FIELDS = ("order", "type", "name", "params", "enabled")
RUN_SETTINGS = (
    "mlflow_experiment",
    "max_active_runs",
    "concurrency_policy",
    "timeout_seconds",
    "max_retries",
    "retry_backoff_seconds",
)
# What `create_pipeline` and `update_pipeline` accept as `settings`.
SETTINGS = ("description", *RUN_SETTINGS)
NAME_LENGTH = Pipeline._meta.get_field("name").max_length
# The API's actions on the whole collection (/api/v1/pipelines/validate/, .../import/): a
# pipeline with one of these names could be addressed there only by its id.
RESERVED_NAMES = {"validate", "import"}


class PipelineInUse(Exception):
    """Raised when a pipeline cannot be deleted because one of its runs is active."""


class PipelineChanged(Exception):
    """Raised when an edit expected another version of the definition than the current one."""

    def __init__(self, pipeline: Pipeline):
        number = pipeline.versions.values_list("number", flat=True).first()
        now = f": it is at version {number} now" if number else ""
        super().__init__(
            f"{pipeline.name} changed since it was read{now}. Read it again and redo the change."
        )


def definition_version(pipeline: Pipeline) -> str:
    """A digest of the pipeline's definition as `export_pipeline` writes it.

    A digest rather than the latest PipelineVersion number: a pipeline may have no version
    yet, and the admin's step inlines, fixtures or a shell can change a definition without
    recording one, while the digest changes with whatever changed the definition.
    """
    definition = json.dumps(export_pipeline(pipeline), sort_keys=True, default=str)
    return hashlib.blake2b(definition.encode(), digest_size=12).hexdigest()


def ensure_version(locked: Pipeline, expected: str | None) -> None:
    """Raise PipelineChanged unless the definition is at version `expected` (None: any).

    Called holding the pipeline's row lock, so no other edit lands between this check and
    the edit it guards.
    """
    if expected is not None and definition_version(locked) != expected:
        raise PipelineChanged(locked)


def create_pipeline(
    name: str,
    description: str = "",
    owner=None,
    steps=(),
    settings: dict | None = None,
    user=None,
    *,
    summary: str = "created",
) -> Pipeline:
    """A new pipeline with its steps, validated as a whole; its version 1 is recorded.

    A pipeline may start with no steps (a draft the editor fills in); running it is
    refused until it has some.
    """
    pipeline = Pipeline(name=str(name).strip(), description=description, owner=owner)
    numbered = _numbered_steps(steps)
    _check(pipeline, numbered, settings or {}, check_name=True)
    try:
        with transaction.atomic():
            pipeline.save()
            _save_steps(pipeline, numbered)
            record_version(pipeline, user, summary=summary)
    except IntegrityError:
        # Another request took the name between the check and the insert.
        raise PipelineInvalid([_name_taken(pipeline.name)]) from None
    return pipeline


def update_pipeline(
    pipeline: Pipeline,
    *,
    name: str | None = None,
    steps=None,
    settings: dict | None = None,
    user=None,
    expected_version: str | None = None,
):
    """Rename, replace the steps (renumbered 1..n in their order) and/or change run settings.

    Records a version when something changed; an invalid change, or one expecting another
    `definition_version` than the current one, saves nothing. The pipeline returned has
    `saved_version`: the version this change saved, read before any other edit could land.
    """
    numbered = None if steps is None else _numbered_steps(steps)
    try:
        with transaction.atomic():
            locked = Pipeline.objects.select_for_update().get(pk=pipeline.pk)
            ensure_version(locked, expected_version)
            before = export_pipeline(locked)
            if name is not None:
                locked.name = str(name).strip()
            _check(locked, numbered, settings or {}, check_name=name is not None)
            locked.save()
            if numbered is not None:
                locked.steps.all().delete()
                _save_steps(locked, numbered)
            record_version(locked, user, before=before)
            pipeline.refresh_from_db()
            pipeline.saved_version = definition_version(pipeline)
    except IntegrityError:
        # Another request took the new name between the check and the update.
        raise PipelineInvalid([_name_taken(locked.name)]) from None
    return pipeline


def check_definition(steps, settings: dict | None = None, name: str | None = None) -> None:
    """Raise every problem `create_pipeline` would find in this definition; save nothing.

    The name, when given, is checked as a new pipeline's: well-formed and not taken.
    """
    pipeline = Pipeline(name=str(name or "").strip())
    _check(pipeline, _numbered_steps(steps), settings or {}, check_name=name is not None)


def duplicate_pipeline(pipeline: Pipeline, new_name: str | None = None, user=None) -> Pipeline:
    """A copy of the pipeline's steps and settings under a new name, owned by `user`.

    Without a name the copy is called "<name>-copy" ("-copy-2", ... when that is taken).
    Schedules, runs and history stay with the original.
    """
    data = export_pipeline(pipeline)
    version = pipeline.versions.values_list("number", flat=True).first()
    source = f"{pipeline.name} version {version}" if version else pipeline.name
    return create_pipeline(
        (new_name or "").strip() or copy_name(pipeline.name),
        description=data["description"],
        owner=user if user is not None and user.is_authenticated else None,
        steps=data["steps"],
        settings=data["run_settings"],
        user=user,
        summary=f"duplicated from {source}",
    )


def copy_name(name: str) -> str:
    """The first free name of "<name>-copy", "<name>-copy-2", ..."""
    taken = set(
        Pipeline.objects.filter(name__startswith=f"{name[: NAME_LENGTH - 9]}").values_list(
            "name", flat=True
        )
    )
    number = 1
    while True:
        suffix = "-copy" if number == 1 else f"-copy-{number}"
        candidate = name[: NAME_LENGTH - len(suffix)] + suffix
        if candidate not in taken:
            return candidate
        number += 1


def delete_pipeline(pipeline: Pipeline, user=None, *, expected_version: str | None = None) -> None:
    """Delete a pipeline with its steps, runs, schedules, history and cached step files.

    Refused while a run is queued or running: its worker would lose the rows it writes;
    and when `expected_version` is given and the definition is at another version.
    """
    with transaction.atomic():
        locked = Pipeline.objects.select_for_update().get(pk=pipeline.pk)
        ensure_version(locked, expected_version)
        active = locked.runs.active().order_by("created_at", "pk").first()
        if active is not None:
            raise PipelineInUse(
                f"{locked.name} has an active run (#{active.pk}, {active.status}); "
                "cancel it or wait before deleting."
            )
        pk = locked.pk
        locked.delete()
        transaction.on_commit(lambda: StepCache(pk).clear())
    logger.info("Pipeline %s (id %s) deleted by %s.", pipeline.name, pk, user or "nobody")


def export_pipeline(pipeline: Pipeline) -> dict:
    definition = pipeline.definition()
    return {
        "name": definition["name"],
        "description": definition["description"],
        "run_settings": {field: getattr(pipeline, field) for field in RUN_SETTINGS},
        "steps": [{key: step[key] for key in STEP_FIELDS} for step in definition["steps"]],
    }


def import_pipeline(data: dict, owner=None, replace: bool = False, user=None) -> Pipeline:
    """Create (or with `replace`, overwrite) a pipeline from exported JSON, validated first.

    The import is recorded as a version like any other change.
    """
    steps = _imported_steps(data)
    ensure_valid(steps)  # An imported pipeline must be runnable: at least one step.
    settings = {"description": data.get("description", ""), **_run_settings(data)}
    existing = Pipeline.objects.filter(name=data["name"]).first()
    try:
        if existing is None:
            return create_pipeline(
                data["name"],
                owner=owner,
                steps=steps,
                settings=settings,
                user=user,
                summary="imported",
            )
        if not replace:
            raise PipelineInvalid([_name_taken(data["name"])])
        return update_pipeline(existing, steps=steps, settings=settings, user=user)
    except PipelineInvalid as exc:
        raise PipelineInvalid([_as_imported(error) for error in exc.errors]) from None


def record_version(
    pipeline: Pipeline, user=None, *, summary: str = "", before: dict | None = None
) -> PipelineVersion | None:
    """Record the pipeline's current definition as its next version.

    The summary says what changed since the previous version (or since `before`, the
    definition read before the change, when the pipeline has no history yet). Nothing is
    recorded when nothing changed.
    """
    with transaction.atomic():
        # One writer at a time numbers the versions of a pipeline.
        Pipeline.objects.select_for_update().filter(pk=pipeline.pk).exists()
        previous = pipeline.versions.order_by("-number").first()
        definition = export_pipeline(pipeline)
        if previous is None and before is not None and before != definition:
            summary_before = "definition before its first recorded change"
            previous = _record(pipeline, None, before, summary_before)
        if previous is not None and previous.definition == definition:
            return None
        if previous is not None and not summary:
            summary = describe_changes(previous.definition, definition)
        return _record(pipeline, user, definition, summary or "recorded", previous)


def version_diff(pipeline: Pipeline, a: int, b: int) -> list[str]:
    """Unified diff lines from version `a` to version `b` of the pipeline; [] when equal."""
    versions = {v.number: v for v in pipeline.versions.filter(number__in=[a, b])}
    missing = [str(number) for number in (a, b) if number not in versions]
    if missing:
        raise PipelineVersion.DoesNotExist(f"{pipeline.name} has no version {', '.join(missing)}")
    lines = definition_diff(versions[a].definition, versions[b].definition)
    # The same diff the run pages show, with file headers naming the two versions.
    return [f"--- version {a}", f"+++ version {b}", *lines[2:]] if lines else []


def describe_changes(old: dict, new: dict) -> str:
    """What changed between two definitions, in words: "changed step 3 params; added step 5"."""
    parts = []
    if old.get("name") != new.get("name"):
        parts.append(f"renamed to {new.get('name')}")
    if old.get("description") != new.get("description"):
        parts.append("changed the description")
    old_settings, new_settings = old.get("run_settings") or {}, new.get("run_settings") or {}
    changed = [f for f in RUN_SETTINGS if old_settings.get(f) != new_settings.get(f)]
    if changed:
        parts.append(f"changed {', '.join(changed)}")
    parts += _step_changes(old.get("steps") or [], new.get("steps") or [])
    return "; ".join(parts) or "no changes"


def _step_changes(old: list[dict], new: list[dict]) -> list[str]:
    """Steps changed, added, removed or moved, matched by content rather than by order,
    so inserting a step reads as one addition and not as every later step changed."""
    before, after = [_step_content(step) for step in old], [_step_content(step) for step in new]
    changes, removed, added = [], [], []
    opcodes = SequenceMatcher(a=before, b=after, autojunk=False).get_opcodes()
    for tag, i1, i2, j1, j2 in opcodes:
        paired = min(i2 - i1, j2 - j1) if tag == "replace" else 0
        for k in range(paired):
            changes.append(_step_change(old[i1 + k], new[j1 + k], j1 + k))
        removed += range(i1 + paired, i2) if tag != "equal" else []
        added += range(j1 + paired, j2) if tag != "equal" else []
    for i in list(removed):
        j = next((j for j in added if after[j] == before[i]), None)
        if j is not None:
            removed.remove(i), added.remove(j)
            changes.append(f"moved step {_number(old[i], i)} to {_number(new[j], j)}")
    changes += [f"removed step {_number(old[i], i)}" for i in removed]
    changes += [f"added step {_number(new[j], j)}" for j in added]
    return changes


def _step_change(old: dict, new: dict, index: int) -> str:
    fields = [key for key in STEP_FIELDS[1:] if old.get(key) != new.get(key)]
    number = _number(new, index)
    if fields == ["enabled"]:
        return f"{'enabled' if new.get('enabled', True) else 'disabled'} step {number}"
    return f"changed step {number} {', '.join(fields)}"


def _step_content(step: dict) -> str:
    return json.dumps({key: step.get(key) for key in STEP_FIELDS[1:]}, sort_keys=True)


def _number(step: dict, index: int) -> int:
    return step.get("order") or index + 1


def _record(pipeline, user, definition, summary, previous=None) -> PipelineVersion:
    return PipelineVersion.objects.create(
        pipeline=pipeline,
        number=previous.number + 1 if previous else 1,
        definition=definition,
        summary=summary,
        changed_by=user if user is not None and user.is_authenticated else None,
    )


def _check(
    pipeline: Pipeline, steps: list[dict] | None, settings: dict, *, check_name: bool
) -> None:
    """Apply `settings` to the unsaved instance and raise every problem found at once:
    the settings (through the model's own validation), the name, and the steps."""
    errors = _settings_errors(pipeline, settings)
    if check_name:
        errors += _name_errors(pipeline)
    if steps:
        errors += _steps_errors(steps)
    if errors:
        raise PipelineInvalid(errors)


def _settings_errors(pipeline: Pipeline, settings) -> list[StepError]:
    if not isinstance(settings, dict):
        return [StepError(None, "settings", "must be an object")]
    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown:
        return [StepError(None, "settings", f"unknown key(s) {unknown}")]
    for field, value in settings.items():
        setattr(pipeline, field, value)
    try:
        pipeline.full_clean(exclude=["name", "owner"], validate_unique=False)
    except ValidationError as exc:
        return [
            StepError(None, field, " ".join(messages))
            for field, messages in exc.message_dict.items()
        ]
    return []


def _name_errors(pipeline: Pipeline) -> list[StepError]:
    try:
        pipeline.clean_fields(exclude=[f.name for f in Pipeline._meta.fields if f.name != "name"])
    except ValidationError as exc:
        return [StepError(None, "name", " ".join(exc.message_dict["name"]))]
    if pipeline.name in RESERVED_NAMES:
        return [
            StepError(None, "name", f"{pipeline.name!r} is reserved by the API; choose another")
        ]
    if Pipeline.objects.filter(name=pipeline.name).exclude(pk=pipeline.pk).exists():
        return [_name_taken(pipeline.name)]
    return []


def _name_taken(name: str) -> StepError:
    return StepError(None, "name", f"a pipeline named {name!r} exists")


def _steps_errors(steps: list[dict]) -> list[StepError]:
    try:
        ensure_valid(steps)
    except PipelineInvalid as exc:
        return exc.errors
    return []


def _numbered_steps(steps) -> list[dict]:
    """The steps as complete definitions, ordered by their `order` (the list position
    when a step has none) and numbered 1..n. Duplicate or malformed orders are kept for
    validation to report on the step that has them."""
    if not isinstance(steps, list | tuple) or not all(isinstance(s, dict) for s in steps):
        raise PipelineInvalid([StepError(None, "steps", "must be a list of step objects")])
    errors = [
        StepError(
            step.get("order", index),
            "step",
            f"unknown key(s) {sorted(set(step) - set(STEP_FIELDS))}",
        )
        for index, step in enumerate(steps, start=1)
        if set(step) - set(STEP_FIELDS)
    ]
    if errors:
        raise PipelineInvalid(errors)
    full = [
        {"order": index, "name": "", "params": {}, "enabled": True, **step}
        for index, step in enumerate(steps, start=1)
    ]
    orders = [step["order"] for step in full]
    valid_orders = all(isinstance(o, int) and not isinstance(o, bool) and o > 0 for o in orders)
    if not valid_orders or len(set(orders)) != len(orders):
        return full  # invalid: ensure_valid names the steps at fault
    ordered = sorted(full, key=lambda step: step["order"])
    return [{**step, "order": number} for number, step in enumerate(ordered, start=1)]


def _save_steps(pipeline: Pipeline, steps: list[dict]) -> None:
    PipelineStep.objects.bulk_create(
        PipelineStep(
            pipeline=pipeline,
            order=step["order"],
            step_type=step["type"],
            name=step.get("name") or "",
            params=step.get("params", {}),
            enabled=step.get("enabled", True),
        )
        for step in steps
    )


def _run_settings(data: dict) -> dict:
    values = data.get("run_settings") or {}
    if not isinstance(values, dict):
        raise PipelineInvalid([StepError(None, "run_settings", "must be an object")])
    unknown = sorted(set(values) - set(RUN_SETTINGS))
    if unknown:
        raise PipelineInvalid([StepError(None, "run_settings", f"unknown key(s) {unknown}")])
    return values


def _as_imported(error: StepError) -> StepError:
    """An error on a run setting, named by its place in the exported JSON."""
    if error.order is None and error.field in RUN_SETTINGS:
        return StepError(None, f"run_settings.{error.field}", error.message)
    return error


def clear_cache(pipeline: Pipeline) -> int:
    return StepCache(pipeline.pk).clear()


@dataclass(frozen=True)
class StepFreshness:
    order: int
    step_type: str
    state: str  # fresh | stale | never_run
    reason: str
    # For a step reading a database, what its cached read recorded: the version query's
    # value (None without one) and when it read. Nothing here queries the source.
    last_version: str | None = None
    last_read_at: datetime | None = None


def step_freshness(pipeline: Pipeline) -> list[StepFreshness]:
    """For each enabled step: is its cached output current, and if not, why.

    A step reading a database is fresh when its definition is unchanged: whether its
    source changed is asked only by a replay, so this shows when it was last read.
    """
    cache = StepCache(pipeline.pk)
    try:
        planned = plan_steps(pipeline.definition())
    except (LookupError, ParamsError) as exc:
        return [StepFreshness(0, "", "stale", f"the pipeline is invalid: {exc}")]
    result, upstream_stale = [], False
    for step in planned:
        cache_state = cache.state(step.order, step.fingerprint)
        last_read = _last_read(cache_state.meta)
        if cache_state.fresh and not upstream_stale:
            result.append(StepFreshness(step.order, step.step_type.slug, "fresh", "", *last_read))
            continue
        state = "never_run" if not cache_state.meta else "stale"
        reason = cache_state.reason or "an earlier step is stale"
        result.append(StepFreshness(step.order, step.step_type.slug, state, reason, *last_read))
        upstream_stale = True
    return result


def _last_read(meta: dict) -> tuple[str | None, datetime | None]:
    source = meta.get("source") or {}
    return source.get("version"), parse_datetime(source.get("read_at") or "")


def _imported_steps(data) -> list[dict]:
    if not isinstance(data, dict):
        raise PipelineInvalid([StepError(None, "file", "must hold a JSON object")])
    errors = []
    if not isinstance(data.get("name"), str) or not data.get("name", "").strip():
        errors.append(StepError(None, "name", "is required"))
    steps = data.get("steps")
    if not isinstance(steps, list) or not all(isinstance(s, dict) for s in steps):
        errors.append(StepError(None, "steps", "must be a list of step objects"))
    else:
        for step in steps:
            unknown = set(step) - set(STEP_FIELDS)
            if unknown:
                errors.append(
                    StepError(step.get("order"), "step", f"unknown key(s) {sorted(unknown)}")
                )
    if errors:
        raise PipelineInvalid(errors)
    return steps
