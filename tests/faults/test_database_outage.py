"""PostgreSQL stopped and restarted in the middle of a stream: no acknowledged message is lost,
and sending goes on through the outage (the send path reads no SQL once the conversation's
members are cached; the write buffer holds the messages until the database is back)."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from .conftest import assert_stored_exactly_once, report, send_stream, start_sender

pytestmark = pytest.mark.e2e

OUTAGE_SECONDS = 5.0


def _pg_ctl(action: str) -> subprocess.CompletedProcess:
    versions = sorted(p.name for p in Path("/etc/postgresql").iterdir())
    return subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main",
                           action], capture_output=True, text=True, timeout=60)


def _pg_running() -> bool:
    return _pg_ctl("status").returncode == 0


@pytest.fixture
def postgres_control():
    """Stop and start the local PostgreSQL cluster; it is always running again afterwards."""
    if not Path("/etc/postgresql").is_dir() or not _pg_running():
        pytest.skip("needs the local PostgreSQL cluster under pg_ctlcluster")
    try:
        yield _pg_ctl
    finally:
        if not _pg_running():
            _pg_ctl("start")


def test_database_outage_mid_stream_loses_nothing_and_recovers(fault_stack, postgres_control):
    stack = fault_stack
    worker, conversation_id, sock = start_sender(stack)
    outage: dict[str, float] = {}
    restarter: list[threading.Thread] = []

    def restart_later() -> None:
        time.sleep(OUTAGE_SECONDS)
        result = postgres_control("start")
        outage["up"] = time.monotonic()
        outage["start_rc"] = result.returncode

    def stop_database(i: int) -> None:
        if i == 40:
            worker.signal(signal.SIGSTOP)  # a backlog builds up: acknowledged, not yet written
        if i == 60:
            result = postgres_control("stop")
            worker.signal(signal.SIGCONT)  # ...and meets a database that is down
            assert result.returncode == 0, result.stderr
            outage["down"] = time.monotonic()
            thread = threading.Thread(target=restart_later, daemon=True)
            thread.start()
            restarter.append(thread)

    # Steady sending before, during and after the outage (about 20 sends a second).
    stream = send_stream(sock, conversation_id, 160, "pg", between=stop_database, pause=0.05,
                         timeout=5)
    restarter[0].join(60)
    assert outage.get("start_rc") == 0
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
