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

from simplechat.infra.redis_client import Batch, commands, raise_any

log = logging.getLogger(__name__)

IDENTITY_TTL = 60  # seconds a cached live session is trusted before SQL is read again
# While SQL cannot be read, a session confirmed live this many seconds ago at most is still
# trusted (ending a session writes SQL first, so none can end meanwhile), and is read from SQL
# again only every OUTAGE_RETRY seconds: its sockets and reconnects ride the outage out.
OUTAGE_GRACE = 15 * 60
OUTAGE_RETRY = 10
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
    def stale(self, session_id: int) -> tuple[dict, float] | None: ...
    def put(self, session_id: int, identity: dict, confirmed_at: float | None = None,
            fresh_for: float | None = None) -> None: ...
    def forget(self, session_ids: list[int]) -> None: ...
    def put_token(self, digest: str, session_id: int) -> None: ...
    def forget_token(self, digest: str) -> None: ...
    def by_token(self, digest: str) -> tuple[int, dict | None] | None: ...
    def add_socket(self, session_id: int, sid: str) -> None: ...
    def drop_socket(self, session_id: int, sid: str) -> None: ...
    def sockets(self, session_id: int) -> set[str]: ...


class RedisLiveness:
    """Each identity is kept with when SQL last confirmed it (``_confirmed``) and until when it
    is trusted without asking SQL (``_fresh``); past that it stays, stale, for OUTAGE_GRACE
    after its confirmation: what ``cached_identity`` falls back on while SQL is away."""

    def __init__(self, redis: redis_lib.Redis, prefix: str, identity_ttl: float = IDENTITY_TTL):
        self._redis = redis
        self._prefix = prefix
        self._identity_ttl = identity_ttl
        self._by_token = redis.register_script(_BY_TOKEN)

    def _key(self, session_id: int) -> str:
        return f"{self._prefix}sess:{session_id}"

    def get(self, session_id: int) -> dict | None:
        """The identity if it is fresh."""
        return _fresh(commands(self._redis, ("GET", self._key(session_id)))[0])

    def stale(self, session_id: int) -> tuple[dict, float] | None:
        """The identity kept, fresh or not, and when SQL confirmed it (epoch seconds)."""
        raw = commands(self._redis, ("GET", self._key(session_id)))[0]
        if not raw:
            return None
        identity = json.loads(raw)
        identity.pop("_fresh", None)
        return identity, float(identity.pop("_confirmed", 0))

    def put(self, session_id: int, identity: dict, confirmed_at: float | None = None,
            fresh_for: float | None = None) -> None:
        """Keep ``identity``, confirmed now (or at ``confirmed_at``), trusted ``fresh_for``
        seconds (IDENTITY_TTL)."""
        now = time.time()
        confirmed = now if confirmed_at is None else confirmed_at
        keep = confirmed + OUTAGE_GRACE - now
        if keep <= 0:
            return
        fresh = now + (self._identity_ttl if fresh_for is None else fresh_for)
        commands(self._redis, ("SET", self._key(session_id),
                               json.dumps({**identity, "_confirmed": confirmed, "_fresh": fresh}),
                               "EX", max(1, int(keep))))

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
        """The session a token's hint names and its cached identity, in one round trip (a
        Batch of one step: a burst of sockets connecting shares round trips)."""
        batch = Batch(self._redis)
        batch.script(self._by_token, [self._token_key(digest)], [self._prefix])
        found = raise_any(batch.run())[0]
        if not found:
            return None
        return int(found[0]), _fresh(found[1] if len(found) > 1 else None)

    def add_socket(self, session_id: int, sid: str) -> None:
        batch = Batch(self._redis)
        self.queue_add_socket(batch, session_id, sid)
        raise_any(batch.run())

    def queue_add_socket(self, batch: Batch, session_id: int, sid: str) -> None:
        """``add_socket`` as steps of a batch (infra/redis_client.py's Batch)."""
        key = self._key(session_id) + ":sockets"
        batch.command("SADD", key, sid)
        batch.command("EXPIRE", key, SOCKETS_TTL)

    def drop_socket(self, session_id: int, sid: str) -> None:
        self._redis.srem(self._key(session_id) + ":sockets", sid)

    def queue_drop_socket(self, batch: Batch, session_id: int, sid: str) -> None:
        batch.command("SREM", self._key(session_id) + ":sockets", sid)

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

    def stale(self, session_id: int) -> tuple[dict, float] | None:
        return None  # one process, its own SQLite: no outage to ride out

    def put(self, session_id: int, identity: dict, confirmed_at: float | None = None,
            fresh_for: float | None = None) -> None:
        with self._lock:
            if len(self._identities) > 100_000:
                now = time.monotonic()
                self._identities = {k: v for k, v in self._identities.items() if v[0] > now}
            ttl = self._ttl if fresh_for is None else min(fresh_for, self._ttl)
            self._identities[session_id] = (time.monotonic() + ttl, dict(identity))

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


