"""Hostile sockets cannot hold the server (issue 27): a connection on no namespace is closed
after CHAT_NAMESPACE_CONNECT_TIMEOUT, a socket that stops reading is disconnected once its
unsent packets pass CHAT_SOCKET_QUEUE_MAX(_BYTES), a user's socket past
CHAT_MAX_SOCKETS_PER_USER is refused (race-free across processes, a dead process's sockets
aging out), cheap events have per-socket budgets, and typing, presence or join on a
conversation one is not in read and write nothing for it.

A real server (werkzeug, threading mode) and real clients: python-socketio, and websocket-client
for raw engine.io."""

from __future__ import annotations

import contextlib
import io
import json
import queue
import socket
import threading
import time

import pytest
import redis as redis_lib
import requests
import socketio as socketio_client
import websocket
from conftest import PASSWORD, app_in_context
from e2e.harness import wait_until
from engineio.packet import CLOSE, MESSAGE, PING, Packet
from sqlalchemy import event
from werkzeug.serving import make_server

from simplechat.extensions import db, socketio
from simplechat.messaging.send import send_message
from simplechat.observability.logging_setup import configure_logging

NAMESPACE = "/chat"


@pytest.fixture
def app(database_uri, redis_url, request):
    marker = request.node.get_closest_marker("settings")
    yield from app_in_context(database_uri, redis_url, **(marker.kwargs if marker else {}))


@pytest.fixture
def log_lines(app):
    stream = io.StringIO()
    configure_logging(app, stream)
    yield lambda: stream.getvalue().splitlines()
    configure_logging(app)


@contextlib.contextmanager
def serving(app):
    """Serve ``app`` on a real port of 127.0.0.1; yields its base URL. Clients opened with
    ``connect``/``raw_socket`` are closed at the end."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        for client in _opened:
            with contextlib.suppress(Exception):
                client.disconnect() if isinstance(client, socketio_client.Client) \
                    else client.close()
        _opened.clear()
        server.shutdown()
        thread.join(5)


_opened: list = []


def cookie(base: str, user) -> str:
    http = requests.Session()
    response = http.post(f"{base}/auth/login", data={"username": user.username,
                                                     "password": PASSWORD},
                         allow_redirects=False, timeout=10)
    assert response.status_code == 302, response.text
    return "; ".join(f"{c.name}={c.value}" for c in http.cookies)


def connect(base: str, cookie_header: str) -> socketio_client.Client:
    """A python-socketio client on /chat over websocket; its connect_error data, if refused,
    in ``client.refusal``."""
    sio = socketio_client.Client(reconnection=False)
    sio.refusal = None

    def refused(data):
        sio.refusal = data

    sio.on("connect_error", refused, namespace=NAMESPACE)
    _opened.append(sio)
    try:
        sio.connect(base, headers={"Cookie": cookie_header}, namespaces=[NAMESPACE],
                    transports=["websocket"], wait_timeout=5)
    except socketio_client.exceptions.ConnectionError:
        pass
    return sio


def on_chat(sio: socketio_client.Client) -> bool:
    return sio.connected and NAMESPACE in sio.namespaces


def call(sio: socketio_client.Client, name: str, data) -> dict:
    return sio.call(name, data, namespace=NAMESPACE, timeout=10)


def raw_socket(base: str, cookie_header: str | None = None, **options) -> websocket.WebSocket:
    """A raw websocket past the engine.io handshake (no Socket.IO namespace yet); its engine.io
    sid in ``ws.eio_sid``."""
    ws = websocket.create_connection(
        base.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket",
        header=[f"Cookie: {cookie_header}"] if cookie_header else [], timeout=10, **options)
    _opened.append(ws)
    opened = ws.recv()
    assert opened.startswith("0"), opened  # engine.io OPEN
    ws.eio_sid = json.loads(opened[1:])["sid"]
    return ws


def connect_chat(ws: websocket.WebSocket) -> str:
    """Send the Socket.IO CONNECT for /chat; the answer (CONNECT or CONNECT_ERROR)."""
    ws.send(f"40{NAMESPACE},")
    while not (answer := ws.recv()).startswith((f"40{NAMESPACE},", f"44{NAMESPACE},")):
        pass
    return answer


def closed_within(ws: websocket.WebSocket, seconds: float) -> bool:
    """Whether the server closes ``ws`` within ``seconds`` (whatever it sends first)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        ws.settimeout(max(deadline - time.monotonic(), 0.05))
        try:
            if not ws.recv():
                return True
        except websocket.WebSocketTimeoutException:
            return False
        except (OSError, websocket.WebSocketException):
            return True
    return False


