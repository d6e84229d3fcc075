"""Form widgets shared by the pages."""

from django import forms
from django.forms.utils import flatatt
from django.utils.html import format_html, format_html_join


class CompactSelect(forms.Select):
    """A select whose options are rendered without a template each.

    Django's Select renders one template per option: a list of a thousand pipelines
    costs about 50 ms a page; this costs a few.
    """

    def render(self, name, value, attrs=None, renderer=None):
        attrs = self.build_attrs(self.attrs, attrs)
        chosen = {str(item) for item in self.format_value(value)}
        options = format_html_join(
            "",
            '<option value="{}"{}>{}</option>',
            (
                ("" if key is None else key, " selected" if str(key) in chosen else "", label)
                for key, label in self.choices
            ),
        )
        return format_html("<select{}>{}</select>", flatatt({"name": name, **attrs}), options)
