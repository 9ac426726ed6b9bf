"""A deploy that nobody notices: gunicorn's graceful reload (HUP) of a web process under 50
connected Socket.IO clients and a stream of sends. The old worker tells each client when to come
back (``server_restart``, spread over CHAT_RESTART_WINDOW_MS), closes its sockets once their
events are answered and exits by itself long before gunicorn would kill it; the clients
reconnect after the time they were given, catch up with ``join`` + ``after`` and have every
acknowledged message once, and SQL holds each once."""

from __future__ import annotations

import itertools
import os
import re
import signal
import threading
import time

import pytest

from simplechat.tools.loadtest import catch_up_from

from .harness import ChatSocket, ChatUser, Stack, WebProcess, wait_until

pytestmark = pytest.mark.e2e

WINDOW_MS = 3000
CLIENTS_PER_USER = 10
# 5 users of 10 clients each (and the one sending through the reload) in CI; the deploy figure
# with 200 clients: GRACEFUL_RELOAD_USERS=20 .venv/bin/python -m pytest -s tests/e2e/...
USERS = int(os.environ.get("GRACEFUL_RELOAD_USERS") or 5)
ENV = {"CHAT_RATE_LIMIT": "off", "CHAT_MAX_SOCKETS_PER_USER": "0", "REGISTER_RATE_LIMIT": "off",
       "LOGIN_SUCCESS_RATE_LIMIT_IP": "off",
       "CHAT_SOCKET_JOIN_RATE": "1000/60s", "CHAT_RESTART_WINDOW_MS": str(WINDOW_MS)}


class Follower:
    """One client of the restarted process: it records what it is delivered (live, and in the
    answers of its joins), and, told ``server_restart``, waits the time given, connects again
    and joins with ``after`` the newest message it has, as the browser does."""

    def __init__(self, user: ChatUser, web: WebProcess, conversation_id: int):
        self.user, self.web, self.conversation_id = user, web, conversation_id
        self.sockets: list[ChatSocket] = []
        self.joined: list[dict] = []  # messages in join answers
        self.delay_ms: int | None = None
        self.reconnected = threading.Event()
        self.error: BaseException | None = None
        self.failures: list[str] = []  # joins that failed on the way back
        self.back_at = 0.0  # when it had joined again
        self._connect(after=None)

    def _connect(self, after: str | None) -> None:
        """A socket joined (with ``after``, as many times as ``has_more`` says); one whose
        join fails is closed and forgotten (what it heard live would leave a gap before it)."""
        sock = self.user.socket(self.web)
        try:
            while True:
                ack = sock.call("join", {"conversation_id": self.conversation_id,
                                         **({"after": after} if after else {})}, timeout=30)
                if not (isinstance(ack, dict) and ack.get("ok")):
                    raise AssertionError(f"join answered {ack}")
                self.joined.extend(ack["messages"])
                if not (after and ack["has_more"] and ack["messages"]):
                    break
                after = ack["messages"][-1]["id"]
        except BaseException as exc:
            self.failures.append(repr(exc))
            sock.close()
            raise
        self.sockets.append(sock)

    def live(self) -> list[dict]:
        return [m for sock in self.sockets for m in sock.messages(self.conversation_id)]

    def newest(self) -> str | None:
        return max((m["id"] for m in self.live() + self.joined), default=None)

    def follow(self) -> None:
        """Wait for server_restart and the close, then come back (run in a thread)."""
        try:
            first = self.sockets[0]
            assert first.wait_for(lambda s: s.events("server_restart"), 30), "no server_restart"
            self.delay_ms = first.events("server_restart")[0]["reconnect_in_ms"]
            assert first.wait_for(lambda s: s.events("disconnect"), 20), "not closed"
            # server_restart came before the close, and nothing after it
            names = [name for name, _ in first._events]
            assert names.index("server_restart") < names.index("disconnect")
            time.sleep(self.delay_ms / 1000)
            after = catch_up_from(self.newest())  # as the browser does
            for attempt in itertools.count():  # the new worker may still be starting
                try:
                    self._connect(after)
                    break
                except Exception:
                    if attempt >= 20:
                        raise
                    time.sleep(0.5)
            self.back_at = time.monotonic()
            self.reconnected.set()
        except BaseException as exc:  # noqa: BLE001  (reported by the test)
            self.error = exc
            self.reconnected.set()


def send_stream(sock_of, conversation_id: int, label: str, stop: threading.Event,
                acked: list[dict], pause: float = 0.05) -> None:
    """Numbered sends until ``stop``; an unanswered or refused one is sent again with the same
    client_id (``sock_of()`` gives the socket to use now)."""
    for i in itertools.count():
        if stop.is_set():
            return
        client_id = f"{label}-{i}"
        for _attempt in range(200):
            try:
                ack = sock_of().call("send_message", {"conversation_id": conversation_id,
                                                      "message": f"{label} {i}",
                                                      "client_id": client_id}, timeout=5)
            except Exception:  # noqa: BLE001  (closed under it, or no answer: send again)
                time.sleep(0.1)
                continue
            if isinstance(ack, dict) and ack.get("ok"):
                acked.append(ack["message"])
                break
            time.sleep(0.1)
        time.sleep(pause)


