"""The /chat Socket.IO namespace over the Flask-SocketIO test client: join, leave, send_message."""

import re
import time

import pytest

from simplechat.extensions import db, socketio
from simplechat.models import Message

TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")


def received(sio, event="message"):
    # The test client hands the "message" event's payload over as is, other events as a list.
    return [e["args"] if event == "message" else e["args"][0]
            for e in sio.get_received("/chat") if e["name"] == event]


@pytest.fixture
def pair(make_user, make_conversation):
    ada = make_user("ada", first_name="Ada", last_name="Lovelace")
    bob = make_user("bob", first_name="Bob", last_name="Babbage")
    return ada, bob, make_conversation(ada, bob)


def test_two_users_exchange_messages(pair, socket_client):
    ada, bob, conversation = pair
    a, b = socket_client(ada), socket_client(bob)
    joined = a.emit("join", {"conversation_id": conversation.id}, namespace="/chat",
                    callback=True)
    assert (joined["ok"], joined["messages"], joined["has_more"]) == (True, [], False)
    assert b.emit("join", {"conversation_id": conversation.id}, namespace="/chat",
                  callback=True)["ok"]
    a.get_received("/chat"), b.get_received("/chat")

    ack = a.emit("send_message", {"conversation_id": conversation.id, "message": "hello bob",
                                  "client_id": "tab1-1"}, namespace="/chat", callback=True)
    assert ack["ok"] is True
    message = ack["message"]
    assert received(b) == [message]
    assert message["message"] == "hello bob"
    assert message["sender"] == ada.id
    assert message["sender_name"] == "Ada Lovelace"
    assert message["conversation_id"] == conversation.id
    assert message["client_id"] == "tab1-1"
    assert TIMESTAMP.match(message["timestamp"])
    assert set(message) == {"message", "sender", "timestamp", "id", "conversation_id",
                            "sender_name", "client_id", "kind", "html", "reply_to", "mentions",
                            "reactions", "attachments", "thread_id", "thread"}
    assert (message["thread_id"], message["thread"]) == (None, None)  # the main flow
    assert (message["kind"], message["html"], message["reply_to"], message["mentions"],
            message["reactions"], message["attachments"]) == (
        "text", "<p>hello bob</p>", None, [], {}, [])

    reply = b.emit("send_message", {"conversation_id": conversation.id, "message": "hi ada"},
                   namespace="/chat", callback=True)
    assert reply["ok"], reply
    assert reply["message"]["client_id"] is None
    assert [m["message"] for m in received(a)] == ["hello bob", "hi ada"]
    stored = db.session.scalars(db.select(Message).order_by(Message.id)).all()
    assert [(m.text, m.sender_id) for m in stored] == [("hello bob", ada.id), ("hi ada", bob.id)]


def test_sender_cannot_be_forged_from_the_payload(pair, socket_client):
    ada, bob, conversation = pair
    a = socket_client(ada)
    ack = a.emit("send_message", {"conversation_id": conversation.id, "message": "me",
                                  "sender": bob.id, "timestamp": "1999-01-01 00:00:00",
                                  "id": "x"}, namespace="/chat", callback=True)
    assert ack["message"]["sender"] == ada.id
    assert ack["message"]["timestamp"] != "1999-01-01 00:00:00"


def test_connect_without_login_is_refused(app):
    sio = socketio.test_client(app, namespace="/chat")
    assert not sio.is_connected("/chat")


