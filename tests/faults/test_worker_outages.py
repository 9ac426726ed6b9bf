"""The Celery worker rides out Redis and the database going away and coming back in any order,
started as production starts it (gossip and mingle on): it is still running afterwards and
stores every acknowledged message once, those sent while the database was down included,
without being restarted. Redis keeps an append-only file synced on every write here, so a
crash of it loses nothing that was acknowledged."""

from __future__ import annotations

import time

import pytest
from e2e.harness import wait_until

from .conftest import assert_stored_exactly_once, report, send_stream, start_sender

pytestmark = pytest.mark.e2e

# Each order of: the database stops, Redis crashes, Redis starts, the database starts.
ORDERS = {
    "database-then-redis": ("pg-stop", "redis-crash", "redis-start", "pg-start"),
    "redis-then-database": ("redis-crash", "pg-stop", "redis-start", "pg-start"),
    "redis-back-last": ("pg-stop", "redis-crash", "pg-start", "redis-start"),
}


@pytest.mark.parametrize("order", list(ORDERS))
def test_the_worker_survives_redis_and_database_restarts_in_any_order(
        order, fault_stack_own_postgres, own_postgres, own_redis):
    own_redis.crash()
    own_redis.appendonly = True
    own_redis.start()
    stack = fault_stack_own_postgres
    worker, conversation_id, sock = start_sender(stack, quiet=False)
    stream = send_stream(sock, conversation_id, 5, "before")
    assert len(stream.acked) == 5, stream.summary()
    stack.database.wait_for_messages(conversation_id, 5)

    steps = {"pg-stop": own_postgres.stop, "pg-start": own_postgres.start,
             "redis-crash": own_redis.crash, "redis-start": own_redis.start}
    for step in ORDERS[order]:
        steps[step]()
        # Sends between the steps: acknowledged while Redis is up (the database is not on the
        # send path), refused as unavailable while it is down; the worker meets a backlog.
        send_stream(sock, conversation_id, 10, step, stream=stream, pause=0.2, timeout=10)
        assert worker.alive(), f"the worker exited after {step}:\n{worker.tail()}"
    assert set(stream.refused) <= {"unavailable"}, stream.summary()

    # Everything is back: sends are acknowledged again and the same worker, never restarted,
    # stores them and the backlog.
    deadline = time.monotonic() + 30
    while not stream.acked[-1]["client_id"].startswith("probe") and time.monotonic() < deadline:
        send_stream(sock, conversation_id, 1, f"probe{len(stream.refused)}", stream=stream)
        time.sleep(0.5)
    assert stream.acked[-1]["client_id"].startswith("probe"), stream.summary()
    send_stream(sock, conversation_id, 10, "after", stream=stream)
    assert stream.acked[-1]["client_id"] == "after-9", stream.summary()
    wait_until(lambda: len(stack.database.message_ids(conversation_id)) >= len(stream.acked),
               90, 0.5, f"the worker to store what was sent around {order}")
    assert worker.alive(), worker.tail()
    assert_stored_exactly_once(stack.database, conversation_id, stream)
    report("worker-outages", order=order, acked=len(stream.acked),
           refused=sum(stream.refused.values()), unanswered=len(stream.unanswered),
           stored=len(stack.database.message_ids(conversation_id)))
