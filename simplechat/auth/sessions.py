"""Server-side login sessions: made at login, ended by logout, a password change, deactivation
or "sign out", on every process at once.

The signed Flask cookie carries only a random token; the ``user_sessions`` row stores its
SHA-256. "Remember me" is a second cookie, ``<session id>.<secret>``, whose secret is random per
login, stored hashed, replaced each time it is used and worthless once its session has ended.
"""

from __future__ import annotations

import hmac
import logging
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta

from flask import Flask, Request, Response, after_this_request, current_app, g, request, session
from flask_login import login_user, logout_user
from sqlalchemy import select, update

from simplechat.extensions import db, end_transaction, login_manager
from simplechat.infra.liveness import cached_identity, identity_by_token
from simplechat.infra.secrets import token_hash
from simplechat.infra.services import services
from simplechat.models import User, UserSession, utcnow
from simplechat.observability.activity import client_ip
from simplechat.realtime.sockets import SocketUser, close_login_sockets, session_room

log = logging.getLogger(__name__)

SESSION_KEY = "_sk"  # the key in the Flask session that holds this login's token
REMEMBER_COOKIE = "simplechat_remember"
LEGACY_REMEMBER_COOKIE = "remember_token"  # Flask-Login's own, made before server sessions
TOUCH_EVERY = timedelta(seconds=60)  # how stale last_seen_at may get before it is written

REASONS = ("logged_out", "password_changed", "deactivated", "signed_out", "expired")
_REMEMBER_VALUE = re.compile(r"([1-9][0-9]{0,18})\.([A-Za-z0-9_-]{43})")


def identity_of(user: User, row: UserSession) -> dict:
    """What a socket needs to know of its user, cached beside the session's liveness, with the
    hash of the session's current token (what a connecting socket's cookie must match)."""
    return {"user_id": user.id, "username": user.username, "name": user.full_name,
            "token": row.token_hash}


_BROWSERS = (("Edg/", "Edge"), ("OPR/", "Opera"), ("Firefox/", "Firefox"),
             ("Chromium/", "Chromium"), ("Chrome/", "Chrome"), ("Safari/", "Safari"))
_SYSTEMS = (("Android", "Android"), ("iPhone", "iOS"), ("iPad", "iPadOS"),
            ("Windows", "Windows"), ("Mac OS X", "macOS"), ("CrOS", "ChromeOS"),
            ("Linux", "Linux"))


def describe_agent(agent: str | None) -> str:
    """A short name for a session's browser ("Firefox on Linux"); the full string is shown on
    hover. Only the first matching token counts, so this never claims more than it knows."""
    if not agent:
        return "Unknown browser"
    browser = next((name for token, name in _BROWSERS if token in agent), None)
    system = next((name for token, name in _SYSTEMS if token in agent), None)
    if browser and system:
        return f"{browser} on {system}"
    return browser or system or agent[:40]


# --------------------------------------------------------------------------- starting


def start_session(user: User, remember: bool = False) -> UserSession:
    """Log ``user`` in on this browser with a new server-side session."""
    token = secrets.token_urlsafe(32)
    now = utcnow()
    row = UserSession(user_id=user.id, token_hash=token_hash(token), created_at=now,
                      last_seen_at=now, user_agent=_user_agent(), ip=client_ip())
    remember_secret = _set_remember(row) if remember else None
    db.session.add(row)
    db.session.commit()
    session[SESSION_KEY] = token
    login_user(user)
    g.user_session = row
    _hint_token(row, user)
    if remember_secret:
        _send_remember_cookie(row, remember_secret)
    return row


def _hint_token(row: UserSession, user: User, old_hash: str | None = None) -> None:
    """Put the session's identity and its token's hint in the session cache, so this browser's
    sockets connect without SQL; after a rotation, drop the old token's hint (the identity put
    here names the new token, so a leftover hint would lead nowhere anyway)."""
    store = services().liveness
    try:
        if old_hash is not None:
            store.forget_token(old_hash)
        store.put(row.id, identity_of(user, row))
        store.put_token(row.token_hash, row.id)
    except Exception:
        # Then a connect reads SQL; a stale identity names the old token for at most
        # IDENTITY_TTL seconds, during which sockets of the old cookie find no session in SQL.
        log.warning("session %s not cached", row.id, exc_info=True)


def _user_agent() -> str | None:
    agent = request.headers.get("User-Agent", "") if request else ""
    return agent[:256] or None


def _set_remember(row: UserSession) -> str:
    secret = secrets.token_urlsafe(32)
    row.remember_hash = token_hash(secret)
    row.remember_until = utcnow() + timedelta(days=current_app.config["REMEMBER_DAYS"])
    return secret


