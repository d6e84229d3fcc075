"""/api/v1/pipelines/{reference}/steps/{order}/output/: what a step's cache holds.

The cache belongs to the pipeline (each step keeps the output of its latest replay), not
to a run, so these paths are under the pipeline. They read through `pipelines.inspector`
as the step inspector page does: the signed record, profiles and columnar copies written
with the cache, never the pickle itself.
"""

import dataclasses

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from pipelines import inspector
from pipelines.api.common import ORDER, REFERENCE, pipeline_or_404
from pipelines.api.errors import ErrorSerializer
from pipelines.api.schema import ApiViewMixin
from pipelines.api.serializers import FreshnessSerializer
from pipelines.inspector import (
    OPERATORS,
    PAGE_SIZE,
    FilterError,
    InspectError,
    StepOutput,
    as_sentence,
)
from pipelines.models import finite

NO_OUTPUT = "No such pipeline or enabled step, or the step has not been run since it was defined."
COLUMN_KINDS = ["number", "bool", "date", "category", "text"]
# What a key's record holds for the server only: its files' names and checksums.
PRIVATE_ENTRY_FIELDS = {"kind", "file", "sha256", "rows", "columns"}
# Cells are rendered as text one by one: a bound keeps a page's answer quick and small.
MAX_PAGE_SIZE = 1000


# -- What the answers hold --------------------------------------------------------------------


class OutputKeySerializer(serializers.Serializer):
    name = serializers.CharField(help_text="The context key, e.g. data, model, metrics.")
    kind = serializers.ChoiceField(choices=["frame", "model", "mapping", "value"])
    rows = serializers.IntegerField(allow_null=True, help_text="A frame's rows; else null.")
    columns = serializers.IntegerField(allow_null=True, help_text="A frame's columns; else null.")
    detail = serializers.DictField(
        help_text="What was recorded of it: a frame's `memory` (bytes) and `error` when its "
        "rows cannot be paged; a model's `estimator`, `pipeline` and `params`; a mapping's "
        "`length` and first `items`; a value's `type` and `value`."
    )


class HistogramSerializer(serializers.Serializer):
    counts = serializers.ListField(child=serializers.IntegerField())
    edges = serializers.ListField(child=serializers.FloatField())


class TopValueSerializer(serializers.Serializer):
    value = serializers.CharField(allow_blank=True)
    count = serializers.IntegerField()
    pct = serializers.FloatField()


class ColumnProfileSerializer(serializers.Serializer):
    name = serializers.CharField(allow_blank=True)
    dtype = serializers.CharField()
    kind = serializers.ChoiceField(choices=COLUMN_KINDS)
    nulls = serializers.IntegerField()
    null_pct = serializers.FloatField()
    distinct = serializers.IntegerField(
        allow_null=True, help_text="Null when the cells cannot be compared (lists, dicts)."
    )
    min = serializers.FloatField(required=False, help_text="Numbers only.")
    mean = serializers.FloatField(required=False, help_text="Numbers only.")
    median = serializers.FloatField(required=False, help_text="Numbers only.")
    max = serializers.FloatField(required=False, help_text="Numbers only.")
    histogram = HistogramSerializer(required=False, help_text="Numbers only.")
    first = serializers.CharField(required=False, help_text="Dates only.")
    last = serializers.CharField(required=False, help_text="Dates only.")
    top = TopValueSerializer(many=True, required=False, help_text="Text, categories, bools.")


class FrameProfileSerializer(serializers.Serializer):
    rows = serializers.IntegerField()
    columns = ColumnProfileSerializer(many=True, help_text="The first 500 columns.")
    schema = serializers.DictField(
        child=serializers.ChoiceField(choices=COLUMN_KINDS), help_text="Every column's kind."
    )
    dtypes = serializers.DictField(child=serializers.CharField(), help_text="pandas dtypes.")


class ChartSerializer(serializers.Serializer):
    labels = serializers.ListField(child=serializers.CharField(allow_blank=True))
    values = serializers.ListField(child=serializers.FloatField(allow_null=True))
    x = serializers.CharField(help_text="The axis of the labels.")
    y = serializers.CharField(help_text="The axis of the values.")


class FactSerializer(serializers.Serializer):
    label = serializers.CharField()
    value = serializers.JSONField()


class ModelSummarySerializer(serializers.Serializer):
    estimator = serializers.CharField(allow_blank=True)
    task = serializers.CharField(allow_blank=True)
    pipeline = serializers.ListField(
        child=serializers.CharField(), help_text="The names of the model pipeline's stages."
    )
    params = serializers.DictField(child=serializers.CharField(allow_blank=True))
    hyperparams = serializers.DictField(help_text="The hyperparameters a search chose.")
    facts = FactSerializer(many=True, help_text="Training and held-out rows, features...")
    metrics = serializers.DictField(child=serializers.FloatField(allow_null=True))
    importance = ChartSerializer(allow_null=True)
    confusion = serializers.DictField(
        allow_null=True, help_text="Classification: labels, rows of cells, per-class metrics."
    )
    residuals = serializers.DictField(allow_null=True, help_text="Regression.")
    clusters = ChartSerializer(allow_null=True, help_text="Clustering: rows per cluster.")
    variance = ChartSerializer(allow_null=True, help_text="Decomposition.")
    horizons = serializers.ListField(
        child=serializers.DictField(), allow_null=True, help_text="Forecasting: per horizon."
    )
    horizon_chart = ChartSerializer(allow_null=True)


