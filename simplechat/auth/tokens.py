"""Personal access tokens: made (shown once), checked on every /api/ request and at Socket.IO
connect, revoked (refused at once, their sockets closed on every process).

Only a token's SHA-256 is stored. Sockets check their token against a cache of live tokens
shaped like the session cache (auth/liveness.py, under a key prefix of its own): no SQL per
socket event, and a revocation removes the token from it.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass

from sqlalchemy import Select, bindparam, select, update

from simplechat.auth.batched import BatchedReads
from simplechat.extensions import db, end_transaction, socketio
from simplechat.infra.liveness import (
    LivenessStore,
    MemoryLiveness,
    RedisLiveness,
    cached_identity,
    identity_by_token,
)
from simplechat.infra.secrets import token_hash
from simplechat.infra.services import built_once
from simplechat.models import ApiToken, User, utcnow
from simplechat.realtime.sockets import SocketUser, close_login_sockets, token_room

log = logging.getLogger(__name__)

TOKEN_PREFIX = "sct_"
NAME_MAX = 64
REVOKED_REASON = "token_revoked"
TOUCH_EVERY_SECONDS = 60


@dataclass(frozen=True)
class NewToken:
    row: ApiToken
    secret: str  # shown once, never stored


def token_store() -> LivenessStore:
    """Live tokens and their sockets, shared by every process (in-process when embedded)."""

    def build(app) -> LivenessStore:
        redis = app.extensions["simplechat"].redis
        if redis is None:
            return MemoryLiveness()
        return RedisLiveness(redis, app.config["REDIS_KEY_PREFIX"] + "api")

    return built_once("simplechat.token_store", build)


def create_token(user: User, name: str) -> NewToken:
    name = name.strip()
    if not 0 < len(name) <= NAME_MAX:
        raise ValueError(f"a token name has 1 to {NAME_MAX} characters")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(user_id=user.id, name=name, token_hash=token_hash(secret),
                   hint=secret[:len(TOKEN_PREFIX) + 4])
    db.session.add(row)
    db.session.commit()
    return NewToken(row, secret)


def live_tokens(user_id: int) -> list[ApiToken]:
    return list(db.session.scalars(
        select(ApiToken).where(ApiToken.user_id == user_id, ApiToken.revoked_at.is_(None))
        .order_by(ApiToken.id)))


def _token_and_user(condition) -> tuple[ApiToken | None, User | None]:
    found = db.session.execute(
        select(ApiToken, User).join(User, User.id == ApiToken.user_id).where(condition)
    ).first()
    if found is None or found[0].revoked_at is not None or not found[1].is_active:
        return None, None
    return found[0], found[1]


def bearer_user(raw: str) -> tuple[ApiToken, User] | None:
    """The live token and its user for an HTTP request's bearer token (one SQL read)."""
    if not raw or len(raw) > 200:
        return None
    row, user = _token_and_user(ApiToken.token_hash == token_hash(raw))
    if row is None:
        return None
    now = utcnow()
    if row.last_used_at is None or (now - row.last_used_at).total_seconds() > TOUCH_EVERY_SECONDS:
        end_transaction()
        try:
            with db.engine.begin() as conn:
                conn.execute(update(ApiToken.__table__)
                             .where(ApiToken.__table__.c.id == row.id)
                             .values(last_used_at=now))
        except Exception:
            log.warning("last-used time of token %s not written", row.id, exc_info=True)
    return row, user


def _live_tokens(condition) -> Select:
    """The six columns a socket's identity needs, of the live tokens (of active users) that
    meet ``condition``. A socket's token is read so at connect, and once a minute after, by
    every socket of a reconnect storm: loading the ORM's two objects cost twice the CPU."""
    return (select(ApiToken.id, ApiToken.token_hash, User.id, User.username, User.first_name,
                   User.last_name)
            .join(User, User.id == ApiToken.user_id)
            .where(condition, ApiToken.revoked_at.is_(None), User.is_active.is_(True)))


def _identity_of(row) -> tuple[int, dict]:
    token_id, digest, user_id, username, first_name, last_name = row
    return token_id, {"user_id": user_id, "username": username, "token": digest,
                      "name": User.name_of(first_name, last_name, username)}


def _live_identity(condition) -> tuple[int, dict] | None:
    """A live token's id and identity, else None: one query."""
    found = db.session.execute(_live_tokens(condition)).first()
    return None if found is None else _identity_of(found)


def socket_token_login(raw: object) -> SocketUser | None:
    """The user of a connecting socket's token, with the token, else None. From the token
    cache when warm (one Redis round trip), else from SQL, putting it back."""
    if not isinstance(raw, str) or not raw or len(raw) > 200:
        return None
    digest = token_hash(raw)

    def from_sql() -> tuple[int, dict] | None:
        return _live_identity(ApiToken.token_hash == digest)

    found = identity_by_token(token_store(), digest, token_identity, from_sql, "token")
    if found is None:
        return None
    token_id, identity = found
    return SocketUser(identity["user_id"], identity["username"], identity["name"], 0,
                      token_store(), token_identity, token_id=token_id)


def close_token_sockets(token_id: int, reason: str) -> int:
    """Tell an API token's sockets (revoked, or its user deactivated) why, and close them."""
    return close_login_sockets(token_room(token_id), token_store(), token_id, reason)


def token_identity(token_id: int, look_first: bool = True) -> dict | None:
    """The identity of a live token, from the token cache, else from SQL (and cached); the SQL
    reads of tokens asked for together are one query (``_identity_reads``)."""
    return cached_identity(token_store(), token_id, lambda: _identity_reads().get(token_id),
                           "token", look_first)


def _live_identities(token_ids: list[int]) -> dict[int, dict]:
    """The identities of the live tokens among ``token_ids``: one query."""
    return dict(_identity_of(row) for row in db.session.execute(_BY_IDS, {"ids": token_ids}))


_BY_IDS = _live_tokens(ApiToken.id.in_(bindparam("ids", expanding=True)))


def _identity_reads() -> BatchedReads[int, dict]:
    return built_once("simplechat.token_identity_reads",
                      lambda app: BatchedReads(_live_identities, lambda: socketio.sleep(0)))


def revoke_tokens(rows: list[ApiToken]) -> int:
    """Revoke tokens: refused from now on, removed from the cache, their sockets closed on
    every process. Returns how many sockets were asked to close."""
    live = [row for row in rows if row.revoked_at is None]
    if not live:
        return 0
    now = utcnow()
    for row in live:
        row.revoked_at = now
    db.session.commit()
    store = token_store()
    try:
        store.forget([row.id for row in live])
        for row in live:
            store.forget_token(row.token_hash)
    except Exception:
        log.warning("tokens %s not removed from the token cache", [r.id for r in live],
                    exc_info=True)
    return sum(close_token_sockets(row.id, REVOKED_REASON) for row in live)


def forget_user_tokens(user_id: int) -> int:
    """After a deactivation: drop the user's tokens from the cache and close their sockets
    (the tokens stay, refused while the account is inactive)."""
    rows = live_tokens(user_id)
    try:
        token_store().forget([row.id for row in rows])
    except Exception:
        log.warning("tokens of user %s not removed from the token cache", user_id)
    return sum(close_token_sockets(row.id, "deactivated") for row in rows)

