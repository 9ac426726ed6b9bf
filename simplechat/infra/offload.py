"""CPU-heavy work (Markdown rendering, password hashes, waiting for an image's decoding child
process) off the event loop: it runs on a bounded pool of operating-system threads while the
loop goes on serving every other socket and request.

One eventlet or gevent worker serves everyone from one loop: a function that computes for
100 ms there stops every other user for 100 ms. hashlib's scrypt releases the GIL while it
computes, so on a thread it costs the loop nothing; pure Python (Markdown) shares the GIL, and
the loop still gets its turn every few milliseconds instead of waiting for the end.

A job may also wait on its thread for a child process (uploaded pictures are decoded in one,
``attachments/decoding.py``): such a waiting job blocks with the standard library's own
functions (``original``), since the server's green ones would need a hub on that thread.

At most ``CHAT_CPU_WORKERS`` jobs run at once; at most ``CHAT_CPU_QUEUE`` more wait for a slot,
and a job beyond those is refused at once (``Busy``) instead of queueing without bound.
"""

from __future__ import annotations

import importlib
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from flask import Flask, current_app

from simplechat.extensions import socketio
from simplechat.infra.services import built_once

T = TypeVar("T")


class Busy(Exception):
    """Every slot of the pool is taken and its queue is full: try again shortly."""


class OffloadPool:
    """Runs a function on an OS thread of the server's kind (eventlet's or gevent's thread pool,
    or plain threads), at most ``workers`` at once and ``queue`` waiting."""

    def __init__(self, workers: int, queue: int, async_mode: str | None):
        self.workers = max(1, workers)
        self.queue = max(0, queue)
        self.async_mode = async_mode
        # Made after the server's monkey patching, so it is a green lock under eventlet/gevent.
        self._slots = threading.BoundedSemaphore(self.workers)
        self._count_lock = threading.Lock()
        self._admitted = 0
        self._executor: ThreadPoolExecutor | None = None

    @property
    def admitted(self) -> int:
        """Jobs running or waiting now."""
        return self._admitted

    def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        with self._count_lock:
            if self._admitted >= self.workers + self.queue:
                raise Busy
            self._admitted += 1
        try:
            with self._slots:
                return self._on_thread(fn, *args, **kwargs)
        finally:
            with self._count_lock:
                self._admitted -= 1

    def _on_thread(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        if self.async_mode == "eventlet":
            from eventlet import tpool

            return tpool.execute(fn, *args, **kwargs)
        if self.async_mode in ("gevent", "gevent_uwsgi"):
            import gevent

            return gevent.get_hub().threadpool.apply(fn, args, kwargs)
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="offload")
        return self._executor.submit(fn, *args, **kwargs).result()


def _build(app: Flask) -> OffloadPool:
    server = getattr(socketio, "server", None)
    mode = getattr(server, "async_mode", None) if server is not None else None
    return OffloadPool(app.config["CHAT_CPU_WORKERS"], app.config["CHAT_CPU_QUEUE"], mode)


def offload_pool() -> OffloadPool:
    return built_once("simplechat.offload", _build)


def offload(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` on a thread of the pool, its result or its exception; Busy when
    the pool's queue is full. Outside an app (a script, a shell) it simply calls ``fn``."""
    if not current_app:
        return fn(*args, **kwargs)
    return offload_pool().run(fn, *args, **kwargs)


def original(module: str, name: str) -> Any:
    """``module.name`` as the standard library has it, even where eventlet or gevent patched it:
    a job on the pool's threads that waits (for a child process, a timer) blocks its own OS
    thread, as a green wait cannot there (gevent's child watchers live on the loop's thread)."""
    if "eventlet" in sys.modules:  # importing eventlet otherwise only warns that it is deprecated
        import eventlet.patcher

        if eventlet.patcher.is_monkey_patched(module):
            return getattr(eventlet.patcher.original(module), name)
    if "gevent" in sys.modules:
        from gevent import monkey

        if monkey.is_module_patched(module):
            return monkey.get_original(module, name)
    return getattr(importlib.import_module(module), name)
