"""Closes engine.io connections that hold the worker without using it: one that joins no
Socket.IO namespace within CHAT_NAMESPACE_CONNECT_TIMEOUT seconds, and one whose client stops
reading while its unsent packets pile up past CHAT_SOCKET_QUEUE_MAX (or _BYTES)."""

from __future__ import annotations

import heapq
import logging
import socket as socket_lib
import sys
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

import engineio
import socketio as socketio_lib

from simplechat.observability.metrics import count_refusal
from simplechat.realtime.packet_guard import namespace_sids

log = logging.getLogger(__name__)

# A socket found on a namespace at its deadline is looked at again this often: one that left
# every namespace but kept its connection is closed too.
RECHECK_INTERVAL = 30.0
# A socket past its outgoing bound is closed if it still is after this many seconds, in which
# a client that reads takes what its writer sends.
QUEUE_GRACE = 0.5
# The watcher wakes at most this often, taking every deadline due by then, and at least this
# often while any deadline is pending.
WAKE_INTERVAL = 0.25
MAX_SLEEP = 1.0


def message_size(item: object) -> int | None:
    """The memory an engine.io MESSAGE packet's data holds; None for anything else (pings,
    the close packet, the writer's stop sentinel), which is never counted nor refused."""
    if not isinstance(item, engineio.packet.Packet) or item.packet_type != engineio.packet.MESSAGE:
        return None
    return sys.getsizeof(item.data)


class OutgoingQueue:
    """One engine.io socket's queue of packets waiting for its writer, counted as they come and
    go (messages only: pings, the close packet and the writer's stop sentinel are neither
    counted nor refused; one message alone is never "over", however large).

    Past ``max_packets`` or ``max_bytes``, ``overflowed(queue)`` is called once, to look again
    once the writer has had its turn (a burst that a reading client takes at once is no
    offence). Past twice either, the message is dropped and so is every later one: the socket
    is being closed."""

    def __init__(self, inner: Any, empty: type[Exception], max_packets: int, max_bytes: int,
                 overflowed: Callable[[OutgoingQueue], None]):
        self._inner = inner
        self._empty = empty
        self.max_packets = max_packets
        self.max_bytes = max_bytes
        self._overflowed = overflowed
        self.packets = 0
        self.bytes = 0
        self.overflowed = False  # past twice a bound: dropping, to be closed
        self.checking = False  # ``overflowed`` was called and has not answered yet
        self._lock = threading.Lock()

    def _past(self, packets: int, size: int, times: int = 1) -> bool:
        return packets > 1 and (packets > times * self.max_packets
                                or size > times * self.max_bytes)

    def over(self) -> bool:
        """Whether this socket's unsent messages are past a bound (or were past twice one)."""
        with self._lock:
            return self.overflowed or self._past(self.packets, self.bytes)

    def put(self, item: object, block: bool = True, timeout: float | None = None) -> None:
        size = message_size(item)
        if size is not None:
            with self._lock:
                if self.overflowed:
                    return
                packets, total = self.packets + 1, self.bytes + size
                drop = self._past(packets, total, times=2)
                if drop:
                    self.overflowed = True
                else:
                    self.packets, self.bytes = packets, total
                call = (drop or self._past(packets, total)) and not self.checking
                if call:
                    self.checking = True
            if call:
                self._overflowed(self)
            if drop:
                return
        self._inner.put(item, block, timeout)

    def put_nowait(self, item: object) -> None:
        self.put(item, block=False)

    def get(self, block: bool = True, timeout: float | None = None) -> object:
        item = self._inner.get(block, timeout)
        self._taken(item)
        return item

    def get_nowait(self) -> object:
        return self.get(block=False)

    def _taken(self, item: object) -> None:
        size = message_size(item)
        if size is not None:
            with self._lock:
                self.packets -= 1
                self.bytes -= size

    def drop_messages(self) -> int:
        """Drop every message still waiting (what a socket being closed will never send), so
        that their memory goes back now; other packets stay. Returns how many went."""
        kept, dropped = [], 0
        while True:
            try:
                item = self._inner.get(block=False)
            except self._empty:
                break
            self._inner.task_done()
            self._taken(item)
            if message_size(item) is None:
                kept.append(item)
            else:
                dropped += 1
        for item in kept:
            self._inner.put(item)
        return dropped

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)  # task_done, join, qsize, empty, full