def _send_remember_cookie(row: UserSession, secret: str) -> None:
    value = f"{row.id}.{secret}"
    max_age = int(timedelta(days=current_app.config["REMEMBER_DAYS"]).total_seconds())
    config = current_app.config

    @after_this_request
    def set_cookie(response: Response) -> Response:
        response.set_cookie(REMEMBER_COOKIE, value, max_age=max_age, path="/",
                            secure=bool(config.get("SESSION_COOKIE_SECURE")), httponly=True,
                            samesite="Lax")
        return response


def _clear_remember_cookie() -> None:
    config = current_app.config

    @after_this_request
    def delete_cookie(response: Response) -> Response:
        for name in (REMEMBER_COOKIE, LEGACY_REMEMBER_COOKIE):
            if name in request.cookies:
                response.delete_cookie(name, path="/",
                                       secure=bool(config.get("SESSION_COOKIE_SECURE")),
                                       httponly=True, samesite="Lax")
        return response


# --------------------------------------------------------------------------- loading


def _in_socket_event() -> bool:
    return getattr(request, "sid", None) is not None


def _idle_limit(row: UserSession) -> timedelta:
    days = current_app.config["SESSION_IDLE_DAYS"]
    if row.remember_hash:
        days = max(days, current_app.config["REMEMBER_DAYS"])
    return timedelta(days=days)


def _usable(row: UserSession | None, user: User | None) -> bool:
    """Whether a session row may log its user in now; an idle one is ended on the way."""
    if row is None or user is None or row.ended_at is not None or not user.is_active:
        return False
    if row.last_seen_at < utcnow() - _idle_limit(row):
        end_sessions([row], "expired")
        return False
    return True


def _session_and_user(condition) -> tuple[UserSession | None, User | None]:
    """The session row matching ``condition`` and its user, in one query."""
    found = db.session.execute(
        select(UserSession, User).join(User, User.id == UserSession.user_id).where(condition)
    ).first()
    return (found[0], found[1]) if found else (None, None)


def load_session_user(user_id: str) -> User | None:
    """Flask-Login's user loader: the user of this cookie's live session, else nobody."""
    token = session.get(SESSION_KEY)
    if not isinstance(token, str) or not token:
        return None
    row, user = _session_and_user(UserSession.token_hash == token_hash(token))
    if not _usable(row, user) or str(user.id) != str(user_id):
        if not _in_socket_event():
            session.pop(SESSION_KEY, None)  # a dead reference: drop it from the browser's cookie
        return None
    _touch(row)
    g.user_session = row
    return user


def _touch(row: UserSession) -> None:
    """Move last_seen_at forward, at most once a minute, outside the request's transaction."""
    now = utcnow()
    if now - row.last_seen_at < TOUCH_EVERY:
        return
    values = {"last_seen_at": now}
    ip = client_ip()
    if ip:
        values["ip"] = ip
    session_ = db.session()
    if not (session_.new or session_.dirty or session_.deleted):
        # Give the request's connection back first: taking a second one while holding the
        # first deadlocked the pool once every connection was held by a request waiting for
        # its second (5,000 logins in benchmarks/run_all.py, sockets5000).
        end_transaction()
    try:
        with db.engine.begin() as conn:
            conn.execute(update(UserSession.__table__)
                         .where(UserSession.__table__.c.id == row.id).values(**values))
    except Exception:
        log.warning("last-seen time of session %s not written", row.id, exc_info=True)


def restore_remembered(req: Request) -> User | None:
    """Flask-Login's request loader: log in again from a valid remember-me cookie, replacing
    both the session token and the remember secret (a stolen copy of the old one then fails)."""
    raw = req.cookies.get(REMEMBER_COOKIE)
    if not raw or _in_socket_event():
        return None
    match = _REMEMBER_VALUE.fullmatch(raw)
    row = db.session.get(UserSession, int(match.group(1))) if match else None
    user = db.session.get(User, row.user_id) if row is not None else None
    if (row is None or not row.remember_hash or row.remember_until is None
            or row.remember_until < utcnow()
            or not hmac.compare_digest(row.remember_hash, token_hash(match.group(2)))
            or not _usable(row, user)):
        _clear_remember_cookie()
        return None
    token, old_hash = secrets.token_urlsafe(32), row.token_hash
    row.token_hash = token_hash(token)
    secret = _set_remember(row)
    row.last_seen_at = utcnow()
    row.ip = client_ip() or row.ip
    db.session.commit()
    _hint_token(row, user, old_hash)
    session[SESSION_KEY] = token
    session["_user_id"] = str(user.id)
    session["_fresh"] = False
    g.user_session = row
    _send_remember_cookie(row, secret)
    return user


def current_session() -> UserSession | None:
    """The session of this request's logged-in user (set when the user was loaded)."""
    return g.get("user_session")


