"""Threads over the socket and HTTP: replies sent with thread_id through the send path, kept out
of the main flow (unless also_to_conversation), the root's summary kept current through
message_updated and in SQL, the thread event and route, every refusal, following and per-thread
read markers, GET /api/threads with unread counts; a Redis flush and replies not yet stored.
Redis and the embedded default."""

from __future__ import annotations

import re

import pytest
from conftest import PASSWORD, app_in_context
from sqlalchemy import func, select

from simplechat.conversations.channels import create_channel
from simplechat.extensions import db
from simplechat.infra.ids import new_message_id
from simplechat.infra.services import services
from simplechat.messaging.send import send_message
from simplechat.messaging.system_lines import renamed
from simplechat.models import Message, ThreadFollow

NS = "/chat"


@pytest.fixture
def app(database_uri, backend):
    yield from app_in_context(database_uri, backend, CHAT_RATE_LIMIT="off",
                              CHAT_CHANGE_RATE_LIMIT="off", CHAT_SOCKET_EVENT_RATE="off",
                              CHAT_SOCKET_JOIN_RATE="off")


def ask(sio, event: str, payload) -> dict:
    return sio.emit(event, payload, namespace=NS, callback=True)


def received(sio, name: str) -> list:
    # A fanned-out message arrives pre-encoded (realtime/fanout.py): its args are the payload.
    return [e["args"] if isinstance(e["args"], dict) else e["args"][0]
            for e in sio.get_received(NS) if e["name"] == name]


@pytest.fixture
def group(make_user, make_conversation):
    """ada, bob and cy in a group; dee a stranger; eve in another conversation with ada."""
    ada, bob, cy, dee, eve = (make_user(u, first_name=u.capitalize(), last_name="T")
                              for u in ("ada", "bob", "cy", "dee", "eve"))
    conversation = make_conversation(ada, bob, cy, title="Crew")
    other = make_conversation(ada, eve)
    return conversation, other, (ada, bob, cy, dee, eve)


def login(app, user):
    http = app.test_client()
    assert http.post("/auth/login", data={"username": user.username,
                                          "password": PASSWORD}).status_code == 302
    return http


def csrf(http) -> dict:
    """The X-CSRFToken header for a cookie caller's writes."""
    page = http.get("/profile/").get_data(as_text=True)
    return {"X-CSRFToken": re.search(r'<meta name="csrf-token" content="([^"]+)"',
                                     page).group(1)}


def forget_redis(app) -> None:
    """Lose everything this app keeps in Redis (or in process), as a flush would."""
    svc = services()
    if svc.redis is not None:
        keys = list(svc.redis.scan_iter(match=app.config["REDIS_KEY_PREFIX"] + "*"))
        if keys:
            svc.redis.delete(*keys)
    else:
        svc.cache._lists.clear()
        svc.cache._state.clear()


def stored_count() -> int:
    db.session.expire_all()
    return db.session.scalar(select(func.count()).select_from(Message))


# ------------------------------------------------------------------------------- sending


def test_a_reply_stays_in_its_thread_and_its_root_counts_it(app, group, socket_client):
    conversation, _other, (ada, bob, cy, *_rest) = group
    a, b, c = socket_client(ada), socket_client(bob), socket_client(cy)
    for sio in (a, b):
        assert ask(sio, "join", {"conversation_id": conversation.id})["ok"]
        sio.get_received(NS)
    root = ask(a, "send_message", {"conversation_id": conversation.id, "message": "plan?"})
    assert root["ok"] and root["message"]["thread_id"] is None
    assert root["message"]["thread"] is None
    a.get_received(NS), b.get_received(NS)

    reply = ask(b, "send_message", {"conversation_id": conversation.id, "message": "**yes**",
                                    "thread_id": root["message"]["id"], "client_id": "r1"})
    assert reply["ok"], reply
    message = reply["message"]
    assert (message["thread_id"], message["also_to_conversation"]) == (
        root["message"]["id"], False)
    assert message["html"] == "<p><strong>yes</strong></p>"
    # The room hears the reply and the root's new summary.
    heard = [(e["name"], e["args"] if isinstance(e["args"], dict) else e["args"][0])
             for e in a.get_received(NS)]
    assert ("message", message) in heard
    assert ("message_updated", {**root["message"], "thread": {
        "reply_count": 1, "last_reply_at": message["timestamp"],
        "participants": [bob.id]}}) in heard
    # The main flow holds the root (with its summary), not the reply.
    joined = ask(c, "join", {"conversation_id": conversation.id})
    assert [m["id"] for m in joined["messages"]] == [root["message"]["id"]]
    assert joined["messages"][0]["thread"]["reply_count"] == 1
    http = login(app, cy)
    page = http.get(f"/api/conversations/{conversation.id}/messages").get_json()
    assert [m["id"] for m in page["messages"]] == [root["message"]["id"]]
    # The thread holds it.
    thread = ask(c, "thread", {"conversation_id": conversation.id,
                               "thread_id": root["message"]["id"]})
    assert thread["ok"] and thread["root"]["id"] == root["message"]["id"]
    assert [m["id"] for m in thread["messages"]] == [message["id"]]
    assert thread["has_more"] is False
    # A second replier and a third: participants in the order they first replied.
    for sender, text in ((ada, "ok"), (bob, "again"), (cy, "me too")):
        assert send_message(sender, conversation.id, text, thread_id=root["message"]["id"])["ok"]
    summary = ask(a, "thread", {"conversation_id": conversation.id,
                                "thread_id": root["message"]["id"]})["root"]["thread"]
    assert (summary["reply_count"], summary["participants"]) == (4, [bob.id, ada.id, cy.id])
    # SQL holds the same, and the reply's place.
    db.session.expire_all()
    stored = db.session.get(Message, root["message"]["id"])
    assert (stored.reply_count, stored.thread_participants) == (4, [bob.id, ada.id, cy.id])
    assert db.session.get(Message, message["id"]).thread_id == root["message"]["id"]


