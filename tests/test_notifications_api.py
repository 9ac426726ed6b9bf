"""The notification routes: a conversation's level and mute for a time, the user's settings,
the push key and subscriptions, with every refusal (invalid, unauthorized, not_found, CSRF on
cookie writes, the private-address rule); and the chat page's mute toggle on top of levels."""

from __future__ import annotations

import re

import pytest
from conftest import PASSWORD, app_in_context
from cryptography.hazmat.primitives import serialization
from py_vapid import Vapid02
from sqlalchemy import select
from test_api_programs import assert_error, bearer, page_csrf

from simplechat.auth.tokens import create_token
from simplechat.extensions import db
from simplechat.models import Participant, PushSubscription
from simplechat.notifications.push import b64url, generate_keys, unb64url

PUBLIC, PRIVATE = generate_keys()
PUSH = {"WEBPUSH_VAPID_PUBLIC_KEY": PUBLIC, "WEBPUSH_VAPID_PRIVATE_KEY": PRIVATE,
        "WEBPUSH_SUBJECT": "mailto:ops@example.com"}
P256DH = "BEl62iUYgUivxIkv69yViEuiBIa-Ib9-SkvMeAtA3LFgDzkrxZJjSgSnfckjBJuBkr3qBUYIHBQFLXYp5Nksh8U"
AUTH = "tBHItJI5svbpez7KI4CCXg"


@pytest.fixture
def app(database_uri, redis_url, request):
    marker = request.node.get_closest_marker("settings")
    overrides = {**PUSH, "WEBHOOK_ALLOW_PRIVATE": True, **(marker.kwargs if marker else {})}
    yield from app_in_context(database_uri, redis_url, **overrides)


