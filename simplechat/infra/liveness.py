"""Which login sessions are live, and which sockets each has, shared by every web process.

SQL (``user_sessions``) is the truth; this store is a cache of it that an ended session is
removed from, so a socket event checks a session without an SQL query. A missing entry means
"unknown": the caller reads SQL and puts the answer back. Redis is shared by every process; the
embedded default keeps the same in this process.

A connecting socket knows only its cookie's token. The store also keeps which session a token's
hash belongs to: a hint, written at login and after a socket's SQL check, that lets a connect
find the session's cached identity in the same round trip. The identity carries the hash of the
session's current token, so a hint left behind by a token rotated since cannot log anyone in.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

import redis as redis_lib

log = logging.getLogger(__name__)

IDENTITY_TTL = 60  # seconds a cached live session is trusted before SQL is read again
SOCKETS_TTL = 24 * 3600  # a process that died leaves its sids behind this long at most
TOKEN_TTL = 24 * 3600  # a token's hint; a connect without one reads SQL and writes it again

# KEYS: the token's hint. ARGV: the key prefix. Returns nil, or the session id and its cached
# identity (nil when not cached).
_BY_TOKEN = """
local session_id = redis.call('GET', KEYS[1])
if not session_id then return nil end
return {session_id, redis.call('GET', ARGV[1] .. 'sess:' .. session_id)}
"""


class LivenessStore(Protocol):
    def get(self, session_id: int) -> dict | None: ...
    def put(self, session_id: int, identity: dict) -> None: ...
    def forget(self, session_ids: list[int]) -> None: ...
    def put_token(self, digest: str, session_id: int) -> None: ...
    def forget_token(self, digest: str) -> None: ...
    def by_token(self, digest: str) -> tuple[int, dict | None] | None: ...
    def add_socket(self, session_id: int, sid: str) -> None: ...
    def drop_socket(self, session_id: int, sid: str) -> None: ...
    def sockets(self, session_id: int) -> set[str]: ...


class RedisLiveness:
    def __init__(self, redis: redis_lib.Redis, prefix: str):
        self._redis = redis
        self._prefix = prefix
        self._by_token = redis.register_script(_BY_TOKEN)

    def _key(self, session_id: int) -> str:
        return f"{self._prefix}sess:{session_id}"

    def get(self, session_id: int) -> dict | None:
        raw = self._redis.get(self._key(session_id))
        return json.loads(raw) if raw else None

    def put(self, session_id: int, identity: dict) -> None:
        self._redis.set(self._key(session_id), json.dumps(identity), ex=IDENTITY_TTL)

    def forget(self, session_ids: list[int]) -> None:
        if session_ids:
            self._redis.delete(*(self._key(s) for s in session_ids))

    def _token_key(self, digest: str) -> str:
        return f"{self._prefix}tok:{digest}"

    def put_token(self, digest: str, session_id: int) -> None:
        self._redis.set(self._token_key(digest), session_id, ex=TOKEN_TTL)

    def forget_token(self, digest: str) -> None:
        self._redis.delete(self._token_key(digest))

    def by_token(self, digest: str) -> tuple[int, dict | None] | None:
        """The session a token's hint names and its cached identity, in one round trip."""
        found = self._by_token(keys=[self._token_key(digest)], args=[self._prefix])
        if not found:
            return None
        return int(found[0]), json.loads(found[1]) if len(found) > 1 and found[1] else None

    def add_socket(self, session_id: int, sid: str) -> None:
        key = self._key(session_id) + ":sockets"
        with self._redis.pipeline(transaction=False) as pipe:
            pipe.sadd(key, sid)
            pipe.expire(key, SOCKETS_TTL)
            pipe.execute()

    def drop_socket(self, session_id: int, sid: str) -> None:
        self._redis.srem(self._key(session_id) + ":sockets", sid)

    def sockets(self, session_id: int) -> set[str]:
        return {s.decode() for s in self._redis.smembers(self._key(session_id) + ":sockets")}


