"""The HTML form of a step's parameters, generated from its pydantic `Params` declaration.

`describe_fields` turns a declaration and stored params into `ParamField`s, which
`templates/pipelines/htmx/step_params.html` renders; `parse_params` turns the posted form
back into the params dict a pipeline stores. Nothing here knows a step type: a new one
gets its form from its declaration (types, bounds, defaults, descriptions), and a field
may ask for a widget with `json_schema_extra={"widget": "columns"}` (or "column",
"textarea", "dataset", "source", "model_uri").

Inputs are named `<prefix><path>`: the path is the field's name, nested fields join
theirs with dots (`search.trials`), as pipeline validation names them (`params.search.trials`).
"""

import datetime
import decimal
import enum
import json
import pathlib
import types
import uuid
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, NamedTuple, Union, get_args, get_origin

import annotated_types
from django.http import QueryDict
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import to_jsonable_python

from pipelines.engine.registry import STEP_TYPES, StepParams, StepType

# Fields that name columns of the data the step reads, by their name (the names the step
# declarations use, and common ones). Only free text and lists of text get suggestions:
# a Literal such as drop_duplicates' `keep` stays a select of its choices. Names of columns
# a step writes (`output`, `output_column`, `prediction_column`) are not suggested.
COLUMN_NAMES = frozenset(
    {
        "by",
        "column",
        "columns",
        "date_column",
        "drop",
        "exclude",
        "feature_columns",
        "features",
        "group_by",
        "id_column",
        "keep",
        "label_column",
        "on",
        "order_by",
        "subset",
        "target",
        "time_column",
        "timestamp",
        "value_column",
    }
)
# Fields that name other objects the editor knows, and the ParamOptions list offered.
REFERENCE_NAMES = {
    "dataset": "datasets",
    "datasource": "sources",
    "source": "sources",
    "model_uri": "model_uris",
}
MULTILINE_NAMES = frozenset({"query", "version_query", "description"})
ACRONYMS = {"cv": "CV", "id": "ID", "json": "JSON", "sql": "SQL", "uri": "URI", "url": "URL"}
# The hidden input beside a multi-select: its values are items, never comma-separated text.
MULTIPLE_MARKER = ":multiple"
TRUE_TEXTS = frozenset({"on", "true", "1", "yes"})
SHORT_JSON = 60
_OMIT = object()


class Unparsed(str):
    """Posted text that could not be read (malformed JSON): kept so the form shows it again."""


@dataclass
class ParamOptions:
    """What the editor knows that a declaration cannot: names to suggest."""

    columns: list[str] = field(default_factory=list)
    datasets: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    model_uris: list[str] = field(default_factory=list)


@dataclass
class ParamField:
    """One input (or fieldset) of a step's parameter form.

    `value` is formatted for the widget: text for inputs, selects and textareas, a list
    of texts for a `multiple` select, a bool for a checkbox and for whether an optional
    fieldset is enabled.
    """

    name: str
    path: str
    label: str
    help: str
    widget: str
    value: Any
    required: bool
    error: str = ""
    suggestions: list[str] = field(default_factory=list)
    children: list["ParamField"] = field(default_factory=list)
    multiple: bool = False
    optional: bool = False  # a fieldset the params may leave out: it has an enable checkbox
    empty_label: str = ""  # a select's option for no value ("(none)", "Choose…")
    multiline: bool = False
    min: str | None = None
    max: str | None = None
    step: str | None = None
    max_length: int | None = None

    @property
    def id(self) -> str:
        return f"id_{self.name}"

    @property
    def help_id(self) -> str:
        return f"{self.id}-help"

    @property
    def error_id(self) -> str:
        return f"{self.id}-error"

    @property
    def options_id(self) -> str:
        return f"{self.id}-options"

    @property
    def multiple_marker(self) -> str:
        return f"{self.name}{MULTIPLE_MARKER}"

    @property
    def described_by(self) -> str:
        ids = [self.help_id] if self.help or self.multiple else []
        return " ".join([*ids, self.error_id] if self.error else ids)

    @property
    def rows(self) -> int:
        """Lines a textarea shows: its text's, within bounds."""
        return min(max(str(self.value).count("\n") + 1, 3), 14)


