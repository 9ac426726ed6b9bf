"""Hostile sockets on real gunicorn-eventlet workers (issue 27): connections that never join a
namespace are closed after CHAT_NAMESPACE_CONNECT_TIMEOUT and stop filling the worker, a client
that never reads is disconnected and the worker's memory comes back, and a user's 21st socket is
refused on any process while another user still connects (a killed process's sockets stop
counting)."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest
import requests
import socketio
import websocket

from .harness import NAMESPACE, WebProcess, wait_until
from .test_binary_packets import connect_chat, rss_bytes

pytestmark = pytest.mark.e2e

LONG_TEXT = ("<b>read</b> & <i>this</i> " * 200)[:3990]  # its HTML escapes make it longer


def raw_socket(web: WebProcess, cookie: str | None = None, **options) -> websocket.WebSocket:
    """A raw websocket past the engine.io handshake; its engine.io sid in ``ws.eio_sid``."""
    ws = websocket.create_connection(
        f"ws://127.0.0.1:{web.port}/socket.io/?EIO=4&transport=websocket",
        header=[f"Cookie: {cookie}"] if cookie else [], timeout=10, **options)
    opened = ws.recv()
    assert opened.startswith("0"), opened
    ws.eio_sid = json.loads(opened[1:])["sid"]
    return ws


def is_closed(ws: websocket.WebSocket, wait: float = 0.05) -> bool:
    """Whether the server has closed ``ws`` (answering its pings meanwhile)."""
    ws.settimeout(wait)
    try:
        while True:
            data = ws.recv()
            if not data:
                return True
            if data == "2":  # engine.io PING: answer it, as a live client does
                ws.send("3")
    except websocket.WebSocketTimeoutException:
        return False
    except (OSError, websocket.WebSocketException):
        return True


def healthz_answers(web: WebProcess, tries: int = 3) -> int:
    answered = 0
    for _ in range(tries):
        try:
            answered += requests.get(web.url + "/healthz", timeout=3).status_code == 200
        except requests.RequestException:
            pass
    return answered


def test_connections_on_no_namespace_are_closed_and_stop_filling_the_worker(make_stack):
    # A worker of 60 connections; the audit filled one of 1,000 with 1,100 such sockets.
    stack = make_stack(CHAT_NAMESPACE_CONNECT_TIMEOUT="2", GUNICORN_WORKER_CONNECTIONS="60")
    web = stack.start_web()
    idle = [raw_socket(web) for _ in range(58)]
    try:
        wait_until(lambda: all(is_closed(ws) for ws in idle), timeout=20,
                   message="every connection on no namespace to be closed")
        assert healthz_answers(web) == 3
        # A second wave finds the worker as free as the first did.
        again = [raw_socket(web) for _ in range(58)]
        wait_until(lambda: all(is_closed(ws) for ws in again), timeout=20,
                   message="the second wave to be closed")
        assert healthz_answers(web) == 3
    finally:
        for ws in idle:
            ws.close()
    closes = [line for line in web.log().splitlines() if "joined no namespace" in line]
    assert len(closes) == 116, web.tail()
    assert "Traceback" not in web.log(), web.tail()


def test_a_client_that_never_reads_is_disconnected_and_the_worker_memory_comes_back(
        make_stack):
    # The join budget off: the outgoing queue's bound alone stops this client.
    stack = make_stack(CHAT_RATE_LIMIT="off", CHAT_SOCKET_JOIN_RATE="off")
    web = stack.start_web()
    ada, bob = stack.register(web, "ada"), stack.register(web, "bob")
    conversation = ada.start_conversation(web, [bob.id])
    writer = ada.socket(web)
    for n in range(100):
        assert writer.send(conversation, f"{n} {LONG_TEXT}")["ok"]
    bystander = bob.socket(web)
    answer_size = len(json.dumps(bystander.join(conversation)))
    assert answer_size > 1_000_000, answer_size
    [worker] = web.worker_pids()
    before = rss_bytes(worker)

    # Joins in a loop, never a read: a tiny receive window, and no recv() after the connect.
    ws = raw_socket(web, ada.cookie_header, sockopt=((socket.SOL_SOCKET, socket.SO_RCVBUF, 4096),))
    assert connect_chat(ws).startswith(f"40{NAMESPACE},")
    # A join every 50 ms: each one comes after the previous one has run (a socket runs one
    # at a time), so every one of them adds its answer to what waits for the client.
    closed = f"socket {ws.eio_sid} from 127.0.0.1 is not reading"
    sent, peak = 0, 0
    deadline = time.monotonic() + 30
    while sent < 400 and time.monotonic() < deadline and closed not in web.log():
        try:
            ws.send(f'42{NAMESPACE},{sent}["join",{{"conversation_id":{conversation}}}]')
        except (OSError, websocket.WebSocketException):
            break
        sent += 1
        time.sleep(0.05)
        if sent % 20 == 0:
            peak = max(peak, rss_bytes(worker))
            assert bystander.call("heartbeat", {}) == {"ok": True}

    def disconnected() -> bool:
        nonlocal peak
        peak = max(peak, rss_bytes(worker))
        return closed in web.log()

    wait_until(disconnected, timeout=30, interval=0.1,
               message=f"the non-reading socket to be disconnected ({sent} joins sent)")
    time.sleep(1.0)  # what it left behind is freed
    after = rss_bytes(worker)
    ws.close()

    grown = after - before
    assert grown < 96 * 2**20, (
        f"worker RSS grew by {grown / 2**20:.0f} MiB (peak +{(peak - before) / 2**20:.0f} MiB) "
        f"after {sent} joins of {answer_size / 2**20:.1f} MiB answers")
    [warning] = [line for line in web.log().splitlines() if closed in line]
    assert " WARNING " in warning, warning
    # The bystander, and the same user's next socket, are served; it catches up with join.
    assert bystander.call("heartbeat", {}) == {"ok": True}
    assert ada.socket(web).join(conversation)["messages"]
    assert "Traceback" not in web.log(), web.tail()


class Attempt:
    """One python-socketio connect of a user's cookie; ``refusal`` holds connect_error's data."""

    def __init__(self, web: WebProcess, cookie: str):
        self.sio = socketio.Client(reconnection=False)
        self.refusal = None
        self.sio.on("connect_error", self._refused, namespace=NAMESPACE)
        try:
            self.sio.connect(web.url, headers={"Cookie": cookie}, transports=["websocket"],
                             namespaces=[NAMESPACE], wait_timeout=15)
        except socketio.exceptions.ConnectionError:
            pass

    def _refused(self, data) -> None:
        self.refusal = data

    @property
    def connected(self) -> bool:
        return self.sio.connected and NAMESPACE in self.sio.namespaces

    def close(self) -> None:
        try:
            self.sio.disconnect()
        except Exception:  # noqa: BLE001  (a server that is gone)
            pass


def test_a_users_21st_socket_is_refused_on_every_process_while_another_user_connects(
        make_stack):
    stack = make_stack(CHAT_PRESENCE_TTL="3")
    web_a, web_b = stack.start_web(), stack.start_web()
    ada, bob = stack.register(web_a, "ada"), stack.register(web_a, "bob")
    attempts: list[Attempt] = []
    lock = threading.Lock()
    start = threading.Barrier(30)

    def attempt(web: WebProcess) -> None:
        start.wait()
        made = Attempt(web, ada.cookie_header)
        with lock:
            attempts.append(made)

    try:
        # 30 of Ada's sockets at once, half on each process: exactly 20 get in.
        threads = [threading.Thread(target=attempt, args=((web_a, web_b)[n % 2],))
                   for n in range(30)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        held = [a for a in attempts if a.connected]
        refused = [a for a in attempts if not a.connected]
        assert len(held) == 20, f"{len(held)} of 30 sockets connected"
        assert {json.dumps(a.refusal, sort_keys=True) for a in refused} == {
            json.dumps({"message": "too_many_sockets", "data": {"max_sockets": 20}},
                       sort_keys=True)}
        for web in (web_a, web_b):
            extra = Attempt(web, ada.cookie_header)
            attempts.append(extra)
            assert not extra.connected and extra.refusal["message"] == "too_many_sockets"
        bob_socket = Attempt(web_b, bob.cookie_header)
        attempts.append(bob_socket)
        assert bob_socket.connected

        # Process B dies with its share of Ada's sockets: they stop counting once its lease
        # (CHAT_PRESENCE_TTL) lapses, and Ada may open that many again on A.
        on_b = [a for a in held if web_b.url in a.sio.connection_url]
        web_b.kill()
        time.sleep(4)
        again = []
        for _ in on_b:
            made = Attempt(web_a, ada.cookie_header)
            attempts.append(made)
            again.append(made.connected)
        assert all(again) and again, (len(on_b), again)
        last = Attempt(web_a, ada.cookie_header)
        attempts.append(last)
        assert not last.connected
    finally:
        for a in attempts:
            a.close()
