import json
import math
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import models
from django.db.models import Count, F, OuterRef, Subquery, Value
from django.db.models.functions import Coalesce, Concat
from django.utils import timezone
from knox.models import AbstractAuthToken

from pipelines.choices import (
    ACTIVE_RUN_STATUSES,
    CatchUpPolicy,
    ConcurrencyPolicy,
    OverlapPolicy,
    RunStatus,
    RunTrigger,
    StepRunStatus,
    TickOutcome,
)


class FiniteJSONEncoder(json.JSONEncoder):
    """Writes NaN and infinities as null: they are not JSON, and the databases' JSON
    columns refuse them (an undefined metric, such as r2 on one row, is NaN)."""

    def iterencode(self, o, _one_shot=False):
        return super().iterencode(finite(o), _one_shot)


def finite(value):
    """`value` with every NaN or infinity, however deep, as None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite(item) for item in value]
    return value


class PipelineQuerySet(models.QuerySet):
    def get_by_reference(self, reference: str) -> "Pipeline":
        """A pipeline by name, or by id when no pipeline has that name."""
        found = self.filter(name=reference).first()
        if found is None and str(reference).isdigit():
            found = self.filter(pk=int(reference)).first()
        if found is None:
            raise Pipeline.DoesNotExist(f"no pipeline named or numbered {reference!r}")
        return found

    def with_run_summary(self):
        """Each pipeline with its step count and its latest run's status and time."""
        latest = PipelineRun.objects.filter(pipeline=OuterRef("pk")).order_by("-created_at", "-pk")
        # Subqueries, not Count() over a join: no GROUP BY, so the database computes the
        # columns for the rows of the page only.
        steps = PipelineStep.objects.filter(pipeline=OuterRef("pk")).order_by().values("pipeline")
        return self.annotate(
            step_count=Coalesce(Subquery(steps.annotate(n=Count("pk")).values("n")), 0),
            last_run_status=Subquery(latest.values("status")[:1]),
            last_run_at=Subquery(latest.values("created_at")[:1]),
        ).order_by("name")

    def for_list_page(self):
        """The run summary, plus the latest run's id and the earliest next scheduled tick.

        Every column of the pipelines page in one query, however many pipelines it shows.
        """
        latest = PipelineRun.objects.filter(pipeline=OuterRef("pk")).order_by("-created_at", "-pk")
        next_tick = PipelineSchedule.objects.filter(
            pipeline=OuterRef("pk"), enabled=True, next_tick_at__isnull=False
        ).order_by("next_tick_at")
        return self.with_run_summary().annotate(
            last_run_id=Subquery(latest.values("pk")[:1]),
            next_tick_at=Subquery(next_tick.values("next_tick_at")[:1]),
        )


