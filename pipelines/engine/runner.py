"""PipelineEngine: runs a run's frozen steps in order over a shared context."""

import traceback
import warnings
from dataclasses import dataclass

from django.conf import settings
from django.utils import timezone

from experiments import tracking
from mlops_site import db_retry
from pipelines.choices import StepRunStatus
from pipelines.engine.cache import CacheRefused, Fingerprint, StepCache
from pipelines.engine.context import frame_shape, output_key
from pipelines.engine.registry import Context, StepType, get_step_type
from pipelines.models import PipelineRun, StepRun

# Distinct warnings of one step shown in its summary and the run's log.
MAX_WARNINGS = 5


@dataclass
class PlannedStep:
    definition: dict
    step_type: StepType
    params: object
    fingerprint: Fingerprint

    @property
    def order(self) -> int:
        return self.definition["order"]

    @property
    def label(self) -> str:
        return f"step {self.order} ({self.definition.get('name') or self.step_type.slug})"


def plan_steps(definition: dict) -> list[PlannedStep]:
    """The enabled steps in order, with validated params and chained fingerprints."""
    planned, upstream = [], ""
    steps = [step for step in definition["steps"] if step.get("enabled", True)]
    for step in sorted(steps, key=lambda s: s["order"]):
        step_type = get_step_type(step["type"])
        params = step_type.Params.model_validate(step.get("params", {}))
        fingerprint = Fingerprint(
            step_type=step["type"],
            params=step.get("params", {}),
            upstream=upstream,
            source=step_type.source_version(params),
        )
        planned.append(PlannedStep(step, step_type, params, fingerprint))
        upstream = fingerprint.digest
    return planned