class MemoryLiveness:
    """The same, kept in this process, for the single-process embedded default.

    Entries live one second only: a command-line process (``flask users sign-out``) cannot reach
    this memory, so the server must read SQL again soon to see an end made there."""

    def __init__(self, ttl: float = 1.0):
        self._ttl = ttl
        self._identities: dict[int, tuple[float, dict]] = {}
        self._sockets: dict[int, set[str]] = {}
        self._tokens: dict[str, int] = {}
        self._lock = threading.Lock()

    def get(self, session_id: int) -> dict | None:
        with self._lock:
            entry = self._identities.get(session_id)
            if entry is None or entry[0] <= time.monotonic():
                self._identities.pop(session_id, None)
                return None
            return entry[1]

    def put(self, session_id: int, identity: dict) -> None:
        with self._lock:
            if len(self._identities) > 100_000:
                now = time.monotonic()
                self._identities = {k: v for k, v in self._identities.items() if v[0] > now}
            self._identities[session_id] = (time.monotonic() + self._ttl, dict(identity))

    def forget(self, session_ids: list[int]) -> None:
        with self._lock:
            for session_id in session_ids:
                self._identities.pop(session_id, None)

    def put_token(self, digest: str, session_id: int) -> None:
        with self._lock:
            if len(self._tokens) > 100_000:
                self._tokens.clear()  # hints only: a connect without one reads SQL
            self._tokens[digest] = session_id

    def forget_token(self, digest: str) -> None:
        with self._lock:
            self._tokens.pop(digest, None)

    def by_token(self, digest: str) -> tuple[int, dict | None] | None:
        with self._lock:
            session_id = self._tokens.get(digest)
        return None if session_id is None else (session_id, self.get(session_id))

    def add_socket(self, session_id: int, sid: str) -> None:
        with self._lock:
            self._sockets.setdefault(session_id, set()).add(sid)

    def drop_socket(self, session_id: int, sid: str) -> None:
        with self._lock:
            sids = self._sockets.get(session_id)
            if sids is not None:
                sids.discard(sid)
                if not sids:
                    del self._sockets[session_id]

    def sockets(self, session_id: int) -> set[str]:
        with self._lock:
            return set(self._sockets.get(session_id, ()))


def cached_identity(store: LivenessStore, key: int, load: Callable[[], dict | None],
                    what: str) -> dict | None:
    """The identity cached under ``key``, else ``load()`` (SQL) put back. A store that does not
    answer is skipped: the caller gets SQL's answer."""
    try:
        identity = store.get(key)
    except Exception:
        log.warning("%s cache unavailable; reading %s %s from SQL", what, what, key,
                    exc_info=True)
        return load()
    if identity is not None:
        return identity
    identity = load()
    if identity is not None:
        try:
            store.put(key, identity)
        except Exception:
            log.warning("%s %s not cached", what, key, exc_info=True)
    return identity


def identity_by_token(store: LivenessStore, digest: str, by_id: Callable[[int], dict | None],
                      by_token: Callable[[], tuple[int, dict] | None],
                      what: str) -> tuple[int, dict] | None:
    """A connecting socket's id and identity from its token's hash: from the store's hint and
    cached identity when they are there and the identity names this token (one round trip),
    else ``by_token()`` (SQL), whose answer goes back in the store."""
    try:
        hint = store.by_token(digest)
    except Exception:
        log.warning("%s cache unavailable; reading a socket's %s from SQL", what, what,
                    exc_info=True)
        return by_token()
    if hint is not None:
        key, identity = hint
        if identity is None:
            identity = by_id(key)
        if identity is not None and identity.get("token") == digest:
            return key, identity
    found = by_token()
    if found is not None:
        try:
            store.put(found[0], found[1])
            store.put_token(digest, found[0])
        except Exception:
            log.warning("%s %s not cached", what, found[0], exc_info=True)
    return found
