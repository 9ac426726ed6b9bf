"""History: join's recent messages from the cache, SQL fallback and re-warm, paging older ones."""

import threading
import time

import pytest

from simplechat.extensions import db
from simplechat.infra.services import services
from simplechat.messaging import history
from simplechat.messaging.send import send_message
from simplechat.messaging.tasks import store_message
from simplechat.models import Message


@pytest.fixture
def chat(app, make_user, make_conversation):
    app.config["CHAT_RATE_LIMIT"] = "off"
    from simplechat.infra.services import init_services

    init_services(app)  # rebuild the limiter with the limit lifted
    ada, bob = make_user("ada"), make_user("bob")
    conversation = make_conversation(ada, bob)
    return ada, bob, conversation


def send_many(user, conversation, n):
    sent = []
    for i in range(n):
        ack = send_message(user, conversation.id, f"message {i}")
        assert ack["ok"], ack
        sent.append(ack["message"])
    return sent


def join(sio, conversation, **extra):
    return sio.emit("join", {"conversation_id": conversation.id, **extra}, namespace="/chat",
                    callback=True)


def page_all_older(http, conversation, oldest_id, limit=7):
    """Page backwards with the API until has_more is false; returns messages oldest first."""
    collected, before = [], oldest_id
    while True:
        response = http.get(f"/api/conversations/{conversation.id}/messages",
                            query_string={"before": before, "limit": limit})
        assert response.status_code == 200
        body = response.get_json()
        assert len(body["messages"]) <= limit
        collected = body["messages"] + collected
        if not body["has_more"]:
            return collected
        before = body["messages"][0]["id"]


def logged_in_client(app, user):
    http = app.test_client()
    http.post("/auth/login", data={"username": user.username, "password": "correct horse battery"})
    return http


def test_join_gives_last_100_and_api_pages_the_rest_with_no_gap(app, chat, socket_client):
    ada, bob, conversation = chat
    sent = send_many(ada, conversation, 130)
    ack = join(socket_client(bob), conversation)
    assert ack["ok"] and ack["has_more"] is True
    assert [m["id"] for m in ack["messages"]] == [m["id"] for m in sent[-100:]]
    older = page_all_older(logged_in_client(app, bob), conversation, ack["messages"][0]["id"])
    assert [m["id"] for m in older] == [m["id"] for m in sent[:30]]
    assert [m["message"] for m in older + ack["messages"]] == [f"message {i}" for i in range(130)]


def test_cache_lost_join_still_returns_last_100_from_sql_and_rewarms(app, chat, socket_client,
                                                                    redis_url):
    ada, bob, conversation = chat
    sent = send_many(ada, conversation, 130)
    _forget_cache(app, conversation)
    b = socket_client(bob)
    ack = join(b, conversation)
    assert [m["id"] for m in ack["messages"]] == [m["id"] for m in sent[-100:]]
    assert ack["has_more"] is True
    assert ack["messages"][-1]["sender_name"] == ada.full_name
    cached, state = services().cache.recent(conversation.id)
    assert [m["id"] for m in cached] == [m["id"] for m in sent[-100:]] and state == "partial"


def test_joins_at_once_of_a_cold_conversation_read_sql_once(app, chat, monkeypatch):
    """The members of a conversation whose list is cold (just started, expired, flushed) join
    it together: one of them reads SQL and re-warms the list, the others wait for it and
    answer from the list."""
    ada, bob, conversation = chat
    sent = send_many(ada, conversation, 3)
    _forget_cache(app, conversation)
    read_sql = history._sql_before
    reads: list[int] = []

    def slow_read(*args, **kwargs):
        reads.append(1)
        time.sleep(0.3)  # the others' joins arrive meanwhile
        return read_sql(*args, **kwargs)

    monkeypatch.setattr(history, "_sql_before", slow_read)
    answers: list[tuple] = []

    def join_at_once() -> None:
        with app.app_context():
            messages, has_more, _source = history.recent_messages(conversation.id)
            answers.append(([m["id"] for m in messages], has_more))

    joins = [threading.Thread(target=join_at_once) for _ in range(4)]
    for thread in joins:
        thread.start()
    for thread in joins:
        thread.join(10)
    assert answers == [([m["id"] for m in sent], False)] * 4
    assert len(reads) == 1


