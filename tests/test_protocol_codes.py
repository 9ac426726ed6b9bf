"""The socket protocol's answers where the audit found them drifting from docs/PROTOCOL.md:
client ids scoped to a conversation, `conflict`, `invalid` before `forbidden`, `too_many`, the
length limit after trimming, and `unknown_event`."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from simplechat.extensions import db
from simplechat.models import Message, Participant


def ask(sio, event: str, payload) -> dict:
    return sio.emit(event, payload, namespace="/chat", callback=True)


def stored_texts() -> list[str]:
    return list(db.session.scalars(select(Message.text).order_by(Message.id)))


@pytest.fixture
def unlimited(app):
    """No send rate limit, so several sends in a row are answered on their merits."""
    from simplechat.infra.ratelimit import MemoryRateLimiter, RedisRateLimiter, parse_rate

    svc = app.extensions["simplechat"]
    rate = parse_rate("off")
    svc.limiter = (RedisRateLimiter(svc.redis, rate, app.config["REDIS_KEY_PREFIX"])
                   if svc.redis is not None else MemoryRateLimiter(rate))


def test_a_client_id_reused_in_another_conversation_is_a_new_message(
        unlimited, make_user, make_conversation, socket_client):
    ada, bob, carol = make_user(), make_user(), make_user()
    with_bob, with_carol = make_conversation(ada, bob), make_conversation(ada, carol)
    sio = socket_client(ada)
    first = ask(sio, "send_message", {"conversation_id": with_bob.id, "message": "hi",
                                      "client_id": "tab-1"})
    second = ask(sio, "send_message", {"conversation_id": with_carol.id, "message": "hi",
                                       "client_id": "tab-1"})
    assert first["ok"] and second["ok"] and "duplicate" not in second
    assert second["message"]["conversation_id"] == with_carol.id
    assert second["message"]["id"] != first["message"]["id"]
    assert stored_texts() == ["hi", "hi"]


def test_a_client_id_reused_with_other_text_is_a_conflict_and_stores_nothing(
        unlimited, make_user, make_conversation, socket_client):
    ada, bob = make_user(), make_user()
    conversation = make_conversation(ada, bob)
    sio = socket_client(ada)
    payload = {"conversation_id": conversation.id, "message": "first", "client_id": "c-9"}
    assert ask(sio, "send_message", payload)["ok"]
    other = ask(sio, "send_message", {**payload, "message": "something else"})
    assert other == {"ok": False, "error": "conflict"}
    # The same text again is still a retry of the original.
    retry = ask(sio, "send_message", {**payload, "message": "  first  "})
    assert retry["ok"] and retry["duplicate"] is True
    assert stored_texts() == ["first"]


def test_another_senders_client_id_is_theirs_alone(unlimited, make_user, make_conversation,
                                                   socket_client):
    ada, bob = make_user(), make_user()
    conversation = make_conversation(ada, bob)
    a, b = socket_client(ada), socket_client(bob)
    payload = {"conversation_id": conversation.id, "message": "same", "client_id": "x"}
    assert ask(a, "send_message", payload)["ok"]
    answer = ask(b, "send_message", payload)
    assert answer["ok"] and "duplicate" not in answer and answer["message"]["sender"] == bob.id
    assert stored_texts() == ["same", "same"]


@pytest.mark.parametrize("event", ["join", "presence", "typing", "send_message", "read",
                                   "edit_message", "delete_message", "rename_conversation",
                                   "add_participants", "leave_conversation"])
@pytest.mark.parametrize("bad", ["3", 0, -1, 2**63, True, 1.5, None, [3], {"id": 3}])
def test_a_malformed_conversation_id_is_invalid_on_every_event(make_user, socket_client,
                                                               event, bad):
    sio = socket_client(make_user())
    payload = {"conversation_id": bad, "message": "x", "message_id": "0" * 36, "title": "t",
               "user_ids": [1]}
    assert ask(sio, event, payload) == {"ok": False, "error": "invalid"}


@pytest.mark.parametrize("event", ["join", "presence", "typing", "rename_conversation",
                                   "leave_conversation"])
def test_a_well_formed_id_of_a_foreign_conversation_is_forbidden(make_user, make_conversation,
                                                                 socket_client, event):
    eve, bob, carol = make_user(), make_user(), make_user()
    theirs = make_conversation(bob, carol)
    assert ask(socket_client(eve), event, {"conversation_id": theirs.id}) == {
        "ok": False, "error": "forbidden"}


def test_adding_more_than_the_member_limit_at_once_is_too_many(app, make_user,
                                                               make_conversation, socket_client):
    app.config["CHAT_MAX_MEMBERS"] = 50
    ada, bob, carol = make_user(), make_user(), make_user()
    group = make_conversation(ada, bob, carol, title="Crowd")
    answer = ask(socket_client(ada), "add_participants",
                 {"conversation_id": group.id, "user_ids": list(range(1000, 1051))})
    assert answer == {"ok": False, "error": "too_many", "max_participants": 50}
    assert db.session.scalar(select(func.count(Participant.id)).where(
        Participant.conversation_id == group.id)) == 3


def test_the_length_limit_counts_what_is_stored_after_trimming(app, make_user,
                                                               make_conversation,
                                                               socket_client):
    ada, bob = make_user(), make_user()
    conversation = make_conversation(ada, bob)
    sio = socket_client(ada)
    limit = app.config["CHAT_MAX_MESSAGE_LENGTH"]
    padded = "   " + "x" * limit + "\n\n  "
    answer = ask(sio, "send_message", {"conversation_id": conversation.id, "message": padded})
    assert answer["ok"] and answer["message"]["message"] == "x" * limit
    too_long = ask(sio, "send_message", {"conversation_id": conversation.id,
                                         "message": " " + "y" * (limit + 1) + " "})
    assert too_long == {"ok": False, "error": "too_long", "max_length": limit}
    assert stored_texts() == ["x" * limit]


@pytest.mark.parametrize("name", ["no_such_event", "send", "JOIN", "__proto__"])
def test_an_unknown_event_with_an_ack_is_answered_unknown_event(make_user, socket_client, name):
    sio = socket_client(make_user())
    assert ask(sio, name, {"conversation_id": 1}) == {"ok": False, "error": "unknown_event"}
    assert sio.is_connected("/chat")
