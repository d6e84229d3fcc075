import pandas as pd
import pytest

from pipelines import services
from pipelines.engine.registry import STEP_TYPES
from pipelines.models import Pipeline, PipelineStep
from pipelines.validation import PipelineInvalid, StepError, ensure_valid, validate_steps

LOAD = {"order": 1, "type": "sklearn_dataset", "params": {"name": "iris"}}
TRAIN_PARAMS = {"task": "classification", "estimator": "random_forest", "target": "target"}
TRAIN = {"order": 2, "type": "train_sklearn", "params": TRAIN_PARAMS}
PREDICT = {"order": 3, "type": "predict", "params": {}}


def step(order, type_, params=None, **fields):
    return {"order": order, "type": type_, "params": params or {}, **fields}


def fields(errors):
    return [(error.order, error.field) for error in errors]


def test_valid_pipeline_has_no_errors():
    steps = [
        LOAD,
        step(2, "drop_na"),
        step(3, "fill_na", {"strategy": "median"}),
        step(4, "filter_rows", {"conditions": [{"column": "target", "op": "!=", "value": 2}]}),
        step(5, "train_sklearn", TRAIN_PARAMS),
        step(6, "predict", {"probabilities": False}),
    ]

    assert validate_steps(steps) == []
    ensure_valid(steps)


@pytest.mark.django_db
def test_csv_step_of_an_existing_dataset_is_valid(make_dataset):
    make_dataset(pd.DataFrame({"a": [1, 2]}), "numbers")

    assert validate_steps([step(1, "csv", {"dataset": "numbers"})]) == []


@pytest.mark.django_db
def test_csv_step_of_a_missing_dataset_names_it():
    errors = validate_steps([step(1, "csv", {"dataset": "numbers"})])

    assert errors == [StepError(1, "params.dataset", "dataset 'numbers' does not exist")]


def test_steps_are_checked_in_order_not_list_position():
    assert validate_steps([PREDICT, TRAIN, LOAD]) == []


def test_unknown_type_is_reported_with_the_known_types():
    errors = validate_steps([LOAD, step(2, "explode")])

    assert fields(errors) == [(2, "type")]
    assert errors[0].message.startswith("unknown step type 'explode' (known: ")
    assert all(slug in errors[0].message for slug in STEP_TYPES)


@pytest.mark.parametrize("type_", [None, 3, ["csv"], {"csv": 1}])
def test_type_that_is_not_a_string_is_an_unknown_type(type_):
    errors = validate_steps([LOAD, step(2, type_)])

    assert fields(errors) == [(2, "type")]
    assert errors[0].message.startswith(f"unknown step type {type_!r}")


def test_bad_params_give_one_error_per_field():
    params = {**TRAIN_PARAMS, "task": "clustering", "test_size": 1.5, "random_state": "seed"}

    errors = validate_steps([LOAD, step(2, "train_sklearn", params)])

    assert fields(errors) == [
        (2, "params.task"),
        (2, "params.test_size"),
        (2, "params.random_state"),
    ]
    assert errors[1].message == "Input should be less than 1"
    assert str(errors[1]) == "step 2, params.test_size: Input should be less than 1"


def test_missing_required_param_is_named():
    errors = validate_steps([step(1, "sklearn_dataset")])

    assert errors == [StepError(1, "params.name", "Field required")]


def test_extra_unknown_param_is_rejected():
    errors = validate_steps([step(1, "sklearn_dataset", {"name": "iris", "shuffle": True})])

    assert errors == [StepError(1, "params.shuffle", "is not a parameter of this step type")]


def test_params_that_are_not_an_object_are_rejected():
    errors = validate_steps([{**LOAD, "params": ["iris"]}])

    assert errors == [StepError(1, "params", "must be an object of parameter names to values")]


def test_bad_hyperparameter_is_reported_on_the_hyperparams_field():
    params = {**TRAIN_PARAMS, "hyperparams": {"n_estimators": -5, "max_depth": 3}}

    errors = validate_steps([LOAD, step(2, "train_sklearn", params)])

    assert fields(errors) == [(2, "params.hyperparams")]
    assert "'n_estimators' parameter of RandomForestClassifier" in errors[0].message


