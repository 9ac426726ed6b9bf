"""Drafts kept on the server: PUT /api/conversations/<id>/draft and GET /api/drafts across two
sessions of one user, per conversation and per thread; sending there clears it (not a draft
saved after the send); every refusal. Redis and the embedded default."""

from __future__ import annotations

import re

import pytest
from conftest import PASSWORD, app_in_context
from sqlalchemy import func, select

from simplechat.auth.tokens import create_token
from simplechat.conversations import drafts as drafts_module
from simplechat.extensions import db
from simplechat.infra.ids import new_message_id
from simplechat.infra.write_buffer import write_buffer
from simplechat.messaging.send import send_message
from simplechat.messaging.tasks import store_batch
from simplechat.models import Draft

NS = "/chat"


@pytest.fixture
def app(database_uri, backend):
    yield from app_in_context(database_uri, backend, CHAT_RATE_LIMIT="off")


@pytest.fixture
def group(make_user, make_conversation):
    ada, bob, dee = (make_user(u, first_name=u.capitalize(), last_name="T")
                     for u in ("ada", "bob", "dee"))
    return make_conversation(ada, bob, title="Pair"), (ada, bob, dee)


def session(app, user):
    """A browser's session of its own: a separate login (another device)."""
    http = app.test_client()
    assert http.post("/auth/login", data={"username": user.username,
                                          "password": PASSWORD}).status_code == 302
    return http


def put(http, conversation_id: int, body, **kw):
    return http.put(f"/api/conversations/{conversation_id}/draft", json=body, **kw)


def listed(http) -> list[dict]:
    response = http.get("/api/drafts")
    assert response.status_code == 200
    return response.get_json()["drafts"]


def draft_rows() -> int:
    db.session.expire_all()
    return db.session.scalar(select(func.count()).select_from(Draft))


def test_a_draft_follows_its_user_to_another_session(app, group, socket_client):
    conversation, (ada, bob, _dee) = group
    root = send_message(bob, conversation.id, "root")["message"]
    laptop, phone = session(app, ada), session(app, ada)
    sio = socket_client(ada)
    sio.get_received(NS)
    saved = put(laptop, conversation.id, {"message": "half a tho"})
    assert saved.status_code == 200
    draft = saved.get_json()["draft"]
    assert (draft["conversation_id"], draft["thread_id"], draft["message"]) == (
        conversation.id, None, "half a tho")
    thread = put(laptop, conversation.id, {"message": "  in the thread\n", "thread_id": root["id"]})
    assert thread.get_json()["draft"]["message"] == "  in the thread\n"  # kept as typed
    on_phone = listed(phone)
    assert [(d["thread_id"], d["message"]) for d in on_phone] == [
        (root["id"], "  in the thread\n"), (None, "half a tho")]
    # The other pages hear each change.
    events = [e["args"][0] if isinstance(e["args"], list) else e["args"]
              for e in sio.get_received(NS) if e["name"] == "draft"]
    assert [e["message"] for e in events] == ["half a tho", "  in the thread\n"]
    # Changed on the phone, read on the laptop; blanks delete it.
    assert put(phone, conversation.id, {"message": "half a thought"}).status_code == 200
    assert [d["message"] for d in listed(laptop) if d["thread_id"] is None] == ["half a thought"]
    assert put(phone, conversation.id, {"message": " \n "}).get_json() == {"ok": True,
                                                                          "draft": None}
    assert [d["thread_id"] for d in listed(laptop)] == [root["id"]]
    assert draft_rows() == 1
    # Each user sees their own only.
    assert listed(session(app, bob)) == []


def test_sending_clears_the_draft_of_that_composer_only(app, group):
    conversation, (ada, bob, _dee) = group
    root = send_message(bob, conversation.id, "root")["message"]
    http = session(app, ada)
    put(http, conversation.id, {"message": "main draft"})
    put(http, conversation.id, {"message": "thread draft", "thread_id": root["id"]})
    assert send_message(ada, conversation.id, "main draft")["ok"]
    assert [d["thread_id"] for d in listed(http)] == [root["id"]]
    assert send_message(ada, conversation.id, "thread draft", thread_id=root["id"])["ok"]
    assert listed(http) == []
    # Someone else's send leaves it alone.
    put(http, conversation.id, {"message": "mine"})
    assert send_message(bob, conversation.id, "bob's")["ok"]
    assert [d["message"] for d in listed(http)] == ["mine"]