class ParsedParams(NamedTuple):
    """The params read from a form, and the inputs that could not be read.

    `errors` is keyed like pipeline validation's fields (`params.search.grid`); show
    them instead of the validation errors of the same fields.
    """

    params: dict
    errors: dict[str, str]


def describe_fields(
    step_type: type[StepType] | StepType | str,
    params: dict | None = None,
    errors: dict[str, str] | None = None,
    prefix: str = "",
    options: ParamOptions | None = None,
) -> list[ParamField]:
    """The form fields of a step type, in declaration order, holding `params`.

    `errors` maps a field path, as validation names it (`params.search.trials` or
    `search.trials`), to its message; errors inside a list or JSON field (`lags.0`) are
    shown on that field.
    """
    errors = {_strip_params(key): message for key, message in (errors or {}).items()}
    return _fields(_model(step_type), params or {}, errors, prefix, "", options or ParamOptions())


def parse_params(
    step_type: type[StepType] | StepType | str, data: QueryDict | dict, prefix: str = ""
) -> ParsedParams:
    """The params dict a posted form stands for, and the inputs that could not be read.

    Numbers that do not parse and values outside a choice are passed on as text, so
    validation reports them on their field; malformed JSON is reported in `errors`.
    """
    errors: dict[str, str] = {}
    return ParsedParams(_parse_model(_model(step_type), data, prefix, "", errors), errors)


def unplaced_errors(fields: list[ParamField], errors: dict[str, str]) -> dict[str, str]:
    """The errors no field shows (a whole-params problem, an unknown parameter)."""
    placed = [(f.path, f.widget != "fieldset") for f in _walk(fields)]
    return {
        key: message
        for key, message in errors.items()
        if not any(_belongs(_strip_params(key), path, whole) for path, whole in placed)
    }


# What a field's annotation makes of it


@dataclass
class _Shape:
    widget: str
    optional: bool = False  # None is a value it may hold
    choices: tuple = ()
    multiple: bool = False
    scalars: tuple = ()  # the types a text or number input may hold; list items' for lists
    model: type[BaseModel] | None = None
    bounds: dict = field(default_factory=dict)


SCALARS = (str, int, float, bool)
# Types pydantic reads from their text (ISO dates, durations, ids): a text input each.
TEXT_TYPES = (
    datetime.date,
    datetime.time,
    datetime.timedelta,
    decimal.Decimal,
    pathlib.PurePath,
    uuid.UUID,
)


def _shape(info: FieldInfo) -> _Shape:
    annotation, metadata = _unwrap(info.annotation)
    members = _members(annotation)
    optional = type(None) in members
    members = [_unwrap(member) for member in members if member is not type(None)]
    metadata = [*info.metadata, *metadata, *(m for _, extra in members for m in extra)]
    shape = _shape_of([member for member, _ in members])
    if optional and shape.widget == "checkbox":
        # A checkbox cannot say "no value": true, false or none is a choice.
        shape = _Shape("select", choices=(True, False))
    shape.optional = optional
    shape.bounds = _bounds(metadata)
    return shape


def _shape_of(members: list) -> _Shape:
    if len(members) == 1:
        return _single_shape(members[0])
    if all(_is_scalar(member) for member in members):
        choices = tuple(c for member in members for c in _choices(member))
        scalars = tuple({_scalar_type(member) for member in members})
        if set(scalars) <= {int, float}:
            return _Shape("number", scalars=scalars)
        return _Shape("text", choices=choices, scalars=scalars)
    return _Shape("json")


def _single_shape(annotation) -> _Shape:
    if annotation is bool:
        return _Shape("checkbox")
    if annotation in (int, float):
        return _Shape("number", scalars=(annotation,))
    if annotation is str or (isinstance(annotation, type) and issubclass(annotation, TEXT_TYPES)):
        return _Shape("text", scalars=(str,))
    if _choices(annotation):
        return _Shape("select", choices=_choices(annotation))
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return _Shape("fieldset", model=annotation)
    if get_origin(annotation) is list or annotation is list:
        return _list_shape(_unwrap(next(iter(get_args(annotation)), Any))[0])
    return _Shape("json")


def _list_shape(item) -> _Shape:
    if _choices(item):
        return _Shape("select", choices=_choices(item), multiple=True)
    if item in SCALARS:
        return _Shape("list", scalars=(item,))
    return _Shape("json")


