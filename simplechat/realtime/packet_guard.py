"""Closes sockets that break the JSON-only protocol before anything is buffered or parsed: binary
packets and frames, and anything but a CONNECT from a socket that is on no namespace."""

from __future__ import annotations

import logging
from collections.abc import Callable

import socketio as socketio_lib

from simplechat.observability.metrics import count_refusal
from simplechat.realtime.event_limits import Refusals

log = logging.getLogger(__name__)

Dispatch = Callable[[str, str | bytes], None]

# Socket.IO packet types, the first character of a text frame: CONNECT, BINARY_EVENT, BINARY_ACK.
_CONNECT = "0"
_BINARY_PACKET_TYPES = ("5", "6")


class JsonPacket(socketio_lib.packet.Packet):
    """The packets of a server that speaks JSON only.

    python-socketio walks every outgoing payload, item by item, looking for bytes to send as a
    binary packet; nothing this server emits or answers holds bytes (a payload that did would
    fail loudly in the JSON encoder). The walk was 30% of a ``join``'s CPU, whose answer carries
    up to 100 messages."""

    @classmethod
    def data_is_binary(cls, data: object) -> bool:
        return False


def is_binary_frame(data: str | bytes) -> bool:
    """Whether an engine.io message is binary data or a Socket.IO binary packet header."""
    if isinstance(data, str):
        return data[:1] in _BINARY_PACKET_TYPES
    return True


def install_packet_guard(server: socketio_lib.Server) -> None:
    """Put the guard in front of ``server``'s engine.io message handler.

    python-socketio registers its bound ``_handle_eio_message`` with engine.io when the server is
    built, so the guard is registered with engine.io in its place; it also replaces the instance
    attribute, which in-process callers (Flask-SocketIO's test client) call directly.
    """
    dispatch = server._handle_eio_message
    if getattr(dispatch, "is_packet_guard", False):
        return
    guard = _guard(server, dispatch)
    server.eio.on("message", guard)
    server._handle_eio_message = guard


def _guard(server: socketio_lib.Server, dispatch: Dispatch) -> Dispatch:
    def guarded_message(eio_sid: str, data: str | bytes) -> None:
        if is_binary_frame(data):
            _refuse(server, eio_sid, "a binary packet")
        elif not data.startswith(_CONNECT) and not namespace_sids(server, eio_sid):
            # A socket whose connect was refused: python-socketio would log a traceback for
            # every malformed frame from it.
            _refuse(server, eio_sid, "a packet while on no namespace")
        else:
            dispatch(eio_sid, data)

    guarded_message.is_packet_guard = True
    return guarded_message


def namespace_sids(server: socketio_lib.Server, eio_sid: str) -> dict[str, str]:
    """The Socket.IO sid of this connection on each namespace it is connected to."""
    sids = {}
    for namespace in list(server.manager.get_namespaces()):
        sid = server.manager.sid_from_eio_sid(eio_sid, namespace)
        if sid is not None:
            sids[namespace] = sid
    return sids


def _refuse(server: socketio_lib.Server, eio_sid: str, what: str) -> None:
    """Close the connection once; frames still in flight from it are dropped without a word."""
    environ = server.environ.get(eio_sid)
    if environ is None:
        return
    log.warning("socket %s from %s sent %s; connection closed",
                eio_sid, environ.get("REMOTE_ADDR", "?"), what)
    for namespace, sid in namespace_sids(server, eio_sid).items():
        # A DISCONNECT packet first, so that the client does not reconnect by itself.
        server.disconnect(sid, namespace=namespace, ignore_queue=True)
    server.eio.disconnect(eio_sid)
    # engine.io's disconnect handler forgets the environ; a connection engine.io does not hold
    # (the test client's) is forgotten here, so that it too is refused only once.
    server.environ.pop(eio_sid, None)


# Events of one socket that may run at once. python-socketio starts a green thread for every
# event as it arrives, so a socket that floods small frames could make the worker hold one task
# (and its request context) per frame: 20,000 heartbeats grew a worker by 702 MiB.
MAX_EVENTS_IN_FLIGHT = 64
BUSY_ANSWER = {"ok": False, "error": "rate_limited", "retry_after": 1.0}


def install_event_cap(server: socketio_lib.Server, limit: int = MAX_EVENTS_IN_FLIGHT,
                      refusals: Refusals | None = None) -> None:
    """Answer an event beyond ``limit`` unanswered ones of its socket with ``rate_limited`` at
    once, without running it (or drop it, when it asked for no answer); and an event that
    ``refusals`` still refuses with that refusal, without running it either."""
    if getattr(server._handle_event, "is_event_cap", False):
        return
    in_flight: dict[str, int] = {}
    start = server._handle_event
    run = server._handle_event_internal
    warned: set[str] = set()

    def answer_now(eio_sid, namespace, id, answer, limit_name):
        count_refusal(limit_name)
        if id is not None:
            server._send_packet(eio_sid, server.packet_class(
                socketio_lib.packet.ACK, namespace=namespace, id=id, data=[answer]))

    def capped_event(eio_sid, namespace, id, data):
        if refusals is not None and isinstance(data, list) and data:
            sid = server.manager.sid_from_eio_sid(eio_sid, namespace or "/")
            held = refusals.answer(sid, data[0], data[1] if len(data) > 1 else None)
            if held is not None:
                answer_now(eio_sid, namespace, id, held, f"held_{held['error']}")
                return
        if in_flight.get(eio_sid, 0) >= limit:
            if eio_sid not in warned:
                warned.add(eio_sid)
                environ = server.environ.get(eio_sid) or {}
                log.warning("socket %s from %s has %d events in flight; refusing more",
                            eio_sid, environ.get("REMOTE_ADDR", "?"), limit)
            answer_now(eio_sid, namespace, id, BUSY_ANSWER, "socket_events_in_flight")
            return
        in_flight[eio_sid] = in_flight.get(eio_sid, 0) + 1
        try:
            start(eio_sid, namespace, id, data)
        except BaseException:
            _finished(eio_sid)
            raise
        if not server.manager.is_connected(server.manager.sid_from_eio_sid(
                eio_sid, namespace or "/"), namespace or "/"):
            _finished(eio_sid)  # python-socketio dropped it without running a handler

    def _finished(eio_sid):
        left = in_flight.get(eio_sid, 1) - 1
        if left > 0:
            in_flight[eio_sid] = left
        else:
            in_flight.pop(eio_sid, None)
            warned.discard(eio_sid)

    def counted_run(srv, sid, eio_sid, *args):
        try:
            return run(srv, sid, eio_sid, *args)
        finally:
            _finished(eio_sid)

    capped_event.is_event_cap = True
    capped_event.in_flight = in_flight
    server._handle_event = capped_event
    server._handle_event_internal = counted_run


def events_in_flight(server: socketio_lib.Server, eio_sid: str) -> int:
    """Events of this connection that started and have not finished (0 without the cap)."""
    counts = getattr(server._handle_event, "in_flight", None)
    return counts.get(eio_sid, 0) if counts is not None else 0
