"""Binary Socket.IO packets on a real gunicorn-eventlet worker, from a raw websocket: the worker
closes the socket at the binary event's header instead of buffering its attachments."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from pathlib import Path

import pytest
import websocket

from .harness import NAMESPACE, WebProcess

pytestmark = pytest.mark.e2e

FRAME = b"\x00" * 60_000
FRAMES = 400  # ~23 MiB: what the worker buffered for one socket before the guard
ROUNDS = 3
ROUND_BYTES = FRAMES * len(FRAME)
GROWTH_BOUND = 10 * 1024 * 1024
# A binary event announcing 99,999 attachments (python-socketio's packet.py, after the
# engine.io message type 4): type 5, the count and "-", the namespace and ",", the data.
BINARY_EVENT_HEADER = f'4599999-{NAMESPACE},["send_message",{{"_placeholder":true,"num":0}}]'


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


def open_engineio(web: WebProcess, cookie: str | None = None) -> tuple[websocket.WebSocket, str]:
    """A raw websocket past the engine.io handshake; it and the engine.io sid."""
    url = f"ws://127.0.0.1:{web.port}/socket.io/?EIO=4&transport=websocket"
    ws = websocket.create_connection(url, header=[f"Cookie: {cookie}"] if cookie else [],
                                     timeout=10)
    opened = ws.recv()
    assert opened.startswith("0"), opened
    return ws, json.loads(opened[1:])["sid"]


def connect_chat(ws: websocket.WebSocket) -> str:
    """Send the Socket.IO CONNECT for /chat; the server's answer (CONNECT or CONNECT_ERROR),
    skipping events the connect handler emits first."""
    ws.send(f"40{NAMESPACE},")
    while not (answer := ws.recv()).startswith((f"40{NAMESPACE},", f"44{NAMESPACE},")):
        pass
    return answer


def send_frames(ws: websocket.WebSocket, frames: Iterable[str | bytes]) -> int:
    """Send text and binary frames; how many went before the server closed the socket."""
    sent = 0
    for frame in frames:
        try:
            ws.send_binary(frame) if isinstance(frame, bytes) else ws.send(frame)
        except (OSError, websocket.WebSocketException):
            break
        sent += 1
    return sent


def read_until_closed(ws: websocket.WebSocket, timeout: float) -> tuple[list[str], bool]:
    """The text frames the server sends, and whether it closed the socket within ``timeout``."""
    frames: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ws.settimeout(max(deadline - time.monotonic(), 0.1))
        try:
            data = ws.recv()
        except (TimeoutError, websocket.WebSocketTimeoutException):
            return frames, False
        except (OSError, websocket.WebSocketException):
            return frames, True
        if not data:  # a close frame
            return frames, True
        if isinstance(data, str):
            frames.append(data)
    return frames, False


def refusals(web: WebProcess, eio_sid: str) -> list[str]:
    return [line for line in web.log().splitlines()
            if "connection closed" in line and eio_sid in line]


@pytest.mark.parametrize("worker_class, bound", [
    ("eventlet", GROWTH_BOUND),
    # simple-websocket (gevent without gevent-websocket) reads ahead whatever the client pushes
    # before the engine.io greenlet sees the header; the guard has that freed and reused, so
    # the growth does not add up over the rounds.
    ("gevent", GROWTH_BOUND + ROUND_BYTES),
])
def test_binary_event_with_many_attachments_closes_the_socket_without_buffering(
        stack, worker_class, bound):
    web = stack.start_web(worker_class=worker_class)
    ada = stack.register(web, "ada")
    [worker] = web.worker_pids()
    before = rss_bytes(worker)
    held_open = []  # unguarded, the worker keeps each socket's attachments while it is open

    for _round in range(ROUNDS):
        ws, eio_sid = open_engineio(web, ada.cookie_header)
        held_open.append(ws)
        connected = connect_chat(ws)
        assert connected.startswith(f"40{NAMESPACE},"), connected  # logged in: accepted
        sent = send_frames(ws, [BINARY_EVENT_HEADER] + [FRAME] * FRAMES) - 1
        _frames, closed = read_until_closed(ws, timeout=5)
        time.sleep(0.5)  # let the worker finish with whatever reached it
        grown = rss_bytes(worker) - before
        assert grown < bound, (
            f"worker RSS grew by {grown / 2**20:.1f} MiB after {_round + 1} rounds "
            f"({sent} frames of 60 KB in the last)")
        assert closed, f"the server kept the socket open after {sent} frames"
        [warning] = refusals(web, eio_sid)
        assert " WARNING " in warning and "binary packet" in warning, warning
    for ws in held_open:
        ws.close()
    assert "Traceback" not in web.log(), web.tail()

    # The worker goes on serving, and a normal socket still works.
    assert ada.socket(web).call("heartbeat", {}) == {"ok": True}


def test_server_side_disconnect_reaches_the_client_first(stack):
    """A DISCONNECT packet before the close: Socket.IO clients then do not reconnect."""
    web = stack.start_web()
    ada = stack.register(web, "ada")
    ws, _eio_sid = open_engineio(web, ada.cookie_header)
    connect_chat(ws)
    ws.send(BINARY_EVENT_HEADER)
    frames, closed = read_until_closed(ws, timeout=5)
    ws.close()
    assert closed and f"41{NAMESPACE}," in frames, frames


def test_anonymous_socket_sending_binary_frames_is_closed_without_a_traceback(stack):
    web = stack.start_web()
    ws, eio_sid = open_engineio(web)
    refused = connect_chat(ws)
    assert refused.startswith(f"44{NAMESPACE},"), refused  # CONNECT_ERROR: not logged in
    # Events, malformed frames (each logged a traceback before) and a binary event.
    event = f'42{NAMESPACE},["send_message",{{"conversation_id":1,"message":"hi"}}]'
    malformed = ["49", f'42{NAMESPACE},["send_message",{{bad']
    send_frames(ws, [event, *malformed] * 20 + [BINARY_EVENT_HEADER] + [FRAME] * 50)
    _frames, closed = read_until_closed(ws, timeout=5)
    ws.close()

    assert closed
    assert len(refusals(web, eio_sid)) == 1, web.tail()
    assert "Traceback" not in web.log(), web.tail()