def _unwrap(annotation) -> tuple[Any, list]:
    """The annotation without Annotated layers, and the metadata those carried."""
    metadata = []
    while get_origin(annotation) is Annotated:
        annotation, *extra = get_args(annotation)
        metadata += extra
    # A Field() inside Annotated (a reusable constrained type) carries its own metadata.
    flat = [
        m for item in metadata for m in (item.metadata if isinstance(item, FieldInfo) else [item])
    ]
    return annotation, flat


def _members(annotation) -> list:
    if get_origin(annotation) in (Union, types.UnionType):
        return list(get_args(annotation))
    return [annotation]


def _choices(annotation) -> tuple:
    if get_origin(annotation) is Literal:
        return get_args(annotation)
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return tuple(member.value for member in annotation)
    return ()


def _is_scalar(annotation) -> bool:
    return annotation in SCALARS or bool(_choices(annotation))


def _scalar_type(annotation) -> type:
    if annotation in SCALARS:
        return annotation
    values = _choices(annotation)
    return type(values[0]) if len({type(value) for value in values}) == 1 else str


BOUNDS = {
    "ge": annotated_types.Ge,
    "gt": annotated_types.Gt,
    "le": annotated_types.Le,
    "lt": annotated_types.Lt,
    "max_length": annotated_types.MaxLen,
}


def _bounds(metadata: list) -> dict:
    return {
        name: getattr(item, name)
        for item in metadata
        for name, kind in BOUNDS.items()
        if isinstance(item, kind)
    }


# Describing


def _fields(model, params, errors, prefix, base, options) -> list[ParamField]:
    params = params if isinstance(params, dict) else {}
    return [
        _describe(name, info, params, errors, prefix, f"{base}{name}", options)
        for name, info in model.model_fields.items()
    ]


def _describe(name, info, params, errors, prefix, path, options) -> ParamField:
    shape = _shape(info)
    value = params[name] if name in params else _default(info)
    described = ParamField(
        name=f"{prefix}{path}",
        path=path,
        label=info.title or _humanise(name),
        help=info.description or "",
        widget=shape.widget,
        value=value,
        required=info.is_required(),
        error=_error_for(path, shape.widget, errors),
        multiple=shape.multiple,
    )
    if shape.widget == "fieldset":
        return _fieldset(described, shape, info, value, errors, prefix, options)
    _fill_widget(described, shape, name, info, options)
    return described


def _fieldset(described, shape, info, value, errors, prefix, options) -> ParamField:
    described.optional = shape.optional
    described.value = value is not None
    described.help = _own_doc(shape.model) or described.help
    nested = value.model_dump() if isinstance(value, BaseModel) else value
    described.children = _fields(shape.model, nested, errors, prefix, f"{described.path}.", options)
    if shape.optional:
        # The browser must let an unused optional group's required inputs stay empty.
        for child in _walk(described.children):
            child.required = False
    return described


def _fill_widget(described: ParamField, shape: _Shape, name, info, options) -> None:
    value, marker = described.value, _widget_marker(info)
    if shape.widget == "select":
        _fill_select(described, shape, value)
    elif shape.widget == "checkbox":
        described.value = bool(value)
    elif shape.widget == "number":
        _fill_number(described, shape, value)
    elif shape.widget == "list" and (marker in ("column", "columns") or name in COLUMN_NAMES):
        _fill_columns(described, value, options.columns)
    elif shape.widget == "list":
        described.value = _format_list(value)
    elif shape.widget == "json":
        described.value = _format_json(value)
    else:
        _fill_text(described, shape, name, marker, value, options)
    if isinstance(value, Unparsed):
        described.value = [] if described.multiple else str(value)


def _fill_select(described: ParamField, shape: _Shape, value) -> None:
    described.suggestions = [_text(choice) for choice in shape.choices]
    if described.multiple:
        chosen = [_text(item) for item in value] if isinstance(value, list) else []
        described.value = chosen
    else:
        described.value = "" if value is None else _text(value)
        chosen = [described.value] if described.value else []
        if shape.optional:
            described.empty_label = "(none)"
        elif not described.value:
            described.empty_label = "Choose…"
    # A stored value the declaration no longer offers stays visible, with its error.
    described.suggestions += [item for item in chosen if item not in described.suggestions]


