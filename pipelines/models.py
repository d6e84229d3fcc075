from django.conf import settings
from django.db import models
from django.db.models import F, Value
from django.db.models.functions import Concat
from django.utils import timezone

from pipelines.choices import ACTIVE_RUN_STATUSES, RunStatus, RunTrigger, StepRunStatus


class PipelineQuerySet(models.QuerySet):
    def get_by_reference(self, reference: str) -> "Pipeline":
        """A pipeline by name, or by id when no pipeline has that name."""
        found = self.filter(name=reference).first()
        if found is None and str(reference).isdigit():
            found = self.filter(pk=int(reference)).first()
        if found is None:
            raise Pipeline.DoesNotExist(f"no pipeline named or numbered {reference!r}")
        return found


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
        help_text="Experiment the runs are tracked in; defaults to pipeline/<name>.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = PipelineQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

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
    logs = models.TextField(blank=True)
    error_message = models.TextField(blank=True)
    error_traceback = models.TextField(blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    mlflow_run_id = models.CharField("MLflow run id", max_length=64, blank=True)

    objects = PipelineRunQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["pipeline", "status"])]

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
        """Move queued -> running; True only for the one caller whose update matched."""
        now = timezone.now()
        claimed = PipelineRun.objects.filter(pk=self.pk, status=RunStatus.QUEUED).update(
            status=RunStatus.RUNNING, started_at=now
        )
        if claimed:
            self.status, self.started_at = RunStatus.RUNNING, now
        return claimed == 1

    def mark_succeeded(self, metrics: dict) -> None:
        self._finish(RunStatus.SUCCEEDED, metrics=metrics)

    def mark_failed(self, message: str, traceback: str = "") -> None:
        self._finish(RunStatus.FAILED, error_message=message, error_traceback=traceback)

    def _finish(self, status: str, **fields) -> None:
        fields.update(status=status, finished_at=timezone.now())
        for name, value in fields.items():
            setattr(self, name, value)
        PipelineRun.objects.filter(pk=self.pk).update(**fields)


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
    summary = models.JSONField(default=dict, blank=True)

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
