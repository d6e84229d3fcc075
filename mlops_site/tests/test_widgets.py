from django import forms

from mlops_site.widgets import CompactSelect


class PickForm(forms.Form):
    pick = forms.ChoiceField(
        choices=[("", "Any"), ("1", "<one>"), ("2", "two")], required=False, widget=CompactSelect
    )


def test_compact_select_marks_the_chosen_option_and_escapes_labels():
    html = str(PickForm({"pick": "1"})["pick"])

    assert html.startswith('<select id="id_pick" name="pick">')
    assert '<option value="">Any</option>' in html
    assert '<option value="1" selected>&lt;one&gt;</option>' in html
    assert '<option value="2">two</option>' in html