def test_non_participant_cannot_join_post_page_or_open(pair, make_user, socket_client, auth):
    ada, bob, conversation = pair
    eve = make_user("eve")
    e = socket_client(eve)
    a = socket_client(ada)
    a.emit("send_message", {"conversation_id": conversation.id, "message": "secret"},
           namespace="/chat", callback=True)
    e.get_received("/chat")

    assert e.emit("join", {"conversation_id": conversation.id}, namespace="/chat",
                  callback=True) == {"ok": False, "error": "forbidden"}
    assert e.emit("send_message", {"conversation_id": conversation.id, "message": "let me in"},
                  namespace="/chat", callback=True) == {"ok": False, "error": "forbidden"}
    # Joining was refused, so nothing posted in the room reaches the outsider.
    a.emit("send_message", {"conversation_id": conversation.id, "message": "still secret"},
           namespace="/chat", callback=True)
    assert received(e) == []
    assert db.session.scalar(db.select(db.func.count(Message.id))) == 1

    auth.login("eve")
    from flask import current_app
    client = current_app.test_client()
    client.post("/auth/login", data={"username": "eve", "password": "correct horse battery"})
    page = client.get(f"/chat/{conversation.id}")
    api = client.get(f"/api/conversations/{conversation.id}/messages")
    assert page.status_code == 404 and b"secret" not in page.data
    assert api.status_code == 404 and b"secret" not in api.data
    assert api.get_json() == {"ok": False, "error": "not_found"}


def test_unknown_conversation_looks_like_a_forbidden_one(pair, socket_client):
    ada, _, _ = pair
    a = socket_client(ada)
    assert a.emit("join", {"conversation_id": 999999}, namespace="/chat",
                  callback=True) == {"ok": False, "error": "forbidden"}


def test_rate_limit_refuses_second_send_and_allows_after_wait(pair, make_user,
                                                             make_conversation, socket_client):
    ada, bob, conversation = pair
    a, b = socket_client(ada), socket_client(bob)
    first = a.emit("send_message", {"conversation_id": conversation.id, "message": "1"},
                   namespace="/chat", callback=True)
    second = a.emit("send_message", {"conversation_id": conversation.id, "message": "2"},
                    namespace="/chat", callback=True)
    assert first["ok"] is True
    assert second["ok"] is False and second["error"] == "rate_limited"
    assert 0 < second["retry_after"] <= 2
    # Another user is not affected by Ada's limit.
    assert b.emit("send_message", {"conversation_id": conversation.id, "message": "b"},
                  namespace="/chat", callback=True)["ok"] is True
    time.sleep(second["retry_after"] + 0.05)
    third = a.emit("send_message", {"conversation_id": conversation.id, "message": "3"},
                   namespace="/chat", callback=True)
    assert third["ok"] is True
    texts = db.session.scalars(db.select(Message.text).order_by(Message.id)).all()
    assert texts == ["1", "b", "3"]


def test_retried_send_with_same_client_id_returns_the_original(pair, socket_client):
    ada, bob, conversation = pair
    a = socket_client(ada)
    payload = {"conversation_id": conversation.id, "message": "once", "client_id": "c-1"}
    first = a.emit("send_message", payload, namespace="/chat", callback=True)
    again = a.emit("send_message", payload, namespace="/chat", callback=True)
    assert again["ok"] and again["message"] == first["message"]
    assert db.session.scalar(db.select(db.func.count(Message.id))) == 1


def test_leave_stops_the_live_view_but_not_the_conversation_list(pair, socket_client):
    ada, bob, conversation = pair
    a, b = socket_client(ada), socket_client(bob)
    b.emit("join", {"conversation_id": conversation.id}, namespace="/chat", callback=True)
    assert b.emit("leave", {"conversation_id": conversation.id}, namespace="/chat",
                  callback=True) == {"ok": True}
    b.get_received("/chat")
    a.emit("typing", {"conversation_id": conversation.id, "typing": True}, namespace="/chat",
           callback=True)
    ack = a.emit("send_message", {"conversation_id": conversation.id, "message": "gone?"},
                 namespace="/chat", callback=True)
    events = b.get_received("/chat")
    assert [e["name"] for e in events] == ["message"]  # typing goes to the room only
    assert events[0]["args"] == ack["message"]  # a member still hears of it, through user:<id>