# --------------------------------------------------------------------------- no namespace


@pytest.mark.settings(CHAT_NAMESPACE_CONNECT_TIMEOUT=1)
def test_a_connection_on_no_namespace_is_closed_after_the_timeout(app, make_user, log_lines):
    user = make_user()
    with serving(app) as base:
        idle = raw_socket(base)  # never sends a Socket.IO CONNECT
        refused = raw_socket(base)  # no login: its CONNECT is refused, the connection stays
        assert connect_chat(refused).startswith(f"44{NAMESPACE},")
        chatting = connect(base, cookie(base, user))
        assert on_chat(chatting)

        assert closed_within(idle, 6), "a connection that never joined /chat was kept"
        assert closed_within(refused, 6), "a connection whose connect was refused was kept"
        # A socket on /chat is past the same deadline and still served.
        assert on_chat(chatting) and call(chatting, "heartbeat", {}) == {"ok": True}
    assert app.extensions["simplechat.connection_guard"].closed_for_namespace == 2
    closes = [line for line in log_lines() if "joined no namespace" in line]
    assert len(closes) == 2, log_lines()


# --------------------------------------------------------------------------- not reading


LONG_TEXT = ("<b>read</b> & <i>this</i> " * 200)[:3990]


@pytest.mark.settings(CHAT_SOCKET_QUEUE_MAX_BYTES=256 * 1024, CHAT_SOCKET_JOIN_RATE="off",
                      CHAT_RATE_LIMIT="off")
def test_a_socket_that_stops_reading_is_disconnected_and_others_are_still_served(
        app, make_user, make_conversation, log_lines):
    ada, bob = make_user(), make_user()
    conversation = make_conversation(ada, bob)
    for n in range(100):  # each join answer carries all of them: about 1 MB
        answer = send_message(ada, conversation.id, f"{n} {LONG_TEXT}")
        assert answer["ok"], answer
    with serving(app) as base:
        bystander = connect(base, cookie(base, bob))
        # A client that reads nothing: a tiny receive window, and never a recv() after connect.
        ws = raw_socket(base, cookie(base, ada),
                        sockopt=((socket.SOL_SOCKET, socket.SO_RCVBUF, 4096),))
        assert connect_chat(ws).startswith(f"40{NAMESPACE},")
        sent = 0
        for n in range(80):
            try:
                ws.send(f'42{NAMESPACE},{n}["join",{{"conversation_id":{conversation.id}}}]')
            except (OSError, websocket.WebSocketException):
                break
            sent += 1
            time.sleep(0.02)

        wait_until(lambda: ws.eio_sid not in socketio.server.eio.sockets, timeout=20,
                   message=f"the non-reading socket to be disconnected ({sent} joins sent)")
        assert call(bystander, "heartbeat", {}) == {"ok": True}
        assert call(bystander, "join", {"conversation_id": conversation.id})["ok"]
    assert app.extensions["simplechat.connection_guard"].closed_for_queue == 1
    [warning] = [line for line in log_lines() if "is not reading" in line]
    assert " WARNING " in warning and ws.eio_sid in warning, warning


def test_the_outgoing_queue_counts_what_waits_and_refuses_past_twice_its_bounds():
    from simplechat.realtime.connection_guard import OutgoingQueue

    calls = []
    q = OutgoingQueue(queue.Queue(), queue.Empty, max_packets=3, max_bytes=10_000,
                      overflowed=calls.append)
    q.put(Packet(MESSAGE, data="x" * 20_000))  # one large answer alone is never over
    assert q.packets == 1 and q.bytes > 20_000 and not q.over() and not calls
    assert q.get().data == "x" * 20_000
    assert (q.packets, q.bytes) == (0, 0)
    for n in range(3):
        q.put(Packet(MESSAGE, data=f"m{n}"))
    q.put(Packet(PING))  # control packets are neither counted nor refused
    assert not calls and not q.over()
    q.put(Packet(MESSAGE, data="past the bound"))  # kept; the guard is asked to look again
    assert calls == [q] and q.over() and q.packets == 4 and not q.overflowed
    q.put(Packet(MESSAGE, data="m5"))
    q.put(Packet(MESSAGE, data="m6"))
    q.put(Packet(MESSAGE, data="past twice the bound"))  # dropped, and so is all that follows
    q.put(Packet(MESSAGE, data="after"))
    assert calls == [q] and q.overflowed and q.packets == 6
    q.put(None)
    assert q.drop_messages() == 6
    assert (q.packets, q.bytes) == (0, 0)
    left = [q.get_nowait(), q.get_nowait()]
    assert [p.packet_type if p else None for p in left] == [PING, None]
    q.put(Packet(CLOSE))
    assert q.qsize() == 1


