"""Writes a PNG of each main page into docs/screenshots/ (run: pytest -m screenshots).

Not part of the default run (pytest.ini deselects the marker): it rewrites files in the
checkout. The pages show the demo pipelines after one real run of the classifier.
"""

from pathlib import Path

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from pipelines.demo import seed_demo
from pipelines.models import Pipeline
from pipelines.runs import start_run
from pipelines.tests.browser import PASSWORD, chromium_page, log_in

OUT = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


@pytest.mark.screenshots
@pytest.mark.django_db(transaction=True)
def test_write_a_screenshot_of_each_main_page(live_server, django_user_model, monkeypatch):
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    seed_demo()
    classifier = Pipeline.objects.get(name="breast-cancer-classifier")
    run = start_run(classifier, wait=True)
    analyst = django_user_model.objects.create_user("analyst", password=PASSWORD)
    analyst.user_permissions.add(
        *Permission.objects.filter(content_type__app_label__in=["pipelines", "datasources"])
    )
    pages = {
        "pipelines": reverse("pipelines:list"),
        "pipeline-editor": reverse("pipelines:detail", args=[classifier.pk]),
        "runs": reverse("runs:list"),
        "run": reverse("runs:detail", args=[run.pk]),
        "pipeline-settings": reverse("pipelines:settings", args=[classifier.pk]),
        "pipeline-history": reverse("pipelines:history", args=[classifier.pk]),
        "overview": reverse("dashboards:overview"),
        "datasets": reverse("data:dataset_list"),
        "dataset": reverse("data:dataset_detail", args=["breast-cancer"]),
    }
    OUT.mkdir(parents=True, exist_ok=True)
    with chromium_page() as page:
        log_in(page, live_server.url, "analyst")
        for name, path in pages.items():
            page.goto(f"{live_server.url}{path}")
            page.wait_for_load_state("networkidle")
            page.screenshot(path=OUT / f"{name}.png", full_page=True)

    assert {p.stem for p in OUT.glob("*.png")} >= set(pages)