class ConnectionGuard:
    """What this module does, for one Socket.IO server; ``install_connection_guard`` makes it."""

    def __init__(self, server: socketio_lib.Server, namespace_timeout: float,
                 queue_max: int, queue_max_bytes: int):
        self.server = server
        self.eio = server.eio
        self.namespace_timeout = namespace_timeout
        self.queue_max = queue_max
        self.queue_max_bytes = queue_max_bytes
        # Each websocket's transport object, to cut its TCP connection when closing it.
        self._transports: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._due: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        self._watching = False
        self.closed_for_namespace = 0
        self.closed_for_queue = 0

    # ----- installing

    def install(self) -> None:
        self._record_transports()
        if self.namespace_timeout > 0:
            opened = self.eio.handlers.get("connect")
            if opened is not None:
                def connect_with_deadline(eio_sid: str, environ: dict) -> Any:
                    answer = opened(eio_sid, environ)
                    self.watch(eio_sid)
                    return answer

                self.eio.on("connect", connect_with_deadline)
        if self.queue_max > 0 or self.queue_max_bytes > 0:
            make = self.eio.create_queue
            empty = self.eio.get_queue_empty_exception()
            max_packets = self.queue_max if self.queue_max > 0 else sys.maxsize
            max_bytes = self.queue_max_bytes if self.queue_max_bytes > 0 else sys.maxsize

            def create_queue(*args: Any, **kwargs: Any) -> OutgoingQueue:
                return OutgoingQueue(make(*args, **kwargs), empty, max_packets, max_bytes,
                                     self._overflowed)

            self.eio.create_queue = create_queue

    def _record_transports(self) -> None:
        """Have each websocket handler note its transport (eventlet's WebSocket, or the
        simple-websocket wrapper) for its engine.io socket before it starts."""
        make = self.eio._async.get("websocket")
        if make is None:
            return
        transports = self._transports

        def recording(handler: Callable, server: Any, *args: Any, **kwargs: Any) -> Any:
            eio_socket = getattr(handler, "__self__", None)

            def handle(ws: Any) -> Any:
                if eio_socket is not None:
                    transports[eio_socket] = ws
                return handler(ws)

            return make(handle, server, *args, **kwargs)

        # engine.io shares its driver table between servers: this server gets a copy.
        self.eio._async = {**self.eio._async, "websocket": recording}

    # ----- closing

    def close(self, eio_socket: Any) -> None:
        """Close an engine.io connection now, whether or not its client reads: the disconnect
        handlers run, the writer stops waiting for the client, the TCP connection is cut.
        A Socket.IO client sees the transport close and reconnects by itself."""
        eio_socket.close(wait=False, abort=True, reason=self.eio.reason.SERVER_DISCONNECT)
        connection = _tcp_socket(self._transports.get(eio_socket))
        if connection is not None:
            try:
                connection.shutdown(socket_lib.SHUT_RDWR)
            except OSError:
                pass  # already gone
        self.eio.sockets.pop(eio_socket.sid, None)

    def _address(self, eio_sid: str) -> str:
        return (self.server.environ.get(eio_sid) or {}).get("REMOTE_ADDR", "?")

    # ----- the namespace deadline

    def watch(self, eio_sid: str, delay: float | None = None) -> None:
        """Look at this connection again in ``delay`` seconds (the namespace timeout)."""
        deadline = time.monotonic() + (self.namespace_timeout if delay is None else delay)
        with self._lock:
            heapq.heappush(self._due, (deadline, eio_sid))
            if self._watching:
                return
            self._watching = True
        self.eio.start_background_task(self._watch)

    def _watch(self) -> None:
        """One task for every deadline of the server; it ends when none is left."""
        while True:
            with self._lock:
                if not self._due:
                    self._watching = False
                    return
                now = time.monotonic()
                due = []
                while self._due and self._due[0][0] <= now:
                    due.append(heapq.heappop(self._due)[1])
                next_in = self._due[0][0] - now if self._due else 0.0
            for eio_sid in due:
                try:
                    self._check_namespace(eio_sid)
                except Exception:
                    log.exception("socket %s: the namespace deadline failed", eio_sid)
            if not due:
                # Never past MAX_SLEEP: a connection opened meanwhile has a nearer deadline.
                self.eio.sleep(min(max(next_in, WAKE_INTERVAL), MAX_SLEEP))

    def _check_namespace(self, eio_sid: str) -> None:
        eio_socket = self.eio.sockets.get(eio_sid)
        if eio_socket is None or eio_socket.closed or eio_socket.closing:
            return
        if namespace_sids(self.server, eio_sid):
            self.watch(eio_sid, RECHECK_INTERVAL)
            return
        log.info("socket %s from %s joined no namespace within %gs; connection closed",
                 eio_sid, self._address(eio_sid), self.namespace_timeout)
        self.closed_for_namespace += 1
        count_refusal("namespace_connect_timeout")
        self.close(eio_socket)

    # ----- the outgoing queue

    def _overflowed(self, queue: OutgoingQueue) -> None:
        # Called inside whatever was sending (an emit to a room, an answer): the look again and
        # the close, which runs the disconnect handlers, happen on a task of their own.
        self.eio.start_background_task(self._check_queue, queue)

    def _check_queue(self, queue: OutgoingQueue) -> None:
        """Close the socket of ``queue`` if it is still past its bound once the writer had a
        chance to send (QUEUE_GRACE seconds), or past twice its bound."""
        while True:
            if not queue.overflowed:
                self.eio.sleep(QUEUE_GRACE)
            if queue.over():
                break
            queue.checking = False
            if not queue.over():
                return
            queue.checking = True  # it went past again meanwhile: look once more
        packets, size = queue.packets, queue.bytes
        queue.drop_messages()
        eio_socket = next((s for s in list(self.eio.sockets.values()) if s.queue is queue), None)
        if eio_socket is None or eio_socket.closed:
            return
        log.warning("socket %s from %s is not reading: %d packets (%d bytes) unsent; "
                    "connection closed", eio_socket.sid, self._address(eio_socket.sid),
                    packets, size)
        self.closed_for_queue += 1
        count_refusal("socket_queue_max")
        self.close(eio_socket)


def _tcp_socket(transport: Any) -> Any:
    """The TCP socket under a websocket transport: eventlet's ``socket``, simple-websocket's
    ``ws.sock``; None for another kind (the connection then ends at the client's next read)."""
    for candidate in (getattr(transport, "socket", None),
                      getattr(getattr(transport, "ws", None), "sock", None)):
        if candidate is not None and hasattr(candidate, "shutdown"):
            return candidate
    return None


def install_connection_guard(server: socketio_lib.Server, namespace_timeout: float,
                             queue_max: int, queue_max_bytes: int) -> ConnectionGuard:
    """Install the namespace deadline and the bounded outgoing queues on ``server`` (0 turns
    either bound off); the guard, for its counts."""
    found = getattr(server.eio, "simplechat_connection_guard", None)
    if found is not None:
        return found
    guard = ConnectionGuard(server, namespace_timeout, queue_max, queue_max_bytes)
    guard.install()
    server.eio.simplechat_connection_guard = guard
    return guard
