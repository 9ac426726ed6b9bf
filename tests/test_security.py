"""Security: socket origins, cookie flags, headers, login limits, password policy, size limits,
and deactivated users losing their open sockets."""

from __future__ import annotations

import contextlib
import threading
import time

import pytest
import requests
import socketio as socketio_client
from conftest import PASSWORD, _drop_redis_keys, make_app
from e2e.harness import free_port
from sqlalchemy import func, select
from werkzeug.serving import make_server

from simplechat import create_app
from simplechat.auth.sessions import end_user_sessions, live_sessions
from simplechat.conversations.records import start_conversation
from simplechat.extensions import db, socketio
from simplechat.infra.ratelimit import LoginLimiter, MemoryRateLimiter, Rate, RedisRateLimiter
from simplechat.infra.redis_client import redis_from_url
from simplechat.infra.services import services
from simplechat.models import Message, User
from simplechat.realtime.presence import presence

EVIL = "http://evil.example"


# --- a real server in this process, for what only a real HTTP and websocket stack checks ---

PORTS = range(18500, 18600)  # a range of its own (tests/e2e/harness.py free_port)


@contextlib.contextmanager
def serving(app):
    """Serve ``app`` (threading Socket.IO mode) on a real port; yields its base URL."""
    server = make_server("127.0.0.1", free_port(PORTS), app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(5)


def session_cookie(base: str, username: str, password: str = PASSWORD) -> str:
    http = requests.Session()
    response = http.post(f"{base}/auth/login", data={"username": username, "password": password},
                         allow_redirects=False, timeout=10)
    assert response.status_code == 302, response.text
    return "; ".join(f"{c.name}={c.value}" for c in http.cookies)


def open_socket(base: str, cookie: str, origin: str | None) -> socketio_client.Client:
    """A real Socket.IO client over websocket, sending ``origin`` as a browser would."""
    sio = socketio_client.Client(reconnection=False, websocket_extra_options=(
        {"origin": origin} if origin else {"suppress_origin": True}))
    sio.connect(base, headers={"Cookie": cookie}, namespaces=["/chat"],
                transports=["websocket"], wait_timeout=5)
    return sio


def test_socket_refuses_another_sites_origin_and_accepts_its_own(app, make_user):
    user = make_user()
    with serving(app) as base:
        cookie = session_cookie(base, user.username)
        with pytest.raises(socketio_client.exceptions.ConnectionError):
            open_socket(base, cookie, EVIL)
        # The same browser session from the site's own page, and a client sending no Origin
        # (not a browser, so no ambient cookies to hijack), are let in.
        for origin in (base, None):
            sio = open_socket(base, cookie, origin)
            assert sio.connected and "/chat" in sio.namespaces
            sio.disconnect()


def test_socket_accepts_an_origin_listed_in_cors_allowed_origins_only(database_uri, redis_url,
                                                                       app, make_user):
    user = make_user()
    listed = "https://chat.example.org"
    other = make_app(database_uri, redis_url, CORS_ALLOWED_ORIGINS=[listed])
    try:
        with serving(other) as base:
            cookie = session_cookie(base, user.username)
            sio = open_socket(base, cookie, listed)
            assert sio.connected
            sio.disconnect()
            for origin in (EVIL, "https://chat.example.org.evil.example", "null"):
                with pytest.raises(socketio_client.exceptions.ConnectionError):
                    open_socket(base, cookie, origin)
    finally:
        _drop_redis_keys(other)


def test_socket_message_over_the_buffer_size_drops_only_that_socket(app, make_user,
                                                                    make_conversation):
    alice, bob = make_user(), make_user()
    conversation = make_conversation(alice, bob)
    limit = app.config["SOCKETIO_MAX_HTTP_BUFFER_SIZE"]
    with serving(app) as base:
        a = open_socket(base, session_cookie(base, alice.username), base)
        b = open_socket(base, session_cookie(base, bob.username), base)
        heard = []
        b.on("message", heard.append, namespace="/chat")
        assert b.call("join", {"conversation_id": conversation.id}, namespace="/chat")["ok"]

        a.emit("send_message", {"conversation_id": conversation.id, "message": "x" * (limit + 1)},
               namespace="/chat")
        deadline = time.monotonic() + 10
        while a.connected and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not a.connected

        ack = b.call("send_message", {"conversation_id": conversation.id, "message": "still here"},
                     namespace="/chat", timeout=10)
        assert ack["ok"] is True
        deadline = time.monotonic() + 5
        while not heard and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [m["message"] for m in heard] == ["still here"]
        b.disconnect()
    texts = db.session.scalars(select(Message.text)).all()
    assert texts == ["still here"]


# --- cookies and headers ---

def test_production_cookies_are_secure_httponly_and_samesite_lax(monkeypatch, database_uri, app,
                                                                 make_user):
    user = make_user()
    monkeypatch.setenv("SECRET_KEY", "a-real-secret-for-this-test-only-0123456789")
    prod = create_app("production", {"SQLALCHEMY_DATABASE_URI": database_uri, "REDIS_URL": None,
                                     "WTF_CSRF_ENABLED": False, "SOCKETIO_ASYNC_MODE": "threading"})
    response = prod.test_client().post(
        "/auth/login", data={"username": user.username, "password": PASSWORD, "remember": "y"})
    assert response.status_code == 302
    cookies = {c.split("=", 1)[0]: c for c in response.headers.getlist("Set-Cookie")}
    assert {"session", "simplechat_remember"} <= cookies.keys()
    for header in cookies.values():
        flags = [part.strip().lower() for part in header.split(";")]
        assert "secure" in flags and "httponly" in flags and "samesite=lax" in flags, header
    assert "max-age=31536000" in response.headers["Strict-Transport-Security"]


def test_production_refuses_to_start_without_a_real_secret(monkeypatch, database_uri):
    monkeypatch.delenv("SECRET_KEY", raising=False)
    with pytest.raises(RuntimeError, match="SECRET_KEY"):
        create_app("production", {"SQLALCHEMY_DATABASE_URI": database_uri, "REDIS_URL": None,
                                  "SOCKETIO_ASYNC_MODE": "threading"})


def test_pages_carry_the_security_headers(client, auth, make_user):
    make_user("ada")
    pages = ["/auth/login", "/auth/register"]
    auth.login("ada")
    pages += ["/chat/", "/chat/new", "/profile/", "/profile/edit", "/chat/999999",
              "/api/users?q=a"]
    for path in pages:
        response = client.get(path)
        headers = response.headers
        csp = headers["Content-Security-Policy"]
        directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
        assert directives["script-src"] == "'self'" and directives["style-src"] == "'self'", path
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert directives["frame-ancestors"] == "'none'"
        assert directives["object-src"] == "'none'"
        assert headers["X-Frame-Options"] == "DENY"
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Referrer-Policy"] == "same-origin"


def test_development_session_cookie_is_httponly_and_samesite_lax(client, make_user):
    user = make_user()
    response = client.post("/auth/login", data={"username": user.username, "password": PASSWORD})
    header = response.headers["Set-Cookie"].lower()
    assert "httponly" in header and "samesite=lax" in header


# --- login attempts ---

def _login(client, username: str, password: str, ip: str = "203.0.113.1"):
    return client.post("/auth/login", data={"username": username, "password": password},
                       environ_base={"REMOTE_ADDR": ip})


def test_failed_logins_are_limited_per_typed_name_in_any_case(app, make_user):
    user = make_user("grace", email="grace@example.com")
    http = app.test_client()
    # Five failures on the username in different cases and spacing, from five addresses.
    for i, name in enumerate(["grace", "GRACE", " Grace ", "grace", "gRaCe"]):
        response = _login(http, name, "wrong password", ip=f"198.51.100.{i}")
        assert response.status_code == 200 and b"Invalid username or password." in response.data
    # Now even the right password is refused, from a fresh address, with a clear message.
    response = _login(http, "grace", PASSWORD, ip="192.0.2.99")
    assert response.status_code == 429
    assert b"Too many failed login attempts. Try again in" in response.data
    assert http.get("/chat/").status_code == 302  # not logged in
    # The e-mail address is another name with a counter of its own: sharing the username's
    # would tell an onlooker that both belong to one account.
    assert _login(http, "grace@example.com", PASSWORD, ip="192.0.2.99").status_code == 302
    http.post("/auth/logout")
    # Another account is not affected.
    other = make_user()
    assert _login(http, other.username, PASSWORD, ip="192.0.2.99").status_code == 302
    assert user.is_active  # a lock-out, not a deactivation


def test_failed_logins_are_limited_per_address(app, make_user):
    user = make_user()
    targets = [make_user() for _ in range(4)]
    http = app.test_client()
    # Twenty failures spread over four accounts: no account reaches its own limit.
    for i in range(20):
        name = targets[i % 4].username
        assert _login(http, name, "wrong password", ip="203.0.113.7").status_code == 200
    response = _login(http, user.username, PASSWORD, ip="203.0.113.7")
    assert response.status_code == 429 and b"Too many failed login attempts" in response.data
    # The same account from another address is fine: it has no failures of its own.
    assert _login(http, user.username, PASSWORD, ip="203.0.113.8").status_code == 302


def test_a_successful_login_does_not_reset_the_failure_count(app, make_user):
    user = make_user()
    attacker, owner = app.test_client(), app.test_client()
    for _ in range(4):
        _login(attacker, user.username, "guess", ip="203.0.113.20")
    assert _login(owner, user.username, PASSWORD, ip="203.0.113.30").status_code == 302
    assert _login(attacker, user.username, "guess", ip="203.0.113.20").status_code == 200
    response = _login(attacker, user.username, PASSWORD, ip="203.0.113.20")
    assert response.status_code == 429


@pytest.fixture(params=["memory", "redis"])
def login_limiter(request, redis_url, app):
    rates = (Rate(3, 60), Rate(10, 60))
    if request.param == "memory":
        return LoginLimiter(*(MemoryRateLimiter(r) for r in rates))
    if not redis_url:
        pytest.skip("TEST_REDIS_URL not set")
    client = redis_from_url(redis_url)
    return LoginLimiter(*(RedisRateLimiter(client, r, app.config["REDIS_KEY_PREFIX"])
                          for r in rates))


def test_login_limiter_counts_failures_and_waiting_takes_nothing(login_limiter):
    for _ in range(10):  # asking how long to wait never uses up an attempt
        assert login_limiter.wait("user:1", "ip-a") == 0.0
    for _ in range(3):
        login_limiter.failed("user:1", "ip-a")
    wait = login_limiter.wait("user:1", "ip-b")
    assert 0 < wait <= 20
    assert login_limiter.wait("user:2", "ip-a") == 0.0


# --- password policy and size limits ---

@pytest.mark.parametrize("password", ["short7!", "x" * 129])
def test_register_refuses_a_password_outside_8_to_128_characters(client, password):
    response = client.post("/auth/register", data={
        "username": "newbie", "first_name": "New", "last_name": "Bie",
        "email": "newbie@example.com", "password": password, "confirm": password})
    assert response.status_code == 200
    assert b"Field must be between 8 and 128 characters long." in response.data
    assert db.session.scalar(select(func.count(User.id))) == 0


def test_password_change_refuses_a_short_password(client, auth, make_user):
    user = make_user()
    auth.login(user.username)
    response = client.post("/profile/password", data={
        "current_password": PASSWORD, "password": "seven77", "confirm": "seven77"})
    assert response.status_code == 200 and b"between 8 and 128" in response.data
    db.session.refresh(user)
    assert user.check_password(PASSWORD)


def test_a_form_post_over_max_content_length_is_refused_with_413(app, client, auth, make_user):
    user = make_user()
    big = "x" * (app.config["MAX_CONTENT_LENGTH"] + 1)
    response = client.post("/auth/register", data={
        "username": "bigone", "first_name": big, "last_name": "B",
        "email": "bigone@example.com", "password": PASSWORD, "confirm": PASSWORD})
    assert response.status_code == 413
    assert db.session.scalar(select(func.count(User.id))) == 1
    auth.login(user.username)
    response = client.post("/profile/edit", data={
        "first_name": big, "last_name": "L", "email": user.email})
    assert response.status_code == 413
    db.session.refresh(user)
    assert user.first_name != big


# --- deactivated users ---

def _deactivate(user: User) -> None:
    user.is_active = False
    db.session.commit()


def test_deactivating_a_user_closes_their_open_sockets(app, make_user, make_conversation,
                                                       socket_client):
    alice, bob = make_user(), make_user()
    conversation = make_conversation(alice, bob)
    a1, a2, b = socket_client(alice), socket_client(alice), socket_client(bob)
    for sio in (a1, a2, b):
        assert sio.emit("join", {"conversation_id": conversation.id}, namespace="/chat",
                        callback=True)["ok"]
        sio.get_received("/chat")

    assert len(presence().sids(alice.id)) == 2
    _deactivate(alice)
    ended = end_user_sessions(alice.id, "deactivated")
    assert (ended.sessions, ended.sockets) == (2, 2)

    for sio in (a1, a2):
        assert not sio.is_connected("/chat")
    ack = b.emit("send_message", {"conversation_id": conversation.id, "message": "bye alice"},
                 namespace="/chat", callback=True)
    assert ack["ok"] is True and b.is_connected("/chat")
    # The old browser session cannot open a new socket either.
    stale = socketio.test_client(app, namespace="/chat", flask_test_client=a1.flask_test_client)
    assert not stale.is_connected("/chat")
    assert not presence().sids(alice.id)


def test_a_deactivated_users_socket_events_are_refused_and_change_nothing(
        app, make_user, make_conversation, socket_client):
    alice, bob = make_user(), make_user()
    conversation = make_conversation(alice, bob)
    a = socket_client(alice)
    assert a.emit("join", {"conversation_id": conversation.id}, namespace="/chat",
                  callback=True)["ok"]

    # Deactivated in SQL alone: no session ended, no socket closed. Once the socket's cached
    # identity is gone (it lives IDENTITY_TTL seconds), its next check reads SQL and refuses.
    app.config["SESSION_CHECK_INTERVAL"] = 0
    _deactivate(alice)
    services().liveness.forget([row.id for row in live_sessions(alice.id)])
    for event, payload in [("send_message", {"conversation_id": conversation.id,
                                             "message": "sneaky"}),
                           ("join", {"conversation_id": conversation.id}),
                           ("leave", {"conversation_id": conversation.id})]:
        ack = a.emit(event, payload, namespace="/chat", callback=True)
        assert ack == {"ok": False, "error": "unauthorized"}, event
    assert db.session.scalar(select(func.count(Message.id))) == 0
    assert services().cache.recent(conversation.id)[0] == []


def test_forwarded_for_is_ignored_unless_a_proxy_is_trusted(database_uri, redis_url, app,
                                                            make_user):
    user = make_user()
    targets = [make_user() for _ in range(4)]

    # Directly exposed: a client cannot dodge the address limit by inventing the header.
    http = app.test_client()
    for i in range(20):
        http.post("/auth/login", headers={"X-Forwarded-For": f"198.51.100.{i}"},
                  environ_base={"REMOTE_ADDR": "10.0.0.1"},
                  data={"username": targets[i % 4].username, "password": "wrong"})
    response = http.post("/auth/login", headers={"X-Forwarded-For": "192.0.2.1"},
                         environ_base={"REMOTE_ADDR": "10.0.0.1"},
                         data={"username": user.username, "password": PASSWORD})
    assert response.status_code == 429

    # Behind one trusted proxy, the address is the client's, so one client's failures do not
    # lock out everyone else behind the same proxy.
    proxied = make_app(database_uri, redis_url, TRUSTED_PROXY_HOPS=1)
    try:
        http = proxied.test_client()
        for i in range(20):
            http.post("/auth/login", headers={"X-Forwarded-For": "198.51.100.1"},
                      environ_base={"REMOTE_ADDR": "10.0.0.1"},
                      data={"username": f"nobody{i % 4}", "password": "wrong"})
        blocked = http.post("/auth/login", headers={"X-Forwarded-For": "198.51.100.1"},
                            environ_base={"REMOTE_ADDR": "10.0.0.1"},
                            data={"username": user.username, "password": PASSWORD})
        assert blocked.status_code == 429
        other = http.post("/auth/login", headers={"X-Forwarded-For": "198.51.100.2"},
                          environ_base={"REMOTE_ADDR": "10.0.0.1"},
                          data={"username": user.username, "password": PASSWORD})
        assert other.status_code == 302
    finally:
        _drop_redis_keys(proxied)


def test_the_cookie_signer_is_made_once_per_key_set_and_a_new_key_refuses_old_cookies(app):
    """Flask's session signer is kept between requests (it is built anew only when the keys
    change): a new SECRET_KEY refuses the cookies signed with the old one, unless the old one is
    listed in SECRET_KEY_FALLBACKS."""
    from flask import session

    interface = app.session_interface
    first = interface.get_signing_serializer(app)
    assert interface.get_signing_serializer(app) is first
    with app.test_request_context("/"):
        session["probe"] = "kept"
        cookie = first.dumps(dict(session))
    old_key = app.secret_key
    try:
        app.secret_key = app.config["SECRET_KEY"] = old_key + "-rotated"
        rotated = interface.get_signing_serializer(app)
        assert rotated is not first
        with app.test_request_context("/", headers={
                "Cookie": f"{app.config['SESSION_COOKIE_NAME']}={cookie}"}):
            assert "probe" not in session  # signed with a key no longer known
        app.config["SECRET_KEY_FALLBACKS"] = [old_key]
        with app.test_request_context("/", headers={
                "Cookie": f"{app.config['SESSION_COOKIE_NAME']}={cookie}"}):
            assert session.get("probe") == "kept"
    finally:
        app.secret_key = app.config["SECRET_KEY"] = old_key
        app.config["SECRET_KEY_FALLBACKS"] = []


def test_a_socket_s_events_after_its_connect_carry_no_cookie_and_still_act_as_its_user(
        app, make_user, socket_client, monkeypatch):
    """The connect drops the cookie from the socket's environ (chat/events.py): later events
    do not decode and verify the signed session again, and act as the socket's user all the
    same; HTTP requests still read their cookie."""
    from flask.sessions import SecureCookieSessionInterface

    seen = []
    original = SecureCookieSessionInterface.open_session

    def recording(self, app_, request):
        seen.append((request.path, app_.config["SESSION_COOKIE_NAME"] in request.cookies))
        return original(self, app_, request)

    ada, bob = make_user("ada"), make_user("bob")
    conversation, _ = start_conversation(ada, [bob])
    conversation_id = conversation.id
    monkeypatch.setattr(SecureCookieSessionInterface, "open_session", recording)
    sio = socket_client(ada)
    assert [cookie for path, cookie in seen if path.startswith("/socket.io")] == [True]
    seen.clear()
    for _ in range(3):
        assert sio.emit("join", {"conversation_id": conversation_id}, namespace="/chat",
                        callback=True)["ok"] is True
    sent = sio.emit("send_message", {"conversation_id": conversation_id, "message": "still me",
                                     "client_id": "no-cookie"}, namespace="/chat", callback=True)
    assert sent["ok"] is True and sent["message"]["sender"] == ada.id
    assert seen and all(not cookie for path, cookie in seen if path.startswith("/socket.io"))
    http = app.test_client()
    http.post("/auth/login", data={"username": "bob", "password": PASSWORD})
    seen.clear()
    assert http.get("/chat/").status_code == 200
    assert seen == [("/chat/", True)]
