from django.contrib.auth.decorators import login_required
from django.shortcuts import render

from dashboards import overview as service
from mlops_site.htmx import htmx_partial


@login_required
def overview(request):
    """The operations overview; an HTMX request for `?section=now|runs|models` gets that
    section's fragment (each section polls for itself every 30 s)."""
    name = request.GET.get("section")
    if htmx_partial(request) and name in service.SECTIONS:
        return render(
            request, f"dashboards/htmx/overview_{name}.html", {name: service.section(name)}
        )
    return render(request, "dashboards/overview.html", service.overview())