def test_a_reply_also_sent_to_the_conversation_is_in_both(app, group, socket_client):
    conversation, _other, (ada, bob, cy, *_rest) = group
    root = send_message(ada, conversation.id, "root")["message"]
    both = send_message(bob, conversation.id, "for everyone", thread_id=root["id"],
                        also_to_conversation=True)["message"]
    only = send_message(bob, conversation.id, "thread only", thread_id=root["id"])["message"]
    assert both["also_to_conversation"] is True
    c = socket_client(cy)
    joined = ask(c, "join", {"conversation_id": conversation.id})
    assert [m["id"] for m in joined["messages"]] == [root["id"], both["id"]]
    thread = ask(c, "thread", {"conversation_id": conversation.id, "thread_id": root["id"]})
    assert [m["id"] for m in thread["messages"]] == [both["id"], only["id"]]
    # The same after a Redis flush: SQL keeps both places.
    forget_redis(app)
    joined = ask(c, "join", {"conversation_id": conversation.id})
    assert [m["id"] for m in joined["messages"]] == [root["id"], both["id"]]
    assert joined["messages"][0]["thread"]["reply_count"] == 2
    thread = ask(c, "thread", {"conversation_id": conversation.id, "thread_id": root["id"]})
    assert [m["id"] for m in thread["messages"]] == [both["id"], only["id"]]


def test_a_thread_survives_a_redis_flush(app, group, socket_client):
    conversation, _other, (ada, bob, cy, *_rest) = group
    root = send_message(ada, conversation.id, "root")["message"]
    later = send_message(ada, conversation.id, "after the root")["message"]
    replies = [send_message(u, conversation.id, f"reply {i}", thread_id=root["id"])["message"]
               for i, u in enumerate((bob, cy, bob))]
    forget_redis(app)
    c = socket_client(cy)
    joined = ask(c, "join", {"conversation_id": conversation.id})
    assert [m["id"] for m in joined["messages"]] == [root["id"], later["id"]]
    assert joined["messages"][0]["thread"] == {
        "reply_count": 3, "last_reply_at": replies[-1]["timestamp"],
        "participants": [bob.id, cy.id]}
    thread = ask(c, "thread", {"conversation_id": conversation.id, "thread_id": root["id"]})
    assert [m["id"] for m in thread["messages"]] == [r["id"] for r in replies]
    assert thread["root"]["thread"]["reply_count"] == 3
    # A reply after the flush, its root no longer cached: found in SQL, counted on.
    forget_redis(app)
    c.get_received(NS)
    after = ask(c, "send_message", {"conversation_id": conversation.id, "message": "back",
                                    "thread_id": root["id"]})
    assert after["ok"], after
    updated = [m for m in received(c, "message_updated") if m["id"] == root["id"]]
    assert updated and updated[-1]["thread"]["reply_count"] == 4
    http = login(app, ada)
    page = http.get(f"/api/conversations/{conversation.id}/threads/{root['id']}/messages")
    assert page.status_code == 200
    body = page.get_json()
    assert [m["id"] for m in body["messages"]] == [r["id"] for r in replies] + [
        after["message"]["id"]]
    assert body["root"]["thread"]["reply_count"] == 4


