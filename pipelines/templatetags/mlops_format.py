"""Display filters for the analyst pages: durations, metrics, counts and step summaries.

`{% load mlops_format %}`, then `{{ run.duration|duration }}` ("1 m 12 s"),
`{{ value|sig3 }}` (3 significant figures), `{{ rows|thousands }}` ("12,345").
Each returns "" for None, so `|default:"—"` can follow.
"""

import json
import math
from datetime import datetime, timedelta
from decimal import Decimal
from numbers import Number

from django import template
from django.contrib.messages import constants as message_levels
from django.utils import timezone

register = template.Library()

# Summary keys the step table shows in columns of their own.
SUMMARY_SHOWN_ELSEWHERE = {"rows", "columns", "warnings", "error"}
# A list in a summary shows this many items, then how many more there are.
SUMMARY_LIST_ITEMS = 5
MESSAGE_WORDS = {
    message_levels.DEBUG: "Debug",
    message_levels.INFO: "Note",
    message_levels.SUCCESS: "Done",
    message_levels.WARNING: "Warning",
    message_levels.ERROR: "Error",
}


@register.filter
def duration(value) -> str:
    """A timedelta or a number of seconds as "3.2 s", "1 m 12 s", "2 h 5 m" or "1 d 3 h"."""
    if value is None or value == "":
        return ""
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    seconds = max(seconds, 0.0)  # Clocks of two machines can disagree by a little.
    if seconds < 0.1:
        return "< 0.1 s" if seconds else "0 s"
    if seconds < 10:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} m {whole % 60} s"
    if whole < 86400:
        return f"{whole // 3600} h {whole % 3600 // 60} m"
    return f"{whole // 86400} d {whole % 86400 // 3600} h"


@register.filter
def duration_since(moment: datetime | None) -> str:
    """How long ago `moment` was, as `duration` writes it: a running run's time so far."""
    if moment is None:
        return ""
    return duration(timezone.now() - moment)


@register.filter
def sig3(value) -> str:
    """A number to 3 significant figures: 0.912, 12.3, 1,230, 1.23e-05. Text passes as is."""
    if value is None or isinstance(value, bool) or not isinstance(value, Number | Decimal):
        return "" if value is None else str(value)
    if isinstance(value, int):
        return thousands(value) if abs(value) < 1000 else sig3(float(value))
    value = float(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "∞" if value > 0 else "-∞"
    if 1000 <= abs(value) < 1e15:
        exponent = math.floor(math.log10(abs(value)))
        return f"{round(value, 2 - exponent):,.0f}"
    return f"{value:#.3g}".rstrip(".")


@register.filter
def thousands(value) -> str:
    """A count with thousands separators: 1234567 -> "1,234,567"."""
    if value is None or value == "":
        return ""
    try:
        return f"{int(value):,}"
    except (TypeError, ValueError):
        return str(value)


@register.filter
def shape(rows, columns) -> str:
    """Rows and columns of a table as "1,234 × 5"; "" when the step had no table."""
    if rows is None and columns is None:
        return ""
    return f"{thousands(rows) or '?'} × {thousands(columns) or '?'}"


@register.filter
def summary_items(summary) -> list[tuple[str, str]]:
    """A step's summary as (key, text) pairs, without what the table shows elsewhere."""
    if not isinstance(summary, dict):
        return []
    return [
        (str(key), _summary_value(value))
        for key, value in summary.items()
        if key not in SUMMARY_SHOWN_ELSEWHERE
    ]


def _summary_value(value, nested: bool = False) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Number | Decimal):
        return _short_number(value)
    if isinstance(value, dict):
        text = ", ".join(f"{key}: {_summary_value(item, True)}" for key, item in value.items())
        return f"({text})" if nested else text
    if isinstance(value, list | tuple):
        # Records (a feature and its importance) contain commas: "; " parts them.
        separator = "; " if any(isinstance(item, dict) for item in value) else ", "
        shown = separator.join(_list_item(item) for item in value[:SUMMARY_LIST_ITEMS])
        more = len(value) - SUMMARY_LIST_ITEMS
        return f"{shown} … ({more} more)" if more > 0 else shown
    return "" if value is None else str(value)


def _list_item(item) -> str:
    """A record in a list (a feature and its importance) as its values only."""
    if isinstance(item, dict):
        return " ".join(_summary_value(value, True) for value in item.values())
    return _summary_value(item, True)


def _short_number(value) -> str:
    """3 significant figures without trailing zeros, for parameters and counts."""
    text = sig3(value)
    if "." in text and "e" not in text:
        text = text.rstrip("0").rstrip(".")
    return text


@register.filter
def pretty_json(value) -> str:
    """Data as indented JSON with sorted keys, as the definition diff shows it."""
    return json.dumps(value, indent=2, sort_keys=True, default=str)


@register.filter
def message_word(message) -> str:
    """The word that says a flash message's level, so colour is not the only sign."""
    return MESSAGE_WORDS.get(getattr(message, "level", None), "Note")
