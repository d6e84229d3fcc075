"""Analyst pages for pipelines.

Runs start through `pipelines.runs.start_run`, the same function every other trigger uses.
"""

from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from pipelines.choices import RunTrigger
from pipelines.models import Pipeline
from pipelines.runs import PipelineBusy, start_run
from pipelines.validation import PipelineInvalid


@login_required
def pipeline_list(request):
    pipelines = Pipeline.objects.with_run_summary()
    return render(request, "pipelines/pipeline_list.html", {"pipelines": pipelines})


@require_POST
@login_required
@permission_required("pipelines.add_pipelinerun", raise_exception=True)
def run_pipeline(request, pk):
    pipeline = get_object_or_404(Pipeline, pk=pk)
    outcome = {"pipeline": pipeline, "run": None, "refusal": "", "errors": []}
    try:
        outcome["run"] = start_run(pipeline, trigger=RunTrigger.MANUAL, user=request.user)
    except PipelineBusy as exc:
        outcome["refusal"] = str(exc)
    except PipelineInvalid as exc:
        outcome["errors"] = exc.errors
    if request.htmx:
        return render(request, "pipelines/htmx/run_outcome.html", outcome)
    _add_message(request, **outcome)
    return redirect("pipelines:list")


def _add_message(request, pipeline, run, refusal, errors) -> None:
    if run is not None:
        messages.success(request, f"Run #{run.pk} of {pipeline} queued.")
    else:
        problem = refusal or "; ".join(str(error) for error in errors)
        messages.error(request, f"{pipeline} was not started: {problem}")
