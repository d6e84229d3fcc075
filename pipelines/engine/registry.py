"""The registry of step types.

A step type is a class registered under a short slug. It declares its parameters once,
as a pydantic model: validation, the step form and the documented schema all come from it.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

Context = dict[str, Any]
Log = Callable[[str], None]


class StepParams(BaseModel):
    """Base of every parameter declaration: unknown parameters are an error, not ignored."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class DataReferences:
    """The datasets and data sources a step's params name, as written (name, name@v or id)."""

    datasets: tuple[str | int, ...] = ()
    sources: tuple[str | int, ...] = ()


@dataclass(frozen=True)
class SourceCheck:
    """Whether a replay may reuse a step's cached read of its source, and the rule that said."""

    reuse: bool
    reason: str


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
    # Steps reading a database, whose changes no cheap checksum shows: a run from the
    # first step always reads them again, and a replay asks `check_source` first.
    reads_live_source: ClassVar[bool] = False

    @classmethod
    def required_keys(cls, params: dict) -> tuple[str, ...]:
        """The context keys a step with these (valid) params reads; `requires` by default."""
        return cls.requires

    @classmethod
    def references(cls, params: dict) -> DataReferences:
        """The datasets and data sources that stored, possibly invalid, params name.

        What keeps a dataset or a data source from being deleted while a pipeline uses it.
        """
        return DataReferences()

    def source_version(self, params: StepParams) -> str:
        """What identifies the data this step reads (e.g. a dataset checksum).

        It feeds the cache fingerprint, so a changed source makes the cache stale. It is
        computed for pages too, so it never queries a data source. Steps that read only
        the context return an empty string.
        """
        return ""

    def check_source(self, params: StepParams, last_read: dict) -> SourceCheck:
        """Whether a replay may reuse this step's cached read (`reads_live_source` steps).

        The engine calls it only when it considers reusing the cache in a replay, never
        for a page. `last_read` is what the step put in the context's `_source` when it
        ran (e.g. {"version": ..., "read_at": ...}); empty when nothing was recorded.
        """
        return SourceCheck(True, "its fingerprint matches")

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


def named_in(params: dict, key: str) -> tuple[str | int, ...]:
    """The reference (a name or an id) that stored params hold under `key`, if any."""
    value = params.get(key) if isinstance(params, dict) else None
    return (value,) if isinstance(value, str | int) and not isinstance(value, bool) else ()


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