def _fill_number(described: ParamField, shape: _Shape, value) -> None:
    described.value = "" if value is None else _text(value)
    integer = shape.scalars == (int,)
    # HTML bounds are inclusive: an int above 0 is at least 1; a float's is left to validation.
    step = 1 if integer else 0
    low = _inclusive(shape.bounds, "ge", "gt", step)
    high = _inclusive(shape.bounds, "le", "lt", -step)
    described.min = None if low is None else _text(low)
    described.max = None if high is None else _text(high)
    described.step = "1" if integer else "any"


def _inclusive(bounds: dict, inclusive: str, exclusive: str, step: int):
    if inclusive in bounds:
        return bounds[inclusive]
    return bounds[exclusive] + step if exclusive in bounds else None


def _fill_columns(described: ParamField, value, columns: list[str]) -> None:
    described.widget = "columns"
    if not columns:
        described.value = _format_list(value)
        return
    chosen = [str(item) for item in value] if isinstance(value, list) else []
    if isinstance(value, str) and value and not isinstance(value, Unparsed):
        chosen = [value]
    # A select sends its options in document order: the chosen ones first keep theirs.
    described.multiple = True
    described.value = chosen
    described.suggestions = [*chosen, *(c for c in columns if c not in chosen)]


def _fill_text(described: ParamField, shape: _Shape, name, marker, value, options) -> None:
    described.value = _format_scalar(value, shape.scalars)
    described.max_length = shape.bounds.get("max_length")
    described.multiline = marker == "textarea" or name in MULTILINE_NAMES
    if marker in ("column", "columns") or name in COLUMN_NAMES:
        described.suggestions = list(options.columns)
    elif (marker or name) in REFERENCE_NAMES:
        described.suggestions = list(getattr(options, REFERENCE_NAMES[marker or name]))
    described.suggestions += [_text(choice) for choice in shape.choices]


def _widget_marker(info: FieldInfo) -> str | None:
    extra = info.json_schema_extra
    return extra.get("widget") if isinstance(extra, dict) else None


def _default(info: FieldInfo):
    if info.is_required():
        return None
    return info.get_default(call_default_factory=True)


def _own_doc(model) -> str:
    doc = model.__dict__.get("__doc__") or ""
    return " ".join(doc.split())


def _humanise(name: str) -> str:
    words = [ACRONYMS.get(word, word) for word in name.split("_") if word]
    text = " ".join(words)
    return text[:1].upper() + text[1:]


def _text(value) -> str:
    """A scalar as a form shows it: true/false, numbers as Python writes them."""
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    return str(to_jsonable_python(value, fallback=str))  # dates as ISO 8601


def _format_scalar(value, scalars: tuple) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        # Text that would read back as a number or true/false is quoted to stay text.
        return json.dumps(value) if _read_scalar(value, scalars) is not value else value
    return _text(value)


def _format_list(value) -> str:
    if not isinstance(value, list | tuple):
        return "" if value is None else str(value)
    items = [_text(item) for item in value]
    # Items a comma-separated text cannot hold are written as a JSON list instead.
    if any("," in item or item != item.strip() or not item for item in items):
        return json.dumps(to_jsonable_python(value), ensure_ascii=False)
    return ", ".join(items)


def _format_json(value) -> str:
    if value is None:
        return ""
    jsonable = to_jsonable_python(value, fallback=str)
    compact = json.dumps(jsonable, ensure_ascii=False)
    if len(compact) <= SHORT_JSON:
        return compact
    return json.dumps(jsonable, ensure_ascii=False, indent=2)


# Errors


def _strip_params(key: str) -> str:
    return key.removeprefix("params.")


def _error_for(path: str, widget: str, errors: dict[str, str]) -> str:
    messages = [errors[path]] if path in errors else []
    if widget != "fieldset":
        # A list or JSON value is one input: its items' errors are shown on it.
        messages += [
            f"{_describe_location(key[len(path) + 1 :])}: {message}"
            for key, message in errors.items()
            if key.startswith(f"{path}.")
        ]
    return "; ".join(messages)


def _describe_location(rest: str) -> str:
    parts = [f"item {int(part) + 1}" if part.isdigit() else part for part in rest.split(".")]
    return ", ".join(parts)


def _belongs(key: str, path: str, whole: bool) -> bool:
    return key == path or (whole and key.startswith(f"{path}."))


def _walk(fields: list[ParamField]):
    for item in fields:
        yield item
        yield from _walk(item.children)


