"""PostgreSQL stopped and restarted in the middle of a stream: no acknowledged message is lost,
and sending goes on through the outage (the send path reads no SQL once the conversation's
members are cached; the write buffer holds the messages until the database is back)."""

from __future__ import annotations

import signal
import threading
import time

import pytest

from .conftest import assert_stored_exactly_once, report, send_stream, start_sender

pytestmark = pytest.mark.e2e

OUTAGE_SECONDS = 5.0


def test_database_outage_mid_stream_loses_nothing_and_recovers(fault_stack_own_postgres,
                                                              own_postgres):
    """The stack's PostgreSQL is a server of the test's own: the machine's is in use by the
    suites that ``make test`` runs beside this one."""
    stack = fault_stack_own_postgres
    worker, conversation_id, sock = start_sender(stack)
    outage: dict[str, float] = {}
    restarter: list[threading.Thread] = []

    def restart_later() -> None:
        time.sleep(OUTAGE_SECONDS)
        own_postgres.start()  # waits until it accepts connections
        outage["up"] = time.monotonic()

    def stop_database(i: int) -> None:
        if i == 40:
            worker.signal(signal.SIGSTOP)  # a backlog builds up: acknowledged, not yet written
        if i == 60:
            own_postgres.stop()
            worker.signal(signal.SIGCONT)  # ...and meets a database that is down
            outage["down"] = time.monotonic()
            thread = threading.Thread(target=restart_later, daemon=True)
            thread.start()
            restarter.append(thread)

    # Steady sending before, during and after the outage (about 20 sends a second).
    stream = send_stream(sock, conversation_id, 160, "pg", between=stop_database, pause=0.05,
                         timeout=5)
    restarter[0].join(60)
    assert "up" in outage, "PostgreSQL did not start again"
    # Once the database is back, every send is acknowledged again, without any restart.
    after = send_stream(sock, conversation_id, 20, "pg-after", pause=0.05)
    assert len(after.acked) == 20, after.summary()
    assert sock.connected

    stream.acked += after.acked
    stream.unanswered += after.unanswered
    # No SQL on the send path: nothing refused, even while the database was down.
    assert stream.refused == {} and not stream.unanswered, stream.summary()
    assert_stored_exactly_once(stack.database, conversation_id, stream)
    retries = worker.log().count("retry: Retry in")
    assert retries, "the backlog never met the outage"
    report("database-outage", faults="PostgreSQL stop/start x1", worker_retries=retries,
           outage_s=round(outage["up"] - outage["down"], 1), summary=stream.summary(),
           stored=len(stack.database.message_ids(conversation_id)))


def test_sockets_keep_their_login_through_an_outage_longer_than_the_session_cache(
        fault_stack_own_postgres, own_postgres):
    """With SESSION_CACHE_SECONDS=1 the sessions' cached identities are stale a second after
    the database stops: a socket's events must check its login again and SQL cannot answer.
    The login SQL confirmed a moment ago stays trusted (nothing can end a session while SQL is
    down): sends go on, and the same cookie connects a new socket, throughout the outage."""
    stack = fault_stack_own_postgres
    stack.env["SESSION_CACHE_SECONDS"] = "1"
    worker, conversation_id, sock = start_sender(stack)
    web, ada = stack.processes[0], stack.users[0]
    before = send_stream(sock, conversation_id, 5, "before")
    assert len(before.acked) == 5, before.summary()
    own_postgres.stop()
    try:
        time.sleep(3)  # three times the cache's trust: every check now goes past it
        during = send_stream(sock, conversation_id, 10, "during", pause=0.3, timeout=10)
        assert len(during.acked) == 10, during.summary()  # not unavailable
        again = ada.socket(web)  # a reconnect: its login read with SQL away
        assert again.join(conversation_id)["ok"]
        more = send_stream(again, conversation_id, 3, "again", timeout=10)
        assert len(more.acked) == 3, more.summary()
    finally:
        own_postgres.start()
    stream = before
    stream.acked += during.acked + more.acked
    assert_stored_exactly_once(stack.database, conversation_id, stream)
    report("database-outage-logins", outage_s=">3", session_cache_s=1,
           summary=stream.summary())