class StepOutputSerializer(serializers.Serializer):
    pipeline = serializers.CharField()
    order = serializers.IntegerField()
    name = serializers.CharField(allow_blank=True)
    type = serializers.CharField(help_text="The step type's slug.")
    previous_step = serializers.IntegerField(
        allow_null=True, help_text="The order of the enabled step before it; null if first."
    )
    freshness = FreshnessSerializer(allow_null=True)
    available = serializers.BooleanField(
        help_text="False when the output cannot be shown: `problem` says why."
    )
    problem_kind = serializers.ChoiceField(
        choices=["", "stale", "refused", "old", "broken"], allow_blank=True
    )
    problem = serializers.CharField(allow_blank=True)
    written_at = serializers.DateTimeField(allow_null=True, help_text="When it was cached.")
    keys = OutputKeySerializer(many=True)
    profiles = serializers.DictField(
        child=FrameProfileSerializer(), help_text="The profile of each frame, by key."
    )
    model = ModelSummarySerializer(
        allow_null=True, help_text="What the training step recorded; null without a model."
    )


class RowsQuerySerializer(serializers.Serializer):
    key = serializers.CharField(
        required=False, allow_blank=True, help_text="The frame to page; default: the first."
    )
    page = serializers.IntegerField(min_value=1, default=1)
    page_size = serializers.IntegerField(
        min_value=1,
        max_value=MAX_PAGE_SIZE,
        default=PAGE_SIZE,
        help_text=f"Rows per page; the inspector page shows {PAGE_SIZE}.",
    )
    sort = serializers.CharField(required=False, allow_blank=True, help_text="A column.")
    desc = serializers.BooleanField(default=False, help_text="Sort in descending order.")
    filter = serializers.ListField(
        child=serializers.CharField(),
        required=False,
        default=list,
        help_text="Conditions all rows must meet, as `column op value` (e.g. amount>10, "
        f"city in Oslo,Paris, note is_null); operators: {', '.join(OPERATORS)}.",
    )


class RowSerializer(serializers.Serializer):
    number = serializers.IntegerField(help_text="The row's place in the frame, from 1.")
    cells = serializers.ListField(
        child=serializers.CharField(allow_null=True, allow_blank=True),
        help_text="As the inspector shows them: text (numbers to 6 significant figures, long "
        "text cut at 200 characters); null when missing.",
    )


class RowsPageSerializer(serializers.Serializer):
    key = serializers.CharField()
    columns = serializers.ListField(child=serializers.CharField(allow_blank=True))
    kinds = serializers.DictField(child=serializers.ChoiceField(choices=COLUMN_KINDS))
    rows = RowSerializer(many=True)
    page = serializers.IntegerField()
    pages = serializers.IntegerField()
    page_size = serializers.IntegerField()
    total = serializers.IntegerField(help_text="Rows meeting the filter.")
    all_rows = serializers.IntegerField(help_text="Rows of the frame.")
    sort = serializers.CharField(allow_null=True)
    desc = serializers.BooleanField()
    filter = serializers.ListField(
        child=serializers.CharField(), help_text="The conditions applied, as texts."
    )


# -- The views ----------------------------------------------------------------------------


class StepOutputView(ApiViewMixin, APIView):
    @extend_schema(
        request=None,
        parameters=[REFERENCE, ORDER],
        responses={
            200: StepOutputSerializer,
            404: OpenApiResponse(ErrorSerializer, NO_OUTPUT),
        },
        description="What the step's latest replay produced: each context key (frames with "
        "their shape), the profile of each frame, the model summary when it trained one, "
        "and whether it is fresh. A stale or refused cache is described with `available` "
        "false and the `problem`, and no keys.",
    )
    def get(self, request, reference, order):
        pipeline = pipeline_or_404(reference)
        output = _cached_output(pipeline, order)
        model = inspector.model_summary(pipeline, order, output=output) if output.ok else None
        return Response(StepOutputSerializer(_output_answer(output, model)).data)