class PipelineEngine:
    """Executes one PipelineRun, recording a StepRun per step and one MLflow run."""

    def __init__(self, run: PipelineRun, cache: StepCache | None = None):
        self.run = run
        self.cache = cache or StepCache(run.pipeline_id)
        self.stop_at: int | None = None

    def execute(self, start_at: int | None = None, stop_at: int | None = None) -> PipelineRun:
        """Run the steps from `start_at` (reusing fresh caches before it) to `stop_at`.

        Without `stop_at` the run's own `stop_step` applies, so every caller (the worker's
        child process too) honours the range the run was started with.
        """
        run = self.run
        tracked = None
        self.stop_at = stop_at if stop_at is not None else run.stop_step
        try:
            steps = plan_steps(run.definition)
            last = self._stop_point(steps)
            first, context = self._resume_point(steps[:last], start_at)
            tracked = self._start_tracking()
            tracked.log_params(tracking.flatten_params([s.definition for s in steps]))
            for step in steps[first:last]:
                if db_retry.call(run.cancel_was_requested):
                    raise RunCancelled(step)
                context = self._run_step(step, context, tracked)
            if last < len(steps):
                self._log(f"Stopped after step {self.stop_at} as asked.")
            metrics = context.get("metrics", {})
            if db_retry.call(run.mark_succeeded, metrics):
                self._log(f"Run succeeded. Metrics: {_format_metrics(metrics)}")
        except RunCancelled as exc:
            self._skip_remaining(exc.step.order)
            if db_retry.call(run.mark_cancelled, f"Cancelled before {exc.step.label}."):
                self._log(f"Run cancelled before {exc.step.label}; finished steps are kept.")
        except Exception as exc:
            self._fail(exc)
        finally:
            if tracked:
                tracked.end(succeeded=run.status == "succeeded")
        return run

    def _resume_point(self, steps: list[PlannedStep], start_at: int | None) -> tuple[int, Context]:
        """Index of the first step to execute and the context it starts from."""
        if start_at is None:
            self._log(f"Running {len(steps)} step(s).")
            self._log_source_reads(steps)
            return 0, {}
        target = next((i for i, s in enumerate(steps) if s.order >= start_at), len(steps))
        first = target
        for index, step in enumerate(steps[:target]):
            state = self.cache.state(step.order, step.fingerprint)
            if not state.fresh:
                self._log(f"Cache of {step.label} is stale: {state.reason}.")
                first = index
                break
            if not self._source_unchanged(step, state.meta):
                first = index
                break
        if target == 0:
            self._log_source_reads(steps)
        context: Context = {}
        if first > 0:
            try:
                context = self.cache.load(steps[first - 1].order, steps[first - 1].fingerprint)
            except CacheRefused as exc:
                self._log(f"{exc}; running every step.")
                first = 0
        for step in steps[:first]:
            self._record_reused(step)
        start_label = steps[first].label if first < len(steps) else "the end"
        self._log(f"Starting from {start_label}.")
        return first, context

    def _stop_point(self, steps: list[PlannedStep]) -> int:
        """Index just past the last step to execute: the stop step's, or the end."""
        if self.stop_at is None:
            return len(steps)
        last = next((i for i, s in enumerate(steps) if s.order > self.stop_at), len(steps))
        if last < len(steps):
            self._log(f"Running up to step {self.stop_at}; later steps are left as they are.")
        return last

    def _log_source_reads(self, steps: list[PlannedStep]) -> None:
        for step in steps:
            if step.step_type.reads_live_source:
                self._log(
                    f"{step.label}: re-read: a run from the first step always reads its source."
                )

    def _source_unchanged(self, step: PlannedStep, meta: dict) -> bool:
        """Whether a replay may reuse the cached read of a step reading a database; only
        asked here, when its cache would be reused, so pages never query a source."""
        if not step.step_type.reads_live_source:
            return True
        check = step.step_type.check_source(step.params, meta.get("source") or {})
        verdict = "reused" if check.reuse else "re-read"
        self._log(f"{step.label}: {verdict}: {check.reason}.")
        return check.reuse

    def _inspect(self, step: PlannedStep, context: Context) -> None:
        """Have the inspector's profile of the cached output written: by a worker, off
        this run's path, or here when settings say so (tests, a single process)."""
        digest = step.fingerprint.digest
        try:
            if settings.MLOPS_INSPECT_IN_BACKGROUND:
                from django_q.tasks import async_task

                pipeline_id = self.run.pipeline_id
                async_task("pipelines.tasks.inspect_step_cache", pipeline_id, step.order, digest)
            else:
                self.cache.add_inspection(step.order, digest, context)
        except Exception as exc:  # noqa: BLE001  (the inspector's copy never fails a run)
            self._log(f"{step.label}: the inspector's profile was not prepared: {exc}")

    def _log(self, message: str) -> None:
        db_retry.call(self.run.append_log, message)

    def _create_step_run(self, **fields) -> StepRun:
        """Insert a StepRun, waiting out a database outage. An insert whose reply was
        lost may have committed: a later attempt takes the row it finds."""
        attempts = 0

        def create() -> StepRun:
            nonlocal attempts
            attempts += 1
            found = attempts > 1 and self.run.step_runs.filter(order=fields["order"]).first()
            return found or StepRun.objects.create(run=self.run, **fields)

        return db_retry.call(create)

    def _record_reused(self, step: PlannedStep) -> None:
        summary = (self.cache.read_meta(step.order) or {}).get("summary", {})
        self._create_step_run(
            order=step.order,
            step_type=step.step_type.slug,
            name=step.definition.get("name", ""),
            status=StepRunStatus.REUSED,
            rows_out=summary.get("rows"),
            columns_out=summary.get("columns"),
            fingerprint=step.fingerprint.digest,
            summary=summary,
        )
        self._log(f"Reused the cached output of {step.label}.")

    def _start_tracking(self) -> tracking.TrackedRun:
        run = self.run
        tracked = tracking.TrackedRun.start(
            experiment=run.pipeline.experiment_name,
            run_name=f"{run.pipeline.name} #{run.pk}",
            tags={
                "mlops.pipeline_id": str(run.pipeline_id),
                "mlops.pipeline": run.pipeline.name,
                "mlops.run_id": str(run.pk),
                "mlops.trigger": run.trigger,
            },
        )
        run.mlflow_run_id = tracked.run_id
        db_retry.call(type(run).objects.filter(pk=run.pk).update, mlflow_run_id=tracked.run_id)
        return tracked

    def _run_step(self, step: PlannedStep, context: Context, tracked) -> Context:
        rows_in, columns_in = frame_shape(context)
        step_run = self._create_step_run(
            order=step.order,
            step_type=step.step_type.slug,
            name=step.definition.get("name", ""),
            status=StepRunStatus.RUNNING,
            started_at=timezone.now(),
            rows_in=rows_in,
            columns_in=columns_in,
            fingerprint=step.fingerprint.digest,
        )
        self._log(f"Running {step.label}.")
        inputs = context.get("data")
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                context = step.step_type.run(dict(context), step.params, self._step_log(step))
            rows_out, columns_out = frame_shape(context, output_key(step.step_type.produces))
            summary = {"rows": rows_out, "columns": columns_out, **context.pop("_summary", {})}
            source = context.pop("_source", None)
            self._report_warnings(step, caught, summary)
            self._track_outputs(step, context, inputs, summary, tracked)
            self.cache.save(step.order, context, step.fingerprint, summary, source)
            self._inspect(step, context)
        except Exception as exc:
            step_run.status = StepRunStatus.FAILED
            step_run.summary = {"error": str(exc)}
            step_run.finished_at = timezone.now()
            db_retry.call(step_run.save)
            raise StepFailed(step, exc) from exc
        step_run.status = StepRunStatus.SUCCEEDED
        step_run.rows_out, step_run.columns_out = rows_out, columns_out
        step_run.summary = summary
        step_run.finished_at = timezone.now()
        db_retry.call(step_run.save)
        self._log(f"Finished {step.label}: {_format_shape(rows_out, columns_out)}.")
        return context

    def _report_warnings(self, step: PlannedStep, caught: list, summary: dict) -> None:
        """Show the warnings a step raised (a model that did not converge, dates parsed
        one by one...) in the run's log and the step's summary, not on a worker's stderr."""
        messages = list(dict.fromkeys(str(warning.message) for warning in caught))
        if not messages:
            return
        summary["warnings"] = messages[:MAX_WARNINGS]
        for message in summary["warnings"]:
            self._log(f"{step.label}: warning: {message}")
        if len(messages) > MAX_WARNINGS:
            self._log(f"{step.label}: {len(messages) - MAX_WARNINGS} more warning(s).")

    def _step_log(self, step: PlannedStep):
        def log(message: str) -> None:
            self._log(f"{step.label}: {message}")

        return log

    def _track_outputs(self, step: PlannedStep, context: Context, inputs, summary, tracked):
        """Log what a step produced that MLflow keeps: metrics, artifacts, search trials
        and the fitted model. Artifacts and trials are popped: they are not cached.

        The model's input example comes from the rows the step was given: a step may
        replace its feature columns in the data it passes on (PCA in replace mode).
        """
        if "metrics" in step.step_type.produces and context.get("metrics"):
            tracked.log_metrics(context["metrics"])
        artifacts = context.pop("_artifacts", None)
        if artifacts:
            summary["artifacts"] = tracked.log_artifacts(f"step_{step.order}", artifacts)
        trials = context.pop("_trials", None)
        if trials:
            tracked.log_trials(step.label, trials)
        curves = context.pop("_curves", None)
        if curves:
            tracked.log_curves(curves)
        if "model" in step.step_type.produces:
            model = context["model"]
            rows = inputs if inputs is not None else context["data"]
            example = rows[list(model.feature_names_in_)].head(5)
            context["model_uri"] = tracked.log_sklearn_model(model, example)
            self._log(f"{step.label}: model logged to MLflow as {context['model_uri']}")

    def _fail(self, exc: Exception) -> None:
        run = self.run
        if isinstance(exc, StepFailed):
            message = f"{exc.step.label} failed: {exc.__cause__}"
            trace = "".join(traceback.format_exception(exc.__cause__))
        else:
            message = f"{type(exc).__name__}: {exc}"
            trace = traceback.format_exc()
        self._skip_remaining(exc.step.order if isinstance(exc, StepFailed) else None)
        if db_retry.call(run.mark_failed, message, trace):
            self._log(f"Run failed: {message}")

    def _skip_remaining(self, failed_order: int | None) -> None:
        done = set(db_retry.call(list, self.run.step_runs.values_list("order", flat=True)))
        for step in self.run.definition.get("steps", []):
            if step["order"] in done or not step.get("enabled", True):
                continue
            if self.stop_at is not None and step["order"] > self.stop_at:
                continue  # never meant to run: nothing is recorded for it
            if failed_order is not None and step["order"] < failed_order:
                continue
            self._create_step_run(
                order=step["order"],
                step_type=step["type"],
                name=step.get("name", ""),
                status=StepRunStatus.SKIPPED,
            )


class RunCancelled(Exception):
    def __init__(self, step: PlannedStep):
        self.step = step


class StepFailed(Exception):
    def __init__(self, step: PlannedStep, cause: Exception):
        self.step = step
        super().__init__(str(cause))


def _format_metrics(metrics: dict) -> str:
    return ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()) or "none"


def _format_shape(rows, columns) -> str:
    return f"{rows} rows x {columns} columns" if rows is not None else "done"