def test_a_reply_acknowledged_but_not_stored_is_in_its_thread(app, group, socket_client):
    conversation, _other, (ada, bob, cy, *_rest) = group
    root = send_message(ada, conversation.id, "root")["message"]
    app.extensions["celery"].conf.task_always_eager = False  # no flush: as before a worker's
    try:
        waiting = send_message(bob, conversation.id, "on its way", thread_id=root["id"])
        assert waiting["ok"], waiting
        assert db.session.get(Message, waiting["message"]["id"]) is None
        c = socket_client(cy)
        thread = ask(c, "thread", {"conversation_id": conversation.id, "thread_id": root["id"]})
        assert [m["id"] for m in thread["messages"]] == [waiting["message"]["id"]]
        assert thread["root"]["thread"]["reply_count"] == 1
        joined = ask(c, "join", {"conversation_id": conversation.id})
        assert [m["id"] for m in joined["messages"]] == [root["id"]]
        http = login(app, cy)
        page = http.get(
            f"/api/conversations/{conversation.id}/threads/{root['id']}/messages").get_json()
        assert [m["id"] for m in page["messages"]] == [waiting["message"]["id"]]
    finally:
        app.extensions["celery"].conf.task_always_eager = True
    from simplechat.infra.write_buffer import write_buffer
    from simplechat.messaging.tasks import store_batch

    write_buffer().flush(store_batch)
    db.session.expire_all()
    assert db.session.get(Message, root["id"]).reply_count == 1


def test_changes_to_replies_and_roots_show_in_the_thread_and_the_main_flow(
        app, group, socket_client):
    conversation, _other, (ada, bob, cy, *_rest) = group
    a, b, c = socket_client(ada), socket_client(bob), socket_client(cy)
    root = send_message(ada, conversation.id, "root")["message"]
    reply = send_message(bob, conversation.id, "typo", thread_id=root["id"])["message"]
    both = send_message(bob, conversation.id, "to all", thread_id=root["id"],
                        also_to_conversation=True)["message"]
    assert ask(b, "edit_message", {"conversation_id": conversation.id,
                                   "message_id": reply["id"], "message": "fixed"})["ok"]
    assert ask(c, "react", {"conversation_id": conversation.id, "message_id": reply["id"],
                            "emoji": "👍"})["ok"]
    assert ask(c, "react", {"conversation_id": conversation.id, "message_id": both["id"],
                            "emoji": "🎉"})["ok"]
    assert ask(a, "edit_message", {"conversation_id": conversation.id,
                                   "message_id": root["id"], "message": "root, edited"})["ok"]

    def views():
        thread = ask(c, "thread", {"conversation_id": conversation.id, "thread_id": root["id"]})
        joined = ask(c, "join", {"conversation_id": conversation.id})
        return ({m["id"]: m for m in thread["messages"]}, thread["root"],
                {m["id"]: m for m in joined["messages"]})

    for _ in ("cached", "after a flush"):
        replies, thread_root, main = views()
        assert replies[reply["id"]]["message"] == "fixed"
        assert replies[reply["id"]]["reactions"] == {"👍": [cy.id]}
        assert replies[both["id"]]["reactions"] == main[both["id"]]["reactions"] == {
            "🎉": [cy.id]}
        for shown in (thread_root, main[root["id"]]):
            assert shown["message"] == "root, edited"
            assert shown["thread"]["reply_count"] == 2
        forget_redis(app)
    # A deleted reply stays in its thread as a tombstone (and in the count).
    assert ask(b, "delete_message", {"conversation_id": conversation.id,
                                     "message_id": reply["id"]})["ok"]
    replies, thread_root, _main = views()
    assert replies[reply["id"]]["deleted"] is True
    assert thread_root["thread"]["reply_count"] == 2


def test_a_retried_reply_is_stored_once_and_another_thread_is_a_conflict(app, group):
    conversation, _other, (ada, bob, *_rest) = group
    root = send_message(ada, conversation.id, "root")["message"]
    other_root = send_message(ada, conversation.id, "another root")["message"]
    first = send_message(bob, conversation.id, "yes", "c1", thread_id=root["id"])
    again = send_message(bob, conversation.id, "yes", "c1", thread_id=root["id"])
    assert again["ok"] and again["duplicate"] and again["message"] == first["message"]
    assert send_message(bob, conversation.id, "yes", "c1",
                        thread_id=other_root["id"])["error"] == "conflict"
    assert send_message(bob, conversation.id, "yes", "c1")["error"] == "conflict"
    db.session.expire_all()
    assert db.session.get(Message, root["id"]).reply_count == 1


# A fixed random-looking id: pytest-xdist needs the same test ids in every worker.
BAD_IDS = [5, True, {}, [], "x", "3f2b8c1e-7a4d-4e9b-9c6f-1d2e3f4a5b6c", "0" * 36, "\ud800" * 36]


