"""A Celery worker killed with SIGKILL in the middle of a stream loses no acknowledged message."""

from __future__ import annotations

import signal
import time

import pytest
from e2e.harness import wait_until

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
            worker.signal(signal.SIGSTOP)  # a backlog builds up in the queue
        if i == 150:
            # Woken, the worker takes a batch of the backlog and dies in the middle of it.
            worker.signal(signal.SIGCONT)
            time.sleep(0.1)
            worker.kill()
            state["not_stored"] = 150 - len(stack.database.message_ids(conversation_id))
            state["unacked"] = unacked_tasks(stack)
        if i == 250:
            stack.start_worker(pool="solo")

    stream = send_stream(sock, conversation_id, 400, "kill", between=kill_then_restart)
    assert not worker.alive()
    assert len(stream.acked) == 400, stream.summary()  # the web side never noticed
    assert_stored_exactly_once(stack.database, conversation_id, stream)
    wait_until(lambda: stack.database.scalar("SELECT count(*) FROM messages") == 400, 5)
    report("worker-kill", faults="SIGKILL worker x1", sent=400, acked=len(stream.acked),
           stored=len(stack.database.message_ids(conversation_id)),
           not_stored_at_kill=state["not_stored"], unacked_at_kill=state["unacked"])
    # The dead worker's tasks were redelivered and acknowledged.
    wait_until(lambda: unacked_tasks(stack) == 0, 10, 0.2, "no unacknowledged task left")
    assert state["unacked"], "the worker held no task when it was killed"
