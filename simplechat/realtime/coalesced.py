"""Emits that may be merged: for a key (a thread's root), the newest data is sent at once when
nothing was sent for that key within the interval, else once the interval has passed (the
newest of what came meanwhile). Per process: a hot thread's root summary reaches its room at
most once per CHAT_THREAD_SUMMARY_INTERVAL from each web process, never lost."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from simplechat.extensions import socketio
from simplechat.infra.services import built_once
from simplechat.realtime.emit import emit_to

log = logging.getLogger(__name__)

MAX_KEYS = 10_000  # keys remembered; past it those older than the interval are forgotten


class CoalescedEmits:
    """``spawn(function)`` runs ``function`` in the background and ``sleep(seconds)`` waits
    there (Socket.IO's, so a greenlet under eventlet); ``clock`` gives monotonic seconds. The
    data may be a function that makes it, called when it is sent (None: nothing to send)."""

    def __init__(self, interval: float, spawn: Callable, sleep: Callable[[float], None],
                 clock: Callable[[], float] = time.monotonic,
                 send: Callable[..., object] = emit_to):
        self.interval = interval
        self._spawn, self._sleep, self._clock, self._send = spawn, sleep, clock, send
        self._last: dict[object, float] = {}  # key -> when it was last sent
        self._waiting: dict[object, tuple] = {}  # key -> the newest (rooms, event, data)
        self._lock = threading.Lock()

    def emit(self, key: object, rooms: str | list[str], event: str, data: object) -> None:
        """Send now, or hold the newest for the end of the key's interval."""
        if self.interval <= 0:
            self._deliver(rooms, event, data)
            return
        with self._lock:
            now = self._clock()
            if key in self._waiting:  # a send is due: it takes this newer one
                self._waiting[key] = (rooms, event, data)
                return
            wait = self.interval - (now - self._last.get(key, now - self.interval))
            if wait > 0:
                self._waiting[key] = (rooms, event, data)
            else:
                self._remember(key, now)
        if wait > 0:
            self._spawn(self._send_later, key, wait)
        else:
            self._deliver(rooms, event, data)

    def _deliver(self, rooms: str | list[str], event: str, data: object) -> None:
        if callable(data):
            data = data()
        if data is not None:
            self._send(rooms, event, data)

    def _send_later(self, key: object, wait: float) -> None:
        self._sleep(wait)
        with self._lock:
            held = self._waiting.pop(key, None)
            self._remember(key, self._clock())
        if held is not None:
            try:
                self._deliver(*held)
            except Exception:
                log.exception("held %s for %s not sent", held[1], key)

    def _remember(self, key: object, now: float) -> None:
        self._last[key] = now
        if len(self._last) > MAX_KEYS:
            self._last = {k: t for k, t in self._last.items() if now - t < self.interval}


def coalesced() -> CoalescedEmits:
    """This app's merged emits, built on first use with CHAT_THREAD_SUMMARY_INTERVAL."""
    return built_once("simplechat.coalesced_emits", lambda app: CoalescedEmits(
        app.config["CHAT_THREAD_SUMMARY_INTERVAL"], socketio.start_background_task,
        socketio.sleep))
