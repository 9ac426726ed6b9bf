"""Reads by key that arrive together, answered by one query.

In a reconnect storm, every socket of an API client idle for more than a minute confirms its
token in SQL as it connects: thousands of one-row queries, each paying a pool checkout, a
statement's execution and a round trip (13% of the worker's samples in such a storm). The
first caller of a batch waits one turn of the loop (``pause``), so that the callers ready in
that turn add their keys; then it reads all of them in one query while they wait for its
answer. A batch closes at ``limit`` keys; the next caller starts another.

Nothing is kept between batches: a caller asking after a batch's read began gets the next
read, never an older answer.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

WAIT = 30.0  # seconds a caller waits for its batch's read before giving up


class _Batch(Generic[K, V]):
    def __init__(self) -> None:
        self.keys: dict[K, None] = {}  # in order of arrival
        self.done = threading.Event()
        self.found: dict[K, V] = {}
        self.error: BaseException | None = None


class BatchedReads(Generic[K, V]):
    """``read_many(keys)`` answers ``{key: value}`` for the keys it finds (absent: None);
    ``pause()`` lets the other callers of this turn run (Socket.IO's ``sleep(0)``). The lock is
    made with the reader, after the server's monkey patching: a green lock under eventlet."""

    def __init__(self, read_many: Callable[[list[K]], dict[K, V]], pause: Callable[[], None],
                 limit: int = 100):
        self._read_many, self._pause, self.limit = read_many, pause, limit
        self._open: _Batch[K, V] | None = None
        self._lock = threading.Lock()
        self.reads = 0  # queries made (for tests and benchmarks)

    def get(self, key: K) -> V | None:
        with self._lock:
            batch, first = self._open, False
            if batch is None:
                batch, first = _Batch(), True
                self._open = batch
            batch.keys[key] = None
            if len(batch.keys) >= self.limit:
                self._open = None
        if first:
            self._read(batch)
        elif not batch.done.wait(WAIT):
            raise TimeoutError(f"no answer for {key!r} in {WAIT:.0f} s")
        if isinstance(batch.error, Exception):
            raise batch.error
        if batch.error is not None:
            raise RuntimeError(f"the read of {key!r} was stopped") from batch.error
        return batch.found.get(key)

    def _read(self, batch: _Batch[K, V]) -> None:
        try:
            self._pause()
            with self._lock:
                if self._open is batch:
                    self._open = None  # later callers start the next batch
            self.reads += 1
            batch.found = self._read_many(list(batch.keys))
        except BaseException as exc:  # the waiters see what went wrong (a killed leader too)
            batch.error = exc
            if not isinstance(exc, Exception):
                raise
        finally:
            batch.done.set()
