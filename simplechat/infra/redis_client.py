"""Redis clients: ``redis_from_url`` (fails fast, blocks on a full pool), and a connection whose
check on every pool checkout is one poll(2) system call.

redis-py asks each connection it takes from the pool whether data is waiting (a reply left over
would be read by the next command). It asks ``select.poll``, which eventlet's monkey patching
removes, so it falls back to a green ``select`` that goes through the hub with a timer: 40% of
a worker's CPU in a burst of ``join`` events (benchmarks/run_all.py, py-spy). This class asks the
operating system's ``poll`` directly, with a zero timeout, and leaves every other case (data
waiting, a closed socket, a timeout, another parser) to redis-py.
"""

from __future__ import annotations

import select
import sys
from collections.abc import Callable
from urllib.parse import urlparse

import redis


def _unpatched_poll() -> Callable | None:
    """``select.poll`` as the operating system has it, under eventlet or gevent too."""
    if "eventlet" in sys.modules:  # importing eventlet otherwise only warns that it is deprecated
        import eventlet.patcher

        if eventlet.patcher.is_monkey_patched("select"):
            return getattr(eventlet.patcher.original("select"), "poll", None)
    if "gevent" in sys.modules:
        from gevent import monkey

        if monkey.is_module_patched("select"):
            return monkey.get_original("select", "poll")
    return getattr(select, "poll", None)


POLLIN = 0x001  # poll(2)'s "data to read", on Linux, BSDs and macOS alike


class QuickCheckConnection(redis.Connection):
    def can_read(self, timeout: float = 0) -> bool:
        reader = getattr(self._parser, "_reader", None)  # hiredis' reader
        poll = _POLL
        if timeout or self._sock is None or reader is None or poll is None:
            return super().can_read(timeout)
        if reader.has_data():
            return True
        poller = poll()
        poller.register(self._sock.fileno(), POLLIN)
        if not poller.poll(0):
            return False  # the usual answer: nothing waiting, and the socket is open
        return super().can_read(timeout)  # data or a close: redis-py tells which


_POLL = None


def connection_options(url: str) -> dict:
    """Options for ``Redis.from_url`` that use QuickCheckConnection for a plain ``redis://``
    URL (TLS and Unix sockets keep redis-py's own connection classes)."""
    global _POLL
    if urlparse(url).scheme != "redis":
        return {}
    if _POLL is None:
        _POLL = _unpatched_poll()  # looked up at first use: after the worker's monkey patching
    return {"connection_class": QuickCheckConnection}


def redis_from_url(url: str, max_connections: int = 100) -> redis.Redis:
    """A client that fails fast: a down Redis must turn into an error, not a hung request.

    The pool blocks when all its connections are in use: one eventlet worker runs hundreds of
    events at once, and redis-py's default pool answers the 101st with an error instead."""
    pool = redis.BlockingConnectionPool.from_url(
        url, max_connections=max_connections, timeout=5,
        socket_connect_timeout=2, socket_timeout=5, health_check_interval=30,
        **connection_options(url))
    return redis.Redis(connection_pool=pool)
