"""Who takes part in which conversation, and how far each has read, cached for the hot events.

SQL (``Participant``) is the truth. Each conversation's members and their read markers are kept
in a Redis hash (``<prefix>members:<id>``: user id → last read message id or ""), each user's
conversations in another (``<prefix>convs:<user id>``: conversation id → the other person of a
direct conversation, "" for a group), both shared by every process. A
membership change bumps a generation counter and drops the cached hashes, after its commit: a
reader that loaded SQL before the change finds the generation moved and does not write its stale
copy back. A miss reads SQL once and fills the hash. The embedded default keeps the same in
process.

The send path reads the members hash inside its own Lua script (infra.intake), so a send costs no
extra round trip for it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import Protocol

import redis as redis_lib
from sqlalchemy import and_, select
from sqlalchemy.orm import aliased

from simplechat.extensions import db
from simplechat.infra.services import built_once, services
from simplechat.models import Conversation, Participant

log = logging.getLogger(__name__)

MEMBERS_TTL = 600  # seconds: a change whose invalidation was lost heals within this
GENERATION_TTL = 24 * 3600
FILLED = "_"  # the field that marks a filled hash (a conversation may have no one left)

# KEYS: hash, generation. ARGV: the generation read before SQL, ttl, field, value, ...
# Writes the hash only if no change happened since; returns 1 if written.
_FILL = """
if (redis.call('GET', KEYS[2]) or '0') ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]))
return 1
"""

# KEYS: hash, generation, ... (pairs). ARGV: generation ttl. Drops each hash, bumps its counter.
_INVALIDATE = """
for i = 1, #KEYS, 2 do
  redis.call('DEL', KEYS[i])
  redis.call('INCR', KEYS[i + 1])
  redis.call('EXPIRE', KEYS[i + 1], tonumber(ARGV[1]))
end
return 1
"""

# KEYS: members hash, its generation. ARGV: user id, message id, generation ttl. Moves a cached
# read marker forward; with no cached hash, bumps the generation so a fill in flight (which may
# have read the old marker) is not written.
_MARK = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  local current = redis.call('HGET', KEYS[1], ARGV[1])
  if current and (current == '' or current < ARGV[2]) then
    redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  end
  return 1
end
redis.call('INCR', KEYS[2])
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[3]))
return 0
"""


def _members_from_sql(conversation_id: int) -> dict[int, str | None]:
    return dict(db.session.execute(
        select(Participant.user_id, Participant.last_read_message_id)
        .where(Participant.conversation_id == conversation_id)
    ).all())


def _conversations_from_sql(user_id: int) -> dict[int, int | None]:
    """The user's conversations, each with its other person if it is a direct one: one query."""
    other = aliased(Participant)
    return dict(db.session.execute(
        select(Participant.conversation_id, other.user_id)
        .join(Conversation, Conversation.id == Participant.conversation_id)
        .outerjoin(other, and_(other.conversation_id == Participant.conversation_id,
                               other.user_id != user_id, Conversation.is_group.is_(False)))
        .where(Participant.user_id == user_id)
    ).all())


def _decode(fields: dict) -> dict[str, str]:
    return {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes)
                                                         else v)
            for k, v in fields.items()}


class Membership(Protocol):
    def members(self, conversation_id: int) -> dict[int, str | None]: ...
    def conversations(self, user_id: int) -> list[int]: ...
    def direct_peers(self, user_id: int) -> dict[int, int | None]: ...
    def changed(self, conversation_ids: Iterable[int], user_ids: Iterable[int]) -> None: ...
    def read_moved(self, conversation_id: int, user_id: int, message_id: str) -> None: ...


