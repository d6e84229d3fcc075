from django import forms
from django.core.exceptions import ValidationError

from pipelines.validation import validate_steps


class StepInlineFormSet(forms.BaseInlineFormSet):
    """Validates the steps together (types, params, required context keys).

    Errors are attached to the step's row and field, and nothing is saved.
    """

    def clean(self):
        super().clean()
        live = [
            form for form in self.forms if form.cleaned_data and not form.cleaned_data.get("DELETE")
        ]
        by_order = {form.cleaned_data.get("order"): form for form in live}
        steps = [_definition(form.cleaned_data) for form in live]
        errors = validate_steps(steps)
        for error in errors:
            form = by_order.get(error.order)
            field = "params" if error.field.startswith("params") else "step_type"
            if form is None:
                raise ValidationError(str(error))
            form.add_error(
                field if field in form.fields else None, f"{error.field}: {error.message}"
            )


def _definition(data: dict) -> dict:
    return {
        "order": data.get("order"),
        "type": data.get("step_type", ""),
        "name": data.get("name", ""),
        "params": data.get("params") if data.get("params") is not None else {},
        "enabled": data.get("enabled", True),
    }
