"""Unread you can trust: mark_unread moves the reader's marker back to just before a message,
and the counts follow on every device (two sockets of one user); thread replies are counted in
their threads, not in the conversation, unless also sent to it. Redis and the embedded default."""

from __future__ import annotations

import pytest
from conftest import PASSWORD, app_in_context
from sqlalchemy import select

from simplechat.conversations.inbox import inbox_page
from simplechat.extensions import db
from simplechat.messaging.send import send_message
from simplechat.models import Participant

NS = "/chat"


@pytest.fixture
def app(database_uri, backend):
    yield from app_in_context(database_uri, backend, CHAT_RATE_LIMIT="off",
                              CHAT_SOCKET_EVENT_RATE="off", CHAT_SOCKET_JOIN_RATE="off")


def ask(sio, event: str, payload) -> dict:
    return sio.emit(event, payload, namespace=NS, callback=True)


def heard(sio, name: str) -> list:
    return [e["args"] if isinstance(e["args"], dict) else e["args"][0]
            for e in sio.get_received(NS) if e["name"] == name]


@pytest.fixture
def group(make_user, make_conversation):
    ada, bob, cy, dee = (make_user(u, first_name=u.capitalize(), last_name="T")
                         for u in ("ada", "bob", "cy", "dee"))
    return make_conversation(ada, bob, cy, title="Crew"), (ada, bob, cy, dee)


def marker(user) -> str | None:
    db.session.expire_all()
    return db.session.scalar(select(Participant.last_read_message_id).where(
        Participant.user_id == user.id))


def counts(user, conversation_id: int) -> tuple[int, int]:
    db.session.expire_all()
    (summary,) = inbox_page(user, only=conversation_id).conversations
    return summary.unread, summary.mentions


def test_marking_unread_moves_the_marker_back_on_every_device(app, group, socket_client):
    conversation, (ada, bob, *_rest) = group
    sent = [send_message(bob, conversation.id, text)["message"]
            for text in ("one", "two", "three @ada", "four", "five")]
    a1, a2 = socket_client(ada), socket_client(ada)  # two devices of one user
    assert ask(a1, "read", {"conversation_id": conversation.id,
                            "message_id": sent[-1]["id"]})["ok"]
    assert counts(ada, conversation.id) == (0, 0)
    a2.get_received(NS)
    answer = ask(a1, "mark_unread", {"conversation_id": conversation.id,
                                     "message_id": sent[2]["id"]})
    assert answer == {"ok": True, "last_read": sent[1]["id"], "unread": 3, "unread_mentions": 1}
    assert heard(a2, "marked_unread") == [{
        "conversation_id": conversation.id, "user_id": ada.id, "message_id": sent[2]["id"],
        "last_read": sent[1]["id"], "unread": 3, "unread_mentions": 1}]
    assert marker(ada) == sent[1]["id"]
    assert counts(ada, conversation.id) == (3, 1)
    # The other device's join sees the marker where it is now (the cached one was dropped).
    joined = ask(a2, "join", {"conversation_id": conversation.id})
    assert joined["read"][str(ada.id)] == sent[1]["id"]
    # Reading forward again works as before, and is heard on the other device.
    a2.get_received(NS)
    assert ask(a1, "read", {"conversation_id": conversation.id,
                            "message_id": sent[-1]["id"]})["last_read"] == sent[-1]["id"]
    assert [n["message_id"] for n in heard(a2, "read")] == [sent[-1]["id"]]
    assert counts(ada, conversation.id) == (0, 0)
    # The first message: nothing read at all; everything from others unread.
    assert ask(a1, "mark_unread", {"conversation_id": conversation.id,
                                   "message_id": sent[0]["id"]})["last_read"] is None
    assert marker(ada) is None and counts(ada, conversation.id) == (5, 1)


