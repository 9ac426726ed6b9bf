"""Server-side sessions: logout, password changes, deactivation and "sign out" end them, their
sockets are told and closed, saved cookies and remember-me tokens stop working."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import event, func, select

from simplechat.auth.sessions import REMEMBER_COOKIE, SESSION_KEY, live_sessions
from simplechat.extensions import db, socketio
from simplechat.infra.secrets import token_hash
from simplechat.models import Message, UserSession
from tests.conftest import PASSWORD

NEW_PASSWORD = "a brand new passphrase"


def login(app, user, password: str = PASSWORD, remember: bool = False, agent: str = "pytest"):
    http = app.test_client()
    data = {"username": user.username, "password": password}
    if remember:
        data["remember"] = "y"
    response = http.post("/auth/login", data=data, headers={"User-Agent": agent})
    assert response.status_code == 302, response.data
    return http


def open_socket(app, http):
    return socketio.test_client(app, namespace="/chat", flask_test_client=http)


def copy_of(app, http, *names: str):
    """Another browser holding a saved copy of ``http``'s cookies."""
    thief = app.test_client()
    for name in names or ("session",):
        cookie = http.get_cookie(name)
        if cookie is not None:
            thief.set_cookie(name, cookie.value)
    return thief


def ended_events(sio) -> list[dict]:
    """The ``session_ended`` events a socket got, readable after the server closed it."""
    return [p["args"][0] for p in sio.queue if p["name"] == "session_ended"]


def send(sio, conversation_id: int, text: str, client_id: str | None = None) -> dict:
    payload = {"conversation_id": conversation_id, "message": text}
    if client_id is not None:
        payload["client_id"] = client_id
    return sio.emit("send_message", payload, namespace="/chat", callback=True)


def logged_in(http) -> bool:
    return http.get("/profile/").status_code == 200


def session_rows(user_id: int) -> list[UserSession]:
    db.session.expire_all()
    return list(db.session.scalars(select(UserSession).where(UserSession.user_id == user_id)
                                   .order_by(UserSession.id)))


# --- what a login stores ---

def test_a_login_stores_a_session_whose_cookie_holds_only_a_random_token(app, make_user):
    ada = make_user("ada")
    first, second = login(app, ada, agent="Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0"), \
        login(app, ada)
    rows = session_rows(ada.id)
    assert len(rows) == 2 and all(r.ended_at is None for r in rows)
    assert rows[0].user_agent.startswith("Mozilla/5.0") and rows[0].ip == "127.0.0.1"
    serializer = app.session_interface.get_signing_serializer(app)
    tokens = [serializer.loads(h.get_cookie("session").value)[SESSION_KEY]
              for h in (first, second)]
    assert tokens[0] != tokens[1] and len(tokens[0]) >= 43  # 256 random bits
    assert {token_hash(t) for t in tokens} == {r.token_hash for r in rows}
    assert not {r.token_hash for r in rows} & set(tokens)  # only hashes are stored


# --- logout ---

def test_logout_ends_the_session_its_sockets_and_a_saved_copy_of_its_cookie(
        app, make_user, make_conversation):
    ada, bob = make_user("ada"), make_user("bob")
    conversation = make_conversation(ada, bob)
    http = login(app, ada)
    tab1, tab2 = open_socket(app, http), open_socket(app, http)
    assert tab1.emit("join", {"conversation_id": conversation.id}, namespace="/chat",
                     callback=True)["ok"]
    saved = copy_of(app, http)
    assert logged_in(saved)

    assert http.post("/auth/logout").status_code == 302
    for tab in (tab1, tab2):
        assert ended_events(tab) == [{"reason": "logged_out"}]
        assert not tab.is_connected("/chat")
    assert not logged_in(saved) and not logged_in(http)
    assert not open_socket(app, saved).is_connected("/chat")
    assert session_rows(ada.id)[0].end_reason == "logged_out"
    assert db.session.scalar(select(func.count(Message.id))) == 0