@pytest.fixture
def world(make_user, make_conversation, client):
    ada, bob, eve = make_user("ada"), make_user("bob"), make_user("eve")
    conversation = make_conversation(ada, bob)
    page = client.get("/auth/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page)
    assert client.post("/auth/login", data={"username": "ada", "password": PASSWORD,
                                            "csrf_token": token.group(1) if token else ""}
                       ).status_code == 302
    return {"ada": ada, "bob": bob, "eve": eve, "conversation": conversation,
            "eve_token": create_token(eve, "eve's").secret}


def subscription(endpoint: str = "http://127.0.0.1:9/push/a") -> dict:
    return {"endpoint": endpoint, "expirationTime": None, "keys": {"p256dh": P256DH, "auth": AUTH}}


def level_row(conversation_id: int, user_id: int) -> Participant:
    db.session.expire_all()
    return db.session.scalar(select(Participant).where(
        Participant.conversation_id == conversation_id, Participant.user_id == user_id))


# --------------------------------------------------------------------------- levels
def test_levels_are_set_and_shown(client, world):
    cid, ada = world["conversation"].id, world["ada"]
    path = f"/api/conversations/{cid}/notifications"
    answer = client.post(path, json={"level": "mentions"})
    assert answer.status_code == 200
    assert answer.get_json() == {"ok": True, "conversation_id": cid, "level": "mentions",
                                 "muted_until": None, "muted": False}
    assert level_row(cid, ada.id).notification_level == "mentions"
    answer = client.post(path, json={"level": "none", "muted_until": "2099-01-01 08:00:00"})
    assert answer.get_json() == {"ok": True, "conversation_id": cid, "level": "mentions",
                                 "muted_until": "2099-01-01 08:00:00", "muted": True}
    # A mute whose end has passed is no mute: the standing level holds again.
    answer = client.post(path, json={"level": "none", "muted_until": "2001-01-01 08:00:00"})
    assert answer.get_json()["muted"] is False and answer.get_json()["muted_until"] is None
    answer = client.post(path, json={"level": "none"})
    assert answer.get_json()["level"] == "none" and answer.get_json()["muted"] is True


@pytest.mark.parametrize("body", [
    {}, {"level": "loud"}, {"level": None}, {"level": 1}, {"level": "all", "also": 1},
    {"level": "all", "muted_until": "2099-01-01 08:00:00"},
    {"level": "none", "muted_until": "tomorrow"}, {"level": "none", "muted_until": 5},
    {"level": "none", "muted_until": "2099-13-01 08:00:00"}, ["all"], "all",
])
def test_a_bad_level_is_invalid_and_changes_nothing(client, world, body):
    cid = world["conversation"].id
    assert_error(client.post(f"/api/conversations/{cid}/notifications", json=body), 400,
                 "invalid")
    row = level_row(cid, world["ada"].id)
    assert (row.notification_level, row.muted_until) == ("default", None)


def test_levels_of_a_conversation_one_is_not_in_are_not_found(client, world):
    cid = world["conversation"].id
    assert_error(client.post(f"/api/conversations/{cid}/notifications", json={"level": "all"},
                             headers=bearer(world["eve_token"])), 404, "not_found")
    assert_error(client.post("/api/conversations/999999/notifications",
                             json={"level": "all"}), 404, "not_found")


def test_the_mute_toggle_works_on_top_of_levels(client, world):
    cid, ada = world["conversation"].id, world["ada"]
    client.post(f"/api/conversations/{cid}/notifications", json={"level": "all"})
    assert client.post(f"/api/conversations/{cid}/mute", json={"muted": True}).get_json()[
        "muted"] is True
    assert level_row(cid, ada.id).notification_level == "none"
    listed = client.get("/api/conversations").get_json()["conversations"]
    assert [c["muted"] for c in listed if c["id"] == cid] == [True]
    client.post(f"/api/conversations/{cid}/mute", json={"muted": False})
    assert level_row(cid, ada.id).notification_level == "default"
    # A mute for a time shows as muted in the list until it ends.
    client.post(f"/api/conversations/{cid}/notifications",
                json={"level": "none", "muted_until": "2099-01-01 00:00:00"})
    listed = client.get("/api/conversations").get_json()["conversations"]
    assert [c["muted"] for c in listed if c["id"] == cid] == [True]


# --------------------------------------------------------------------------- settings
def test_settings_start_at_their_defaults_and_take_any_subset(client, world):
    assert client.get("/api/me/settings").get_json() == {"ok": True, "settings": {
        "dnd_until": None, "quiet_hours": None, "email_notifications": True,
        "email_delay_minutes": 10}}
    quiet = {"start": "22:00", "end": "08:00", "timezone": "Europe/Berlin"}
    answer = client.put("/api/me/settings", json={"quiet_hours": quiet})
    assert answer.status_code == 200
    assert answer.get_json()["settings"]["quiet_hours"] == quiet
    answer = client.put("/api/me/settings", json={"dnd_until": "2099-05-01 10:00:00",
                                                  "email_delay_minutes": 1440,
                                                  "email_notifications": False})
    assert answer.get_json()["settings"] == {
        "dnd_until": "2099-05-01 10:00:00", "quiet_hours": quiet,
        "email_notifications": False, "email_delay_minutes": 1440}
    client.put("/api/me/settings", json={"quiet_hours": None, "dnd_until": None})
    assert client.get("/api/me/settings").get_json()["settings"]["quiet_hours"] is None
    assert client.put("/api/me/settings", json={}).status_code == 200


@pytest.mark.parametrize("body", [
    {"dnd_until": "2099-05-01"}, {"dnd_until": "2099-05-01T10:00:00"}, {"dnd_until": 7},
    {"quiet_hours": {"start": "22:00", "end": "08:00", "timezone": "Mars/Olympus"}},
    {"quiet_hours": {"start": "22:00", "end": "08:00", "timezone": "../../etc/passwd"}},
    {"quiet_hours": {"start": "24:00", "end": "08:00", "timezone": "UTC"}},
    {"quiet_hours": {"start": "22:00", "end": "8:00", "timezone": "UTC"}},
    {"quiet_hours": {"start": "22:00", "end": "08:00"}},
    {"quiet_hours": {"start": "22:00", "end": "08:00", "timezone": "UTC", "x": 1}},
    {"quiet_hours": "22:00-08:00"},
    {"email_notifications": "yes"}, {"email_notifications": 1},
    {"email_delay_minutes": 0}, {"email_delay_minutes": 1441}, {"email_delay_minutes": "10"},
    {"email_delay_minutes": True}, {"email_delay_minutes": 10.5}, {"email_delay_minutes": 1e9},
    {"email_delay_minutes": 5, "colour": "red"}, [], "x",
])
def test_bad_settings_are_invalid_and_change_nothing(client, world, body):
    assert_error(client.put("/api/me/settings", json=body), 400, "invalid")
    assert client.get("/api/me/settings").get_json()["settings"] == {
        "dnd_until": None, "quiet_hours": None, "email_notifications": True,
        "email_delay_minutes": 10}


def test_the_routes_refuse_strangers(app, world):
    anonymous = app.test_client()
    for method, path, body in [("get", "/api/me/settings", None),
                               ("put", "/api/me/settings", {"dnd_until": None}),
                               ("post", f"/api/conversations/{world['conversation'].id}/"
                                        "notifications", {"level": "all"}),
                               ("get", "/api/push/key", None),
                               ("post", "/api/push/subscriptions", subscription()),
                               ("delete", "/api/push/subscriptions/1", None)]:
        assert_error(getattr(anonymous, method)(path, json=body), 401, "unauthorized")


@pytest.mark.settings(WTF_CSRF_ENABLED=True)
def test_cookie_writes_need_the_csrf_token(client, world):
    cid = world["conversation"].id
    writes = [("put", "/api/me/settings", {"email_delay_minutes": 5}),
              ("post", f"/api/conversations/{cid}/notifications", {"level": "all"}),
              ("post", "/api/push/subscriptions", subscription())]
    for method, path, body in writes:
        assert_error(getattr(client, method)(path, json=body), 400, "csrf")
    assert client.get("/api/me/settings").get_json()["settings"]["email_delay_minutes"] == 10
    assert db.session.scalar(select(PushSubscription.id)) is None
    header = {"X-CSRFToken": page_csrf(client)}
    for method, path, body in writes:
        answer = getattr(client, method)(path, json=body, headers=header)
        assert answer.status_code in (200, 201), answer.get_data(as_text=True)
    sub_id = db.session.scalar(select(PushSubscription.id))
    assert_error(client.delete(f"/api/push/subscriptions/{sub_id}"), 400, "csrf")
    assert client.delete(f"/api/push/subscriptions/{sub_id}", headers=header).status_code == 200


# --------------------------------------------------------------------------- push routes
def test_push_key_and_subscriptions(client, world):
    assert client.get("/api/push/key").get_json() == {"ok": True, "key": PUBLIC}
    answer = client.post("/api/push/subscriptions", json=subscription())
    assert answer.status_code == 201
    first = answer.get_json()
    assert first["ok"] is True and isinstance(first["id"], int)
    # The same endpoint again is the same device: one row, new keys.
    again = client.post("/api/push/subscriptions", json=subscription())
    assert again.status_code == 201 and again.get_json()["id"] == first["id"]
    row = db.session.scalar(select(PushSubscription))
    assert (row.user_id, row.p256dh, row.auth) == (world["ada"].id, P256DH, AUTH)
    assert row.session_id is not None  # the login it came from
    assert_error(client.delete(f"/api/push/subscriptions/{first['id']}",
                               headers=bearer(world["eve_token"])), 404, "not_found")
    assert client.delete(f"/api/push/subscriptions/{first['id']}").get_json() == {"ok": True}
    assert_error(client.delete(f"/api/push/subscriptions/{first['id']}"), 404, "not_found")


@pytest.mark.parametrize("body", [
    {}, {"endpoint": "http://127.0.0.1:9/p"},
    {"endpoint": "ftp://127.0.0.1/p", "keys": {"p256dh": P256DH, "auth": AUTH}},
    {"endpoint": "http://127.0.0.1:9/p", "keys": {"p256dh": AUTH, "auth": AUTH}},
    {"endpoint": "http://127.0.0.1:9/p", "keys": {"p256dh": P256DH, "auth": P256DH}},
    {"endpoint": "http://127.0.0.1:9/p", "keys": {"p256dh": "!!", "auth": AUTH}},
    {"endpoint": "http://127.0.0.1:9/p", "keys": [P256DH, AUTH]},
    {"endpoint": 5, "keys": {"p256dh": P256DH, "auth": AUTH}},
    {"endpoint": "http://x/" + "a" * 2000, "keys": {"p256dh": P256DH, "auth": AUTH}},
    [], "x",
])
def test_a_bad_subscription_is_invalid(client, world, body):
    assert_error(client.post("/api/push/subscriptions", json=body), 400, "invalid")
    assert db.session.scalar(select(PushSubscription.id)) is None


@pytest.mark.settings(WEBHOOK_ALLOW_PRIVATE=False)
@pytest.mark.parametrize("endpoint", ["http://127.0.0.1:9/push", "http://10.1.2.3/push",
                                      "https://[::1]/push", "http://localhost:8080/push"])
def test_a_private_push_endpoint_is_refused(client, world, endpoint):
    answer = client.post("/api/push/subscriptions", json=subscription(endpoint))
    assert_error(answer, 400, "invalid")
    assert "private" in answer.get_json()["reason"]
    assert db.session.scalar(select(PushSubscription.id)) is None


@pytest.mark.settings(WEBPUSH_VAPID_PUBLIC_KEY=None, WEBPUSH_VAPID_PRIVATE_KEY=None)
def test_push_is_off_without_keys(client, world):
    assert_error(client.get("/api/push/key"), 404, "not_found")
    assert_error(client.post("/api/push/subscriptions", json=subscription()), 404, "not_found")
    assert "data-push-key" not in client.get("/chat/settings/notifications").get_data(
        as_text=True)


def test_generate_keys_prints_a_usable_pair(runner):
    result = runner.invoke(args=["push", "generate-keys"])
    assert result.exit_code == 0, result.output
    lines = dict(line.split("=", 1) for line in result.output.strip().splitlines())
    signer = Vapid02.from_raw(lines["WEBPUSH_VAPID_PRIVATE_KEY"].encode())
    public = signer.public_key.public_bytes(serialization.Encoding.X962,
                                            serialization.PublicFormat.UncompressedPoint)
    assert b64url(public) == lines["WEBPUSH_VAPID_PUBLIC_KEY"]
    assert len(unb64url(lines["WEBPUSH_VAPID_PUBLIC_KEY"])) == 65
