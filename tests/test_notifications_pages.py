"""The notification settings page (its form writes through the same checks as the API; CSRF),
the conversation page's bell, and /sw.js."""

from __future__ import annotations

import re

import pytest
from conftest import PASSWORD, app_in_context

from simplechat.extensions import db
from simplechat.models import User
from simplechat.notifications.push import generate_keys

PUBLIC, PRIVATE = generate_keys()


@pytest.fixture
def app(database_uri, redis_url, request):
    marker = request.node.get_closest_marker("settings")
    overrides = {"WEBPUSH_VAPID_PUBLIC_KEY": PUBLIC, "WEBPUSH_VAPID_PRIVATE_KEY": PRIVATE,
                 **(marker.kwargs if marker else {})}
    yield from app_in_context(database_uri, redis_url, **overrides)


@pytest.fixture
def ada(make_user, client):
    user = make_user("ada")
    client.post("/auth/login", data={"username": "ada", "password": PASSWORD})
    return user


def form_of(client) -> dict:
    page = client.get("/chat/settings/notifications").get_data(as_text=True)
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page)
    return {"csrf_token": token.group(1) if token else "", "dnd": "keep",
            "quiet_start": "22:00", "quiet_end": "08:00", "quiet_timezone": "UTC",
            "email_notifications": "y", "email_delay_minutes": "10"}


def test_the_page_shows_the_settings_and_offers_push(client, ada):
    page = client.get("/chat/settings/notifications")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert f'data-push-key="{PUBLIC}"' in html and 'id="push-enable"' in html
    assert "Do not disturb is off." in html
    assert 'value="Europe/Berlin"' in html  # the time zones to choose from


@pytest.mark.settings(WEBPUSH_VAPID_PUBLIC_KEY=None)
def test_the_page_does_not_offer_push_without_keys(client, ada):
    html = client.get("/chat/settings/notifications").get_data(as_text=True)
    assert "data-push-key" not in html and 'id="push-off"' in html
    assert "notifications.js" not in html


def test_the_form_saves_quiet_hours_dnd_and_email(client, ada):
    data = {**form_of(client), "dnd": "60", "quiet_hours": "y", "quiet_start": "21:30",
            "quiet_end": "07:15", "quiet_timezone": "Asia/Tokyo", "email_delay_minutes": "30"}
    data.pop("email_notifications")
    answer = client.post("/chat/settings/notifications", data=data)
    assert answer.status_code == 302
    db.session.expire_all()
    user = db.session.get(User, ada.id)
    assert (user.quiet_hours_start, user.quiet_hours_end, user.quiet_hours_timezone) == (
        "21:30", "07:15", "Asia/Tokyo")
    assert user.dnd_until is not None and user.email_notifications is False
    assert user.email_delay_minutes == 30
    assert "Do not disturb until" in client.get("/chat/settings/notifications").get_data(
        as_text=True)
    client.post("/chat/settings/notifications", data={**form_of(client), "dnd": "off"})
    db.session.expire_all()
    user = db.session.get(User, ada.id)
    assert user.dnd_until is None and user.quiet_hours_start is None


@pytest.mark.parametrize("change", [
    {"email_delay_minutes": "0"}, {"email_delay_minutes": "1441"},
    {"email_delay_minutes": "ten"}, {"quiet_hours": "y", "quiet_start": "25:00"},
    {"quiet_hours": "y", "quiet_timezone": "Mars/Base"}, {"dnd": "999"},
    {"quiet_hours": "y", "quiet_start": ""},
])
def test_a_bad_form_says_so_and_changes_nothing(client, ada, change):
    answer = client.post("/chat/settings/notifications", data={**form_of(client), **change})
    assert answer.status_code == 200
    assert 'id="form-errors"' in answer.get_data(as_text=True) or "is-invalid" in \
        answer.get_data(as_text=True)
    db.session.expire_all()
    user = db.session.get(User, ada.id)
    assert (user.email_delay_minutes, user.quiet_hours_start, user.dnd_until) == (10, None, None)


@pytest.mark.settings(WTF_CSRF_ENABLED=True)
def test_the_form_needs_its_csrf_token(app, make_user):
    make_user("ada")
    client = app.test_client()
    login = client.get("/auth/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', login).group(1)
    client.post("/auth/login", data={"username": "ada", "password": PASSWORD,
                                     "csrf_token": token})
    data = {**form_of(client), "email_delay_minutes": "99"}
    data["csrf_token"] = "forged"
    assert client.post("/chat/settings/notifications", data=data).status_code in (200, 400)
    db.session.expire_all()
    assert db.session.scalar(db.select(User.email_delay_minutes)) == 10


def test_the_page_needs_a_login(client):
    assert client.get("/chat/settings/notifications").status_code == 302


def test_the_conversation_page_has_the_bell_with_the_level(client, ada, make_user,
                                                           make_conversation):
    conversation = make_conversation(ada, make_user("bob"))
    client.post(f"/api/conversations/{conversation.id}/notifications",
                json={"level": "mentions"})
    html = client.get(f"/chat/{conversation.id}").get_data(as_text=True)
    assert 'id="notify-level-button"' in html and 'data-level="mentions"' in html
    assert 'data-push="1"' in html


def test_the_service_worker_is_served_at_the_root(client):
    answer = client.get("/sw.js")
    assert answer.status_code == 200 and answer.mimetype == "text/javascript"
    assert answer.headers["Service-Worker-Allowed"] == "/"
    assert "no-cache" in answer.headers["Cache-Control"]
    body = answer.get_data(as_text=True)
    assert "__ICON_URL__" not in body and "showNotification" in body and '"clear"' in body
