"""Display filters of the dashboard pages: `{% load dashboards_format %}`."""

from numbers import Integral, Number

from django import template

from pipelines.templatetags.mlops_format import sig3, thousands

register = template.Library()


@register.filter
def cell(value) -> str:
    """A table cell: whole numbers in full with separators, others to 3 figures."""
    if value is None:
        return "—"
    if isinstance(value, str) and value.endswith("T00:00:00"):
        return value[:-9]  # a date the source stored as a datetime
    if isinstance(value, bool) or not isinstance(value, Number):
        return str(value)
    if isinstance(value, Integral) or (isinstance(value, float) and value.is_integer()):
        return thousands(value)
    return sig3(value)


@register.filter
def is_number(value) -> bool:
    return isinstance(value, Number) and not isinstance(value, bool)


@register.filter
def heat(share) -> str:
    """The inline style of a heat-map cell holding `share` (0 to 1) of the range."""
    if share is None:
        return ""
    text = "#fff" if share > 0.55 else "var(--fg)"
    return f"background: rgba(29, 78, 216, {0.08 + 0.84 * share:.3f}); color: {text}"
