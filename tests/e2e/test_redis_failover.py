"""Redis failover with nobody noticing: a Redis primary, two replicas and three sentinels
(``redis-server --sentinel``), two gunicorn-eventlet web processes and a Celery worker that find
the primary through the sentinels, and CHAT_ACK_REPLICAS=1. Under a stream of sends from real
Socket.IO clients the primary is killed (SIGKILL, its folder deleted, as a lost host's), the
sentinels promote a replica, and without restarting anything: sends work again, every
acknowledged message is in SQL exactly once, and every socket that stayed connected was told
``resync`` and, having joined again with ``after``, holds every acknowledged message."""

from __future__ import annotations

import itertools
import threading
import time

import pytest

from simplechat.tools.loadtest import catch_up_from

from .conftest import _failed
from .harness import ChatSocket, RedisSentinelSet, Stack, TestDatabase, wait_until

pytestmark = pytest.mark.e2e

CONVERSATION = "failover"


@pytest.fixture(scope="module")
def sentinels(tmp_path_factory):
    """The primary, two replicas and three sentinels, shared by this module's tests (a test
    that kills the primary leaves two servers, the new primary and a replica)."""
    found = RedisSentinelSet(tmp_path_factory.mktemp("sentinels"), replicas=2, sentinels=3,
                             down_after_ms=1000, failover_timeout_ms=4000)
    yield found
    found.stop()


@pytest.fixture
def stack(request, sentinels, tmp_path):
    database = TestDatabase.create_migrated("postgresql", log_dir=tmp_path)
    deployment = Stack(database, tmp_path, redis_url=sentinels.url(), label="failover",
                       CHAT_RATE_LIMIT="off", CHAT_ACK_REPLICAS="1", CHAT_ACK_TIMEOUT_MS="500",
                       **sentinels.env())
    yield deployment
    try:
        if _failed(request):
            print(f"\n===== process logs ({tmp_path}) =====\n{deployment.logs()}")
    finally:
        try:
            deployment.stop_processes()
        finally:
            database.drop()


class Stream:
    """One sender's numbered sends until stopped: acknowledged payloads, refusals by code and
    sends with no answer (which may or may not be stored)."""

    def __init__(self, sock: ChatSocket, conversation_id: int, label: str):
        self.sock, self.conversation_id, self.label = sock, conversation_id, label
        self.acked: list[tuple[float, dict]] = []
        self.refused: dict[str, int] = {}
        self.unanswered: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        for i in itertools.count():
            if self.stop.is_set():
                return
            client_id = f"{self.label}-{i}"
            try:
                ack = self.sock.call("send_message", {"conversation_id": self.conversation_id,
                                                      "message": f"{self.label} {i}",
                                                      "client_id": client_id}, timeout=10)
            except Exception:  # noqa: BLE001  (no answer)
                self.unanswered.append(f"{self.label} {i}")
                continue
            if isinstance(ack, dict) and ack.get("ok"):
                self.acked.append((time.monotonic(), ack["message"]))
            else:
                code = ack.get("error") if isinstance(ack, dict) else repr(ack)
                self.refused[code] = self.refused.get(code, 0) + 1
            time.sleep(0.05)  # about 20 a second per sender, 40 in all


class Follower:
    """A socket that answers each ``resync`` as the browser does: ``join`` with ``after`` a
    little before the newest message it had when told (``catch_up_from``)."""

    def __init__(self, sock: ChatSocket, conversation_id: int):
        self.sock, self.conversation_id = sock, conversation_id
        self.joined: list[dict] = []
        self.handled = 0
        self.errors: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _newest_before(self, nth_resync: int) -> str | None:
        newest, seen = None, 0
        with self.sock._changed:
            for event, data in self.sock._events:
                if event == "resync":
                    seen += 1
                    if seen > nth_resync:
                        break
                elif event == "message" and data.get("conversation_id") == self.conversation_id:
                    newest = max(newest or "", data["id"])
        return max([newest or "", *(m["id"] for m in self.joined)]) or None

    def _run(self) -> None:
        while not self.stop.is_set():
            if not self.sock.wait_for(lambda s: len(s.events("resync")) > self.handled, 0.2):
                continue
            after = catch_up_from(self._newest_before(self.handled))
            self.handled += 1
            try:
                while True:
                    ack = self.sock.call("join", {"conversation_id": self.conversation_id,
                                                  **({"after": after} if after else {})},
                                         timeout=15)
                    if not (isinstance(ack, dict) and ack.get("ok")):
                        raise AssertionError(f"join answered {ack}")
                    self.joined.extend(ack["messages"])
                    if not (after and ack["has_more"] and ack["messages"]):
                        break
                    after = ack["messages"][-1]["id"]
            except Exception as exc:  # noqa: BLE001  (reported by the test)
                self.errors.append(repr(exc))

    def holds(self) -> set[str]:
        return {m["id"] for m in self.sock.messages(self.conversation_id)} | {
            m["id"] for m in self.joined}