def test_marking_unread_over_http(app, group):
    conversation, (ada, bob, *_rest) = group
    sent = [send_message(bob, conversation.id, f"m{i}")["message"] for i in range(3)]
    http = app.test_client()
    http.post("/auth/login", data={"username": ada.username, "password": PASSWORD})
    response = http.post(f"/api/conversations/{conversation.id}/unread",
                         json={"message_id": sent[1]["id"]})
    assert response.status_code == 200
    assert response.get_json() == {"ok": True, "last_read": sent[0]["id"], "unread": 2,
                                   "unread_mentions": 0}
    listed = http.get(f"/api/conversations/{conversation.id}").get_json()["conversation"]
    assert listed["unread"] == 2
    assert http.post(f"/api/conversations/{conversation.id}/unread",
                     json={"message_id": "x"}).status_code == 400


def test_a_message_still_on_its_way_to_sql_can_be_marked_unread(app, group, socket_client):
    conversation, (ada, bob, *_rest) = group
    stored = send_message(bob, conversation.id, "stored")["message"]
    app.extensions["celery"].conf.task_always_eager = False
    try:
        waiting = [send_message(bob, conversation.id, f"w{i}")["message"] for i in range(2)]
        a = socket_client(ada)
        answer = ask(a, "mark_unread", {"conversation_id": conversation.id,
                                        "message_id": waiting[1]["id"]})
        assert (answer["last_read"], answer["unread"]) == (waiting[0]["id"], 1)
        answer = ask(a, "mark_unread", {"conversation_id": conversation.id,
                                        "message_id": waiting[0]["id"]})
        assert (answer["last_read"], answer["unread"]) == (stored["id"], 2)
    finally:
        app.extensions["celery"].conf.task_always_eager = True


def test_mark_unread_refusals_change_nothing(app, group, socket_client, make_conversation):
    conversation, (ada, bob, cy, dee) = group
    mine = send_message(bob, conversation.id, "hello")["message"]
    root = send_message(bob, conversation.id, "root")["message"]
    reply = send_message(cy, conversation.id, "in a thread", thread_id=root["id"])["message"]
    other = make_conversation(dee, ada)
    foreign = send_message(dee, other.id, "elsewhere")["message"]
    a, d = socket_client(ada), socket_client(dee)
    assert ask(a, "read", {"conversation_id": conversation.id, "message_id": root["id"]})["ok"]
    before = marker(ada)
    assert ask(d, "mark_unread", {"conversation_id": conversation.id,
                                  "message_id": mine["id"]}) == {"ok": False,
                                                                 "error": "forbidden"}
    for message_id in (foreign["id"], reply["id"]):
        assert ask(a, "mark_unread", {"conversation_id": conversation.id,
                                      "message_id": message_id}) == {
            "ok": False, "error": "not_found"}
    for payload in (None, [], {}, {"conversation_id": conversation.id},
                    {"conversation_id": str(conversation.id), "message_id": mine["id"]},
                    {"conversation_id": conversation.id, "message_id": "x"},
                    {"conversation_id": conversation.id, "message_id": 5}):
        assert ask(a, "mark_unread", payload) == {"ok": False, "error": "invalid"}
    assert marker(ada) == before
    assert not [e for e in a.get_received(NS) if e["name"] == "marked_unread"]


def test_thread_replies_count_in_their_thread_not_the_conversation(app, group, socket_client):
    conversation, (ada, bob, cy, _dee) = group
    root = send_message(bob, conversation.id, "root @ada")["message"]
    send_message(cy, conversation.id, "thread only @ada", thread_id=root["id"])
    also = send_message(cy, conversation.id, "everyone", thread_id=root["id"],
                        also_to_conversation=True)["message"]
    assert counts(ada, conversation.id) == (2, 1)  # the root and the reply sent to everyone
    # ada follows the thread (mentioned in it): its replies are unread there, one mentions her.
    http = app.test_client()
    http.post("/auth/login", data={"username": ada.username, "password": PASSWORD})
    (thread,) = http.get("/api/threads?unread=1").get_json()["threads"]
    assert (thread["unread"], thread["unread_mentions"]) == (2, 1)
    # Marking the reply sent to everyone unread: it is in the main flow.
    a = socket_client(ada)
    assert ask(a, "read", {"conversation_id": conversation.id, "message_id": also["id"]})["ok"]
    answer = ask(a, "mark_unread", {"conversation_id": conversation.id,
                                    "message_id": also["id"]})
    assert (answer["last_read"], answer["unread"]) == (root["id"], 1)
