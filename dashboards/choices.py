"""The open sets a chart is made of. Their values are the aggregation engine's
(`dashboards.aggregate`): a test keeps the two in step."""

from django.db import models


class ChartKind(models.TextChoices):
    LINE = "line", "Line"
    BAR = "bar", "Bar"
    AREA = "area", "Area"
    SCATTER = "scatter", "Scatter"
    PIE = "pie", "Pie"
    HEATMAP = "heatmap", "Heat map"
    KPI = "kpi", "KPI number"
    TABLE = "table", "Table"


class SourceKind(models.TextChoices):
    DATASET = "dataset", "Dataset"
    PREDICTIONS = "predictions", "Pipeline predictions"
    TABLE = "table", "Saved table"


class Aggregation(models.TextChoices):
    COUNT = "count", "Count"
    SUM = "sum", "Sum"
    MEAN = "mean", "Mean"
    MEDIAN = "median", "Median"
    MIN = "min", "Minimum"
    MAX = "max", "Maximum"
    DISTINCT_COUNT = "distinct_count", "Distinct count"


class TimeGrain(models.TextChoices):
    HOUR = "hour", "Hour"
    DAY = "day", "Day"
    WEEK = "week", "Week"
    MONTH = "month", "Month"


class ChartSort(models.TextChoices):
    X = "x", "x ascending"
    X_DESC = "-x", "x descending"
    Y = "y", "y ascending"
    Y_DESC = "-y", "y descending"