# Parsing


def _parse_model(model, data, prefix: str, base: str, errors: dict) -> dict:
    params = {}
    for name, info in model.model_fields.items():
        value = _parse_field(info, data, prefix, f"{base}{name}", errors)
        if value is not _OMIT:
            params[name] = value
    return params


def _parse_field(info: FieldInfo, data, prefix: str, path: str, errors: dict):
    shape, name = _shape(info), f"{prefix}{path}"
    posted = _posted(data, name)
    if shape.widget == "checkbox":
        return any(_is_true(item) for item in posted)
    if shape.widget == "fieldset":
        if shape.optional and not any(_is_true(item) for item in posted):
            return _empty(info, shape)
        return _parse_model(shape.model, data, prefix, f"{path}.", errors)
    if shape.multiple or shape.widget == "list":
        separate = bool(_posted(data, f"{name}{MULTIPLE_MARKER}")) or _is_list(data, name)
        items = _items(posted, separate, path, errors)
        if isinstance(items, Unparsed):
            return items
        return [_read_item(item, shape) for item in items] if items else _empty(info, shape)
    text = posted[-1] if posted else None
    if text is not None and not isinstance(text, str):
        return text  # a dict of Python values holds them already read
    if text is None or text == "" or (shape.widget != "text" and not text.strip()):
        return _empty(info, shape)
    if shape.widget == "json":
        return _read_json(text, path, errors)
    if shape.widget == "select":
        return _read_choice(text, shape.choices)
    return _read_scalar(text, shape.scalars)


def _posted(data, name: str) -> list:
    if isinstance(data, QueryDict):
        return data.getlist(name)
    value = data.get(name)
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def _is_list(data, name: str) -> bool:
    return not isinstance(data, QueryDict) and isinstance(data.get(name), list | tuple)


def _is_true(value) -> bool:
    return value is True or (isinstance(value, str) and value.strip().lower() in TRUE_TEXTS)


def _empty(info: FieldInfo, shape: _Shape):
    """What an empty input stands for: the default, or None where None is not the default."""
    if shape.optional and (info.is_required() or _default(info) is not None):
        return None
    return _OMIT


def _items(posted: list, separate: bool, path: str, errors: dict) -> list | Unparsed:
    """A list input's items: one per posted value from a select, else read from text."""
    if separate or len(posted) > 1 or (posted and not isinstance(posted[0], str)):
        return [item for item in posted if not isinstance(item, str) or item.strip()]
    text = posted[0].strip() if posted else ""
    if text.startswith("["):
        parsed = _read_json(text, path, errors)
        return parsed if isinstance(parsed, list | Unparsed) else [parsed]
    pieces = text.replace("\n", ",").split(",")
    return [piece.strip() for piece in pieces if piece.strip()]


def _read_item(item, shape: _Shape):
    if not isinstance(item, str):
        return item
    if shape.choices:
        return _read_choice(item, shape.choices)
    if shape.scalars and shape.scalars[0] is not str:
        return _read_scalar(item.strip(), shape.scalars)
    return item


def _read_choice(text: str, choices: tuple):
    # Validation names a value the choices do not hold; pass it on as it was posted.
    return next((choice for choice in choices if _text(choice) == text), text)


def _read_scalar(text: str, scalars: tuple):
    """Text as the first scalar type of the field it reads as, else the text itself."""
    if str in scalars and scalars == (str,):
        return text
    try:
        value = json.loads(text)
    except ValueError:
        value = _number(text)
    if isinstance(value, bool):
        return value if bool in scalars else text
    if isinstance(value, int) and (int in scalars or float in scalars):
        return value if int in scalars else float(value)
    if isinstance(value, float) and float in scalars:
        return value
    if isinstance(value, float) and int in scalars and value.is_integer():
        return int(value)
    if isinstance(value, str) and str in scalars:
        return value
    return text


def _number(text: str):
    try:
        return float(text)
    except ValueError:
        return text


def _read_json(text: str, path: str, errors: dict):
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        errors[f"params.{path}"] = (
            f"not valid JSON: {exc.msg} (line {exc.lineno} column {exc.colno})"
        )
        return Unparsed(text)


def _model(step_type) -> type[StepParams]:
    if isinstance(step_type, str):
        return STEP_TYPES[step_type].Params
    return step_type.Params