MALFORMED = [
    None, 3, "text", [1, 2], True, 1.5,
    {},
    {"conversation_id": "1"},
    {"conversation_id": None, "message": "x"},
    {"conversation_id": True, "message": "x"},
    {"conversation_id": 1.0, "message": "x"},
    {"conversation_id": [1], "message": "x"},
    {"conversation_id": {"id": 1}, "message": "x"},
    {"conversation_id": 2**70, "message": "x"},
    {"conversation_id": -1, "message": "x"},
    {"message": "no conversation"},
    {"conversation_id": "CONV", "message": {"nested": ["deep", {"x": 1}]}},
    {"conversation_id": "CONV", "message": ["a", "b"]},
    {"conversation_id": "CONV", "message": 42},
    {"conversation_id": "CONV", "message": None},
    {"conversation_id": "CONV", "message": "x", "client_id": 5},
    {"conversation_id": "CONV", "message": "x", "client_id": "c" * 65},
    {"conversation_id": "CONV", "message": "x" * 4001},
    {"conversation_id": "CONV", "message": "   \n\t  "},
    {"conversation_id": "CONV", "message": "\ud800 lone surrogate"},
]


@pytest.mark.parametrize("payload", MALFORMED)
@pytest.mark.parametrize("event", ["join", "leave", "send_message"])
def test_malformed_payloads_get_a_clean_error_and_the_connection_keeps_working(
    pair, socket_client, event, payload
):
    ada, bob, conversation = pair
    a = socket_client(ada)
    if isinstance(payload, dict):
        payload = {k: (conversation.id if v == "CONV" else v) for k, v in payload.items()}
    ack = a.emit(event, payload, namespace="/chat", callback=True)
    if ack.get("ok"):
        # Only a join of this conversation, or a leave naming any valid id, is accepted.
        cid = payload.get("conversation_id")
        assert (event == "join" and cid == conversation.id) or (
            event == "leave" and isinstance(cid, int) and not isinstance(cid, bool)
            and 0 < cid < 2**63)
    else:
        assert ack["error"] in {"invalid", "forbidden", "too_long", "empty"}
        assert set(ack) <= {"ok", "error", "max_length"}
    assert db.session.scalar(db.select(db.func.count(Message.id))) == 0
    assert a.is_connected("/chat")
    ok = a.emit("send_message", {"conversation_id": conversation.id, "message": "still here"},
                namespace="/chat", callback=True)
    assert ok["ok"] is True


def test_error_codes_for_specific_refusals(pair, socket_client):
    ada, _, conversation = pair
    a = socket_client(ada)
    cid = conversation.id
    too_long = a.emit("send_message", {"conversation_id": cid, "message": "x" * 4001},
                      namespace="/chat", callback=True)
    assert too_long == {"ok": False, "error": "too_long", "max_length": 4000}
    assert a.emit("send_message", {"conversation_id": cid, "message": "  "}, namespace="/chat",
                  callback=True) == {"ok": False, "error": "empty"}
    assert a.emit("send_message", {"conversation_id": cid, "message": 5}, namespace="/chat",
                  callback=True) == {"ok": False, "error": "invalid"}
    assert a.emit("join", {"conversation_id": cid, "after": "nope"}, namespace="/chat",
                  callback=True) == {"ok": False, "error": "invalid"}


def test_message_text_is_kept_as_text(pair, socket_client):
    ada, bob, conversation = pair
    a = socket_client(ada)
    evil = "<img src=x onerror=alert(1)>"
    ack = a.emit("send_message", {"conversation_id": conversation.id, "message": evil},
                 namespace="/chat", callback=True)
    assert ack["message"]["message"] == evil


def test_every_participant_hears_of_new_messages_once_without_joining(pair, make_user,
                                                                       socket_client):
    ada, bob, conversation = pair
    eve = make_user("eve")
    a, b, e = socket_client(ada), socket_client(bob), socket_client(eve)
    bob_joined = socket_client(bob)
    assert bob_joined.emit("join", {"conversation_id": conversation.id}, namespace="/chat",
                           callback=True)["ok"]
    for sio in (a, b, bob_joined):
        sio.get_received("/chat")  # presence of the others coming online
    ack = a.emit("send_message", {"conversation_id": conversation.id, "message": "ping " * 50},
                 namespace="/chat", callback=True)
    # One `message` per socket and no second event: through the personal room for a socket
    # that never joined, once (not twice) for one in both the room and the personal room.
    for sio in (a, b, bob_joined):
        assert [(ev["name"], ev["args"]) for ev in sio.get_received("/chat")] == [
            ("message", ack["message"])]
    assert e.get_received("/chat") == []