def test_logout_leaves_the_users_other_sessions_alone(app, make_user, make_conversation):
    ada, bob = make_user("ada"), make_user("bob")
    conversation = make_conversation(ada, bob)
    laptop, phone = login(app, ada), login(app, ada)
    phone_socket = open_socket(app, phone)
    assert laptop.post("/auth/logout").status_code == 302
    assert logged_in(phone) and phone_socket.is_connected("/chat")
    assert send(phone_socket, conversation.id, "still here")["ok"] is True


def test_an_event_on_an_ended_session_is_refused_even_where_the_close_did_not_arrive(
        app, make_user, make_conversation):
    """The push closes sockets; the per-event check is the guard if a close is lost."""
    ada, bob = make_user("ada"), make_user("bob")
    conversation = make_conversation(ada, bob)
    http = login(app, ada)
    sio = open_socket(app, http)
    app.config["SESSION_CHECK_INTERVAL"] = 0
    assert send(sio, conversation.id, "before")["ok"] is True
    # What end_sessions does before it pushes the close: SQL, then the shared cache.
    row = live_sessions(ada.id)[0]
    row.ended_at, row.end_reason = row.last_seen_at, "signed_out"
    db.session.commit()
    app.extensions["simplechat"].liveness.forget([row.id])
    for event_name, payload in [("send_message", {"conversation_id": conversation.id,
                                                  "message": "after"}),
                                ("join", {"conversation_id": conversation.id}),
                                ("typing", {"conversation_id": conversation.id})]:
        ack = sio.emit(event_name, payload, namespace="/chat", callback=True)
        assert ack == {"ok": False, "error": "unauthorized"}, event_name
    assert db.session.scalar(select(func.count(Message.id))) == 1


def test_socket_events_run_no_sql_for_the_session_or_user(app, make_user, make_conversation):
    """The queries of one send_message: membership only (the session check is cached)."""
    ada, bob = make_user("ada"), make_user("bob")
    conversation = make_conversation(ada, bob)
    sio = open_socket(app, login(app, ada))
    app.config["SESSION_CHECK_INTERVAL"] = 0  # check the session on every event
    # Any event fills the session cache (the first check after connect reads SQL once).
    assert sio.emit("leave", {"conversation_id": conversation.id}, namespace="/chat",
                    callback=True)["ok"] is True
    statements: list[str] = []

    def seen(conn, cursor, statement, *args):
        statements.append(statement)

    engine = db.engine
    event.listen(engine, "before_cursor_execute", seen)
    try:
        assert send(sio, conversation.id, "counted")["ok"] is True
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    reads = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert not [s for s in reads if "user_sessions" in s or "FROM users" in s], reads
    # The membership fill (members and whether it is archived, one statement), in the
    # embedded default; with Redis the conversation's start filled the shared cache already.
    # The webhook lookup joins participants too, but reads webhooks.
    fills = [s for s in reads if "participants" in s and "webhooks" not in s]
    assert len(fills) == (0 if app.extensions["simplechat"].redis is not None else 1), reads


# --- password changes ---