class StepRowsView(ApiViewMixin, APIView):
    @extend_schema(
        request=None,
        parameters=[REFERENCE, ORDER, RowsQuerySerializer],
        responses={
            200: RowsPageSerializer,
            400: OpenApiResponse(
                ErrorSerializer,
                "A rejected query parameter: `key` (no such key, or not a frame), `sort` "
                "(no such column), `filter` (not understood, no such column, a value not "
                "of the column's type, or a comparison the column cannot make), `page`, "
                f"`page_size` (from 1 to {MAX_PAGE_SIZE}).",
            ),
            404: OpenApiResponse(
                ErrorSerializer,
                f"{NO_OUTPUT} Also: the output cannot be shown (stale or refused), holds no "
                "frame, or has no such page.",
            ),
        },
        description=f"A page of rows (`page_size`, {PAGE_SIZE} by default) of a frame of the step's "
        "output, sorted by a column and filtered, as the step inspector pages them.",
    )
    def get(self, request, reference, order):
        pipeline = pipeline_or_404(reference)
        query = RowsQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        asked = query.validated_data
        output = _cached_output(pipeline, order)
        if not output.ok:
            raise NotFound(f"Step {order} has no rows to show: {output.problem}")
        frame = _frame_asked(output, asked.get("key"))
        _check_sort_and_filter(output.profiles.get(frame, {}).get("schema") or {}, asked)
        page = _data_page(pipeline, order, frame, asked, output)
        return Response(RowsPageSerializer(_page_answer(page)).data)


# -- Reading through the inspector ----------------------------------------------------------


def _cached_output(pipeline, order: int) -> StepOutput:
    """The step's output as the inspector reads it; 404 when there is none at all."""
    try:
        output = inspector.step_output(pipeline, order)
    except LookupError as exc:
        raise NotFound(as_sentence(exc)) from None
    if output.problem_kind == "never_run":
        raise NotFound(
            f"Step {order} has no cached output yet: it has not been run since it was "
            "defined. Run the pipeline up to it first."
        )
    return output


def _frame_asked(output: StepOutput, key: str | None) -> str:
    """The frame `key` names, or the output's first frame when none is named."""
    if not key:
        frame = next((k.name for k in output.keys if k.kind == "frame"), None)
        if frame is None:
            raise NotFound(f"Step {output.order}'s output holds no frame to page.")
        return frame
    try:
        info = output.key(key)
    except InspectError as exc:
        raise ValidationError({"key": [as_sentence(exc)]}) from None
    if info.kind != "frame":
        raise ValidationError({"key": [f"{key!r} is a {info.kind}, not a frame."]})
    return info.name


def _check_sort_and_filter(kinds: dict[str, str], asked: dict) -> None:
    """Refuse what the inspector's page would leave out with a note."""
    errors = {}
    sort = asked.get("sort")
    if sort and sort not in kinds:
        errors["sort"] = [f"The frame has no column {sort!r}."]
    refused = []
    for text in asked["filter"]:
        try:
            inspector.parse_filter(text, kinds)
        except FilterError as exc:
            refused.append(str(exc))
    if refused:
        errors["filter"] = refused
    if errors:
        raise ValidationError(errors)


def _data_page(pipeline, order: int, frame: str, asked: dict, output: StepOutput):
    try:
        page = inspector.data_page(
            pipeline,
            order,
            frame,
            asked["page"],
            asked.get("sort") or None,
            asked["desc"],
            asked["filter"],
            output=output,
            page_size=asked["page_size"],
        )
    except InspectError as exc:  # the frame's columnar copy is missing or refused
        raise NotFound(as_sentence(exc)) from None
    if page.page != asked["page"]:
        raise NotFound(f"There is no page {asked['page']}: the last page is {page.pages}.")
    if page.notes:  # the page is right, so these are filters it could not apply
        raise ValidationError({"filter": page.notes})
    return page


# -- Answers ----------------------------------------------------------------------------------


def _output_answer(output: StepOutput, model) -> dict:
    return {
        "pipeline": output.pipeline.name,
        "order": output.order,
        "name": output.step.get("name", ""),
        "type": output.step.get("type", ""),
        "previous_step": output.previous_order,
        "freshness": output.freshness and dataclasses.asdict(output.freshness),
        "available": output.ok,
        "problem_kind": output.problem_kind,
        "problem": output.problem,
        "written_at": output.written_at,
        "keys": [_key_answer(key) for key in output.keys],
        "profiles": output.profiles,
        "model": model and _model_answer(model),
    }


def _key_answer(key) -> dict:
    entry = key.entry
    return {
        "name": key.name,
        "kind": key.kind,
        "rows": entry.get("rows"),
        "columns": entry.get("columns"),
        "detail": {k: v for k, v in entry.items() if k not in PRIVATE_ENTRY_FIELDS},
    }


def _model_answer(summary) -> dict:
    # Metrics are recorded as the training step computed them: NaN is not valid JSON.
    answer = finite(dataclasses.asdict(summary))
    answer["facts"] = [{"label": label, "value": value} for label, value in answer["facts"]]
    return answer


def _page_answer(page) -> dict:
    return {
        "key": page.key,
        "columns": page.columns,
        "kinds": page.kinds,
        "rows": [{"number": number, "cells": cells} for number, cells in page.rows],
        "page": page.page,
        "pages": page.pages,
        "page_size": page.page_size,
        "total": page.total,
        "all_rows": page.all_rows,
        "sort": page.sort,
        "desc": page.descending,
        "filter": page.filters,
    }
