"""The registry of step types.

A step type is a class registered under a short slug. It declares its parameters once,
as a pydantic model: validation, the step form and the documented schema all come from it.
"""

from collections.abc import Callable
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

Context = dict[str, Any]
Log = Callable[[str], None]


class StepParams(BaseModel):
    """Base of every parameter declaration: unknown parameters are an error, not ignored."""

    model_config = ConfigDict(extra="forbid")


class StepType:
    """Base class of step types.

    Subclasses set `slug`, `kind`, `Params`, `requires` and `produces`, and implement `run`.
    """

    slug: ClassVar[str]
    kind: ClassVar[str]
    label: ClassVar[str] = ""
    Params: ClassVar[type[StepParams]] = StepParams
    requires: ClassVar[tuple[str, ...]] = ("data",)
    produces: ClassVar[tuple[str, ...]] = ("data",)

    @classmethod
    def required_keys(cls, params: dict) -> tuple[str, ...]:
        """The context keys a step with these (valid) params reads; `requires` by default."""
        return cls.requires

    def source_version(self, params: StepParams) -> str:
        """What identifies the data this step reads (e.g. a dataset checksum).

        It feeds the cache fingerprint, so a changed source makes the cache stale.
        Steps that read only the context return an empty string.
        """
        return ""

    def run(self, context: Context, params: StepParams, log: Log) -> Context:
        """Read `requires` from the context, return it with `produces` set."""
        raise NotImplementedError


STEP_TYPES: dict[str, type[StepType]] = {}


class UnknownStepType(LookupError):
    pass


def register(cls: type[StepType]) -> type[StepType]:
    if cls.slug in STEP_TYPES:
        raise ValueError(f"step type {cls.slug!r} is registered twice")
    STEP_TYPES[cls.slug] = cls
    return cls


def get_step_type(slug: str) -> StepType:
    try:
        return STEP_TYPES[slug]()
    except KeyError:
        raise UnknownStepType(f"unknown step type {slug!r}") from None


def parameter_summary(step_class: type[StepType]) -> list[dict]:
    """Each parameter's name, type, default and description, from the declaration."""
    schema = step_class.Params.model_json_schema()
    required = set(schema.get("required", ()))
    fields = step_class.Params.model_fields
    return [
        {
            "name": name,
            "type": _type_label(spec),
            "required": name in required,
            "default": None
            if name in required
            else fields[name].get_default(call_default_factory=True),
            "description": spec.get("description", ""),
        }
        for name, spec in schema.get("properties", {}).items()
    ]


def _type_label(spec: dict) -> str:
    if "enum" in spec:
        return " | ".join(repr(value) for value in spec["enum"])
    options = spec.get("anyOf") or spec.get("oneOf")
    if options:
        return " | ".join(_type_label(option) for option in options)
    if "$ref" in spec:
        return spec["$ref"].rsplit("/", 1)[-1]
    if spec.get("type") == "array":
        return f"list[{_type_label(spec.get('items', {}))}]"
    if isinstance(spec.get("additionalProperties"), dict):
        return f"dict[str, {_type_label(spec['additionalProperties'])}]"
    return spec.get("type", "any")