def test_a_killed_primary_loses_no_acknowledged_message_and_every_socket_catches_up(
        sentinels, stack):
    web1, web2 = stack.start_web(), stack.start_web()
    worker = stack.start_worker()
    ada, bob, cy = (stack.register(web1) for _ in range(3))
    conversation_id = ada.start_conversation(web1, [bob.id, cy.id], CONVERSATION)
    sockets = [ada.socket(web1), bob.socket(web2), cy.socket(web1), cy.socket(web2)]
    for sock in sockets:
        sock.join(conversation_id)
    followers = [Follower(sock, conversation_id) for sock in sockets]
    streams = [Stream(sockets[0], conversation_id, "ada"), Stream(sockets[1], conversation_id,
                                                                   "bob")]
    pids = [web1.worker_pids(), web2.worker_pids(), worker.pid]
    try:
        wait_until(lambda: sum(len(s.acked) for s in streams) >= 40, 30, 0.1, "sends before")
        old = sentinels.kill_primary(delete_data=True)
        killed = time.monotonic()
        new = sentinels.wait_for_failover(old, timeout=60)
        promoted_s = round(time.monotonic() - killed, 1)
        # Sends work again by themselves, through the new primary and its one replica.
        wait_until(lambda: all(any(t > killed for t, _ in s.acked) for s in streams), 60, 0.1,
                   "an acknowledged send after the failover")
        back_s = round(min(t for s in streams for t, _ in s.acked if t > killed) - killed, 1)
        count_then = sum(len(s.acked) for s in streams)
        wait_until(lambda: sum(len(s.acked) for s in streams) >= count_then + 40, 60, 0.1,
                   "sends after the failover")
        # Every socket stayed connected, and was told to resync once its process listened
        # on the new primary again.
        for sock in sockets:
            assert sock.connected, f"{sock.name} was disconnected"
            assert sock.wait_for(lambda s: s.events("resync"), 30), f"{sock.name}: no resync"
    finally:
        for stream in streams:
            stream.stop.set()
        for stream in streams:
            stream.thread.join(30)
    assert [web1.worker_pids(), web2.worker_pids(), worker.pid] == pids, "a process restarted"
    assert worker.alive()

    acked = {m["id"]: m for s in streams for _, m in s.acked}
    assert len(acked) == sum(len(s.acked) for s in streams)
    refused = {code: n for s in streams for code, n in s.refused.items()}
    assert set(refused) <= {"unavailable"}, refused
    # SQL: every acknowledged message once, nothing refused; a send with no answer may be there.
    rows = wait_until(lambda: (found := stack.database.rows(
        "SELECT id, text FROM messages WHERE conversation_id = :c AND kind <> 'system'",
        c=conversation_id)) and set(acked) <= {r[0] for r in found} and found,
        90, 0.5, "every acknowledged message in SQL")
    assert len(rows) == len({r[0] for r in rows})
    stored = dict(rows)
    assert all(stored[i] == m["message"] for i, m in acked.items())
    unanswered = {text for s in streams for text in s.unanswered}
    extra = {text for i, text in stored.items() if i not in acked}
    assert extra <= unanswered, sorted(extra - unanswered)[:5]
    # Every socket, with its live messages and its joins after resync, has them all.
    for follower in followers:
        follower.sock.wait_for(lambda s, f=follower: set(acked) <= f.holds(), 20)
        missing = set(acked) - follower.holds()
        assert not missing, (f"{follower.sock.name}: {len(missing)} acknowledged messages "
                             f"missed (resyncs {follower.handled}, errors {follower.errors})")
        live = [m["id"] for m in follower.sock.messages(conversation_id)]
        assert len(live) == len(set(live)), f"{follower.sock.name}: a message twice"
    for follower in followers:
        follower.stop.set()
    gap = sum(len(set(acked) - {m["id"] for m in f.sock.messages(conversation_id)})
              for f in followers)
    print(f"\n[redis-failover] primary {old} -> {new}: promoted after {promoted_s} s, sends "
          f"acknowledged again after {back_s} s; acked={len(acked)} refused={refused} "
          f"unanswered={len(unanswered)} lost=0 duplicated=0; resyncs="
          f"{[f.handled for f in followers]}; deliveries missed live and caught up: {gap}")
