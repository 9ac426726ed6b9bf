"""Closes sockets that break the JSON-only protocol before anything is buffered or parsed: binary
packets and frames, and anything but a CONNECT from a socket that is on no namespace."""

from __future__ import annotations

import logging
from collections.abc import Callable

import socketio as socketio_lib

log = logging.getLogger(__name__)

Dispatch = Callable[[str, str | bytes], None]

# Socket.IO packet types, the first character of a text frame: CONNECT, BINARY_EVENT, BINARY_ACK.
_CONNECT = "0"
_BINARY_PACKET_TYPES = ("5", "6")


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
        elif not data.startswith(_CONNECT) and not _namespace_sids(server, eio_sid):
            # A socket whose connect was refused: python-socketio would log a traceback for
            # every malformed frame from it.
            _refuse(server, eio_sid, "a packet while on no namespace")
        else:
            dispatch(eio_sid, data)

    guarded_message.is_packet_guard = True
    return guarded_message


def _namespace_sids(server: socketio_lib.Server, eio_sid: str) -> dict[str, str]:
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
    for namespace, sid in _namespace_sids(server, eio_sid).items():
        # A DISCONNECT packet first, so that the client does not reconnect by itself.
        server.disconnect(sid, namespace=namespace, ignore_queue=True)
    server.eio.disconnect(eio_sid)
    # engine.io's disconnect handler forgets the environ; a connection engine.io does not hold
    # (the test client's) is forgotten here, so that it too is refused only once.
    server.environ.pop(eio_sid, None)