def test_a_draft_saved_after_the_send_is_kept(app, group):
    conversation, (ada, _bob, _dee) = group
    http = session(app, ada)
    put(http, conversation.id, {"message": "first"})
    app.extensions["celery"].conf.task_always_eager = False  # the send waits in the buffer
    try:
        assert send_message(ada, conversation.id, "first")["ok"]
        put(http, conversation.id, {"message": "the next one"})
    finally:
        app.extensions["celery"].conf.task_always_eager = True
    write_buffer().flush(store_batch)
    assert [d["message"] for d in listed(http)] == ["the next one"]


def test_draft_refusals_change_nothing(app, group, make_conversation):
    conversation, (ada, bob, dee) = group
    other = make_conversation(dee, bob)
    foreign = send_message(dee, other.id, "elsewhere")["message"]
    root = send_message(bob, conversation.id, "root")["message"]
    reply = send_message(bob, conversation.id, "reply", thread_id=root["id"])["message"]
    stranger, http = session(app, dee), session(app, ada)
    assert put(stranger, conversation.id, {"message": "x"}).status_code == 403
    for thread_id in (foreign["id"], reply["id"], new_message_id()):
        response = put(http, conversation.id, {"message": "x", "thread_id": thread_id})
        assert response.status_code == 404, thread_id
    limit = app.config["CHAT_MAX_MESSAGE_LENGTH"]
    response = put(http, conversation.id, {"message": "x" * (limit + 1)})
    assert (response.status_code, response.get_json()["error"]) == (400, "too_long")
    for body in ({}, {"message": 5}, {"message": "x", "thread_id": "x"},
                 {"message": "x", "extra": 1}, ["x"]):
        assert put(http, conversation.id, body).status_code == 400
    assert http.put(f"/api/conversations/{conversation.id}/draft", data="x",
                    content_type="application/json").status_code == 400
    assert put(http, conversation.id + 1000, {"message": "x"}).status_code == 403
    assert draft_rows() == 0


def test_too_many_drafts_is_a_conflict(app, group, monkeypatch):
    conversation, (ada, bob, _dee) = group
    roots = [send_message(bob, conversation.id, f"root {i}")["message"] for i in range(3)]
    monkeypatch.setattr(drafts_module, "MAX_DRAFTS", 2)
    http = session(app, ada)
    assert put(http, conversation.id, {"message": "a"}).status_code == 200
    assert put(http, conversation.id, {"message": "b", "thread_id": roots[0]["id"]}
               ).status_code == 200
    response = put(http, conversation.id, {"message": "c", "thread_id": roots[1]["id"]})
    assert (response.status_code, response.get_json()["error"]) == (409, "too_many")
    # Changing one is not one more.
    assert put(http, conversation.id, {"message": "a2"}).status_code == 200
    assert draft_rows() == 2


def test_a_cookie_write_needs_the_csrf_header_and_a_token_does_not(app, group):
    conversation, (ada, _bob, _dee) = group
    http = session(app, ada)
    app.config["WTF_CSRF_ENABLED"] = True  # logged in: now a cookie's write needs the header
    response = put(http, conversation.id, {"message": "x"})
    assert (response.status_code, response.get_json()["error"]) == (400, "csrf")
    page = http.get("/profile/").get_data(as_text=True)
    token = re.search(r'<meta name="csrf-token" content="([^"]+)"', page).group(1)
    assert put(http, conversation.id, {"message": "x"},
               headers={"X-CSRFToken": token}).status_code == 200
    bearer = create_token(ada, "script").secret
    client = app.test_client()
    assert put(client, conversation.id, {"message": "y"},
               headers={"Authorization": f"Bearer {bearer}"}).status_code == 200
    assert client.get("/api/drafts", headers={"Authorization": f"Bearer {bearer}"}
                      ).get_json()["drafts"][0]["message"] == "y"


def test_drafts_of_a_conversation_one_left_are_not_listed(app, group, socket_client,
                                                        make_conversation):
    _pair, (ada, bob, dee) = group
    conversation = make_conversation(ada, bob, dee, title="Three")
    http = session(app, ada)
    put(http, conversation.id, {"message": "x"})
    sio = socket_client(ada)
    assert sio.emit("leave_conversation", {"conversation_id": conversation.id}, namespace=NS,
                    callback=True)["ok"]
    assert listed(http) == []