def test_paging_from_sql_when_cache_is_gone(app, chat):
    ada, bob, conversation = chat
    sent = send_many(ada, conversation, 20)
    _forget_cache(app, conversation)
    older = page_all_older(logged_in_client(app, bob), conversation, sent[-1]["id"], limit=6)
    assert [m["id"] for m in older] == [m["id"] for m in sent[:-1]]


def test_join_after_returns_only_newer_messages(app, chat, socket_client):
    ada, bob, conversation = chat
    sent = send_many(ada, conversation, 10)
    b = socket_client(bob)
    ack = join(b, conversation, after=sent[5]["id"])
    assert [m["id"] for m in ack["messages"]] == [m["id"] for m in sent[6:]]
    assert ack["has_more"] is False
    _forget_cache(app, conversation)
    ack = join(b, conversation, after=sent[5]["id"])
    assert [m["id"] for m in ack["messages"]] == [m["id"] for m in sent[6:]]


def test_join_after_older_than_the_cache_reads_sql(app, chat, socket_client):
    ada, bob, conversation = chat
    sent = send_many(ada, conversation, 120)
    ack = join(socket_client(bob), conversation, after=sent[9]["id"])
    assert [m["id"] for m in ack["messages"]] == [m["id"] for m in sent[10:110]]
    assert ack["has_more"] is True


def test_retried_write_makes_no_duplicate_row(app, chat):
    ada, _, conversation = chat
    message = send_message(ada, conversation.id, "once only")["message"]
    # Celery's "no join inside a task" flag is process-wide: an inline task that another test's
    # background delivery is running at this moment sets it, so the check is turned off here.
    assert store_message.apply(args=[message]).get(disable_sync_subtasks=False) == 0  # redelivered
    assert store_message.apply(args=[message]).get(disable_sync_subtasks=False) == 0
    rows = db.session.scalars(db.select(Message).where(Message.id == message["id"])).all()
    assert len(rows) == 1 and rows[0].text == "once only"


@pytest.mark.parametrize("query", [
    {"before": "not-an-id"}, {"limit": "0"}, {"limit": "-5"}, {"limit": "many"},
    {"before": "00000000-0000-4000-8000-000000000000"},
])
def test_history_api_refuses_bad_parameters(app, chat, query):
    _, bob, conversation = chat
    response = logged_in_client(app, bob).get(
        f"/api/conversations/{conversation.id}/messages", query_string=query)
    assert response.status_code == 400
    assert response.get_json() == {"ok": False, "error": "invalid"}


def test_history_api_caps_the_limit(app, chat):
    ada, bob, conversation = chat
    send_many(ada, conversation, 120)
    body = logged_in_client(app, bob).get(
        f"/api/conversations/{conversation.id}/messages?limit=100000").get_json()
    assert len(body["messages"]) == app.config["CHAT_HISTORY_PAGE_MAX"]


def test_history_api_needs_login(client, chat):
    response = client.get(f"/api/conversations/{chat[2].id}/messages")
    assert response.status_code == 401


def _forget_cache(app, conversation):
    """Lose the recent list as a Redis flush, restart or eviction would."""
    svc = services()
    if svc.redis is not None:
        # Everything this app holds in Redis, as a flush would (other test runs may share the db).
        keys = list(svc.redis.scan_iter(match=app.config["REDIS_KEY_PREFIX"] + "*"))
        if keys:
            svc.redis.delete(*keys)
    else:
        svc.cache._lists.clear()
        svc.cache._state.clear()