def test_nested_condition_errors_name_the_condition():
    conditions = [
        {"column": "target", "op": "like", "value": 1},
        {"column": "target", "op": "in", "value": 1},
    ]

    errors = validate_steps([LOAD, step(2, "filter_rows", {"conditions": conditions})])

    assert fields(errors) == [(2, "params.conditions.0.op"), (2, "params.conditions.1")]
    assert errors[1].message == "value: operator 'in' needs a list"


def test_cross_field_error_names_the_field_in_its_message():
    errors = validate_steps([LOAD, step(2, "fill_na", {"strategy": "value"})])

    assert errors == [StepError(2, "params.value", "required when strategy is 'value'")]


def test_predict_before_any_training_needs_a_model():
    errors = validate_steps([LOAD, {**PREDICT, "order": 2}, {**TRAIN, "order": 3}])

    assert errors == [StepError(2, "type", "predict needs 'model', which no earlier step produces")]


def test_first_step_must_produce_data_and_the_error_is_reported_once():
    errors = validate_steps([step(1, "drop_na"), step(2, "drop_duplicates")])

    assert errors == [StepError(1, "type", "drop_na needs 'data', which no earlier step produces")]


def test_disabled_steps_do_not_provide_keys():
    errors = validate_steps([LOAD, {**TRAIN, "enabled": False}, PREDICT])

    assert errors == [StepError(3, "type", "predict needs 'model', which no earlier step produces")]


def test_disabled_steps_still_have_their_params_checked():
    errors = validate_steps([LOAD, step(2, "drop_na", {"how": "some"}, enabled=False)])

    assert fields(errors) == [(2, "params.how")]


def test_duplicate_orders_are_reported():
    errors = validate_steps([LOAD, {**TRAIN, "order": 1}, {**PREDICT, "order": 1}])

    assert errors[:2] == [
        StepError(1, "order", "is used by more than one step"),
        StepError(1, "order", "is used by more than one step"),
    ]


@pytest.mark.parametrize("order", [0, -1, "1", None, True, 1.0, [1]])
def test_order_must_be_a_positive_integer(order):
    errors = validate_steps([{**LOAD, "order": order}])

    assert errors[0] == StepError(None, "steps[1].order", "must be a positive integer")


def test_empty_pipeline_is_invalid():
    assert validate_steps([]) == [StepError(None, "steps", "a pipeline needs at least one step")]


def test_ensure_valid_raises_with_every_error():
    with pytest.raises(PipelineInvalid) as caught:
        ensure_valid([step(1, "sklearn_dataset", {"name": "mnist"}), step(1, "explode")])

    assert fields(caught.value.errors) == [(1, "order"), (1, "params.name"), (1, "type")]
    assert "step 1, params.name: Input should be 'iris'" in str(caught.value)


# import_pipeline


@pytest.mark.django_db
@pytest.mark.parametrize(
    "steps",
    [
        [LOAD, {**PREDICT, "order": 2}],
        [LOAD, {**TRAIN, "params": {**TRAIN_PARAMS, "test_size": 2}}],
        [{**LOAD, "type": ["sklearn_dataset"]}],
        [{**LOAD, "order": [1]}],
        [{**LOAD, "colour": "red"}],
        [],
        "not a list",
    ],
)
def test_import_with_invalid_steps_saves_nothing(steps):
    pipelines, pipeline_steps = Pipeline.objects.count(), PipelineStep.objects.count()

    with pytest.raises(PipelineInvalid):
        services.import_pipeline({"name": "broken", "steps": steps})

    assert Pipeline.objects.count() == pipelines
    assert PipelineStep.objects.count() == pipeline_steps


@pytest.mark.django_db
def test_import_replacing_with_invalid_steps_keeps_the_old_steps(make_pipeline):
    pipeline = make_pipeline([LOAD, TRAIN], name="kept")

    with pytest.raises(PipelineInvalid) as caught:
        services.import_pipeline({"name": "kept", "steps": [PREDICT]}, replace=True)

    assert fields(caught.value.errors) == [(3, "type")]
    assert [s.step_type for s in pipeline.steps.all()] == ["sklearn_dataset", "train_sklearn"]


@pytest.mark.django_db
def test_import_of_valid_steps_saves_them_in_order():
    pipeline = services.import_pipeline({"name": "ok", "steps": [PREDICT, TRAIN, LOAD]})

    assert [(s.order, s.step_type) for s in pipeline.steps.all()] == [
        (1, "sklearn_dataset"),
        (2, "train_sklearn"),
        (3, "predict"),
    ]