# --------------------------------------------------------------------------- sockets per user


def refused_past_the_cap(app, make_user) -> None:
    ada, bob = make_user(), make_user()
    with serving(app) as base:
        ada_cookie = cookie(base, ada)
        held = [connect(base, ada_cookie) for _ in range(3)]
        assert all(on_chat(s) for s in held)
        fourth = connect(base, ada_cookie)
        assert not on_chat(fourth)
        assert fourth.refusal == {"message": "too_many_sockets", "data": {"max_sockets": 3}}
        assert on_chat(connect(base, cookie(base, bob)))  # another user is not affected
        held[0].disconnect()
        time.sleep(0.5)  # the server handles the disconnect
        again = connect(base, ada_cookie)
        assert on_chat(again) and call(again, "heartbeat", {}) == {"ok": True}


@pytest.mark.settings(CHAT_MAX_SOCKETS_PER_USER=3)
def test_a_socket_past_the_users_cap_is_refused_and_another_user_still_connects(
        app, make_user):
    refused_past_the_cap(app, make_user)


@pytest.mark.settings(CHAT_MAX_SOCKETS_PER_USER=3, REDIS_URL=None)
def test_the_embedded_mode_caps_a_users_sockets_in_process(app, make_user):
    refused_past_the_cap(app, make_user)


