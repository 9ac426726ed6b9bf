"""Turns for the work a reconnect storm piles up: at most CHAT_CONNECT_CONCURRENCY socket
connects and joins run at once in a process; the others wait in line, before they take anything.

A restarted web process, or one whose clients all come back after a network blip, gets every
socket's connect and join in the same second. Each waits on Redis several times. Started all
together, a handler whose reply has arrived waits behind every other runnable one before the
loop resumes it, holding its pooled Redis connection meanwhile: the pool runs dry, the others
give up after its timeout and fall back on SQL, which costs more still. In turns, each handler
holds its connection for a round trip and the line moves at the speed of the work itself.

Nothing else waits here: messages, reads and the heartbeats of sockets already connected go on
while a line forms."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

TURNS = "simplechat.connect_turns"  # the app's Turns, in app.extensions


class Turns:
    """At most ``limit`` holders at once (0: no bound); the others wait.

    The semaphore is made at the first turn, in the process that serves: the eventlet and
    gevent workers patch ``threading`` after the app may have been imported, and a lock made
    before that would block the whole loop instead of one green thread."""

    def __init__(self, limit: int):
        self.limit = limit
        self._slots: threading.Semaphore | None = None
        self._made = threading.Lock() if limit > 0 else None
        self.waiting = 0  # asked and not yet let in

    @contextmanager
    def turn(self) -> Iterator[None]:
        if self.limit <= 0:
            yield
            return
        slots = self._slots
        if slots is None:
            slots = self._make()
        self.waiting += 1
        try:
            slots.acquire()
        finally:
            self.waiting -= 1
        try:
            yield
        finally:
            slots.release()

    def _make(self) -> threading.Semaphore:
        with self._made:
            if self._slots is None:
                self._slots = threading.BoundedSemaphore(self.limit)
            return self._slots
