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
    TRAINING = "training", "Training"
    PREDICTION = "prediction", "Prediction"
    SAVE = "save", "Save"
