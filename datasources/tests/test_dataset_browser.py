"""The dataset upload page in a real browser: Debian's Chromium driven by Playwright.

The upload goes through static/js/upload.js (XMLHttpRequest with upload progress events),
throttled by a CDP network condition so that the progress bar has time to move.
"""

import pytest
from django.contrib.auth.models import Permission

from datasources.models import Dataset
from pipelines.tests.browser import PASSWORD, chromium_page, log_in

# Chromium's DevTools throttle: bytes per second, so ~5 MB takes a few seconds.
UPLOAD_BYTES_PER_SECOND = 2 * 1024 * 1024
# Reports every value the <progress> bar takes to the test; survives the page change.
WATCH_PROGRESS = """
document.addEventListener("DOMContentLoaded", () => {
  const bar = document.querySelector("form[data-upload] progress");
  if (!bar) return;
  new MutationObserver(() => window.reportProgress(bar.value, bar.textContent))
    .observe(bar, {attributes: true, childList: true});
});
"""


@pytest.fixture
def analyst(django_user_model):
    user = django_user_model.objects.create_user("analyst", password=PASSWORD)
    user.user_permissions.add(Permission.objects.get(codename="add_dataset"))
    return user


@pytest.fixture
def big_csv(tmp_path):
    path = tmp_path / "measures.csv"
    lines = ["sensor,reading,label"] + [f"{i},{i * 0.5},name-{i % 97}" for i in range(225_000)]
    path.write_text("\n".join(lines) + "\n")
    assert 4_500_000 < path.stat().st_size < 6_000_000
    return path


def test_upload_of_a_5_mb_csv_shows_progress_then_the_new_version(
    live_server, analyst, big_csv, monkeypatch
):
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    seen = []
    with chromium_page() as page:
        page.set_default_timeout(60_000)
        page.expose_function("reportProgress", lambda value, text: seen.append((value, text)))
        page.add_init_script(WATCH_PROGRESS)
        log_in(page, live_server.url, "analyst", next_path="/data/datasets/upload/")
        cdp = page.context.new_cdp_session(page)
        cdp.send("Network.enable")
        cdp.send(
            "Network.emulateNetworkConditions",
            {
                "offline": False,
                "latency": 0,
                "downloadThroughput": -1,
                "uploadThroughput": UPLOAD_BYTES_PER_SECOND,
            },
        )

        page.fill("#id_name", "measures")
        page.set_input_files("#id_file", str(big_csv))
        page.click("form[data-upload] button[type=submit]")
        page.locator(".upload-progress").wait_for(state="visible")
        page.wait_for_url("**/data/datasets/view/measures/?version=1")
        page.get_by_role("heading", name="Preview of v1").wait_for()

        values = [value for value, _ in seen]
        assert values[-1] == 100, seen
        assert any(0 < value < 100 for value in values), seen  # it moved on the way
        assert values == sorted(values)
        assert page.locator("table.preview tbody tr").count() == 20
        assert page.locator("table.preview tbody tr").first.inner_text().split("\t")[:3] == [
            "1",
            "0",
            "0.0",
        ]
        assert "225,000 rows" in page.content()

    dataset = Dataset.objects.get(name="measures")
    assert (dataset.row_count, dataset.size_bytes) == (225_000, big_csv.stat().st_size)


def test_a_refused_file_shows_the_reason_in_place(live_server, analyst, tmp_path, monkeypatch):
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    bad = tmp_path / "bad.csv"
    bad.write_bytes("name\ncafé\n".encode() + "thé\n".encode("cp1252"))
    with chromium_page() as page:
        log_in(page, live_server.url, "analyst", next_path="/data/datasets/upload/")
        page.evaluate("window.sameDocument = true")

        page.fill("#id_name", "bad")
        page.set_input_files("#id_file", str(bad))
        page.click("form[data-upload] button[type=submit]")
        alert = page.locator("#upload-form [role=alert]")
        alert.wait_for()

        assert "not valid UTF-8 at line 3" in alert.inner_text()
        assert page.evaluate("window.sameDocument") is True
        assert page.input_value("#id_name") == "bad"
    assert not Dataset.objects.exists()


def test_a_file_over_the_limit_is_refused_before_it_is_sent(
    live_server, analyst, tmp_path, settings, monkeypatch
):
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    settings.MLOPS_MAX_UPLOAD_BYTES = 1000
    big = tmp_path / "big.csv"
    big.write_text("a\n" + "1\n" * 1000)
    with chromium_page() as page:
        log_in(page, live_server.url, "analyst", next_path="/data/datasets/upload/")
        requests = []
        page.on("request", lambda request: requests.append(request.method))

        page.fill("#id_name", "big")
        page.set_input_files("#id_file", str(big))
        page.click("form[data-upload] button[type=submit]")
        alert = page.locator(".client-error")
        alert.wait_for()

        assert "the upload limit is 1000 bytes" in alert.inner_text()
        assert "POST" not in requests
