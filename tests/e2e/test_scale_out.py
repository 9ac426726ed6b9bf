"""Scale-out: three web processes on two ports plus a Celery worker behave as one server."""

from __future__ import annotations

import time
from collections import Counter

import pytest

pytestmark = pytest.mark.e2e


def _spread_over_workers(user, web, conversation_id, sockets, limit=60):
    """Open sockets on ``web`` (several workers on one port) until every worker serves one.

    The kernel hands a new connection to whichever worker is waiting in accept(); a worker
    that just accepted one is often first again. A connection that lands on a worker already
    served is closed, and the next try waits a moment, so the other workers get their turn."""
    served = set()
    for _ in range(limit):
        sock = user.socket(web)
        worker = web.worker_serving(sock)
        if worker in served:
            sock.close()
            time.sleep(0.1)
            continue
        sock.join(conversation_id)
        sockets.append(sock)
        served.add(worker)
        if served >= set(web.worker_pids()):
            return served
    raise AssertionError(f"{limit} connections all went to workers {served} of "
                         f"{web.worker_pids()}")


@pytest.mark.parametrize("worker_class", ["eventlet", "gevent"])
def test_clients_on_every_process_get_each_message_once_the_limit_holds_and_sql_has_all(
        make_stack, worker_class):
    stack = make_stack()
    web_a = stack.start_web(workers=1, worker_class=worker_class)
    web_b = stack.start_web(workers=2, worker_class=worker_class)
    stack.start_worker()
    for web in (web_a, web_b):
        assert f"Using worker: {worker_class}" in web.log()
    assert len(web_b.worker_pids()) == 2

    users = [stack.register(web_a if i % 2 == 0 else web_b) for i in range(5)]
    conversation_id = users[0].start_conversation(
        web_b, [u.id for u in users[1:]], title="Scale-out")

    # One socket per user, alternating ports, then more tabs on port B until both of its
    # workers hold at least one client: three processes, each with listeners in the room.
    sockets = []
    home = {}
    for i, user in enumerate(users):
        sock = user.socket(web_a if i % 2 == 0 else web_b)
        sock.join(conversation_id)
        sockets.append(sock)
        home[user.username] = sock
    _spread_over_workers(users[0], web_b, conversation_id, sockets)
    ada_on_b = sockets[-1]
    assert ada_on_b.sio.eio.transport() == "websocket"

    sent = []
    first = home[users[0].username].send(conversation_id, "first, via port A")
    assert first["ok"] is True, first
    sent.append(first["message"])
    # The same user straight away through another process: the shared limiter refuses it.
    refused = ada_on_b.send(conversation_id, "too soon, via port B")
    assert refused["ok"] is False and refused["error"] == "rate_limited", refused
    assert 0 < refused["retry_after"] <= 2
    for user in users[1:]:
        ack = home[user.username].send(conversation_id, f"hello from {user.username}")
        assert ack["ok"] is True, ack
        sent.append(ack["message"])
    time.sleep(refused["retry_after"])
    later = ada_on_b.send(conversation_id, "after the wait, via port B")
    assert later["ok"] is True, later
    sent.append(later["message"])

    expected = sorted(m["id"] for m in sent)
    for sock in sockets:
        sock.wait_for(lambda s: len(s.messages(conversation_id)) >= len(expected), timeout=15)
    time.sleep(0.5)  # a duplicate would arrive right behind the originals
    for sock in sockets:
        counts = Counter(m["id"] for m in sock.messages(conversation_id))
        assert sorted(counts) == expected, f"{sock.name} got {counts}"
        assert set(counts.values()) == {1}, f"{sock.name} got duplicates: {counts}"
        texts = {m["message"] for m in sock.messages(conversation_id)}
        assert "too soon, via port B" not in texts

    # Every acknowledged message reaches SQL through the worker, the refused one never does.
    assert stack.database.wait_for_messages(conversation_id, len(expected)) == expected
    rows = stack.database.rows(
        "SELECT id, sender_id, text FROM messages WHERE conversation_id = :c ORDER BY id",
        c=conversation_id)
    assert rows == sorted((m["id"], m["sender"], m["message"]) for m in sent)
