"""A Celery worker killed with SIGKILL in the middle of a stream loses no acknowledged message."""

from __future__ import annotations

import pytest
import redis as redis_lib
from e2e.harness import wait_until
from sqlalchemy import text

from .conftest import (
    assert_stored_exactly_once,
    report,
    send_stream,
    start_sender,
    unacked_tasks,
)

pytestmark = pytest.mark.e2e


def test_worker_killed_mid_stream_loses_and_duplicates_nothing(fault_stack):
    stack = fault_stack
    worker, conversation_id, sock = start_sender(stack)
    state = {}

    def kill_then_restart(i: int) -> None:
        if i == 130:
            # A lock on the table holds the worker's next batch INSERT: a backlog builds up
            # while the worker sits in the middle of a flush. (Never SIGSTOP the worker here:
            # stopped inside its own INSERT, it would make the lock wait forever.)
            lock = state["lock"] = stack.database.engine.connect()
            lock.execute(text("SET lock_timeout = '20s'"))
            lock.execute(text("LOCK TABLE messages IN EXCLUSIVE MODE"))
        if i == 150:
            lock = state.pop("lock")
            try:
                wait_until(lambda: in_flight(stack) > 0, 15, 0.05, "the worker to take a batch")
                worker.kill()  # dies holding a task and a batch
                state["in_flight"] = in_flight(stack)
                state["unacked"] = unacked_tasks(stack)
            finally:
                lock.rollback()
                lock.close()
            state["not_stored"] = 150 - len(stack.database.message_ids(conversation_id))
        if i == 250:
            stack.start_worker(pool="solo")

    stream = send_stream(sock, conversation_id, 400, "kill", between=kill_then_restart)
    assert not worker.alive()
    assert len(stream.acked) == 400, stream.summary()  # the web side never noticed
    assert_stored_exactly_once(stack.database, conversation_id, stream)
    wait_until(lambda: stack.database.scalar("SELECT count(*) FROM messages") == 400, 30)
    report("worker-kill", faults="SIGKILL worker x1", sent=400, acked=len(stream.acked),
           stored=len(stack.database.message_ids(conversation_id)),
           not_stored_at_kill=state["not_stored"], in_flight_at_kill=state["in_flight"],
           unacked_at_kill=state["unacked"])
    # The dead worker held a task and a batch; the task was redelivered and acknowledged, and
    # the batch it left in the processing list was stored (exactly once, above).
    assert state["unacked"], "the worker held no task when it was killed"
    wait_until(lambda: unacked_tasks(stack) == 0, 30, 0.2, "no unacknowledged task left")
    assert in_flight(stack) == 0


def in_flight(stack) -> int:
    """Payloads a flush has taken from the write buffer and not yet stored."""
    client = redis_lib.Redis.from_url(stack.redis_url)
    try:
        return client.llen(f"{stack.prefix}writes:processing")
    finally:
        client.close()
