from django.db import models


class RunStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


ACTIVE_RUN_STATUSES = (RunStatus.QUEUED, RunStatus.RUNNING)


class RunTrigger(models.TextChoices):
    MANUAL = "manual", "Manual"
    API = "api", "API"
    SCHEDULE = "schedule", "Schedule"
    COMMAND = "command", "Command"


class StepRunStatus(models.TextChoices):
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    REUSED = "reused", "Reused from cache"
    SKIPPED = "skipped", "Skipped"


class StepKind(models.TextChoices):
    EXTRACTION = "extraction", "Extraction"
    PREPROCESSING = "preprocessing", "Preprocessing"
    FEATURES = "features", "Features"
    ANALYSIS = "analysis", "Analysis"
    TRAINING = "training", "Training"
    PREDICTION = "prediction", "Prediction"
    SAVE = "save", "Save"


class ConcurrencyPolicy(models.TextChoices):
    QUEUE = "queue", "Queue the new run"
    REFUSE = "refuse", "Refuse the new run"


class OverlapPolicy(models.TextChoices):
    SKIP = "skip", "Skip the tick"
    QUEUE = "queue", "Queue a run"


class CatchUpPolicy(models.TextChoices):
    NONE = "none", "None: skip ticks missed while down"
    LATEST = "latest", "Latest: run the last missed tick"
    ALL = "all", "All: run every missed tick"


class TickOutcome(models.TextChoices):
    STARTED = "started", "Started a run"
    SKIPPED = "skipped", "Skipped"
