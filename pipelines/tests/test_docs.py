from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from pipelines.docs import render_step_reference, step_reference_path
from pipelines.engine.registry import STEP_TYPES, parameter_summary


def test_step_reference_is_up_to_date():
    path = step_reference_path()

    assert path.exists() and path.read_text() == render_step_reference(), (
        "docs/step-types.md is stale: run `python manage.py document_steps` and commit it."
    )


def test_step_reference_lists_every_step_type_with_its_parameters():
    import pipelines.testing  # noqa: F401  (registers plug-in step types)

    reference = render_step_reference()

    for slug, cls in STEP_TYPES.items():
        if cls.__module__ == "pipelines.testing":  # diagnostic plug-ins are not listed
            assert f"### `{slug}`" not in reference
            continue
        assert f"### `{slug}`: {cls.label}" in reference
        for parameter in parameter_summary(cls):
            assert f"| `{parameter['name']}` |" in reference
    assert "| `model_uri` | string \\| null | no |  | MLflow model to predict with:" in reference
    assert '| `prediction_column` | string | no | `"prediction"` |' in reference
    assert "| classification | `logistic_regression` | `sklearn.linear_model." in reference


def test_document_steps_writes_the_reference_and_checks_it(settings, tmp_path):
    settings.BASE_DIR = tmp_path
    (tmp_path / "docs").mkdir()

    out = StringIO()
    call_command("document_steps", stdout=out)
    call_command("document_steps", "--check", stdout=out)

    written = tmp_path / "docs" / "step-types.md"
    assert written.read_text() == render_step_reference()
    assert out.getvalue() == f"Wrote {written}.\n{written} is up to date.\n"
    written.write_text(written.read_text().replace("predict", "forecast"))
    with pytest.raises(
        CommandError, match=r"step-types.md is stale: run `manage.py document_steps`"
    ):
        call_command("document_steps", "--check")