@pytest.mark.parametrize("thread_id", [*BAD_IDS, "UNKNOWN", "OTHER", "REPLY", "SYSTEM"])
def test_a_bad_thread_id_is_invalid_and_stores_nothing(app, group, socket_client, thread_id):
    conversation, other, (ada, bob, cy, _dee, eve) = group
    root = send_message(ada, conversation.id, "root")["message"]
    reply = send_message(bob, conversation.id, "a reply", thread_id=root["id"])["message"]
    foreign = send_message(eve, other.id, "elsewhere")["message"]
    renamed(ada, conversation.id, "Crew 2")
    system = ask(socket_client(ada), "join", {"conversation_id": conversation.id})[
        "messages"][-1]
    assert system["kind"] == "system"
    value = {"UNKNOWN": new_message_id(), "OTHER": foreign["id"], "REPLY": reply["id"],
             "SYSTEM": system["id"]}.get(thread_id, thread_id) if isinstance(
                 thread_id, str) else thread_id
    before = stored_count()
    b = socket_client(bob)
    answer = ask(b, "send_message", {"conversation_id": conversation.id, "message": "x",
                                     "thread_id": value})
    assert answer == {"ok": False, "error": "invalid"}
    assert stored_count() == before
    # The same over HTTP: malformed is 400, a root that is not there 404; nothing stored.
    http = login(app, bob)
    response = http.post(f"/api/conversations/{conversation.id}/messages",
                         json={"message": "x", "thread_id": value}, headers=csrf(http))
    assert response.status_code == (404 if thread_id in (
        "UNKNOWN", "OTHER", "REPLY", "SYSTEM") else 400), response.get_json()
    assert stored_count() == before
    # And reading it as a thread: invalid on the socket, 404 over HTTP.
    if isinstance(value, str) and "\ud800" not in value:
        assert ask(b, "thread", {"conversation_id": conversation.id, "thread_id": value}) == {
            "ok": False, "error": "invalid"}
        status = http.get(f"/api/conversations/{conversation.id}/threads/{value}/messages")
        assert status.status_code == 404


def test_a_deleted_root_keeps_its_thread_and_takes_replies(app, group, socket_client):
    conversation, _other, (ada, bob, *_rest) = group
    root = send_message(ada, conversation.id, "root")["message"]
    first = send_message(bob, conversation.id, "first", thread_id=root["id"])["message"]
    a = socket_client(ada)
    assert ask(a, "delete_message", {"conversation_id": conversation.id,
                                     "message_id": root["id"]})["ok"]
    later = send_message(bob, conversation.id, "later", thread_id=root["id"])
    assert later["ok"], later
    thread = ask(a, "thread", {"conversation_id": conversation.id, "thread_id": root["id"]})
    assert thread["root"]["deleted"] is True and thread["root"]["thread"]["reply_count"] == 2
    assert [m["id"] for m in thread["messages"]] == [first["id"], later["message"]["id"]]


def test_a_thread_under_a_root_older_than_the_recent_list(app, group, socket_client):
    """Its root left the recent list: the first reply finds it in SQL, the next ones go by
    its thread's list; the room still hears its summary (as SQL has it)."""
    conversation, _other, (ada, bob, cy, *_rest) = group
    root = send_message(ada, conversation.id, "old root")["message"]
    for n in range(app.config["CHAT_RECENT_MESSAGES"] + 1):
        send_message(cy, conversation.id, f"chatter {n}")
    c = socket_client(cy)
    assert root["id"] not in [m["id"] for m in ask(c, "join", {
        "conversation_id": conversation.id})["messages"]]
    c.get_received(NS)
    for n in (1, 2, 3):
        assert ask(c, "send_message", {"conversation_id": conversation.id,
                                       "message": f"late reply {n}", "thread_id": root["id"]}
                   )["ok"]
        counts = [m["thread"]["reply_count"] for m in received(c, "message_updated")
                  if m["id"] == root["id"]]
        assert counts == [n]
    http = login(app, cy)
    body = http.get(f"/api/conversations/{conversation.id}/threads/{root['id']}/messages"
                    ).get_json()
    assert [m["message"] for m in body["messages"]] == ["late reply 1", "late reply 2",
                                                        "late reply 3"]
    assert body["root"]["thread"]["reply_count"] == 3
    # A message that left the recent list and is a reply is still no root.
    before = stored_count()
    assert ask(c, "send_message", {"conversation_id": conversation.id, "message": "x",
                                   "thread_id": body["messages"][0]["id"]}) == {
        "ok": False, "error": "invalid"}
    assert stored_count() == before


@pytest.mark.parametrize("also", [1, "yes", {}, []])
def test_a_bad_also_to_conversation_is_invalid(app, group, also):
    conversation, _other, (ada, bob, *_rest) = group
    root = send_message(ada, conversation.id, "root")["message"]
    before = stored_count()
    assert send_message(bob, conversation.id, "x", thread_id=root["id"],
                        also_to_conversation=also) == {"ok": False, "error": "invalid"}
    assert stored_count() == before


