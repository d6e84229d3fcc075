from django.contrib.auth.decorators import login_required
from django.shortcuts import render

from dashboards.services import overview_data


@login_required
def overview(request):
    return render(request, "dashboards/overview.html", overview_data())
