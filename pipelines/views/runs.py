"""Analyst pages for runs: the list, a run with live progress, cancel and run again.

The views parse the request, call `pipelines.progress` or `pipelines.runs`, and pick a
template; an HTMX request gets the fragment it swaps.
"""

from django import forms
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.cache import patch_vary_headers
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST
from django_htmx.http import HTMX_STOP_POLLING

from mlops_site.htmx import htmx_partial
from mlops_site.permissions import permission_needed
from mlops_site.widgets import CompactSelect
from pipelines.choices import RunStatus, RunTrigger
from pipelines.lineage import run_lineage
from pipelines.models import Pipeline, PipelineRun
from pipelines.progress import definition_diff, filter_runs, run_page, run_progress
from pipelines.runs import PipelineBusy, cancel_run, rerun
from pipelines.validation import PipelineInvalid

CANCEL_OUTCOMES = {
    "cancelled": (messages.SUCCESS, "Run #{pk} was cancelled before it started."),
    "cancelling": (messages.INFO, "Run #{pk} is cancelling: it stops before its next step."),
    "finished": (messages.WARNING, "Run #{pk} had already finished; nothing was cancelled."),
}


class RunFilterForm(forms.Form):
    pipeline = forms.ModelChoiceField(
        Pipeline.objects.only("pk", "name"),
        required=False,
        empty_label="All pipelines",
        widget=CompactSelect,
    )
    status = forms.ChoiceField(choices=[("", "Any status"), *RunStatus.choices], required=False)
    trigger = forms.ChoiceField(choices=[("", "Any trigger"), *RunTrigger.choices], required=False)
    user = forms.ModelChoiceField(
        get_user_model().objects.filter(pipelinerun__isnull=False).distinct(),
        required=False,
        empty_label="Anyone",
        label="Started by",
        widget=CompactSelect,
    )
    created_from = forms.DateField(
        required=False, label="From", widget=forms.DateInput(attrs={"type": "date"})
    )
    created_to = forms.DateField(
        required=False, label="To", widget=forms.DateInput(attrs={"type": "date"})
    )

    def filters(self) -> dict:
        """The filters that are valid; an invalid one is shown with its error and ignored."""
        self.is_valid()
        return {name: value for name, value in self.cleaned_data.items() if value}


@login_required
def run_list(request):
    form = RunFilterForm(request.GET)
    filters = form.filters()
    asked = request.GET.get("page", "")
    page = run_page(filter_runs(**filters), asked)
    context = {
        "form": form,
        "page": page,
        "filtered": bool(filters),
        "page_note": asked and asked != str(page.number),
    }
    template = (
        "pipelines/htmx/run_table.html" if htmx_partial(request) else "pipelines/run_list.html"
    )
    response = render(request, template, context)
    patch_vary_headers(response, ["HX-Request"])
    return response


def _run_or_404(pk) -> PipelineRun:
    runs = PipelineRun.objects.select_related("pipeline", "started_by").defer("logs")
    return get_object_or_404(runs, pk=pk)


@never_cache
@login_required
def run_detail(request, pk):
    run = _run_or_404(pk)
    progress = run_progress(run)
    if htmx_partial(request) and request.htmx.target == "lineage":
        return _lineage(request, run, progress)
    if htmx_partial(request):
        return render(request, "pipelines/htmx/run_progress.html", {"progress": progress})
    context = {
        "run": run,
        "progress": progress,
        "lineage": run_lineage(run, progress.step_runs),
        "diff": definition_diff(run.definition, run.pipeline.definition()),
    }
    response = render(request, "pipelines/run_detail.html", context)
    patch_vary_headers(response, ["HX-Request"])
    return response


def _lineage(request, run, progress):
    """The lineage section, polled while the run runs: it grows as steps finish."""
    context = {"run": run, "progress": progress, "lineage": run_lineage(run, progress.step_runs)}
    response = render(request, "pipelines/htmx/run_lineage.html", context)
    if progress.finished:
        response.status_code, response.reason_phrase = HTMX_STOP_POLLING, "Stop Polling"
    return response


@never_cache
@login_required
def progress(request, pk):
    """The polled fragment: state and steps, plus the log lines after `after`."""
    run = _run_or_404(pk)
    after = request.GET.get("after", "0")
    progress = run_progress(run, int(after) if after.isdigit() else 0)
    context = {"progress": progress, "poll": True}
    response = render(request, "pipelines/htmx/run_progress.html", context)
    if progress.finished:
        # After this final state htmx stops polling.
        response.status_code, response.reason_phrase = HTMX_STOP_POLLING, "Stop Polling"
    return response


@login_required
@permission_needed("pipelines.change_pipelinerun", "cancel runs")
def cancel(request, pk):
    """GET: a confirmation page (no JavaScript needed); POST: cancel the run."""
    run = _run_or_404(pk)
    if request.method != "POST":
        return render(request, "pipelines/run_cancel.html", {"run": run})
    level, text = CANCEL_OUTCOMES[cancel_run(run)]
    text = text.format(pk=run.pk)
    if request.htmx:
        context = {"level": messages.DEFAULT_TAGS[level], "text": text}
        return render(request, "pipelines/htmx/run_action_outcome.html", context)
    messages.add_message(request, level, text)
    return redirect("runs:detail", run.pk)


@require_POST
@login_required
@permission_needed("pipelines.add_pipelinerun", "start runs")
def run_again(request, pk):
    """Start a new run of the pipeline from the same step, and open it."""
    run = _run_or_404(pk)
    try:
        new = rerun(run, trigger=RunTrigger.MANUAL, user=request.user)
    except (PipelineBusy, PipelineInvalid) as exc:
        messages.error(request, f"{run.pipeline} was not started: {exc}")
        return redirect("runs:detail", run.pk)
    messages.success(request, f"Run #{new.pk} of {run.pipeline} queued.")
    return redirect("runs:detail", new.pk)