def test_strangers_are_forbidden_every_thread_event(app, group, socket_client):
    conversation, _other, (ada, bob, _cy, dee, _eve) = group
    root = send_message(ada, conversation.id, "root")["message"]
    reply = send_message(bob, conversation.id, "reply", thread_id=root["id"])["message"]
    d = socket_client(dee)
    before = stored_count()
    for event, payload in (
            ("send_message", {"message": "x", "thread_id": root["id"]}),
            ("thread", {"thread_id": root["id"]}),
            ("follow_thread", {"thread_id": root["id"], "on": True}),
            ("thread_read", {"thread_id": root["id"], "message_id": reply["id"]})):
        answer = ask(d, event, {"conversation_id": conversation.id, **payload})
        assert answer == {"ok": False, "error": "forbidden"}, (event, answer)
    assert stored_count() == before
    assert db.session.scalar(select(func.count()).select_from(ThreadFollow).where(
        ThreadFollow.user_id == dee.id)) == 0
    http = login(app, dee)
    assert http.get(f"/api/conversations/{conversation.id}/threads/{root['id']}/messages"
                    ).status_code == 404
    headers = csrf(http)
    assert http.post(f"/api/conversations/{conversation.id}/messages", headers=headers,
                     json={"message": "x", "thread_id": root["id"]}).status_code == 403
    assert http.post(f"/api/conversations/{conversation.id}/threads/{root['id']}/follow",
                     headers=headers, json={"on": True}).status_code == 403


SHAPES = [None, [], "x", {}, {"conversation_id": "1"}, {"conversation_id": None},
          {"thread_id": 5}, {"thread_id": "x"}, {"thread_id": None}]
MALFORMED = (
    [("thread", p) for p in [*SHAPES, {"after": "x"}, {"after": 5}, {"after": {}}]]
    + [("follow_thread", p) for p in [*SHAPES, {"on": "yes"}, {"on": None}, {"on": 1}]]
    + [("thread_read", p) for p in [*SHAPES, {"message_id": "x"}, {"message_id": None},
                                     {"message_id": 7}]])


@pytest.mark.parametrize(("event", "payload"), MALFORMED)
def test_malformed_thread_events_are_invalid(app, group, socket_client, event, payload):
    conversation, _other, (ada, bob, *_rest) = group
    root = send_message(ada, conversation.id, "root")["message"]
    reply = send_message(bob, conversation.id, "reply", thread_id=root["id"])["message"]
    good = {"conversation_id": conversation.id, "thread_id": root["id"]}
    good.update({"follow_thread": {"on": True},
                 "thread_read": {"message_id": reply["id"]}}.get(event, {}))
    data = payload if not isinstance(payload, dict) else ({**good, **payload} if payload
                                                          else {})
    before = followers(root["id"])
    assert ask(socket_client(bob), event, data) == {"ok": False, "error": "invalid"}
    assert followers(root["id"]) == before


def test_a_public_channels_thread_reads_for_anyone_signed_in(app, group):
    _conversation, _other, (ada, bob, _cy, dee, _eve) = group
    channel, refusal = create_channel(ada, "Engines", "", "public", limited=False)
    assert refusal is None
    root = send_message(ada, channel.id, "root")["message"]
    reply = send_message(ada, channel.id, "reply", thread_id=root["id"])["message"]
    http = login(app, dee)
    page = http.get(f"/api/conversations/{channel.id}/threads/{root['id']}/messages")
    assert page.status_code == 200
    assert [m["id"] for m in page.get_json()["messages"]] == [reply["id"]]
    # Posting in it still needs joining.
    response = http.post(f"/api/conversations/{channel.id}/messages", headers=csrf(http),
                         json={"message": "x", "thread_id": root["id"]})
    assert response.status_code == 403


def test_a_long_thread_pages_without_gap(app, group, socket_client):
    conversation, _other, (ada, bob, *_rest) = group
    root = send_message(ada, conversation.id, "root")["message"]
    replies = [send_message(bob, conversation.id, f"reply {i}", thread_id=root["id"])["message"]
               for i in range(130)]
    b = socket_client(bob)
    newest = ask(b, "thread", {"conversation_id": conversation.id, "thread_id": root["id"]})
    size = app.config["CHAT_RECENT_MESSAGES"]
    assert [m["id"] for m in newest["messages"]] == [r["id"] for r in replies[-size:]]
    assert newest["has_more"] is True
    caught_up = ask(b, "thread", {"conversation_id": conversation.id, "thread_id": root["id"],
                                  "after": replies[-3]["id"]})
    assert [m["id"] for m in caught_up["messages"]] == [r["id"] for r in replies[-2:]]
    assert caught_up["has_more"] is False
    http = login(app, bob)
    url = f"/api/conversations/{conversation.id}/threads/{root['id']}/messages"
    collected, before = [], None
    while True:
        body = http.get(url, query_string={"limit": 17, **({"before": before} if before else {})}
                        ).get_json()
        assert len(body["messages"]) <= 17
        collected = body["messages"] + collected
        if not body["has_more"]:
            break
        before = body["messages"][0]["id"]
    assert [m["id"] for m in collected] == [r["id"] for r in replies]
    after = http.get(url, query_string={"after": replies[9]["id"], "limit": 5}).get_json()
    assert [m["id"] for m in after["messages"]] == [r["id"] for r in replies[10:15]]
    assert after["has_more"] is True
    assert http.get(url, query_string={"before": replies[5]["id"],
                                       "after": replies[1]["id"]}).status_code == 400
    # Another conversation's id in the path: 404.
    assert http.get(f"/api/conversations/{conversation.id + 1000}/threads/{root['id']}"
                    "/messages").status_code == 404