def test_two_processes_admitting_at_once_never_pass_the_cap_and_a_dead_ones_age_out(
        app, redis_url):
    if not redis_url:
        pytest.skip("needs TEST_REDIS_URL")
    from simplechat.realtime.socket_cap import RedisSocketCap

    client = redis_lib.Redis.from_url(redis_url)
    prefix = app.config["REDIS_KEY_PREFIX"]

    def process():
        # No lease renewal task: the test is over long before a lease would lapse.
        return RedisSocketCap(client, prefix, 20, 60, lambda fn: None, time.sleep)

    a, b = process(), process()
    start = threading.Barrier(30)
    admitted: list[str] = []

    def connect_one(cap, sid: str) -> None:
        start.wait()
        if cap.admit(7, sid):
            admitted.append(sid)

    threads = [threading.Thread(target=connect_one, args=((a, b)[n % 2], f"s{n}"))
               for n in range(30)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(admitted) == 20 and len(a.sids(7)) == 20
    assert not a.admit(7, "one more") and not b.admit(7, "one more")
    assert a.admit(8, "another user's")

    # Process b dies: its lease lapses (deleted here, as its expiry would), and its sockets no
    # longer count at the next admit; a's still do.
    of_b = [sid for sid in admitted if int(sid[1:]) % 2]
    client.delete(b.lease_key)
    for n in range(len(of_b)):
        assert a.admit(7, f"after b died {n}")
    assert not a.admit(7, "still capped")
    a.release(next(sid for sid in admitted if not int(sid[1:]) % 2))
    b.release(of_b[0])  # a dead process's leftovers: nothing it held is counted any more
    assert a.admit(7, "in a freed place")
    assert not a.admit(7, "capped again")


# --------------------------------------------------------------------------- event budgets


@pytest.mark.settings(CHAT_SOCKET_JOIN_RATE="3/60s", CHAT_SOCKET_TYPING_RATE="2/60s",
                      CHAT_SOCKET_EVENT_RATE="5/60s", CHAT_RATE_LIMIT="off")
def test_cheap_events_past_the_users_budget_are_refused_and_do_nothing(
        app, make_user, make_conversation):
    ada, bob = make_user(), make_user()
    conversation = make_conversation(ada, bob)
    cid = conversation.id
    with serving(app) as base:
        ada_cookie = cookie(base, ada)
        a, b = connect(base, ada_cookie), connect(base, cookie(base, bob))
        typed = []
        b.on("typing", typed.append, namespace=NAMESPACE)
        assert call(b, "join", {"conversation_id": cid})["ok"]

        joins = [call(a, "join", {"conversation_id": cid}) for _ in range(4)]
        assert [j["ok"] for j in joins] == [True, True, True, False]
        refused = joins[3]
        assert set(refused) == {"ok", "error", "retry_after"} and refused["error"] == "rate_limited"
        assert refused["retry_after"] == int(refused["retry_after"]) >= 1  # whole seconds
        assert "messages" not in refused

        typing = [call(a, "typing", {"conversation_id": cid, "typing": True}) for _ in range(3)]
        assert [t.get("error") for t in typing] == [None, None, "rate_limited"]
        time.sleep(0.5)  # a relayed third one would have arrived by now
        assert len(typed) == 2

        beats = [call(a, "heartbeat", {}) for _ in range(6)]
        assert [t.get("error") for t in beats] == [None] * 5 + ["rate_limited"]
        assert call(a, "no_such_event", {})["error"] == "rate_limited"  # the same budget
        # Sends have their own limit; the user's next socket (a reconnect) starts with no fresh
        # budget; another user has budgets of their own.
        assert call(a, "send_message", {"conversation_id": cid, "message": "still"})["ok"]
        again = connect(base, ada_cookie)
        assert call(again, "heartbeat", {})["error"] == "rate_limited"
        assert call(again, "join", {"conversation_id": cid})["error"] == "rate_limited"
        assert call(b, "heartbeat", {}) == {"ok": True}


@pytest.mark.settings(CHAT_SOCKET_JOIN_RATE="off", CHAT_RATE_LIMIT="off")
def test_a_socket_runs_one_join_at_a_time(app, make_user, make_conversation):
    ada, bob = make_user(), make_user()
    conversation = make_conversation(ada, bob)
    for n in range(100):  # a join that takes a while to answer
        assert send_message(ada, conversation.id, f"{n} {LONG_TEXT}")["ok"]
    with serving(app) as base:
        ws = raw_socket(base, cookie(base, ada))
        assert connect_chat(ws).startswith(f"40{NAMESPACE},")
        for n in range(5):  # all at once, as a page never sends them
            ws.send(f'42{NAMESPACE},{n}["join",{{"conversation_id":{conversation.id}}}]')
        answers = {}
        while len(answers) < 5:
            frame = ws.recv()
            if frame.startswith(f"43{NAMESPACE},"):
                body = frame[len(f"43{NAMESPACE},"):]
                digits = len(body) - len(body.lstrip("0123456789"))
                answers[int(body[:digits])] = json.loads(body[digits:])[0]
        outcomes = [a.get("error", "ok") for _, a in sorted(answers.items())]
        assert "ok" in outcomes and "rate_limited" in outcomes, outcomes
        assert all(a == {"ok": False, "error": "rate_limited", "retry_after": 1.0}
                   for a in answers.values() if not a["ok"])
        # Once answered, the next join runs.
        ws.send(f'42{NAMESPACE},9["join",{{"conversation_id":{conversation.id}}}]')
        while not (frame := ws.recv()).startswith(f"43{NAMESPACE},9"):
            pass
        assert json.loads(frame[len(f"43{NAMESPACE},9"):])[0]["ok"] is True


# --------------------------------------------------------------------------- strangers' ids


def test_typing_presence_and_join_on_a_conversation_one_is_not_in_cost_no_sql_or_redis_key(
        app, make_user, make_conversation, redis_url):
    ada, bob, eve = make_user(), make_user(), make_user()
    mine = make_conversation(ada, bob)
    theirs = make_conversation(bob, eve).id  # read now: the object expires before the loop
    statements: list[str] = []

    def seen(conn, cursor, statement, *args):
        statements.append(statement)

    with serving(app) as base:
        a = connect(base, cookie(base, ada))
        assert call(a, "join", {"conversation_id": mine.id})["ok"]  # the caches are warm
        keys_before = _keys(app, redis_url)
        event.listen(db.engine, "before_cursor_execute", seen)
        try:
            for cid in [theirs, *range(10**9, 10**9 + 8)]:
                for name, payload in (("typing", {"typing": True}), ("presence", {}),
                                      ("join", {})):
                    answer = call(a, name, {"conversation_id": cid, **payload})
                    assert answer == {"ok": False, "error": "forbidden"}, (name, cid, answer)
            for bad in ("7", -1, 2**63, None):
                answer = call(a, "typing", {"conversation_id": bad, "typing": True})
                assert answer == {"ok": False, "error": "invalid"}
            assert call(a, "typing", {"conversation_id": mine.id, "typing": True}) == {"ok": True}
        finally:
            event.remove(db.engine, "before_cursor_execute", seen)
        new_keys = _keys(app, redis_url) - keys_before
    touching = [s for s in statements if "participants" in s or "conversations" in s]
    assert touching == [], touching
    assert not [k for k in new_keys if ":members:" in k], new_keys


def _keys(app, redis_url: str | None) -> set[str]:
    if not redis_url:
        return set()
    client = redis_lib.Redis.from_url(redis_url)
    try:
        return {k.decode() for k in client.scan_iter(match=app.config["REDIS_KEY_PREFIX"] + "*",
                                                     count=1000)}
    finally:
        client.close()

