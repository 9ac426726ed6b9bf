"""The write buffer between an acknowledged send and its SQL row, on real Redis and SQL."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from simplechat.extensions import db
from simplechat.infra.ids import new_message_id
from simplechat.infra.services import services
from simplechat.infra.write_buffer import (
    LEASE_MS,
    MemoryWriteBuffer,
    RedisWriteBuffer,
    write_buffer,
)
from simplechat.messaging.send import send_message
from simplechat.messaging.tasks import store_batch
from simplechat.models import GenericActivityLog, GenericErrorLog, Message
from tests.conftest import make_app


@pytest.fixture
def chat(app, make_user, make_conversation):
    ada, bob = make_user("ada"), make_user("bob")
    return ada, bob, make_conversation(ada, bob)


@pytest.fixture
def buffer(app, redis_url):
    if not redis_url:
        pytest.skip("needs TEST_REDIS_URL")
    return write_buffer()


def payload(user, conversation, text: str) -> dict:
    return {"id": new_message_id(), "conversation_id": conversation.id, "sender": user.id,
            "message": text, "timestamp": "", "sender_name": user.full_name, "client_id": None}


def stored_ids(conversation) -> list[str]:
    db.session.rollback()
    return list(db.session.scalars(
        select(Message.id).where(Message.conversation_id == conversation.id)))


def count_rows(message_id: str) -> int:
    db.session.rollback()
    return db.session.scalar(select(func.count()).where(Message.id == message_id))


def broken_database_app(app, database_uri):
    """The same Redis keys, and a database that does not exist: every query fails."""
    if database_uri.startswith("sqlite"):
        pytest.skip("needs a database server (TEST_DATABASE_URL on PostgreSQL or MariaDB)")
    missing = make_url(database_uri).set(database="simplechat_no_such_database")
    return make_app(missing.render_as_string(hide_password=False), app.config["REDIS_URL"],
                    REDIS_KEY_PREFIX=app.config["REDIS_KEY_PREFIX"])


def test_send_is_in_sql_before_the_ack_and_leaves_nothing_buffered(app, chat):
    ada, _, conversation = chat
    ack = send_message(ada, conversation.id, "through the buffer")
    assert ack["ok"]
    assert stored_ids(conversation) == [ack["message"]["id"]]
    assert write_buffer().pending() == 0


def test_append_queues_one_flush_per_burst_and_flush_stores_the_batch(buffer, chat):
    ada, bob, conversation = chat
    sent = [payload(ada if n % 2 else bob, conversation, f"m{n}") for n in range(5)]
    assert [buffer.append(p) for p in sent] == [True, False, False, False, False]
    assert buffer.pending() == 5 and stored_ids(conversation) == []

    flushed = buffer.flush(store_batch)
    assert (flushed.stored, flushed.more) == (5, False)
    assert sorted(stored_ids(conversation)) == sorted(p["id"] for p in sent)
    assert buffer.pending() == 0
    # The flusher cleared the flag: the next send queues the next flush.
    assert buffer.append(payload(ada, conversation, "next burst")) is True
    activity = db.session.scalar(select(func.count()).where(
        GenericActivityLog.action == "message_sent"))
    assert activity == 5


def test_a_flush_run_is_bounded_and_says_more_is_waiting(app, redis_url, chat):
    if not redis_url:
        pytest.skip("needs TEST_REDIS_URL")
    ada, _, conversation = chat
    small = RedisWriteBuffer(services().redis, app.config["REDIS_KEY_PREFIX"], batch=2)
    for n in range(5):
        small.append(payload(ada, conversation, f"m{n}"))
    first = small.flush(store_batch, max_batches=2)
    assert (first.stored, first.more) == (4, True)
    second = small.flush(store_batch, max_batches=2)
    assert (second.stored, second.more) == (1, False)
    assert len(stored_ids(conversation)) == 5


def test_batch_left_by_a_dead_flusher_is_stored_exactly_once(buffer, chat):
    ada, _, conversation = chat
    redis = services().redis
    committed = payload(ada, conversation, "its row was committed before the crash")
    store_batch([committed])
    lost = payload(ada, conversation, "its row was not")
    # A flusher died holding the lease, between its commit and dropping its batch.
    redis.rpush(buffer.processing_key, json.dumps(committed), json.dumps(lost))
    redis.set(buffer.lease_key, "dead-worker", px=LEASE_MS)
    newer = payload(ada, conversation, "sent after the crash")
    buffer.append(newer)

    blocked = buffer.flush(store_batch)
    assert blocked.stored == 0 and 0 < blocked.recheck_in <= LEASE_MS / 1000 + 0.5
    flushed = buffer.flush(store_batch, take_over=True)  # as a starting worker does
    assert flushed.stored == 2
    assert all(count_rows(p["id"]) == 1 for p in (committed, lost, newer))
    assert buffer.pending() == 0 and redis.get(buffer.lease_key) is None


def test_flushing_the_same_payloads_again_stores_no_second_row(buffer, chat):
    ada, _, conversation = chat
    message = payload(ada, conversation, "once only")
    buffer.append(message)
    assert buffer.flush(store_batch).stored == 1
    buffer.append(message)  # a retried flush of a batch already stored
    buffer.append(message)
    assert buffer.flush(store_batch).stored == 0
    assert count_rows(message["id"]) == 1
    assert buffer.pending() == 0


def test_database_error_keeps_the_batch_until_a_later_flush_stores_it(
        app, buffer, chat, database_uri):
    ada, _, conversation = chat
    sent = [payload(ada, conversation, f"during the outage {n}") for n in range(3)]
    for p in sent:
        buffer.append(p)
    with broken_database_app(app, database_uri).app_context():
        with pytest.raises(OperationalError):
            write_buffer().flush(store_batch)
    kept = [json.loads(raw) for raw in services().redis.lrange(buffer.processing_key, 0, -1)]
    assert kept == sent and buffer.pending() == 3
    assert stored_ids(conversation) == []
    assert services().redis.get(buffer.lease_key) is None  # the failed flusher let go

    assert buffer.flush(store_batch).stored == 3
    assert sorted(stored_ids(conversation)) == sorted(p["id"] for p in sent)
    assert buffer.pending() == 0


def test_refused_message_is_recorded_and_dropped_without_blocking_its_batch(
        buffer, chat, database_uri):
    if database_uri.startswith("sqlite"):
        pytest.skip("SQLite does not enforce foreign keys here")
    ada, _, conversation = chat
    good = [payload(ada, conversation, "fine"), payload(ada, conversation, "also fine")]
    orphan = {**payload(ada, conversation, "to nowhere"), "conversation_id": 999_999}
    for p in (good[0], orphan, good[1]):
        buffer.append(p)
    assert buffer.flush(store_batch).stored == 2
    assert sorted(stored_ids(conversation)) == sorted(p["id"] for p in good)
    assert buffer.pending() == 0
    errors = db.session.scalars(select(GenericErrorLog.message)).all()
    assert errors == [f"message {orphan['id']} refused by the database"]


def test_take_back_removes_only_what_no_flush_has_taken(buffer, chat):
    ada, _, conversation = chat
    first, second = payload(ada, conversation, "one"), payload(ada, conversation, "two")
    buffer.append(first)
    assert buffer.take_back(first) is True
    assert buffer.pending() == 0
    assert buffer.append(second) is True  # take_back cleared the flag
    services().redis.rpush(buffer.processing_key,
                           *services().redis.lpop(buffer.buffer_key, 1))  # a flush took it
    assert buffer.take_back(second) is False


def test_send_answers_unavailable_when_no_flush_can_be_queued(database_uri, redis_url):
    if not redis_url:
        pytest.skip("needs TEST_REDIS_URL")
    app = make_app(database_uri, redis_url, CELERY_TASK_ALWAYS_EAGER=False,
                   CELERY_BROKER_URL="redis://127.0.0.1:1/0", CHAT_RATE_LIMIT="off")
    with app.app_context():
        if database_uri.startswith("sqlite"):
            db.create_all()
        from simplechat.conversations.records import start_conversation
        from simplechat.models import User

        users = []
        for name in ("cyd", "dee"):
            user = User(username=name, first_name=name, last_name="X",
                        email=f"{name}@example.com")
            user.set_password("correct horse battery")
            db.session.add(user)
            users.append(user)
        db.session.commit()
        conversation, _ = start_conversation(users[0], [users[1]], None)
        try:
            ack = send_message(users[0], conversation.id, "nobody can store this",
                               client_id="c1")
            assert ack == {"ok": False, "error": "unavailable"}
            buffer = write_buffer()
            assert buffer.pending() == 0
            assert services().cache.recent(conversation.id)[0] == []
            assert services().cache.lookup(f"{users[0].id}:c1") is None
            # A flush already pending (another process queued it): the send is accepted.
            services().redis.set(buffer.flag_key, 1, ex=5)
            assert send_message(users[0], conversation.id, "a flush will take this")["ok"]
            assert buffer.pending() == 1
        finally:
            db.session.remove()
            from tests.conftest import _drop_redis_keys, _empty_tables

            _empty_tables()
            db.engine.dispose()
            _drop_redis_keys(app)


def test_memory_buffer_keeps_a_failed_batch_in_order(app, chat, database_uri):
    ada, _, conversation = chat
    memory = MemoryWriteBuffer(batch=2)
    sent = [payload(ada, conversation, f"m{n}") for n in range(3)]
    for p in sent:
        assert memory.append(p) is True
    with broken_database_app(app, database_uri).app_context():
        with pytest.raises(OperationalError):
            memory.flush(store_batch)
    assert memory.pending() == 3
    assert memory.take_back(sent[2]) is True and memory.take_back(sent[2]) is False
    assert memory.flush(store_batch).stored == 2
    assert sorted(stored_ids(conversation)) == sorted(p["id"] for p in sent[:2])
