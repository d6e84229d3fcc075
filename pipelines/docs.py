"""The step type reference, docs/step-types.md, rendered from the step declarations.

`manage.py document_steps` writes it; a test fails when the file is stale.
"""

import inspect
import json
from pathlib import Path

from django.conf import settings

from pipelines.choices import StepKind
from pipelines.engine.registry import STEP_TYPES, StepType, parameter_summary
from pipelines.steps.estimators import ESTIMATORS


def step_reference_path() -> Path:
    return Path(settings.BASE_DIR) / "docs" / "step-types.md"


def render_step_reference() -> str:
    """Every registered step type, grouped by kind, as Markdown."""
    lines = [
        "# Step types",
        "",
        "Generated from the step declarations by `manage.py document_steps`: do not edit.",
        "Each step reads context keys that earlier steps wrote; its parameters are checked",
        "before a pipeline is saved or run, and unknown parameters are refused.",
    ]
    documented = _built_in_step_types()
    for kind, label in _kinds(documented):
        lines += ["", f"## {label}"]
        for slug in sorted(slug for slug, cls in documented.items() if cls.kind == kind):
            lines += _step_section(documented[slug])
        if kind == StepKind.TRAINING:
            lines += _estimator_section()
    return "\n".join(lines) + "\n"


def _built_in_step_types() -> dict[str, type[StepType]]:
    """The platform's own step types; plug-ins (MLOPS_STEP_MODULES) are not listed."""
    return {
        slug: cls
        for slug, cls in STEP_TYPES.items()
        if cls.__module__.startswith("pipelines.steps.")
    }


def _kinds(step_types: dict[str, type[StepType]]) -> list[tuple[str, str]]:
    """The kinds with at least one step type, in pipeline order, then any others."""
    used = {cls.kind for cls in step_types.values()}
    known = [(kind.value, kind.label) for kind in StepKind if kind in used]
    others = sorted(used - {kind for kind, _ in known})
    return known + [(kind, kind.capitalize()) for kind in others]


def _step_section(cls: type[StepType]) -> list[str]:
    lines = ["", f"### `{cls.slug}`: {cls.label}", ""]
    if cls.__doc__:
        lines += [inspect.cleandoc(cls.__doc__), ""]
    lines += [f"Reads {_reads(cls)}; writes {_keys(cls.produces)}.", ""]
    parameters = parameter_summary(cls)
    if not parameters:
        return [*lines, "No parameters."]
    lines += [
        "| Parameter | Type | Required | Default | Description |",
        "|---|---|---|---|---|",
    ]
    for parameter in parameters:
        lines.append(_parameter_row(parameter))
    return lines


def _parameter_row(parameter: dict) -> str:
    default = "" if parameter["default"] is None else f"`{json.dumps(parameter['default'])}`"
    cells = [
        f"`{parameter['name']}`",
        parameter["type"],
        "yes" if parameter["required"] else "no",
        default,
        parameter["description"],
    ]
    return "| " + " | ".join(_cell(cell) for cell in cells) + " |"


def _estimator_section() -> list[str]:
    lines = ["", "### Estimators by task", ""]
    lines += ["The `estimator` parameter of a training step names one of these.", ""]
    lines += ["| Task | Estimator | Class |", "|---|---|---|"]
    for task in sorted(ESTIMATORS):
        for slug, path in sorted(ESTIMATORS[task].items()):
            lines.append(f"| {task} | `{slug}` | `{path}` |")
    return lines


def _reads(cls: type[StepType]) -> str:
    if cls.required_keys.__func__ is StepType.required_keys.__func__:
        return _keys(cls.requires)
    return f"{_keys(cls.requires)} by default (its parameters can change this)"


def _keys(keys: tuple[str, ...]) -> str:
    return ", ".join(f"`{key}`" for key in keys) or "nothing"


def _cell(text: str) -> str:
    # A pipe would end the table cell, a newline the row.
    return str(text).replace("|", "\\|").replace("\n", " ")