# ------------------------------------------------------------------------------- following


def followers(root_id: str) -> dict[int, tuple[bool, str | None]]:
    db.session.expire_all()
    return {uid: (following, marker) for uid, following, marker in db.session.execute(
        select(ThreadFollow.user_id, ThreadFollow.following, ThreadFollow.last_read_message_id)
        .where(ThreadFollow.thread_id == root_id))}


def test_the_root_author_repliers_and_those_mentioned_follow(app, group, make_user):
    conversation, _other, (ada, bob, cy, *_rest) = group
    root = send_message(ada, conversation.id, "root")["message"]
    assert followers(root["id"]) == {}
    reply = send_message(bob, conversation.id, "@cy look", thread_id=root["id"])["message"]
    assert reply["mentions"] == [cy.id]
    assert followers(root["id"]) == {ada.id: (True, None), bob.id: (True, reply["id"]),
                                     cy.id: (True, None)}
    # @all makes no one follow by its mention.
    other_root = send_message(ada, conversation.id, "second")["message"]
    send_message(bob, conversation.id, "@all see", thread_id=other_root["id"])
    assert set(followers(other_root["id"])) == {ada.id, bob.id}


def test_reading_a_thread_before_its_first_reply_keeps_the_authors_following(
        app, group, socket_client):
    """The panel reads a thread (``thread_read`` of the root) as soon as it opens: for the
    root's author that must not count as having stopped following; for anyone else reading
    does not make one follow."""
    conversation, _other, (ada, bob, cy, *_rest) = group
    root = send_message(ada, conversation.id, "root")["message"]
    for user in (ada, cy):
        assert ask(socket_client(user), "thread_read", {
            "conversation_id": conversation.id, "thread_id": root["id"],
            "message_id": root["id"]})["ok"]
    reply = send_message(bob, conversation.id, "a reply", thread_id=root["id"])["message"]
    assert followers(root["id"]) == {ada.id: (True, root["id"]), bob.id: (True, reply["id"]),
                                     cy.id: (False, root["id"])}
    # Stopping by hand still holds against later replies.
    assert ask(socket_client(ada), "follow_thread", {
        "conversation_id": conversation.id, "thread_id": root["id"], "on": False})["ok"]
    send_message(cy, conversation.id, "another", thread_id=root["id"])
    assert followers(root["id"])[ada.id][0] is False


def test_follow_and_read_markers_with_unread_counts(app, group, socket_client):
    conversation, _other, (ada, bob, cy, *_rest) = group
    root = send_message(ada, conversation.id, "root")["message"]
    first = send_message(bob, conversation.id, "one", thread_id=root["id"])["message"]
    mention = send_message(bob, conversation.id, "two @ada", thread_id=root["id"])["message"]
    own = send_message(ada, conversation.id, "mine", thread_id=root["id"])["message"]
    last = send_message(cy, conversation.id, "three", thread_id=root["id"])["message"]
    a1, a2 = socket_client(ada), socket_client(ada)  # two devices of one user
    http = login(app, ada)
    listed = http.get("/api/threads?unread=1").get_json()
    (entry,) = listed["threads"]
    # ada replied ("mine"): her marker moved there, so only cy's reply after it is unread.
    assert (entry["thread_id"], entry["unread"], entry["unread_mentions"]) == (
        root["id"], 1, 0)
    assert entry["last_read"] == own["id"] and entry["last_reply_at"] == last["timestamp"]
    assert entry["root"]["thread"]["reply_count"] == 4
    # Back to the start: everything from others unread, the mention counted for the thread.
    db.session.execute(ThreadFollow.__table__.update().where(
        ThreadFollow.user_id == ada.id).values(last_read_message_id=None))
    db.session.commit()
    (entry,) = http.get("/api/threads?unread=1").get_json()["threads"]
    assert (entry["unread"], entry["unread_mentions"]) == (3, 1)
    a2.get_received(NS)
    read = ask(a1, "thread_read", {"conversation_id": conversation.id, "thread_id": root["id"],
                                   "message_id": mention["id"]})
    assert read == {"ok": True, "last_read": mention["id"]}
    assert received(a2, "thread_read") == [{
        "conversation_id": conversation.id, "thread_id": root["id"], "user_id": ada.id,
        "message_id": mention["id"]}]
    (entry,) = http.get("/api/threads?unread=true").get_json()["threads"]
    assert (entry["unread"], entry["unread_mentions"]) == (1, 0)
    # Never backward.
    assert ask(a1, "thread_read", {"conversation_id": conversation.id, "thread_id": root["id"],
                                   "message_id": first["id"]})["last_read"] == mention["id"]
    assert ask(a1, "thread_read", {"conversation_id": conversation.id, "thread_id": root["id"],
                                   "message_id": last["id"]})["ok"]
    assert http.get("/api/threads?unread=1").get_json()["threads"] == []
    assert len(http.get("/api/threads").get_json()["threads"]) == 1
    # Unfollowed: not listed, on every device; following again lists it.
    a2.get_received(NS)
    assert ask(a1, "follow_thread", {"conversation_id": conversation.id,
                                     "thread_id": root["id"], "on": False}) == {
        "ok": True, "following": False}
    assert received(a2, "thread_followed") == [
        {"conversation_id": conversation.id, "thread_id": root["id"], "following": False}]
    assert http.get("/api/threads").get_json()["threads"] == []
    # A reply by someone else does not make her follow again; her own reply does.
    send_message(bob, conversation.id, "more", thread_id=root["id"])
    assert followers(root["id"])[ada.id][0] is False
    send_message(ada, conversation.id, "back in", thread_id=root["id"])
    assert followers(root["id"])[ada.id][0] is True
    # Reading a thread one does not follow keeps the marker, and does not follow it.
    c = socket_client(cy)
    assert ask(c, "follow_thread", {"conversation_id": conversation.id,
                                    "thread_id": root["id"], "on": False})["ok"]
    assert ask(c, "thread_read", {"conversation_id": conversation.id, "thread_id": root["id"],
                                  "message_id": first["id"]})["ok"]
    assert followers(root["id"])[cy.id] == (False, last["id"])  # her own reply read further