def test_a_graceful_reload_under_many_clients_loses_and_doubles_nothing(make_stack):
    stack: Stack = make_stack(**ENV)
    # gunicorn would end the worker after 30 s: it must go by itself within 15 (DEPLOY.md).
    web = stack.start_web(graceful_timeout=30)
    other = stack.start_web()  # stays up: a sender there keeps the stream going
    stack.start_worker()
    users = [stack.register(web) for _ in range(USERS)]
    conversation_id = users[0].start_conversation(web, [u.id for u in users[1:]], "deploy")
    followers = [Follower(user, web, conversation_id)
                 for user in users for _ in range(CLIENTS_PER_USER)]
    outside = users[0].socket(other)
    outside.join(conversation_id)
    inside = Follower(users[1], web, conversation_id)  # sends through the restart

    stop = threading.Event()
    acked: list[dict] = []
    senders = [threading.Thread(target=send_stream, args=(lambda: outside, conversation_id,
                                                          "outside", stop, acked)),
               threading.Thread(target=send_stream, args=(lambda: inside.sockets[-1],
                                                          conversation_id, "inside", stop,
                                                          acked))]
    for thread in senders:
        thread.start()
    waiting = [threading.Thread(target=f.follow) for f in [*followers, inside]]
    for thread in waiting:
        thread.start()
    try:
        wait_until(lambda: len(acked) >= 10, 30, 0.1, "sends before the reload")
        old_worker, = web.worker_pids()
        os.kill(web.pid, signal.SIGHUP)  # the master alone: gunicorn's graceful reload
        hup = time.monotonic()
        wait_until(lambda: not _alive(old_worker), 15, 0.1, "the old worker to exit")
        exited_s = round(time.monotonic() - hup, 1)
        for follower in [*followers, inside]:
            assert follower.reconnected.wait(30), "a client did not come back"
            assert follower.error is None, repr(follower.error)
        back_s = round(max(f.back_at for f in [*followers, inside]) - hup, 1)
        count_then = len(acked)
        wait_until(lambda: len(acked) >= count_then + 10, 30, 0.1, "sends after the reload")
    finally:
        stop.set()
        for thread in senders:
            thread.join(30)
    log = web.log()
    # It exited by itself, the drain done: gunicorn did not have to kill it.
    assert f"Worker exiting (pid: {old_worker})" in log, web.tail()
    assert "SIGKILL" not in log and "WORKER TIMEOUT" not in log
    told = re.search(r"stopping: told (\d+) socket\(s\)", log)
    assert told and int(told.group(1)) >= len(followers) + 1, web.tail()
    delays = sorted(f.delay_ms for f in [*followers, inside])
    assert all(0 <= d <= WINDOW_MS for d in delays)
    assert delays[-1] - delays[0] > WINDOW_MS / 2, delays  # spread, not all at once

    expected = {m["id"] for m in acked}
    assert len(expected) == len(acked)  # each client_id acknowledged once
    wait_until(lambda: outside.wait_for(
        lambda s: expected <= {m["id"] for m in s.messages(conversation_id)}, 0.1), 20, 0.2,
        "the socket on the other process to have every message")
    for follower in [*followers, inside]:
        follower.sockets[-1].wait_for(
            lambda s, f=follower: expected <= {m["id"] for m in f.live() + f.joined}, 20)
        for sock in follower.sockets:
            live = [m["id"] for m in sock.messages(conversation_id)]
            assert len(live) == len(set(live)), (
                f"a message delivered twice to one socket: {len(live)} {len(set(live))} "
                f"socket {follower.sockets.index(sock)} of {len(follower.sockets)}")
        missing = expected - {m["id"] for m in follower.live() + follower.joined}
        assert not missing, (
            f"{len(missing)} acknowledged messages never reached a client (told to come back "
            f"in {follower.delay_ms} ms, {len(follower.sockets)} sockets, joins that failed: "
            f"{follower.failures})")
    stored = stack.database.wait_for_messages(conversation_id, len(expected), timeout=60)
    assert sorted(stored) == sorted(expected), "SQL must hold every acknowledged message once"
    print(f"\n[graceful-reload] clients={len(followers) + 1} acked={len(acked)} "
          f"old_worker_exit_s={exited_s} all_back_s={back_s} "
          f"delays_ms={delays[0]}-{delays[-1]} lost=0 duplicated=0")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped by the master) counts as gone
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