def rotate_current_token() -> None:
    """Give the current session a new token (after a password change): a copy of the old
    cookie stops working, while this browser and its open sockets carry on."""
    row = current_session()
    if row is None:
        return
    token, old_hash = secrets.token_urlsafe(32), row.token_hash
    row.token_hash = token_hash(token)
    secret = _set_remember(row) if row.remember_hash else None
    db.session.commit()
    _hint_token(row, db.session.get(User, row.user_id), old_hash)
    session[SESSION_KEY] = token
    if secret:
        _send_remember_cookie(row, secret)


def socket_login() -> SocketUser | None:
    """The user of a connecting socket's cookie, with its live session, else None.

    From the session cache when the token's hint and the session's identity are there (one
    Redis round trip, no SQL: a login or an earlier socket of this session put them there),
    else from SQL, as Flask-Login's loader would, putting both back. The cached identity must
    name this token: after a rotation the old cookie gets nothing from the cache."""
    token, user_id = session.get(SESSION_KEY), session.get("_user_id")
    if not isinstance(token, str) or not token or not isinstance(user_id, str):
        return None
    digest = token_hash(token)

    def from_sql() -> tuple[int, dict] | None:
        row, user = _session_and_user(UserSession.token_hash == digest)
        if not _usable(row, user):
            return None
        _touch(row)
        return row.id, identity_of(user, row)

    found = identity_by_token(services().liveness, digest, session_identity, from_sql,
                              "session")
    if found is None or str(found[1]["user_id"]) != user_id:
        return None
    session_id, identity = found
    return SocketUser(identity["user_id"], identity["username"], identity["name"], session_id,
                      services().liveness, session_identity)


def session_identity(session_id: int, look_first: bool = True) -> dict | None:
    """The identity of a live session, from the shared cache, else from SQL (and cached)."""
    def from_sql() -> dict | None:
        row, user = _session_and_user(UserSession.id == session_id)
        return identity_of(user, row) if _usable(row, user) else None

    return cached_identity(services().liveness, session_id, from_sql, "session", look_first)


# --------------------------------------------------------------------------- ending


def live_sessions(user_id: int) -> list[UserSession]:
    """The user's sessions that have not ended, most recently used first."""
    return list(db.session.scalars(
        select(UserSession).where(UserSession.user_id == user_id,
                                  UserSession.ended_at.is_(None))
        .order_by(UserSession.last_seen_at.desc(), UserSession.id.desc())
    ))


@dataclass(frozen=True)
class Ended:
    sessions: int  # live sessions that were ended
    sockets: int  # their sockets asked to close, on every process


def end_sessions(rows: list[UserSession], reason: str) -> Ended:
    """End these sessions: their cookies and remember-me tokens are refused from now on, and
    their sockets on every process get ``session_ended`` and are closed."""
    assert reason in REASONS, reason
    live = [row for row in rows if row.ended_at is None]
    if not live:
        return Ended(0, 0)
    now = utcnow()
    for row in live:
        row.ended_at, row.end_reason, row.remember_hash = now, reason, None
    db.session.commit()
    ids = [row.id for row in live]
    try:
        services().liveness.forget(ids)
    except Exception:
        # Sockets then keep their cached identity until it expires; they are closed below.
        log.warning("sessions %s not removed from the session cache", ids, exc_info=True)
    sockets = sum(close_login_sockets(session_room(session_id), services().liveness, session_id,
                                      reason) for session_id in ids)
    return Ended(len(live), sockets)


def end_user_sessions(user_id: int, reason: str, keep: int | None = None) -> Ended:
    """End every live session of a user, but ``keep`` (a session id) if given."""
    return end_sessions([row for row in live_sessions(user_id) if row.id != keep], reason)


def forget_identities(user_id: int) -> None:
    """Drop the cached identity of the user's sessions (after a name change), so sockets read
    the new one within a second."""
    try:
        services().liveness.forget([row.id for row in live_sessions(user_id)])
    except Exception:
        log.warning("identities of user %s not refreshed", user_id, exc_info=True)


def end_current_session(reason: str = "logged_out") -> None:
    """Log this browser out: its session ends everywhere, and its cookies are cleared."""
    row = current_session()
    if row is not None:
        end_sessions([row], reason)
    logout_user()
    session.pop(SESSION_KEY, None)
    _clear_remember_cookie()


# --------------------------------------------------------------------------- Flask-Login


def init_login(app: Flask) -> None:
    """Flask-Login loads the user of the cookie's server-side session, if that session is live;
    a browser back with only its remember-me cookie gets its session again."""
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.login_message_category = "info"
    login_manager.user_loader(load_session_user)
    login_manager.request_loader(restore_remembered)
