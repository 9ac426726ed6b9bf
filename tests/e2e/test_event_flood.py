"""A socket flooding small events on a real gunicorn-eventlet worker: at most
MAX_EVENTS_IN_FLIGHT of its events run at once, the rest are answered ``rate_limited`` straight
away, the worker's memory stays flat and other sockets are served."""

from __future__ import annotations

import json
import time

import pytest

from simplechat.realtime.packet_guard import MAX_EVENTS_IN_FLIGHT

from .harness import NAMESPACE
from .test_binary_packets import connect_chat, open_engineio, rss_bytes, send_frames

pytestmark = pytest.mark.e2e

FLOOD = 6_000
# Before the cap, 20,000 heartbeats grew the worker by up to 702 MiB; one task per frame.
GROWTH_BOUND = 40 * 1024 * 1024


def acks(frames: list[str]) -> dict[int, dict]:
    """The answers among text frames, by ack id (engine.io 4 + Socket.IO ACK 3)."""
    prefix = f"43{NAMESPACE},"
    found = {}
    for frame in frames:
        if frame.startswith(prefix):
            body = frame[len(prefix):]
            digits = len(body) - len(body.lstrip("0123456789"))
            found[int(body[:digits])] = json.loads(body[digits:])[0]
    return found


def test_a_flood_of_events_is_capped_and_answered(stack):
    web = stack.start_web()
    ada = stack.register(web, "ada")
    [worker] = web.worker_pids()
    before = rss_bytes(worker)
    ws, _eio_sid = open_engineio(web, ada.cookie_header)
    assert connect_chat(ws).startswith(f"40{NAMESPACE},")

    frames = (f'42{NAMESPACE},{i}["heartbeat",{{}}]' for i in range(FLOOD))
    assert send_frames(ws, frames) == FLOOD
    answers: dict[int, dict] = {}
    deadline = time.monotonic() + 60
    while len(answers) < FLOOD and time.monotonic() < deadline:
        ws.settimeout(max(deadline - time.monotonic(), 0.1))
        answers.update(acks([ws.recv()]))
    grown = rss_bytes(worker) - before

    assert sorted(answers) == list(range(FLOOD)), f"{FLOOD - len(answers)} events unanswered"
    outcomes = {json.dumps(a, sort_keys=True) for a in answers.values()}
    assert outcomes == {'{"ok": true}', json.dumps(
        {"error": "rate_limited", "ok": False, "retry_after": 1.0}, sort_keys=True)}, outcomes
    served = sum(1 for a in answers.values() if a.get("ok"))
    assert MAX_EVENTS_IN_FLIGHT <= served < FLOOD, served
    assert grown < GROWTH_BOUND, f"worker RSS grew by {grown / 2**20:.1f} MiB"
    warnings = [line for line in web.log().splitlines() if "events in flight" in line]
    assert warnings and " WARNING " in warnings[0], web.tail()
    assert "Traceback" not in web.log(), web.tail()

    # The flooding socket is still open, and it and another socket are served normally.
    ws.send(f'42{NAMESPACE},{FLOOD}["heartbeat",{{}}]')
    ws.settimeout(10)
    while FLOOD not in (got := acks([ws.recv()])):
        pass
    assert got[FLOOD] == {"ok": True}
    ws.close()
    assert ada.socket(web).call("heartbeat", {}) == {"ok": True}
