"""Share links: a read-only dashboard without a login, that one dashboard and nothing else;
revocable, optionally expiring; only the owner (or staff) makes them."""

import re
import urllib.error
import urllib.request
from datetime import timedelta

import pytest
from django.utils import timezone

from dashboards import dashboards
from dashboards.models import ShareLink, hash_token
from dashboards.tests.test_dashboards import FORMULA, add_chart, sales  # noqa: F401

pytestmark = pytest.mark.usefixtures("sales")


@pytest.fixture
def owner(django_user_model):
    return django_user_model.objects.create_user("owner")


@pytest.fixture
def board(owner):
    board = dashboards.create_dashboard(owner, "Sales", "Monthly figures")
    add_chart(board)
    add_chart(board, title="Notes", kind="table", x="", y=["note"], time_grain="")
    return board


@pytest.fixture
def token(board, owner):
    return dashboards.create_share_link(board, owner)[1]


def test_the_owner_makes_a_link_shown_once_and_stored_as_a_hash(client, owner, board):
    client.force_login(owner)
    page = client.get(f"/dashboards/{board.pk}/share/").content.decode()
    assert "No share links yet: create one above." in page

    html = client.post(f"/dashboards/{board.pk}/share/", {"expires_at": ""}).content.decode()
    url = re.search(r'id="new-share-url" value="(http://testserver/share/([^/"]+)/)"', html)
    assert url, "the new link is shown"
    token = url.group(2)
    assert len(token) >= 43  # 32 random bytes, base64
    link = ShareLink.objects.get()
    assert link.token_hash == hash_token(token) and token not in link.token_hash
    assert link.created_by == owner and link.expires_at is None
    assert "Copy it now: it is not shown again." in html
    assert token not in client.get(f"/dashboards/{board.pk}/share/").content.decode()


def test_a_link_may_expire_but_not_in_the_past(client, owner, board):
    client.force_login(owner)
    past = client.post(f"/dashboards/{board.pk}/share/", {"expires_at": "2001-01-01T00:00"})
    assert "<strong>Error:</strong> Choose a time in the future." in past.content.decode()
    assert not ShareLink.objects.exists()
    soon = (timezone.localtime() + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M")
    client.post(f"/dashboards/{board.pk}/share/", {"expires_at": soon})
    link = ShareLink.objects.get()
    assert link.expires_at > timezone.now() + timedelta(days=1)
    assert "active" in client.get(f"/dashboards/{board.pk}/share/").content.decode()


def test_the_shared_page_shows_the_dashboard_logged_out_without_the_site(client, board, token):
    response = client.get(f"/share/{token}/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "<h1>Sales</h1>" in html and "Amount by month" in html
    assert 'type="application/json">{"kind": "line"' in html  # the data is in the page
    assert "<nav" not in html and "Log out" not in html
    hrefs = set(re.findall(r'href="([^"]+)"', html))
    chart_ids = list(board.charts.values_list("pk", flat=True))
    assert hrefs == {
        "#",  # the PNG download, made in the browser
        "/static/css/app.css",
        "/static/css/pipelines.css",
        *(f"/share/{token}/charts/{pk}.csv" for pk in chart_ids),
    }
    assert all(src.startswith("/static/") for src in re.findall(r'src="([^"]+)"', html))
    assert 'action="' not in html  # no form posts anywhere
    assert response["Referrer-Policy"] == "no-referrer"
    assert "no-store" in response["Cache-Control"]


def test_the_shared_csv_is_escaped(client, board, token):
    notes = board.charts.get(title="Notes")
    response = client.get(f"/share/{token}/charts/{notes.pk}.csv")
    assert response.status_code == 200
    assert response.content.decode().splitlines()[1] == "'" + FORMULA


def test_a_token_reaches_nothing_else(client, owner, board, token):
    other = dashboards.create_dashboard(owner, "Secret")
    secret = add_chart(other, title="Secret chart")
    assert client.get(f"/share/{token}/charts/{secret.pk}.csv").status_code == 404
    for url in ("/", "/pipelines/", f"/dashboards/{other.pk}/", f"/dashboards/{board.pk}/"):
        response = client.get(url)
        assert response.status_code == 302 and "/accounts/login/" in response["Location"], url
        response = client.get(f"{url}?token={token}")
        assert response.status_code == 302, url
    assert client.get(f"/share/{token}x/").status_code == 404
    assert client.get(f"/share/{token}/dashboards/{other.pk}/").status_code == 404
    assert client.get(f"/share/{token}/charts/{secret.pk}.csv/").status_code == 404


def test_a_revoked_or_expired_link_is_404(client, owner, board, token):
    link = ShareLink.objects.get()
    client.force_login(owner)
    response = client.post(f"/dashboards/{board.pk}/share/{link.pk}/revoke/", follow=True)
    assert f"Share link #{link.pk} revoked" in response.content.decode()
    assert '<span class="status failed">revoked</span>' in response.content.decode()
    client.logout()
    assert client.get(f"/share/{token}/").status_code == 404
    chart = board.charts.first()
    assert client.get(f"/share/{token}/charts/{chart.pk}.csv").status_code == 404

    expired, expired_token = dashboards.create_share_link(
        board, owner, expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert expired.state == "expired"
    assert client.get(f"/share/{expired_token}/").status_code == 404


def test_deleting_the_dashboard_closes_its_links(client, board, token):
    dashboards.delete_dashboard(board)
    assert client.get(f"/share/{token}/").status_code == 404


def test_only_the_owner_or_staff_manage_links(client, board, token, django_user_model):
    link = ShareLink.objects.get()
    viewer = django_user_model.objects.create_user("viewer")
    board.shared_with.add(viewer)
    client.force_login(viewer)
    assert client.post(f"/dashboards/{board.pk}/share/", {}).status_code == 403
    assert client.post(f"/dashboards/{board.pk}/share/{link.pk}/revoke/").status_code == 403
    client.force_login(django_user_model.objects.create_user("stranger"))
    assert client.post(f"/dashboards/{board.pk}/share/{link.pk}/revoke/").status_code == 404
    assert ShareLink.objects.active().count() == 1 and ShareLink.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_share_link_through_a_real_server(live_server, board, token):
    url = f"{live_server.url}/share/{token}/"
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200
        assert "Amount by month" in response.read().decode()
    dashboards.revoke_share_link(ShareLink.objects.get())
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(url, timeout=10)
    assert refused.value.code == 404
