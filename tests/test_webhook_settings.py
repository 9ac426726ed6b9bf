"""A conversation's settings page lists, adds and deletes its webhooks: for participants only,
CSRF-protected, the secret shown once, bad input (or one webhook too many) a form error that
stores nothing; a hook delivers only while its maker is an active participant."""

from __future__ import annotations

import hashlib
import hmac
import re
import time

import pytest
from conftest import PASSWORD, app_in_context
from sqlalchemy import select

from simplechat.conversations.groups import leave_conversation
from simplechat.extensions import db
from simplechat.models import GenericActivityLog, Webhook
from simplechat.webhooks import delivery
from tests.test_webhooks import Receiver, post, wait_for


@pytest.fixture
def app(database_uri, redis_url, monkeypatch):
    monkeypatch.setattr(delivery, "BACKOFF_FIRST", 0.02)
    yield from app_in_context(database_uri, redis_url, CHAT_RATE_LIMIT="off",
                              WEBHOOK_ALLOW_PRIVATE=True)


@pytest.fixture
def chat(make_user, make_conversation):
    ada, bob, cy = make_user("ada"), make_user("bob"), make_user("cy")
    return ada, bob, cy, make_conversation(ada, bob)


@pytest.fixture
def receiver():
    made = Receiver()
    yield made
    made.close()


def logged_in(app, user):
    http = app.test_client()
    assert http.post("/auth/login", data={"username": user.username,
                                          "password": PASSWORD}).status_code == 302
    return http


def hooks() -> list[Webhook]:
    db.session.rollback()
    return list(db.session.scalars(select(Webhook).order_by(Webhook.id)))


def shown_secret(page: str) -> str | None:
    found = re.search(r'id="new-webhook-secret">([^<]*)<', page)
    return found.group(1) if found else None


def field_error(page: str) -> str | None:
    found = re.search(r'id="url-errors">([^<]*)<', page)
    return found.group(1).strip() if found else None


def add(http, conversation_id, url):
    return http.post(f"/chat/{conversation_id}/settings", data={"url": url})


