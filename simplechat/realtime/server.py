"""The Socket.IO server bound to the app: the fan-out between processes (a Redis message queue,
room-scoped by default), orjson for every packet, the guards on what a client may send, and on
connections that hold the worker without using it."""

from __future__ import annotations

from typing import Any, NoReturn

from flask import Flask, abort

from simplechat.extensions import socketio
from simplechat.infra import fastjson
from simplechat.infra.membership import MEMBERSHIP_LISTENERS
from simplechat.realtime.answer_first import LocalManager, install_answer_first
from simplechat.realtime.connection_guard import install_connection_guard
from simplechat.realtime.event_limits import TURNS, Refusals, Turns
from simplechat.realtime.fanout import RoomFanoutManager, client_manager
from simplechat.realtime.packet_guard import JsonPacket, install_event_cap, install_packet_guard
from simplechat.realtime.presence import FOLLOWERS_COUNTABLE
from simplechat.realtime.restart import Drain
from simplechat.realtime.ws_mask import install_fast_mask


class SidSet(dict):
    """The sids of a namespace that are connecting (or disconnecting), as python-socketio's
    manager keeps them, with its list's ``append`` and ``remove``, but looked up in O(1): the
    manager asks ``sid in`` it on every event and every room entered, and in a reconnect storm
    thousands of connects wait for their turn (realtime/event_limits.py: Turns) in this state
    (6% of the worker's CPU with 5,000 sockets back at once, by py-spy)."""

    def append(self, sid: str) -> None:
        self[sid] = None

    def remove(self, sid: str) -> None:
        del self[sid]


class SidSets(dict):
    """namespace -> :class:`SidSet`: whatever python-socketio puts in (an empty list) becomes
    one."""

    def __setitem__(self, namespace: str, sids) -> None:
        super().__setitem__(namespace, SidSet.fromkeys(sids))


def quick_pending(manager: Any) -> None:
    """Give a python-socketio manager O(1) sets of its connecting and disconnecting sids."""
    manager.pending_connect = SidSets()
    manager.pending_disconnect = SidSets()


SOCKETIO_PATH = "socket.io"  # Flask-SocketIO's default, which this app keeps


def _socketio_transport() -> NoReturn:
    abort(404)


def init_socketio(app: Flask) -> None:
    queue_url = app.config.get("SOCKETIO_MESSAGE_QUEUE", app.config.get("REDIS_URL"))
    # No queue: the in-process manager, said outright (Flask-SocketIO would keep the manager
    # of an app made earlier in this process).
    queue: dict[str, Any] = {"client_manager": LocalManager()}
    if queue_url:
        queue["client_manager"] = client_manager(app.config, queue_url)
        if queue["client_manager"] is None:
            del queue["client_manager"]  # not Redis: Flask-SocketIO picks by the URL
    socketio.init_app(
        app,
        async_mode=app.config.get("SOCKETIO_ASYNC_MODE"),
        message_queue=queue_url,
        channel=app.config["REDIS_KEY_PREFIX"] + "socketio",
        **queue,
        cors_allowed_origins=app.config.get("CORS_ALLOWED_ORIGINS"),
        max_http_buffer_size=app.config["SOCKETIO_MAX_HTTP_BUFFER_SIZE"],
        manage_session=True,
        json=fastjson,  # orjson for every packet
        serializer=JsonPacket,
        logger=False,
        engineio_logger=False,
    )
    quick_pending(socketio.server.manager)
    manager = socketio.server.manager
    # A presence room's subscribers can be counted with the app's own Redis commands (see
    # presence.py: queue_followers) when the room fan-out's one server is the app's Redis.
    app.extensions[FOLLOWERS_COUNTABLE] = (
        isinstance(manager, RoomFanoutManager) and not manager.router.cluster
        and queue_url is not None and queue_url.strip() == app.config.get("REDIS_URL"))
    # Flask-SocketIO runs every socket event in a request context of the socket's first
    # request, whose path matched no route: each event paid Werkzeug's failed match and its
    # NotFound (70 of the context's 170 µs). A route of that path makes the match a look-up;
    # no request reaches it (the Socket.IO middleware answers them all before Flask).
    app.add_url_rule(f"/{SOCKETIO_PATH}/", endpoint="socketio_transport",
                     view_func=_socketio_transport)
    if socketio.server.async_mode == "eventlet":
        install_fast_mask()
    install_packet_guard(socketio.server)
    # Refusals that hold are answered as their packets arrive (chat/events.py records them).
    refusals = app.extensions.setdefault("simplechat.refusals", Refusals())
    app.extensions.setdefault(MEMBERSHIP_LISTENERS, []).append(refusals.members_changed)
    # The event's answer before its wide emits' local copies (inside the cap: counted in flight).
    install_answer_first(socketio.server)
    install_event_cap(socketio.server, refusals=refusals)
    # Connects and joins take turns: a reconnect storm forms a line, not a pile
    # (event_limits.py: Turns).
    app.extensions[TURNS] = Turns(app.config["CHAT_CONNECT_CONCURRENCY"])
    # A stop signal drains the sockets first (gunicorn.conf.py calls its begin()).
    drain = app.extensions["simplechat.drain"] = Drain(socketio.server,
                                                       app.config["CHAT_RESTART_WINDOW_MS"])
    app.wsgi_app = drain.refusing(app.wsgi_app)
    app.extensions["simplechat.connection_guard"] = install_connection_guard(
        socketio.server,
        namespace_timeout=app.config["CHAT_NAMESPACE_CONNECT_TIMEOUT"],
        queue_max=app.config["CHAT_SOCKET_QUEUE_MAX"],
        queue_max_bytes=app.config["CHAT_SOCKET_QUEUE_MAX_BYTES"],
    )
