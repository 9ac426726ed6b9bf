"""A web process told to stop (SIGTERM: a deploy, or the old workers of gunicorn's graceful
reload) goes without losing anyone: it takes no new sockets, tells each client when to come
back (``server_restart {"reconnect_in_ms"}``, spread over ``CHAT_RESTART_WINDOW_MS`` so that
they do not all reconnect in the same second), lets each socket's events in flight finish, and
closes the socket; the process exits once they are gone (gunicorn.conf.py starts the drain).

A socket is closed without a Socket.IO DISCONNECT (an engine.io close with no close packet):
clients that know nothing of ``server_restart`` (python-socketio, socket.io-client) see the
transport close and reconnect by themselves, to another process, as after a crash; the browser
waits the time it was given. Either way they catch up with ``join`` + ``after``.
"""

from __future__ import annotations

import logging
import random
import socket as socket_lib
import time
from collections.abc import Callable

import socketio as socketio_lib
from socketio import Manager

from simplechat.realtime.packet_guard import events_in_flight, namespace_sids

log = logging.getLogger(__name__)

RESTART_EVENT = "server_restart"
EVENTS_GRACE = 5.0  # seconds a socket's events in flight may take before it is closed anyway
MARGIN = 1.0  # seconds before the deadline by which every socket is closed
POLL = 0.05  # how often the drain looks at what is left
REFUSED = b"server restarting: connect again"
# Seconds a connection's handler has to end once its reading side is shut; then it is closed
# outright (a handler that never ends would hold the worker until graceful_timeout).
CLOSE_GRACE = 1.0


class Drain:
    """The stop of one web process: ``begin()`` once, from the stop signal's handler."""

    def __init__(self, server: socketio_lib.Server, window_ms: int):
        self.server = server
        self.window_ms = max(0, window_ms)
        self.started: float | None = None
        self.deadline = 0.0
        self.done = False

    @property
    def draining(self) -> bool:
        return self.started is not None

    def begin(self, within: float = 15.0) -> bool:
        """Start draining in a background task, every socket closed ``within`` seconds (less a
        margin); False when it had begun already."""
        if self.started is not None:
            return False
        self.started = time.monotonic()
        self.deadline = self.started + max(within - MARGIN, 0.5)
        self.server.start_background_task(self.run)
        return True

    def finish(self, timeout: float = 2.0) -> None:
        """Let a drain that has begun end (its last poll and its report) before the process
        exits: the worker's run loop returns as soon as the last connection's handler does,
        which can be before the drain sees that the last socket is gone."""
        until = time.monotonic() + timeout
        while self.started is not None and not self.done and time.monotonic() < until:
            self.server.sleep(POLL / 2)

    def run(self) -> None:
        try:
            self._run()
        finally:
            self.done = True

    def _run(self) -> None:
        told: dict[str, float] = {}  # engine.io sid -> when it was told
        ended: dict[str, float] = {}  # -> when its end began
        delays: list[int] = []
        while self.server.eio.sockets:
            now = time.monotonic()
            for eio_sid, sock in list(self.server.eio.sockets.items()):
                if eio_sid not in told:
                    told[eio_sid] = now
                    delays.append(self._tell(eio_sid))
                if eio_sid in ended:
                    if now - ended[eio_sid] >= CLOSE_GRACE or now >= self.deadline:
                        sock.close(wait=False, abort=True)  # its handler did not end: force it
                        _shut(_tcp_socket(self.server.environ.get(eio_sid)), socket_lib.SHUT_RDWR)
                elif (now >= self.deadline or now - told[eio_sid] >= EVENTS_GRACE
                        or not events_in_flight(self.server, eio_sid)):
                    ended[eio_sid] = now
                    self._end(eio_sid, sock)
            self.server.sleep(POLL)
        log.info("stopping: told %d socket(s) to reconnect within %d ms (%s), closed them in "
                 "%.1f s", len(told), self.window_ms,
                 f"{min(delays)}-{max(delays)} ms" if delays else "none",
                 time.monotonic() - self.started)

    def _end(self, eio_sid: str, sock) -> None:
        """End a connection as a lost one ends: its reading side shut, engine.io's handler
        sends what is queued (server_restart), closes the websocket and returns, freeing the
        worker. Without the TCP socket (not eventlet), engine.io's close, with no close packet."""
        raw = _tcp_socket(self.server.environ.get(eio_sid))
        if raw is not None:
            _shut(raw, socket_lib.SHUT_RD)
        else:
            sock.close(wait=False, abort=True)

    def _tell(self, eio_sid: str) -> int:
        """``server_restart`` to each namespace of this connection, on this process alone;
        the delay it was given."""
        delay = random.randint(0, self.window_ms)
        for namespace, sid in namespace_sids(self.server, eio_sid).items():
            Manager.emit(self.server.manager, RESTART_EVENT, {"reconnect_in_ms": delay},
                         namespace=namespace, room=sid)
        return delay

    def refusing(self, wsgi_app: Callable) -> Callable:
        """``wsgi_app`` answering a new Socket.IO connection 503 while draining (the requests
        of a connection already open, which carry its ``sid``, still pass); the worker stops
        accepting connections within a second of the signal, this covers that second."""
        def app(environ, start_response):
            if (self.started is not None and environ.get("PATH_INFO", "").startswith("/socket.io")
                    and "sid=" not in environ.get("QUERY_STRING", "")):
                start_response("503 Service Unavailable", [
                    ("Content-Type", "text/plain"), ("Retry-After", "1"),
                    ("Content-Length", str(len(REFUSED)))])
                return [REFUSED]
            return wsgi_app(environ, start_response)

        return app


def _tcp_socket(environ: dict | None) -> object | None:
    """The TCP socket of a websocket request (eventlet's server; None elsewhere)."""
    found = (environ or {}).get("eventlet.input")
    get_socket = getattr(found, "get_socket", None)
    return get_socket() if get_socket is not None else None


def _shut(raw, how: int) -> None:
    if raw is None:
        return
    try:
        raw.shutdown(how)
    except OSError:
        pass  # closed already