def test_a_participant_adds_a_webhook_and_sees_its_secret_once(app, client, chat, receiver):
    ada, bob, cy, conversation = chat
    http = logged_in(app, ada)
    answer = add(http, conversation.id, receiver.url)
    assert answer.status_code == 200
    page = answer.get_data(as_text=True)
    secret = shown_secret(page)
    [hook] = hooks()
    assert secret == hook.secret and len(secret) == 64
    assert (hook.kind, hook.url, hook.created_by_id) == ("outgoing", receiver.url, ada.id)
    assert f'data-webhook-id="{hook.id}"' in page
    # Listed for every participant, the secret never again.
    again = logged_in(app, bob).get(f"/chat/{conversation.id}/settings").get_data(as_text=True)
    assert f'data-webhook-id="{hook.id}"' in again and receiver.url.replace("&", "&amp;") in again
    assert shown_secret(again) is None and secret not in again
    assert db.session.scalar(select(GenericActivityLog.action).where(
        GenericActivityLog.action == "webhook_created")) == "webhook_created"
    # It delivers, signed with the secret shown.
    post(client, bob, conversation.id, "to the new hook")
    headers, body = wait_for(lambda: receiver.requests)[0]
    assert headers["x-simplechat-signature"] == (
        "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest())


@pytest.mark.parametrize("url, says", [
    ("", "This field is required."),
    ("   ", "This field is required."),
    ("ftp://example.com/x", "http:// or https://"),
    ("javascript:alert(1)", "http:// or https://"),
    ("http://user:secret@93.184.216.34/", "user name or password"),
    ("http://host.invalid/hook", "does not resolve"),
    ("https://93.184.216.34/" + "a" * 2000, "2000 characters"),
    ("https://93.184.216.34/\x00", "not allowed"),
    ("http://127.0.0.1:9/hook", "private or local address"),
    ("http://[::1]/hook", "private or local address"),
])
def test_a_bad_url_is_a_form_error_and_stores_nothing(app, chat, url, says):
    ada, bob, cy, conversation = chat
    app.config["WEBHOOK_ALLOW_PRIVATE"] = False
    answer = add(logged_in(app, ada), conversation.id, url)
    assert answer.status_code == 200
    page = answer.get_data(as_text=True)
    assert says in (field_error(page) or ""), field_error(page)
    assert 'id="form-errors"' in page and shown_secret(page) is None
    assert hooks() == []


def test_a_participant_deletes_a_webhook(app, chat, receiver):
    ada, bob, cy, conversation = chat
    add(logged_in(app, ada), conversation.id, receiver.url)
    hook_id = hooks()[0].id
    http = logged_in(app, bob)  # any participant may, not only its maker
    answer = http.post(f"/chat/{conversation.id}/webhooks/{hook_id}/delete")
    assert answer.status_code == 302
    assert answer.headers["Location"].endswith(f"/chat/{conversation.id}/settings")
    assert hooks() == []
    assert "has no webhooks" in http.get(answer.headers["Location"]).get_data(as_text=True)
    assert http.post(f"/chat/{conversation.id}/webhooks/{hook_id}/delete").status_code == 404


def test_strangers_neither_see_add_nor_delete(app, client, chat, make_conversation, receiver):
    ada, bob, cy, conversation = chat
    add(logged_in(app, ada), conversation.id, receiver.url)
    [hook] = hooks()
    stranger = logged_in(app, cy)
    assert stranger.get(f"/chat/{conversation.id}/settings").status_code == 404
    assert add(stranger, conversation.id, "http://127.0.0.1:9/mine").status_code == 404
    assert stranger.post(f"/chat/{conversation.id}/webhooks/{hook.id}/delete").status_code == 404
    # Nor through a conversation of their own, naming another conversation's hook.
    theirs = make_conversation(cy, bob)
    assert stranger.post(f"/chat/{theirs.id}/webhooks/{hook.id}/delete").status_code == 404
    anonymous = client.get(f"/chat/{conversation.id}/settings")
    assert anonymous.status_code == 302 and "/auth/login" in anonymous.headers["Location"]
    assert client.post(f"/chat/{conversation.id}/webhooks/{hook.id}/delete").status_code == 302
    assert [h.id for h in hooks()] == [hook.id]


def test_adding_and_deleting_need_the_csrf_token(app, chat, receiver):
    ada, bob, cy, conversation = chat
    add(logged_in(app, ada), conversation.id, receiver.url)
    hook_id = hooks()[0].id
    http = logged_in(app, ada)
    app.config["WTF_CSRF_ENABLED"] = True
    page = http.get(f"/chat/{conversation.id}/settings").get_data(as_text=True)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
    assert add(http, conversation.id, receiver.url + "&2").status_code == 400
    assert http.post(f"/chat/{conversation.id}/webhooks/{hook_id}/delete").status_code == 400
    assert [h.id for h in hooks()] == [hook_id]
    added = http.post(f"/chat/{conversation.id}/settings",
                      data={"url": receiver.url + "&2", "csrf_token": token})
    assert shown_secret(added.get_data(as_text=True))
    assert http.post(f"/chat/{conversation.id}/webhooks/{hook_id}/delete",
                     data={"csrf_token": token}).status_code == 302
    assert [h.url for h in hooks()] == [receiver.url + "&2"]


def test_a_hook_made_by_a_participant_stops_when_they_leave(app, runner, chat, monkeypatch,
                                                           make_conversation, receiver):
    ada, bob, cy, _ = chat
    group = make_conversation(ada, bob, cy, title="crew")
    add(logged_in(app, cy), group.id, receiver.url)
    made = runner.invoke(args=["webhooks", "create", "--conversation", str(group.id),
                               "--url", receiver.url + "&cli"])
    assert made.exit_code == 0, made.output
    cli_hook, cys_hook = sorted(hooks(), key=lambda h: h.created_by_id is not None)
    queued = []  # the hooks a new message would be delivered to, without delivering
    monkeypatch.setattr(delivery, "_queue", lambda hook_id, payload: queued.append(hook_id))
    payload = {"id": "x", "conversation_id": group.id}
    assert delivery.queue_deliveries([payload]) == 2
    assert sorted(queued) == sorted([cli_hook.id, cys_hook.id])
    assert leave_conversation(cy, {"conversation_id": group.id})["ok"]
    queued.clear()
    assert delivery.queue_deliveries([payload]) == 1 and queued == [cli_hook.id]


def test_the_conversation_page_links_to_its_settings(app, chat):
    ada, bob, cy, conversation = chat
    page = logged_in(app, ada).get(f"/chat/{conversation.id}").get_data(as_text=True)
    assert f'href="/chat/{conversation.id}/settings"' in page


def test_a_hook_made_by_a_participant_stops_while_they_are_deactivated(
        app, runner, client, chat, make_conversation):
    ada, bob, cy, _ = chat
    group = make_conversation(ada, bob, cy, title="crew")
    cys_receiver, cli_receiver = Receiver(), Receiver()
    try:
        add(logged_in(app, cy), group.id, cys_receiver.url)
        made = runner.invoke(args=["webhooks", "create", "--conversation", str(group.id),
                                   "--url", cli_receiver.url])
        assert made.exit_code == 0, made.output
        cys_hook = next(h for h in hooks() if h.created_by_id == cy.id)
        assert runner.invoke(args=["users", "deactivate", "cy"]).exit_code == 0

        post(client, ada, group.id, "while cy is deactivated")
        wait_for(lambda: cli_receiver.requests)
        time.sleep(0.5)  # cy's hook, were it queued, would have been called by now
        assert cys_receiver.requests == []
        # A delivery already queued (or retrying) when cy was deactivated is dropped too.
        payload = {"id": "x", "conversation_id": group.id, "message": "queued before"}
        assert delivery.attempt_delivery(cys_hook.id, payload, 0, 6) == "gone"
        assert cys_receiver.requests == []

        assert runner.invoke(args=["users", "activate", "cy"]).exit_code == 0
        post(client, ada, group.id, "cy is back")
        headers, body = wait_for(lambda: cys_receiver.requests)[0]
        assert b"cy is back" in body
    finally:
        cys_receiver.close()
        cli_receiver.close()


def test_a_webhook_past_the_most_a_conversation_may_have_is_a_form_error(app, chat, receiver):
    ada, bob, cy, conversation = chat
    http = logged_in(app, ada)
    for n in range(5):  # WEBHOOK_MAX_PER_CONVERSATION's default
        assert shown_secret(add(http, conversation.id, f"{receiver.url}&{n}")
                            .get_data(as_text=True))
    answer = add(logged_in(app, bob), conversation.id, receiver.url + "&6")
    assert answer.status_code == 200
    page = answer.get_data(as_text=True)
    assert "the most it may have (5)" in (field_error(page) or ""), field_error(page)
    assert 'id="form-errors"' in page and shown_secret(page) is None
    assert len(hooks()) == 5