def test_a_thread_read_marker_names_a_reply_of_that_thread(app, group, socket_client):
    conversation, _other, (ada, bob, *_rest) = group
    root = send_message(ada, conversation.id, "root")["message"]
    other_root = send_message(ada, conversation.id, "other root")["message"]
    elsewhere = send_message(bob, conversation.id, "x", thread_id=other_root["id"])["message"]
    main = send_message(bob, conversation.id, "main")["message"]
    b = socket_client(bob)
    for message_id in (elsewhere["id"], main["id"]):
        assert ask(b, "thread_read", {"conversation_id": conversation.id,
                                      "thread_id": root["id"], "message_id": message_id}) == {
            "ok": False, "error": "not_found"}
    assert ask(b, "thread_read", {"conversation_id": conversation.id, "thread_id": root["id"],
                                  "message_id": root["id"]}) == {"ok": True,
                                                                 "last_read": root["id"]}


def test_threads_of_a_conversation_one_left_are_not_listed(app, group, socket_client):
    conversation, _other, (ada, bob, cy, *_rest) = group
    root = send_message(ada, conversation.id, "root")["message"]
    send_message(cy, conversation.id, "reply", thread_id=root["id"])
    http = login(app, cy)
    assert len(http.get("/api/threads").get_json()["threads"]) == 1
    c = socket_client(cy)
    assert ask(c, "leave_conversation", {"conversation_id": conversation.id})["ok"]
    assert http.get("/api/threads").get_json()["threads"] == []


def test_followed_threads_page_in_order(app, group):
    conversation, _other, (ada, bob, *_rest) = group
    roots = []
    for i in range(7):
        root = send_message(ada, conversation.id, f"root {i}")["message"]
        send_message(bob, conversation.id, f"reply {i}", thread_id=root["id"])
        roots.append(root["id"])
    http = login(app, ada)
    seen, before = [], None
    while True:
        body = http.get("/api/threads", query_string={
            "limit": 3, **({"before": before} if before else {})}).get_json()
        seen += [t["thread_id"] for t in body["threads"]]
        before = body["next_before"]
        if before is None:
            break
    assert seen == list(reversed(roots))
    for bad in ("x", "1-2", "0", "-1"):
        assert http.get("/api/threads", query_string={"before": bad}).status_code == 400
    assert http.get("/api/threads", query_string={"limit": 0}).status_code == 400


# ------------------------------------------------------------------------------- merged updates