class RedisMembership:
    def __init__(self, redis, prefix: str):
        self._redis = redis
        self._prefix = prefix
        self._fill = redis.register_script(_FILL)
        self._invalidate = redis.register_script(_INVALIDATE)
        self._mark = redis.register_script(_MARK)

    def members_key(self, conversation_id: int) -> str:
        return f"{self._prefix}members:{conversation_id}"

    def conversations_key(self, user_id: int) -> str:
        return f"{self._prefix}convs:{user_id}"

    def _cached(self, key: str, load, encode) -> dict[str, str]:
        try:
            fields = _decode(self._redis.hgetall(key))
            if fields:
                return fields
            generation = self._redis.get(key + ":gen") or b"0"
        except redis_lib.RedisError:
            # Pages and history keep working from SQL while Redis is down.
            log.warning("membership cache unavailable; reading %s from SQL", key)
            generation = None
        loaded = encode(load())
        if generation is not None:
            try:
                self._fill(keys=[key, key + ":gen"],
                           args=[generation, MEMBERS_TTL, FILLED, "", *loaded])
            except redis_lib.RedisError:
                log.warning("membership of %s not cached", key)
        return {FILLED: "", **dict(zip(loaded[::2], loaded[1::2], strict=True))}

    def members(self, conversation_id: int) -> dict[int, str | None]:
        """Each participant's id and last read message id (None: nothing read yet)."""
        fields = self._cached(
            self.members_key(conversation_id),
            lambda: _members_from_sql(conversation_id),
            lambda rows: [x for uid, mid in rows.items() for x in (str(uid), mid or "")])
        return {int(k): (v or None) for k, v in fields.items() if k != FILLED}

    def conversations(self, user_id: int) -> list[int]:
        """The ids of the conversations the user takes part in."""
        return sorted(self.direct_peers(user_id))

    def direct_peers(self, user_id: int) -> dict[int, int | None]:
        """Each of the user's conversations → the other person if it is direct, else None."""
        fields = self._cached(
            self.conversations_key(user_id),
            lambda: _conversations_from_sql(user_id),
            lambda rows: [x for cid, peer in rows.items() for x in (str(cid), str(peer or ""))])
        return {int(k): int(v) if v else None for k, v in fields.items() if k != FILLED}

    def changed(self, conversation_ids: Iterable[int], user_ids: Iterable[int]) -> None:
        keys = [self.members_key(c) for c in set(conversation_ids)]
        keys += [self.conversations_key(u) for u in set(user_ids)]
        if keys:
            self._invalidate(keys=[k for key in keys for k in (key, key + ":gen")],
                             args=[GENERATION_TTL])

    def read_moved(self, conversation_id: int, user_id: int, message_id: str) -> None:
        key = self.members_key(conversation_id)
        self._mark(keys=[key, key + ":gen"], args=[user_id, message_id, GENERATION_TTL])


class MemoryMembership:
    """The same in this process, for the single-process embedded default."""

    def __init__(self, max_entries: int = 50_000):
        self._members: dict[int, dict[int, str | None]] = {}
        self._conversations: dict[int, dict[int, int | None]] = {}
        self._generation = 0
        self._max = max_entries
        self._lock = threading.Lock()

    def _cached(self, table: dict, key: int, load):
        with self._lock:
            if key in table:
                return table[key]
            generation = self._generation
        value = load()  # SQL may yield to another greenlet that changes membership
        with self._lock:
            if generation == self._generation:
                if len(table) >= self._max:
                    table.clear()
                table[key] = value
        return value

    def members(self, conversation_id: int) -> dict[int, str | None]:
        return dict(self._cached(self._members, conversation_id,
                                 lambda: _members_from_sql(conversation_id)))

    def conversations(self, user_id: int) -> list[int]:
        return sorted(self.direct_peers(user_id))

    def direct_peers(self, user_id: int) -> dict[int, int | None]:
        return dict(self._cached(self._conversations, user_id,
                                 lambda: _conversations_from_sql(user_id)))

    def changed(self, conversation_ids: Iterable[int], user_ids: Iterable[int]) -> None:
        with self._lock:
            self._generation += 1
            for cid in conversation_ids:
                self._members.pop(cid, None)
            for uid in user_ids:
                self._conversations.pop(uid, None)

    def read_moved(self, conversation_id: int, user_id: int, message_id: str) -> None:
        with self._lock:
            cached = self._members.get(conversation_id)
            if cached is None:
                self._generation += 1
            elif user_id in cached and (cached[user_id] or "") < message_id:
                cached[user_id] = message_id


def membership() -> RedisMembership | MemoryMembership:
    """This app's membership cache, built on first use."""
    def build(app) -> RedisMembership | MemoryMembership:
        redis = services().redis
        return (RedisMembership(redis, app.config["REDIS_KEY_PREFIX"]) if redis is not None
                else MemoryMembership())

    return built_once("simplechat.membership", build)


def members_changed(conversation_ids: Iterable[int], user_ids: Iterable[int]) -> None:
    """Call after committing a change of who takes part in these conversations."""
    conversation_ids, user_ids = list(conversation_ids), list(user_ids)
    try:
        membership().changed(conversation_ids, user_ids)
    except Exception:
        # The cached copies still expire within MEMBERS_TTL; say so loudly.
        log.error("membership cache of conversations %s not invalidated", conversation_ids,
                  exc_info=True)


def participant_ids(conversation_id: int) -> list[int]:
    """The ids of everyone taking part in a conversation (empty if it does not exist)."""
    return list(membership().members(conversation_id))


def conversation_ids_of(user_id: int) -> list[int]:
    return membership().conversations(user_id)


def is_participant(user_id: int, conversation_id: int) -> bool:
    return user_id in membership().members(conversation_id)


def valid_conversation_id(value: object) -> bool:
    """Whether a client-given value can be a conversation id: a positive 64-bit integer."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**63


def membership_refusal(user_id: int, conversation_id: object) -> str | None:
    """None if ``user_id`` takes part in the conversation, else the refusal's error code:
    ``invalid`` for a value that cannot be a conversation id, ``forbidden`` for any other.
    Answered from the membership cache: no SQL once the conversation is cached."""
    if not valid_conversation_id(conversation_id):
        return "invalid"
    return None if is_participant(user_id, conversation_id) else "forbidden"