def _fresh(raw: bytes | str | None) -> dict | None:
    """A kept identity if it is still trusted without SQL, without its bookkeeping."""
    if not raw:
        return None
    identity = json.loads(raw)
    if identity.pop("_fresh", float("inf")) <= time.time():
        return None
    identity.pop("_confirmed", None)
    return identity


def cached_identity(store: LivenessStore, key: int, load: Callable[[], dict | None],
                    what: str, look_first: bool = True) -> dict | None:
    """The identity cached under ``key``, else ``load()`` (SQL) put back. A store that does not
    answer is skipped: the caller gets SQL's answer. SQL that does not answer falls back on the
    stale identity kept, confirmed within OUTAGE_GRACE, trusted again for OUTAGE_RETRY.
    ``look_first=False``: the caller has just found no fresh identity there (a token's hint
    without one), so SQL is read without asking the store again."""
    if look_first:
        try:
            identity = store.get(key)
        except Exception:
            log.warning("%s cache unavailable; reading %s %s from SQL", what, what, key,
                        exc_info=True)
            return load()
        if identity is not None:
            return identity
    try:
        identity = load()
    except Exception:
        kept = _kept(store, key)
        if kept is None:
            raise
        identity, confirmed = kept
        log.warning("database unavailable: %s %s trusted as SQL confirmed it %.0f s ago",
                    what, key, time.time() - confirmed)
        try:
            store.put(key, identity, confirmed_at=confirmed, fresh_for=OUTAGE_RETRY)
        except Exception:
            pass
        return identity
    if identity is not None:
        try:
            store.put(key, identity)
        except Exception:
            log.warning("%s %s not cached", what, key, exc_info=True)
    return identity


def _kept(store: LivenessStore, key: int) -> tuple[dict, float] | None:
    """The stale identity kept under ``key`` and when SQL confirmed it, if within the grace."""
    try:
        kept = store.stale(key)
    except Exception:
        return None
    if kept is None or time.time() - kept[1] > OUTAGE_GRACE:
        return None
    return kept


def identity_by_token(store: LivenessStore, digest: str,
                      by_id: Callable[[int, bool], dict | None],
                      by_token: Callable[[], tuple[int, dict] | None],
                      what: str) -> tuple[int, dict] | None:
    """A connecting socket's id and identity from its token's hash: from the store's hint and
    cached identity when they are there and the identity names this token (one round trip),
    else ``by_token()`` (SQL), whose answer goes back in the store. A hint without a fresh
    identity asks ``by_id(key, False)``: SQL (or the kept identity while SQL is away), without
    asking the store again."""
    try:
        hint = store.by_token(digest)
    except Exception:
        log.warning("%s cache unavailable; reading a socket's %s from SQL", what, what,
                    exc_info=True)
        return by_token()
    if hint is not None:
        key, identity = hint
        if identity is None:
            identity = by_id(key, False)
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