def test_a_password_change_ends_every_other_session_and_keeps_this_one(
        app, make_user, make_conversation):
    ada, bob = make_user("ada"), make_user("bob")
    conversation = make_conversation(ada, bob)
    here, elsewhere = login(app, ada), login(app, ada, remember=True)
    here_socket, elsewhere_socket = open_socket(app, here), open_socket(app, elsewhere)
    old_copy_of_here = copy_of(app, here)
    remembered = copy_of(app, elsewhere, REMEMBER_COOKIE)

    response = here.post("/profile/password", data={
        "current_password": PASSWORD, "password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    assert response.status_code == 302
    assert ended_events(elsewhere_socket) == [{"reason": "password_changed"}]
    assert not elsewhere_socket.is_connected("/chat") and not logged_in(elsewhere)
    assert not logged_in(remembered)  # its remember-me token died with its session
    # This browser carries on, sockets included, under a new token: an old copy is refused.
    assert logged_in(here) and here_socket.is_connected("/chat")
    assert send(here_socket, conversation.id, "new password, same tab")["ok"] is True
    assert not logged_in(old_copy_of_here)
    assert [r.end_reason for r in session_rows(ada.id)] == [None, "password_changed"]


def test_set_password_from_the_command_line_ends_every_session(app, runner, make_user):
    ada = make_user("ada")
    http = login(app, ada)
    sio = open_socket(app, http)
    result = runner.invoke(args=["users", "set-password", "ada", "--password", NEW_PASSWORD])
    assert result.exit_code == 0, result.output
    assert "1 session(s) signed out, 1 open socket(s) closed" in result.output
    assert ended_events(sio) == [{"reason": "password_changed"}]
    assert not sio.is_connected("/chat") and not logged_in(http)


def test_deactivation_ends_every_session_and_tells_peers_the_user_went_offline(
        app, runner, make_user, make_conversation):
    ada, bob = make_user("ada"), make_user("bob")
    conversation = make_conversation(ada, bob)
    bob_socket = open_socket(app, login(app, bob))
    assert bob_socket.emit("join", {"conversation_id": conversation.id}, namespace="/chat",
                           callback=True)["ok"]
    ada_http = login(app, ada)
    ada_socket = open_socket(app, ada_http)
    bob_socket.get_received("/chat")

    result = runner.invoke(args=["users", "deactivate", "ada"])
    assert result.exit_code == 0, result.output
    assert ended_events(ada_socket) == [{"reason": "deactivated"}]
    assert not ada_socket.is_connected("/chat") and not logged_in(ada_http)
    presence = [p["args"][0] for p in bob_socket.get_received("/chat") if p["name"] == "presence"]
    assert presence and presence[-1]["user_id"] == ada.id and presence[-1]["online"] is False


# --- remember me ---

def test_remember_me_is_random_per_login_restores_a_session_and_rotates(app, make_user):
    ada = make_user("ada")
    first, second = login(app, ada, remember=True), login(app, ada, remember=True)
    values = [h.get_cookie(REMEMBER_COOKIE).value for h in (first, second)]
    assert values[0] != values[1]
    assert all(re.fullmatch(r"[0-9]+\.[A-Za-z0-9_-]{43}", v) for v in values)
    rows = session_rows(ada.id)
    assert all(r.remember_hash and values[i].split(".")[1] not in r.remember_hash
               for i, r in enumerate(rows))

    # The browser restarts: the session cookie is gone, the remember-me cookie is not.
    restarted = copy_of(app, first, REMEMBER_COOKIE)
    assert logged_in(restarted)
    rotated = restarted.get_cookie(REMEMBER_COOKIE).value
    assert rotated != values[0] and rotated.split(".")[0] == values[0].split(".")[0]
    assert len(session_rows(ada.id)) == 2  # the same session, not a new one
    # The used value is worthless now; the rotated one works.
    assert not logged_in(copy_of(app, first, REMEMBER_COOKIE))
    assert logged_in(copy_of(app, restarted, REMEMBER_COOKIE))


def test_remember_me_dies_with_its_session_on_logout(app, make_user):
    ada = make_user("ada")
    http = login(app, ada, remember=True)
    saved = copy_of(app, http, REMEMBER_COOKIE)
    response = http.post("/auth/logout")
    assert any(c.startswith(f"{REMEMBER_COOKIE}=;") for c in response.headers.getlist("Set-Cookie"))
    assert not logged_in(saved)


@pytest.mark.parametrize("value", ["", "1", "1.", "x.y", "1." + "A" * 43, "99999." + "A" * 43,
                                   "01." + "A" * 43, "1." + "A" * 44, "1.\u0661" + "A" * 42])
def test_a_forged_remember_cookie_logs_nobody_in(app, make_user, value):
    ada = make_user("ada")
    login(app, ada, remember=True)
    forged = app.test_client()
    forged.set_cookie(REMEMBER_COOKIE, value)
    assert not logged_in(forged)


def test_a_flask_login_remember_cookie_from_before_logs_nobody_in(app, make_user):
    ada = make_user("ada")
    old = app.test_client()
    from flask_login.utils import encode_cookie

    with app.test_request_context():
        old.set_cookie("remember_token", encode_cookie(str(ada.id)))
    assert not logged_in(old)


# --- the sessions page ---

def test_the_sessions_page_lists_live_sessions_and_marks_this_one(app, make_user):
    ada, bob = make_user("ada"), make_user("bob")
    here = login(app, ada, agent="Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/140.0")
    login(app, ada, agent="Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) Safari/604.1")
    login(app, bob)
    page = here.get("/profile/sessions").get_data(as_text=True)
    assert page.count('class="list-group-item') == 2
    assert "Firefox on Linux" in page and "Safari on iOS" in page
    assert page.count("This one") == 1 and "Sign out everywhere else" in page


def test_sign_out_one_session_from_the_page(app, make_user):
    ada, eve = make_user("ada"), make_user("eve")
    here, phone = login(app, ada), login(app, ada)
    phone_socket = open_socket(app, phone)
    phone_id = session_rows(ada.id)[1].id
    eve_http = login(app, eve)
    # Someone else's session is not there to be signed out.
    assert eve_http.post(f"/profile/sessions/{phone_id}/sign-out").status_code == 404
    assert logged_in(phone)

    response = here.post(f"/profile/sessions/{phone_id}/sign-out")
    assert response.status_code == 302 and response.location.endswith("/profile/sessions")
    assert ended_events(phone_socket) == [{"reason": "signed_out"}]
    assert not logged_in(phone) and logged_in(here)
    assert here.post(f"/profile/sessions/{phone_id}/sign-out").status_code == 404


def test_signing_out_this_session_from_the_page_is_a_logout(app, make_user):
    ada = make_user("ada")
    here = login(app, ada)
    own_id = session_rows(ada.id)[0].id
    response = here.post(f"/profile/sessions/{own_id}/sign-out")
    assert response.status_code == 302 and "/auth/login" in response.location
    assert not logged_in(here)
    assert session_rows(ada.id)[0].end_reason == "logged_out"


def test_sign_out_everywhere_else(app, make_user):
    ada = make_user("ada")
    here, laptop, phone = login(app, ada), login(app, ada), login(app, ada)
    sockets = [open_socket(app, laptop), open_socket(app, phone)]
    assert here.post("/profile/sessions/sign-out-others").status_code == 302
    for sio in sockets:
        assert ended_events(sio) == [{"reason": "signed_out"}] and not sio.is_connected("/chat")
    assert logged_in(here) and not logged_in(laptop) and not logged_in(phone)
    assert len(live_sessions(ada.id)) == 1


def test_session_forms_need_the_csrf_token(app, make_user):
    ada = make_user("ada")
    here, phone = login(app, ada), login(app, ada)
    phone_id = session_rows(ada.id)[1].id
    app.config["WTF_CSRF_ENABLED"] = True
    try:
        assert here.post(f"/profile/sessions/{phone_id}/sign-out").status_code == 400
        assert here.post("/profile/sessions/sign-out-others").status_code == 400
    finally:
        app.config["WTF_CSRF_ENABLED"] = False
    assert logged_in(phone)


# --- the command line ---

def test_users_sessions_and_sign_out_from_the_command_line(app, runner, make_user):
    ada = make_user("ada")
    laptop = login(app, ada, agent="Mozilla/5.0 (Windows NT 10.0) Chrome/140.0 Safari/537.36")
    phone = login(app, ada)
    laptop_id, phone_id = (r.id for r in session_rows(ada.id))
    listing = runner.invoke(args=["users", "sessions", "ada"])
    assert listing.exit_code == 0 and "Chrome on Windows" in listing.output
    assert f"{laptop_id:>8}" in listing.output and f"{phone_id:>8}" in listing.output

    neither = runner.invoke(args=["users", "sign-out", "ada"])
    assert neither.exit_code != 0 and "--all, or --session ID" in neither.output
    unknown = runner.invoke(args=["users", "sign-out", "ada", "--session", "999999"])
    assert unknown.exit_code != 0 and "no live session 999999" in unknown.output

    one = runner.invoke(args=["users", "sign-out", "ada", "--session", str(laptop_id)])
    assert one.exit_code == 0 and "1 session(s) of ada signed out" in one.output
    assert not logged_in(laptop) and logged_in(phone)
    everything = runner.invoke(args=["users", "sign-out", "ada", "--all"])
    assert everything.exit_code == 0 and not logged_in(phone)
    assert "has no live sessions" in runner.invoke(args=["users", "sessions", "ada"]).output


# --- presence reaches only those who share a conversation ---

def test_presence_of_a_user_with_no_conversations_reaches_nobody(app, make_user,
                                                                  make_conversation):
    ada, bob, loner = make_user("ada"), make_user("bob"), make_user("loner")
    make_conversation(ada, bob)
    watchers = [open_socket(app, login(app, ada)), open_socket(app, login(app, bob))]
    for sio in watchers:
        sio.get_received("/chat")
    lonely = open_socket(app, login(app, loner))
    assert lonely.is_connected("/chat")
    lonely.disconnect("/chat")
    for sio in watchers:
        assert [p for p in sio.get_received("/chat") if p["name"] == "presence"] == []


def test_emit_to_no_rooms_reaches_nobody(app, make_user):
    from simplechat.realtime.emit import emit_to

    sio = open_socket(app, login(app, make_user()))
    sio.get_received("/chat")
    assert emit_to([], "presence", {"user_id": 1}) is False
    assert sio.get_received("/chat") == []
    with pytest.raises(ValueError):
        emit_to(["", "conversation:1"], "presence", {})


@pytest.mark.parametrize("path", ["/profile/sessions/1/sign-out",
                                  "/profile/sessions/sign-out-others"])
def test_session_forms_send_the_logged_out_to_the_login_page_and_end_nothing(app, make_user,
                                                                             path):
    ada = make_user("ada")
    here = login(app, ada)
    anonymous = app.test_client()
    assert anonymous.get("/profile/sessions").status_code == 302
    response = anonymous.post(path)
    assert response.status_code == 302 and "/auth/login" in response.location
    assert logged_in(here) and len(live_sessions(ada.id)) == 1


@pytest.mark.parametrize("session_id", ["abc", "-1", "1.5", "\u0661", "99999999999999999999999"])
def test_a_session_id_that_is_not_one_is_refused_and_ends_nothing(app, make_user, session_id):
    """"\u0661" (Arabic-Indic one) once read as session 1, this browser's own."""
    ada = make_user("ada")
    here = login(app, ada)
    assert here.post(f"/profile/sessions/{session_id}/sign-out").status_code == 400
    assert logged_in(here)


# --- connecting sockets from the session cache ---

def test_a_socket_of_a_fresh_login_connects_without_reading_sessions_or_users(app, make_user):
    ada = make_user("ada")
    http = login(app, ada)
    statements: list[str] = []

    def seen(conn, cursor, statement, *args):
        statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", seen)
    try:
        sio = open_socket(app, http)
    finally:
        event.remove(db.engine, "before_cursor_execute", seen)
    assert sio.is_connected("/chat")
    assert not [s for s in statements if "user_sessions" in s or "FROM users" in s], statements


def test_a_socket_with_a_cookie_from_before_a_password_change_is_refused(app, make_user):
    """Even when the old token's hint is still in the session cache."""
    ada = make_user("ada")
    http = login(app, ada)
    old_copy = copy_of(app, http)
    old_hash = live_sessions(ada.id)[0].token_hash
    assert http.post("/profile/password", data={
        "current_password": PASSWORD, "password": NEW_PASSWORD, "confirm": NEW_PASSWORD,
    }).status_code == 302
    assert not open_socket(app, old_copy).is_connected("/chat")
    row = live_sessions(ada.id)[0]
    app.extensions["simplechat"].liveness.put_token(old_hash, row.id)  # a hint left behind
    assert not open_socket(app, old_copy).is_connected("/chat")
    assert open_socket(app, http).is_connected("/chat")


def test_a_socket_of_an_ended_session_is_refused_though_its_hint_remains(app, make_user):
    ada = make_user("ada")
    http = login(app, ada)
    saved = copy_of(app, http)
    assert open_socket(app, saved).is_connected("/chat")
    row = live_sessions(ada.id)[0]
    assert http.post("/auth/logout").status_code == 302
    app.extensions["simplechat"].liveness.put_token(row.token_hash, row.id)
    assert not open_socket(app, saved).is_connected("/chat")