class Pipeline(models.Model):
    """A named, ordered list of steps that an analyst runs and replays."""

    name = models.CharField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    mlflow_experiment = models.CharField(
        "MLflow experiment",
        max_length=200,
        blank=True,
        # Forms render help_text as HTML: escaped, <name> shows as typed.
        help_text="Experiment the runs are tracked in; defaults to pipeline/&lt;name&gt;.",
    )
    max_active_runs = models.PositiveSmallIntegerField(
        default=1,
        help_text="Runs of this pipeline that may be queued for a worker or running at once.",
    )
    concurrency_policy = models.CharField(
        max_length=10,
        choices=ConcurrencyPolicy,
        default=ConcurrencyPolicy.QUEUE,
        help_text="What a trigger does while the pipeline is at its active-run limit.",
    )
    timeout_seconds = models.PositiveIntegerField(
        null=True, blank=True, help_text="Stop a run after this long; empty uses the site default."
    )
    max_retries = models.PositiveSmallIntegerField(
        default=0, help_text="Run a failed run again this many times."
    )
    retry_backoff_seconds = models.PositiveIntegerField(
        default=30, help_text="Wait before the first retry; doubles for each later one."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = PipelineQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    def clean(self):
        from django.core.exceptions import ValidationError

        if self.max_active_runs < 1:
            raise ValidationError({"max_active_runs": "At least one run must be allowed."})
        # One worker task executes one attempt (a retry is a task of its own), and the
        # worker needs time after the run's own time limit to stop and tidy it up.
        if self.run_timeout >= settings.Q_TIMEOUT:
            raise ValidationError(
                {
                    "timeout_seconds": f"A run may take {self.run_timeout} s; it must stay under "
                    f"the worker task limit Q_TIMEOUT ({settings.Q_TIMEOUT} s)."
                }
            )

    @property
    def run_timeout(self) -> int:
        return self.timeout_seconds or settings.MLOPS_RUN_TIMEOUT

    def retry_delay(self, attempt: int) -> int:
        """Seconds to wait before attempt number `attempt` (2 is the first retry)."""
        return self.retry_backoff_seconds * 2 ** max(attempt - 2, 0)

    @property
    def experiment_name(self) -> str:
        return self.mlflow_experiment or f"pipeline/{self.name}"

    def definition(self) -> dict:
        """The pipeline as plain data: what a run freezes and what export writes."""
        return {
            "name": self.name,
            "description": self.description,
            "steps": [step.definition() for step in self.steps.all()],
        }


class PipelineVersion(models.Model):
    """One saved state of a pipeline's definition: what it was, who changed it, and what
    changed since the version before.

    `definition` is the pipeline as `services.export_pipeline` writes it (steps and run
    settings), so any version can be compared, shown or imported again.
    """

    pipeline = models.ForeignKey(Pipeline, related_name="versions", on_delete=models.CASCADE)
    number = models.PositiveIntegerField()
    definition = models.JSONField()
    summary = models.TextField(blank=True)
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        related_name="+",
        on_delete=models.SET_NULL,
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["pipeline", "-number"]
        constraints = [
            models.UniqueConstraint(
                fields=["pipeline", "number"], name="unique_pipeline_version_number"
            )
        ]

    def __str__(self):
        return f"{self.pipeline} version {self.number}"


class PipelineStep(models.Model):
    """One step of a pipeline: a registered step type with its parameters."""

    pipeline = models.ForeignKey(Pipeline, related_name="steps", on_delete=models.CASCADE)
    order = models.PositiveIntegerField()
    step_type = models.CharField(max_length=50)
    name = models.CharField(max_length=100, blank=True)
    params = models.JSONField(default=dict, blank=True)
    enabled = models.BooleanField(default=True)

    class Meta:
        ordering = ["pipeline", "order"]
        constraints = [
            models.UniqueConstraint(fields=["pipeline", "order"], name="unique_step_order")
        ]

    def __str__(self):
        return f"{self.order}. {self.name or self.step_type}"

    def definition(self) -> dict:
        return {
            "order": self.order,
            "type": self.step_type,
            "name": self.name,
            "params": self.params,
            "enabled": self.enabled,
        }


class PipelineRunQuerySet(models.QuerySet):
    def active(self):
        return self.filter(status__in=ACTIVE_RUN_STATUSES)

    def occupying(self):
        """Runs holding one of the pipeline's active slots: running, handed to a worker,
        or a retry waiting for its not-before time."""
        return self.filter(
            models.Q(status=RunStatus.RUNNING)
            | models.Q(status=RunStatus.QUEUED, dispatched_at__isnull=False)
            | models.Q(status=RunStatus.QUEUED, not_before__isnull=False)
        )

    def waiting(self):
        """Queued runs not yet handed to a worker because the pipeline was at its limit."""
        return self.filter(
            status=RunStatus.QUEUED, dispatched_at__isnull=True, not_before__isnull=True
        )

    def due_retries(self, now):
        """Retries whose not-before time has come and that no one has handed to a worker."""
        return self.filter(status=RunStatus.QUEUED, dispatched_at__isnull=True, not_before__lte=now)


class PipelineRun(models.Model):
    """One execution of a pipeline, with the frozen definition it ran."""

    pipeline = models.ForeignKey(Pipeline, related_name="runs", on_delete=models.CASCADE)
    status = models.CharField(max_length=20, choices=RunStatus, default=RunStatus.QUEUED)
    trigger = models.CharField(max_length=20, choices=RunTrigger, default=RunTrigger.MANUAL)
    started_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    definition = models.JSONField(default=dict, help_text="The steps exactly as this run ran them.")
    start_step = models.PositiveIntegerField(
        null=True, blank=True, help_text="Order of the step the run was asked to start from."
    )
    stop_step = models.PositiveIntegerField(
        null=True, blank=True, help_text="Order of the last step the run was asked to execute."
    )
    logs = models.TextField(blank=True)
    error_message = models.TextField(blank=True)
    error_traceback = models.TextField(blank=True)
    metrics = models.JSONField(default=dict, blank=True, encoder=FiniteJSONEncoder)
    mlflow_run_id = models.CharField("MLflow run id", max_length=64, blank=True)
    dispatched_at = models.DateTimeField(
        null=True, blank=True, help_text="When the run was handed to the task queue."
    )
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    cancel_requested = models.BooleanField(default=False)
    attempt = models.PositiveSmallIntegerField(default=1)
    retry_of = models.ForeignKey(
        "self", null=True, blank=True, related_name="retries", on_delete=models.SET_NULL
    )
    not_before = models.DateTimeField(
        null=True, blank=True, help_text="A retry waits in the queue until this time."
    )
    idempotency_key = models.CharField(
        max_length=255,
        blank=True,
        help_text="The Idempotency-Key of the API request that created the run.",
    )

    objects = PipelineRunQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [
            models.Index(fields=["pipeline", "status"]),
            models.Index(fields=["started_by", "idempotency_key"]),
            # The runs list and each pipeline's latest run read runs newest first.
            models.Index(fields=["-created_at", "-id"], name="run_newest_first"),
            models.Index(
                fields=["pipeline", "-created_at", "-id"], name="run_pipeline_newest_first"
            ),
            # The overview's runs per day (status) and durations (pipeline, times) of the
            # last 30 days are read from this index alone, without reading a run row.
            models.Index(
                fields=["created_at", "status", "pipeline", "started_at", "finished_at"],
                name="run_timeline",
            ),
        ]

    def __str__(self):
        return f"{self.pipeline} run #{self.pk}"

    @property
    def duration(self):
        if self.started_at and self.finished_at:
            return self.finished_at - self.started_at
        return None

    def append_log(self, message: str) -> None:
        """Append a timestamped line in the database and on this instance.

        The update concatenates in SQL so lines written by the engine are never lost
        to a concurrent save of another field.
        """
        line = f"[{timezone.now():%Y-%m-%d %H:%M:%S}] {message}\n"
        PipelineRun.objects.filter(pk=self.pk).update(logs=Concat(F("logs"), Value(line)))
        self.logs += line

    def claim(self) -> bool:
        """Move queued -> running; True only for the one caller whose update matched.

        A retry is not claimed before its not-before time, whoever delivers its task.
        """
        now = timezone.now()
        due = models.Q(not_before__isnull=True) | models.Q(not_before__lte=now)
        claimed = PipelineRun.objects.filter(due, pk=self.pk, status=RunStatus.QUEUED).update(
            status=RunStatus.RUNNING, started_at=now
        )
        if claimed:
            self.status, self.started_at = RunStatus.RUNNING, now
        return claimed == 1

    def mark_succeeded(self, metrics: dict) -> bool:
        return self._finish(RunStatus.SUCCEEDED, metrics=metrics)

    def mark_failed(self, message: str, traceback: str = "") -> bool:
        return self._finish(RunStatus.FAILED, error_message=message, error_traceback=traceback)

    def mark_cancelled(self, message: str) -> bool:
        return self._finish(RunStatus.CANCELLED, error_message=message)

    def beat(self) -> None:
        """Record that the worker running this run is alive."""
        PipelineRun.objects.filter(pk=self.pk).update(heartbeat_at=timezone.now())

    def cancel_was_requested(self) -> bool:
        return PipelineRun.objects.filter(pk=self.pk, cancel_requested=True).exists()

    def _finish(self, status: str, **fields) -> bool:
        """End an active run; False when it had already ended (e.g. reaped or cancelled)."""
        fields.update(status=status, finished_at=timezone.now())
        ended = PipelineRun.objects.filter(pk=self.pk, status__in=ACTIVE_RUN_STATUSES).update(
            **fields
        )
        if ended:
            for name, value in fields.items():
                setattr(self, name, value)
        else:
            self.refresh_from_db()
        return bool(ended)


class StepRun(models.Model):
    """What one step did in one run: status, timing, shape in and out, cache key."""

    run = models.ForeignKey(PipelineRun, related_name="step_runs", on_delete=models.CASCADE)
    order = models.PositiveIntegerField()
    step_type = models.CharField(max_length=50)
    name = models.CharField(max_length=100, blank=True)
    status = models.CharField(max_length=20, choices=StepRunStatus)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    rows_in = models.PositiveBigIntegerField(null=True, blank=True)
    columns_in = models.PositiveIntegerField(null=True, blank=True)
    rows_out = models.PositiveBigIntegerField(null=True, blank=True)
    columns_out = models.PositiveIntegerField(null=True, blank=True)
    fingerprint = models.CharField(max_length=64, blank=True)
    summary = models.JSONField(default=dict, blank=True, encoder=FiniteJSONEncoder)

    class Meta:
        ordering = ["run", "order"]
        constraints = [
            models.UniqueConstraint(fields=["run", "order"], name="unique_step_run_order")
        ]

    def __str__(self):
        return f"{self.run} step {self.order} ({self.status})"

    @property
    def duration(self):
        if self.started_at and self.finished_at:
            return self.finished_at - self.started_at
        return None


class RunOutput(models.Model):
    """What one step of a run wrote: a dataset version or rows of a data source table.

    The save steps record it as they write, whatever they write, so every dataset
    version and table a run produced can be found from the run (and a dataset version's
    run from the version). `model_uri` is the fixed MLflow URI of the model whose
    predictions the rows hold (`models:/<name>/<version>` for a registered model), empty
    when the step saved data. `dataset_label` and `datasource` are kept as text: the page
    still says what was written after the dataset or the source is deleted.
    """

    class Kind(models.TextChoices):
        DATASET = "dataset", "Dataset"
        TABLE = "table", "Table"

    run = models.ForeignKey(PipelineRun, related_name="outputs", on_delete=models.CASCADE)
    step_order = models.PositiveIntegerField()
    kind = models.CharField(max_length=10, choices=Kind)
    dataset = models.ForeignKey(
        "datasources.Dataset",
        null=True,
        blank=True,
        related_name="run_outputs",
        on_delete=models.SET_NULL,
    )
    dataset_label = models.CharField(max_length=120, blank=True)
    datasource = models.CharField("data source", max_length=100, blank=True)
    table = models.CharField(max_length=255, blank=True)
    mode = models.CharField(max_length=10, blank=True)
    rows = models.PositiveBigIntegerField(null=True, blank=True)
    model_uri = models.CharField("model URI", max_length=500, blank=True)
    lineage_columns = models.BooleanField(
        default=False, help_text="Whether the rows carry the mlops_run_id and mlops_model_uri."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["run", "step_order", "pk"]

    def __str__(self):
        written = self.dataset_label or f"{self.datasource}.{self.table}"
        return f"{self.run} step {self.step_order} wrote {written}"


class PipelineSchedule(models.Model):
    """Runs a pipeline on a cron expression (in a time zone) or at a fixed interval."""

    pipeline = models.ForeignKey(Pipeline, related_name="schedules", on_delete=models.CASCADE)
    cron = models.CharField(max_length=100, blank=True, help_text='e.g. "0 6 * * *"')
    timezone = models.CharField(max_length=64, default="UTC")
    interval_seconds = models.PositiveIntegerField(null=True, blank=True)
    enabled = models.BooleanField(default=True)
    overlap_policy = models.CharField(
        max_length=10,
        choices=OverlapPolicy,
        default=OverlapPolicy.SKIP,
        help_text="What a tick does while a run of the pipeline is active.",
    )
    catch_up = models.CharField(
        max_length=10,
        choices=CatchUpPolicy,
        default=CatchUpPolicy.NONE,
        help_text="What happens to ticks missed while no scheduler was running.",
    )
    next_tick_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["pipeline", "pk"]

    def __str__(self):
        every = (
            f"cron {self.cron} ({self.timezone})"
            if self.cron
            else f"every {self.interval_seconds}s"
        )
        return f"{self.pipeline} {every}"

    def save(self, *args, **kwargs):
        """Give a new schedule (or one whose next tick was cleared) its next tick."""
        if self.next_tick_at is None and (self.cron or self.interval_seconds):
            from pipelines.schedules import next_tick

            self.next_tick_at = next_tick(self, timezone.now())
            if kwargs.get("update_fields") is not None:
                kwargs["update_fields"] = {*kwargs["update_fields"], "next_tick_at"}
        super().save(*args, **kwargs)

    def clean(self):
        from pipelines.schedules import validate_schedule

        validate_schedule(self.cron, self.timezone, self.interval_seconds)


class ScheduleTick(models.Model):
    """One tick of a schedule: the run it started, or why it was skipped.

    The unique (schedule, tick_at) constraint is what makes a tick fire once even when
    two schedulers evaluate it at the same moment.
    """

    schedule = models.ForeignKey(PipelineSchedule, related_name="ticks", on_delete=models.CASCADE)
    tick_at = models.DateTimeField()
    outcome = models.CharField(max_length=10, choices=TickOutcome)
    reason = models.CharField(max_length=255, blank=True)
    run = models.ForeignKey(
        PipelineRun, null=True, blank=True, related_name="ticks", on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-tick_at"]
        constraints = [
            models.UniqueConstraint(fields=["schedule", "tick_at"], name="unique_schedule_tick")
        ]

    def __str__(self):
        local = self.tick_at.astimezone(ZoneInfo(self.schedule.timezone))
        return f"{self.schedule} @ {local:%Y-%m-%d %H:%M %Z} {self.outcome}"


class ApiToken(AbstractAuthToken):
    """An API token (django-rest-knox's, as `KNOX_TOKEN_MODEL`), named for its integration.

    Only a digest of the token is stored; the token itself is shown once, when it is made.
    """

    # An id to list and revoke a token by: the digest, knox's primary key, stays private.
    id = models.BigAutoField(primary_key=True)
    digest = models.CharField(max_length=128, unique=True)
    name = models.CharField(max_length=100, help_text="What the token is for, e.g. ci-deploy.")

    class Meta:
        ordering = ["-created"]

    def __str__(self):
        return f"{self.name} ({self.token_key}…) of {self.user}"