def test_a_hot_threads_summaries_are_merged_and_the_newest_is_never_lost():
    """CoalescedEmits with a hand-driven clock: the first update goes at once, those within
    the interval wait, and the newest of them goes when it ends."""
    from simplechat.realtime.coalesced import CoalescedEmits

    now, sent, later = [100.0], [], []
    emits = CoalescedEmits(1.0, spawn=lambda fn, *args: later.append((fn, args)),
                           sleep=lambda seconds: now.__setitem__(0, now[0] + seconds),
                           clock=lambda: now[0], send=lambda *call: sent.append(call))
    emits.emit("root", "conversation:1", "message_updated", {"reply_count": 1})
    assert sent == [("conversation:1", "message_updated", {"reply_count": 1})]
    now[0] += 0.2
    emits.emit("root", "conversation:1", "message_updated", {"reply_count": 2})
    emits.emit("root", "conversation:1", "message_updated", {"reply_count": 3})
    emits.emit("other", "conversation:1", "message_updated", {"reply_count": 9})
    assert [c[2] for c in sent] == [{"reply_count": 1}, {"reply_count": 9}]  # others: at once
    assert len(later) == 1  # one send held for "root"
    fn, args = later.pop()
    fn(*args)  # the interval ends: the newest held one goes
    assert sent[-1][2] == {"reply_count": 3} and len(sent) == 3
    assert now[0] == pytest.approx(101.0)
    now[0] += 1.5  # quiet for longer than the interval: at once again
    emits.emit("root", "conversation:1", "message_updated", {"reply_count": 4})
    assert sent[-1][2] == {"reply_count": 4} and not later
    # Without an interval, every one at once.
    every = CoalescedEmits(0, spawn=None, sleep=None, send=lambda *call: sent.append(call))
    for n in (5, 6):
        every.emit("root", "conversation:1", "message_updated", {"reply_count": n})
    assert [c[2]["reply_count"] for c in sent[-2:]] == [5, 6]


def test_the_room_gets_the_newest_summary_of_a_burst_of_replies(app, group, socket_client):
    """With CHAT_THREAD_SUMMARY_INTERVAL set, a burst of replies sends the root's summary at
    once and its newest at the latest when the interval ends (from a background task): the
    room ends with the true count. (The merging itself: the test above, on a hand clock.)"""
    import time

    conversation, _other, (ada, bob, *_rest) = group
    app.config["CHAT_THREAD_SUMMARY_INTERVAL"] = 0.3
    app.extensions.pop("simplechat.coalesced_emits", None)  # built again with the interval
    a = socket_client(ada)
    assert ask(a, "join", {"conversation_id": conversation.id})["ok"]
    root = send_message(ada, conversation.id, "root")["message"]
    for n in range(3):
        assert send_message(bob, conversation.id, f"reply {n}", thread_id=root["id"])["ok"]
    counts = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and 3 not in counts:
        counts += [m["thread"]["reply_count"] for m in received(a, "message_updated")
                   if m["id"] == root["id"]]
        time.sleep(0.02)
    assert counts[0] == 1 and counts[-1] == 3 and counts == sorted(counts)


def test_stored_summaries_count_on_across_batches_and_for_replies_stored_first(app, group,
                                                                              make_user):
    """SQL's summary of a root stored earlier counts each batch's replies on from its row;
    a reply stored before its root is counted when the root arrives; a batch repeated (a
    retried task) counts nothing twice."""
    from simplechat.infra.cache import THREAD_PARTICIPANTS
    from simplechat.messaging.storage import store_new_messages

    conversation, _other, members = group
    ada, bob, cy = members[:3]

    def payload(sender, text, thread_id=None):
        return {"id": new_message_id(), "conversation_id": conversation.id,
                "sender": sender.id, "message": text, "thread_id": thread_id}

    root = payload(ada, "root")
    store_new_messages([root])
    first = [payload(cy, "one", root["id"]), payload(bob, "two", root["id"])]
    assert len(store_new_messages(first)) == 2
    assert store_new_messages(first) == []  # redelivered: nothing new, nothing counted
    second = [payload(bob, "three", root["id"]), payload(ada, "four", root["id"])]
    store_new_messages(second)
    db.session.expire_all()
    stored = db.session.get(Message, root["id"])
    assert (stored.reply_count, stored.thread_participants) == (4, [cy.id, bob.id, ada.id])
    assert stored.last_reply_at == db.session.get(Message, second[-1]["id"]).created_at

    # A reply whose root's batch comes after it, and one in the same batch as its root.
    late_root = payload(bob, "late root")
    early = payload(cy, "before the root", late_root["id"])
    store_new_messages([early])
    store_new_messages([late_root, payload(ada, "with the root", late_root["id"])])
    db.session.expire_all()
    stored = db.session.get(Message, late_root["id"])
    assert (stored.reply_count, stored.thread_participants) == (2, [cy.id, ada.id])

    # Participants stop at the cap; the count does not (storage does not ask who is a member).
    crowd = [*members, *(make_user(f"crowd{i}") for i in range(THREAD_PARTICIPANTS + 1
                                                                - len(members)))]
    wide = payload(ada, "wide")
    store_new_messages([wide])
    for person in crowd:
        store_new_messages([payload(person, "hi", wide["id"])])
    db.session.expire_all()
    stored = db.session.get(Message, wide["id"])
    assert stored.reply_count == len(crowd) == THREAD_PARTICIPANTS + 1
    assert stored.thread_participants == [p.id for p in crowd][:THREAD_PARTICIPANTS]
