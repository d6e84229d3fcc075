"""What the platform keeps about MLflow's registered models: promotion rules, every alias
move, and the traffic of the prediction endpoint. The models themselves live in MLflow."""

from django.conf import settings
from django.contrib.auth.models import Group
from django.db import models


class ModelPolicy(models.Model):
    """Rules of one registered model (by MLflow name): its promotion gate and who may
    call it for predictions beside holders of `experiments.predict`."""

    name = models.CharField("registered model", max_length=256, unique=True)
    gate_metric = models.CharField(
        max_length=250,
        blank=True,
        help_text="Metric of the source run compared when `champion` moves; blank: no gate.",
    )
    higher_is_better = models.BooleanField(
        default=True, help_text="Whether a higher gate metric is a better model."
    )
    predict_group = models.ForeignKey(
        Group,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Members may call this model's prediction endpoint.",
    )
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "model policies"

    def __str__(self):
        return self.name


class AliasChange(models.Model):
    """One alias set, moved or removed, by whom, and whether a staff override passed
    the promotion gate."""

    model_name = models.CharField(max_length=256, db_index=True)
    alias = models.CharField(max_length=255)
    version = models.PositiveIntegerField(null=True, blank=True, help_text="None: removed.")
    previous_version = models.PositiveIntegerField(null=True, blank=True)
    gate_metric = models.CharField(max_length=250, blank=True)
    new_value = models.FloatField(null=True, blank=True)
    previous_value = models.FloatField(null=True, blank=True)
    overridden = models.BooleanField(default=False, help_text="A staff override of the gate.")
    reason = models.TextField(blank=True)
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    changed_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-changed_at", "-id"]
        permissions = [
            ("set_alias", "Can set, move or remove registered model aliases"),
            ("register_model", "Can register a run's model in the model registry"),
        ]

    def __str__(self):
        return f"{self.model_name}@{self.alias} -> {self.version}"


# Upper bounds (ms) of the latency histogram a ServingStat keeps: counts add up across
# minutes and processes, so a page can estimate p95 over any period (as Prometheus does).
LATENCY_BUCKETS_MS = (5, 10, 25, 50, 100, 250, 500, 1000, 2500)


def latency_bucket(latency_ms: float) -> str:
    """The ServingStat field counting a request that took `latency_ms`."""
    bound = next((b for b in LATENCY_BUCKETS_MS if latency_ms <= b), None)
    return f"latency_le_{bound}ms" if bound else "latency_over_2500ms"


def latency_percentile(counts: dict[str, int], share: float = 0.95) -> float | None:
    """The upper bound (ms) of the bucket holding the `share` quantile of the requests
    counted in `counts` (bucket field -> count); None when nothing was counted, inf when
    it lies beyond the last bound."""
    total = sum(counts.values())
    if not total:
        return None
    seen = 0
    for bound in LATENCY_BUCKETS_MS:
        seen += counts.get(f"latency_le_{bound}ms", 0)
        if seen >= share * total:
            return float(bound)
    return float("inf")


class ServingStat(models.Model):
    """Prediction traffic of one model version in one minute."""

    model_name = models.CharField(max_length=256)
    version = models.PositiveIntegerField()
    minute = models.DateTimeField(help_text="Start of the minute (UTC).")
    requests = models.PositiveIntegerField(default=0)
    errors = models.PositiveIntegerField(default=0)
    rows = models.PositiveBigIntegerField(default=0)
    latency_ms_total = models.FloatField(default=0)
    latency_ms_max = models.FloatField(default=0)
    latency_le_5ms = models.PositiveIntegerField(default=0)
    latency_le_10ms = models.PositiveIntegerField(default=0)
    latency_le_25ms = models.PositiveIntegerField(default=0)
    latency_le_50ms = models.PositiveIntegerField(default=0)
    latency_le_100ms = models.PositiveIntegerField(default=0)
    latency_le_250ms = models.PositiveIntegerField(default=0)
    latency_le_500ms = models.PositiveIntegerField(default=0)
    latency_le_1000ms = models.PositiveIntegerField(default=0)
    latency_le_2500ms = models.PositiveIntegerField(default=0)
    latency_over_2500ms = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-minute"]
        constraints = [
            models.UniqueConstraint(
                fields=["model_name", "version", "minute"], name="one_serving_stat_per_minute"
            )
        ]
        indexes = [models.Index(fields=["minute"], name="serving_stat_minute")]
        permissions = [("predict", "Can call the online prediction API of any model")]

    def __str__(self):
        return f"{self.model_name} v{self.version} at {self.minute:%Y-%m-%d %H:%M}"


class ThrottleCounter(models.Model):
    """The prediction endpoint's rate limit state of one caller and scope: one row,
    changed by one UPDATE per allowed request (experiments.throttling). `slot` numbers
    the rate's periods since the epoch; `current` counts the requests allowed in it and
    `previous` those of the period before."""

    ident = models.CharField(max_length=64, help_text="user:<id>, or ip:<address>.")
    scope = models.CharField(max_length=32)
    slot = models.BigIntegerField()
    current = models.PositiveIntegerField(default=0)
    previous = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["ident", "scope"], name="one_throttle_counter")
        ]

    def __str__(self):
        return f"{self.scope} {self.ident}: {self.current} in period {self.slot}"
