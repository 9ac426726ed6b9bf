"""Who takes part in which conversation, and how far each has read, cached for the hot events.

SQL (``Participant``) is the truth. Each conversation's members and their read markers are kept
in a Redis hash (``<prefix>members:<id>``: user id → last read message id or ""), each user's
conversations in another (``<prefix>convs:<user id>``: conversation id → the other person of a
direct conversation, "" for a group, ``+`` for a group of more than
``CHAT_PRESENCE_PUSH_MAX_MEMBERS``, whose room hears no pushed presence), both shared by every
process. The members hash's ``_`` field marks it filled; its value is ``archived`` while the
conversation is archived, so the send path learns that from the same read. A membership change
bumps a generation counter and drops the cached hashes, after its commit: a
reader that loaded SQL before the change finds the generation moved and does not write its stale
copy back. A miss reads SQL once and fills the hash. The embedded default keeps the same in
process.

The send path reads the members hash inside its own Lua script (infra.intake), so a send costs no
extra round trip for it.
"""

from __future__ import annotations

import functools
import logging
import threading
import zlib
from collections.abc import Iterable
from typing import Protocol

import redis as redis_lib
from sqlalchemy import Select, and_, bindparam, select
from sqlalchemy.orm import aliased

from simplechat.extensions import db, end_transaction
from simplechat.infra.redis_client import Batch
from simplechat.infra.services import built_once, services
from simplechat.models import Conversation, Participant

log = logging.getLogger(__name__)

MEMBERS_TTL = 600  # seconds: a change whose invalidation was lost heals within this
GENERATION_TTL = 24 * 3600
FILL_LOCKS = 64  # keys whose fills may run at once on a process (by CRC-32 of the key)
FILLED = "_"  # the field that marks a filled hash (a conversation may have no one left)
ARCHIVED = "archived"  # FILLED's value in the members hash of an archived conversation
BIG = "+"  # a group's value in a user's conversations hash when it has more than push_max members
# The largest hash cached, in fields. The send path's script (infra.intake) hands the members'
# ids back through Lua's unpack, which takes at most about 8,000 values: a members hash past
# this is not cached (its events read SQL, as before), or every send to it would fail.
MAX_CACHED_FIELDS = 7_900
# The members of a conversation, and the users of a change, that a change's ``refill`` reads
# at once, at most (a bigger channel fills on its next read: a join of a channel of thousands
# does not read them all).
REFILL_MAX_MEMBERS = 200

# KEYS: hash, generation. ARGV: the generation read before SQL, ttl, field, value, ...
# Writes the hash only if no change happened since; returns 1 if written. The pairs go in by
# 1,000 at a time: Lua's unpack takes at most about 8,000 values, and a channel of 5,000 members
# has 10,000 (in one HSET, a room of 4,000 or more was never cached: every event read SQL).
_FILL = """
if (redis.call('GET', KEYS[2]) or '0') ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
for i = 3, #ARGV, 2000 do
  redis.call('HSET', KEYS[1], unpack(ARGV, i, math.min(i + 1999, #ARGV)))
end
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

# KEYS: members hash. ARGV: user id, push_max. False when the hash is not filled; else the
# number of members and, for up to push_max members, every field of the hash, else the user's
# own field and value (the value nil for someone who is not a member).
_VIEW = """
local n = redis.call('HLEN', KEYS[1])
if n == 0 then return false end
n = n - 1
if n <= tonumber(ARGV[2]) then return {n, redis.call('HGETALL', KEYS[1])} end
return {n, {ARGV[1], redis.call('HGET', KEYS[1], ARGV[1])}}
"""


def _members_from_sql(conversation_id: int, limit: int | None = None
                      ) -> tuple[dict[int, str | None], bool]:
    """The members and their read markers, and whether the conversation is archived: one
    query (no members and not archived for a conversation that does not exist); with
    ``limit``, at most that many members."""
    query = (select(Conversation.archived, Participant.user_id, Participant.last_read_message_id)
             .outerjoin(Participant, Participant.conversation_id == Conversation.id)
             .where(Conversation.id == conversation_id))
    rows = db.session.execute(query if limit is None else query.limit(limit)).all()
    archived = bool(rows and rows[0][0])
    return {uid: mid for _, uid, mid in rows if uid is not None}, archived


def _encode_members(loaded: tuple[dict[int, str | None], bool]) -> list[str]:
    """A members hash's fields and values, from ``_members_from_sql``."""
    members, archived = loaded
    return [FILLED, ARCHIVED if archived else "",
            *(x for uid, mid in members.items() for x in (str(uid), mid or ""))]


def _encode_kinds(rows: dict[int, int | str | None]) -> list[str]:
    """A user's conversations hash's fields and values, from ``_conversations_from_sql``."""
    return [FILLED, "", *(x for cid, peer in rows.items() for x in (str(cid), str(peer or "")))]


def _conversations_from_sql(user_id: int, push_max: int) -> dict[int, int | str | None]:
    """The user's conversations, each with its other person if it is a direct one, ``BIG`` if
    it is a group of more than ``push_max`` members: one query."""
    rows = db.session.execute(_conversations_query(push_max), {"user_id": user_id}).all()
    return {cid: BIG if is_group and past is not None else peer
            for cid, peer, is_group, past in rows}


def _lists_from_sql(user_ids: list[int], push_max: int
                    ) -> dict[int, dict[int, int | str | None]]:
    """``_conversations_from_sql`` of several users: one query."""
    rows = db.session.execute(_conversations_query(push_max, True),
                              {"user_ids": user_ids}).all()
    lists: dict[int, dict[int, int | str | None]] = {uid: {} for uid in user_ids}
    for uid, cid, peer, is_group, past in rows:
        lists[uid][cid] = BIG if is_group and past is not None else peer
    return lists


@functools.cache
def _conversations_query(push_max: int, many: bool = False) -> Select:
    """The query of ``_conversations_from_sql``, built once per process: building its aliases
    and subquery cost 2-4 ms of CPU, thirty times its run, and a burst of sockets connecting
    to a conversation just started (each user's cached list dropped) built it once per socket.
    Whether a group is big is read as "has a member at position push_max + 1" (an index range
    of at most push_max + 1 rows per group), not by counting a channel of thousands."""
    other, anyone = aliased(Participant), aliased(Participant)
    beyond = (select(anyone.user_id).where(anyone.conversation_id == Participant.conversation_id)
              .order_by(anyone.user_id).limit(1).offset(push_max).scalar_subquery())
    if many:  # ``_lists_from_sql``: each row also names its user
        user_id = Participant.user_id
        columns = (Participant.user_id, Participant.conversation_id)
        where = Participant.user_id.in_(bindparam("user_ids", expanding=True))
    else:
        user_id = bindparam("user_id")
        columns = (Participant.conversation_id,)
        where = Participant.user_id == user_id
    return (select(*columns, other.user_id, Conversation.is_group, beyond)
            .join(Conversation, Conversation.id == Participant.conversation_id)
            .outerjoin(other, and_(other.conversation_id == Participant.conversation_id,
                                   other.user_id != user_id, Conversation.is_group.is_(False)))
            .where(where))


def _decode(fields: dict) -> dict[str, str]:
    return {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes)
                                                         else v)
            for k, v in fields.items()}


def _read_released(load):
    """``load()``, an SQL read; when it began the session's transaction, that ends at once,
    so the connection goes back to the pool before the event's Redis work (under load, events
    holding idle transactions ran the pool dry). A caller's own transaction, or changes waiting
    to be flushed, are left alone.

    A read of its own runs in autocommit: its one statement is its own snapshot, and the
    driver's BEGIN and COMMIT (two more round trips to PostgreSQL, with the event loop
    stopped under psycopg2) are not sent. A burst of sockets connecting to a conversation just
    started fills each member's list so."""
    session = db.session()
    began = not (session.in_transaction() or session.new or session.dirty or session.deleted)
    if began:
        session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
    value = load()
    if began:
        end_transaction()
    return value


def _decode_list(values: list) -> list[str | None]:
    return [v.decode() if isinstance(v, bytes) else v for v in values]


def _kinds_of(fields: dict[str, str]) -> dict[int, str]:
    return {int(k): v for k, v in fields.items() if k != FILLED}


def _audience_of(kinds: dict[int, str]) -> tuple[list[int], set[int]]:
    return ([cid for cid, v in kinds.items() if v != BIG],
            {int(v) for v in kinds.values() if v and v != BIG})


def _bounded(members: dict[int, str | None], user_id: int, push_max: int
             ) -> dict[int, str | None]:
    """Every member's marker for a conversation of at most push_max members, else the user's
    own (if a member)."""
    if len(members) <= push_max:
        return dict(members)
    return {user_id: members[user_id]} if user_id in members else {}


class Membership(Protocol):
    def members(self, conversation_id: int) -> dict[int, str | None]: ...
    def state(self, conversation_id: int) -> tuple[dict[int, str | None], bool]: ...
    def conversations(self, user_id: int) -> list[int]: ...
    def direct_peers(self, user_id: int) -> dict[int, int | None]: ...
    def presence_audience(self, user_id: int) -> tuple[list[int], set[int]]: ...
    def markers_view(self, conversation_id: int, user_id: int
                     ) -> tuple[dict[int, str | None], int]: ...
    def listed_markers_view(self, conversation_id: int, user_id: int
                            ) -> tuple[dict[int, str | None], int] | None: ...
    def members_among(self, conversation_id: int, user_ids: list[int]) -> list[int]: ...
    def changed(self, conversation_ids: Iterable[int], user_ids: Iterable[int]) -> None: ...
    def refill(self, conversation_ids: Iterable[int], user_ids: Iterable[int]) -> None: ...
    def read_moved(self, conversation_id: int, user_id: int, message_id: str) -> None: ...


class RedisMembership:
    def __init__(self, redis, prefix: str, push_max: int = 50):
        self._redis = redis
        self._prefix = prefix
        self._push_max = push_max
        self._fill_locks = [threading.Lock() for _ in range(FILL_LOCKS)]
        self._fill = redis.register_script(_FILL)
        self._invalidate = redis.register_script(_INVALIDATE)
        self._mark = redis.register_script(_MARK)
        self._view = redis.register_script(_VIEW)

    def members_key(self, conversation_id: int) -> str:
        return f"{self._prefix}members:{conversation_id}"

    def conversations_key(self, user_id: int) -> str:
        return f"{self._prefix}convs:{user_id}"

    def _cached(self, key: str, load, encode, missed: bool = False) -> dict[str, str]:
        """The hash at ``key``, filled from SQL when it is not there. ``missed``: the caller's
        own read (a step of its batch) has just found no hash, so it is not read again before
        the fill, which reads it once more anyway."""
        if not missed:
            try:
                fields = _decode(self._redis.hgetall(key))
                if fields:
                    return fields
            except redis_lib.RedisError:
                pass  # said below
        # One fill per key at a time on this process: thousands of sockets joining a big room
        # whose hash expired wait for one SQL read of its members, not one each.
        with self._fill_locks[zlib.crc32(key.encode()) % len(self._fill_locks)]:
            return self._fill_once(key, load, encode)

    def _fill_once(self, key: str, load, encode) -> dict[str, str]:
        try:
            # The hash and its generation in one round trip (the generation is read before
            # SQL all the same).
            with self._redis.pipeline(transaction=False) as pipe:
                fields, generation = pipe.hgetall(key).get(key + ":gen").execute()
            fields = _decode(fields)
            if fields:
                return fields  # filled while this one waited
            generation = generation or b"0"
        except redis_lib.RedisError:
            # Pages and history keep working from SQL while Redis is down.
            log.warning("membership cache unavailable; reading %s from SQL", key)
            generation = None
        loaded = encode(_read_released(load))
        if generation is not None and len(loaded) <= 2 * MAX_CACHED_FIELDS:
            try:
                self._fill(keys=[key, key + ":gen"],
                           args=[generation, MEMBERS_TTL, *loaded])
            except redis_lib.RedisError:
                log.warning("membership of %s not cached", key)
        return dict(zip(loaded[::2], loaded[1::2], strict=True))

    def state(self, conversation_id: int, missed: bool = False
              ) -> tuple[dict[int, str | None], bool]:
        """Each participant's id and last read message id (None: nothing read yet), and
        whether the conversation is archived: one read (``missed``: see ``_cached``)."""
        fields = self._cached(
            self.members_key(conversation_id),
            lambda: _members_from_sql(conversation_id), _encode_members, missed)
        return ({int(k): (v or None) for k, v in fields.items() if k != FILLED},
                fields.get(FILLED) == ARCHIVED)

    def members(self, conversation_id: int) -> dict[int, str | None]:
        """Each participant's id and last read message id (None: nothing read yet)."""
        return self.state(conversation_id)[0]

    def conversations(self, user_id: int) -> list[int]:
        """The ids of the conversations the user takes part in."""
        return sorted(self.direct_peers(user_id))

    def _kinds(self, user_id: int, missed: bool = False) -> dict[int, str]:
        """Each of the user's conversations → the other person's id if it is direct, BIG for
        a big group, "" for another group (``missed``: see ``_cached``)."""
        fields = self._cached(
            self.conversations_key(user_id),
            lambda: _conversations_from_sql(user_id, self._push_max), _encode_kinds, missed)
        return _kinds_of(fields)

    def _kinds_from(self, user_id: int, reply) -> dict[int, str]:
        """``_kinds`` from a batch's HGETALL of the user's hash (a Batch): filled from
        SQL, as ``_kinds`` does, when the hash was not there or Redis refused."""
        if isinstance(reply, Exception) or not reply:
            return self._kinds(user_id, missed=not isinstance(reply, Exception))
        return _kinds_of(_decode(reply))

    def direct_peers(self, user_id: int) -> dict[int, int | None]:
        """Each of the user's conversations → the other person if it is direct, else None."""
        return {cid: int(v) if v and v != BIG else None
                for cid, v in self._kinds(user_id).items()}

    def presence_audience(self, user_id: int) -> tuple[list[int], set[int]]:
        """Who hears of the user's presence pushed: the user's direct conversations and groups
        of at most push_max members, and the other person of each direct one."""
        return _audience_of(self._kinds(user_id))

    def queue_presence_audience(self, batch: Batch, user_id: int) -> int:
        """``presence_audience`` as a step of a batch; its reply goes to
        ``presence_audience_from``."""
        return batch.command("HGETALL", self.conversations_key(user_id))

    def presence_audience_from(self, user_id: int, reply) -> tuple[list[int], set[int]]:
        return _audience_of(self._kinds_from(user_id, reply))

    def listed_markers_view(self, conversation_id: int, user_id: int
                            ) -> tuple[dict[int, str | None], int] | None:
        """``markers_view`` for a conversation in the user's own list of conversations, None
        for one that is not there: one round trip for both when both are cached. The list is
        asked first, so an id the user is not in never fills a members hash from SQL."""
        batch = Batch(self._redis)
        listed = batch.command("HGETALL", self.conversations_key(user_id))
        view = batch.script(self._view, [self.members_key(conversation_id)],
                            [user_id, self._push_max])
        try:
            replies = batch.run()
        except redis_lib.RedisError as exc:
            replies = [exc, exc]
        if conversation_id not in self._kinds_from(user_id, replies[listed]):
            return None
        return self._markers_from(conversation_id, user_id, replies[view])

    def markers_view(self, conversation_id: int, user_id: int
                     ) -> tuple[dict[int, str | None], int]:
        """The read markers a ``join`` answers, bounded, and the number of members: every
        member's while there are at most push_max members, else the user's own alone (empty
        for someone who is not a member). One read, never the whole hash of a big room."""
        try:
            reply = self._view(keys=[self.members_key(conversation_id)],
                               args=[user_id, self._push_max])
        except redis_lib.RedisError as exc:
            reply = exc
        return self._markers_from(conversation_id, user_id, reply)

    def _markers_from(self, conversation_id: int, user_id: int, reply
                      ) -> tuple[dict[int, str | None], int]:
        missed = not isinstance(reply, Exception)
        if not missed:
            log.warning("membership cache unavailable; reading members %s from SQL",
                        conversation_id)
            reply = None
        if not reply:  # not cached (or Redis down): fill it from SQL, once
            members = self.state(conversation_id, missed)[0]
            return _bounded(members, user_id, self._push_max), len(members)
        count, flat = int(reply[0]), _decode_list(reply[1])
        return ({int(k): (v or None) for k, v in zip(flat[::2], flat[1::2], strict=True)
                 if k != FILLED and v is not None}, count)

    def members_among(self, conversation_id: int, user_ids: list[int]) -> list[int]:
        """Those of ``user_ids`` who take part in the conversation, in the order given: one
        HMGET of their fields, never the whole hash of a big room."""
        try:
            values = self._redis.hmget(self.members_key(conversation_id), FILLED, *user_ids)
        except redis_lib.RedisError:
            values = [None]
        if values[0] is None:  # not cached (or Redis down): fill it from SQL, once
            members = self.state(conversation_id)[0]
            return [uid for uid in user_ids if uid in members]
        return [uid for uid, v in zip(user_ids, values[1:], strict=True) if v is not None]

    def queue_among(self, batch: Batch, conversation_id: int, user_ids: list[int]) -> int:
        """``members_among`` as a step of a batch; its reply goes to ``among_from``."""
        return batch.command("HMGET", self.members_key(conversation_id), FILLED, *user_ids)

    def among_from(self, conversation_id: int, user_ids: list[int], reply) -> list[int]:
        """``members_among`` from a batch's reply to ``queue_among``: filled from SQL once
        when the members were not cached (or Redis refused, then read as ``members_among``
        does)."""
        if isinstance(reply, Exception) or reply[0] is None:
            members = self.state(conversation_id, missed=not isinstance(reply, Exception))[0]
            return [uid for uid in user_ids if uid in members]
        return [uid for uid, v in zip(user_ids, reply[1:], strict=True) if v is not None]

    def queue_listed_among(self, batch: Batch, conversation_id: int, user_id: int,
                           user_ids: list[int]) -> tuple[int, int]:
        """``members_among`` of ``[user_id, *user_ids]`` for a conversation in the user's own
        list, as two steps of a batch (the list; the members' fields): ``listed_among_from``
        reads their replies."""
        listed = batch.command("HGETALL", self.conversations_key(user_id))
        return listed, self.queue_among(batch, conversation_id, [user_id, *user_ids])

    def listed_among_from(self, conversation_id: int, user_id: int, user_ids: list[int],
                          replies: list, steps: tuple[int, int]) -> list[int] | None:
        """None when the conversation is not in the user's list (its members' fields, read in
        the same round trip, are then ignored: a stranger's id fills nothing from SQL); else
        those of ``[user_id, *user_ids]`` who take part, filled from SQL once when the members
        were not cached."""
        listed, among = steps
        if conversation_id not in self._kinds_from(user_id, replies[listed]):
            return None
        return self.among_from(conversation_id, [user_id, *user_ids], replies[among])

    def changed(self, conversation_ids: Iterable[int], user_ids: Iterable[int]) -> None:
        keys = [self.members_key(c) for c in set(conversation_ids)]
        keys += [self.conversations_key(u) for u in set(user_ids)]
        if keys:
            self._invalidate(keys=[k for key in keys for k in (key, key + ":gen")],
                             args=[GENERATION_TTL])

    def refill(self, conversation_ids: Iterable[int], user_ids: Iterable[int]) -> None:
        """Fill again at once what ``changed`` has just dropped, after the change's commit:
        the users' lists of conversations (when at most REFILL_MAX_MEMBERS users changed),
        and the members of each conversation of at most REFILL_MAX_MEMBERS (a bigger one
        fills on its next read, as before). One round trip for the generations, one query
        for the lists and one per conversation, one round trip for the fills, each written
        only if no change came since its generation was read. Without it, each member's
        next event filled its own list from SQL: a group of 50 just started cost 50 queries
        and 150 round trips as its members connected."""
        users, conversations = sorted(set(user_ids)), sorted(set(conversation_ids))
        if len(users) > REFILL_MAX_MEMBERS:  # a crowd added at once: each fills on its own
            users = []
        keys = ([self.conversations_key(u) for u in users]
                + [self.members_key(c) for c in conversations])
        if not keys:
            return
        generations = self._redis.mget([key + ":gen" for key in keys])

        def load() -> list[list[str] | None]:
            lists = _lists_from_sql(users, self._push_max) if users else {}
            loaded: list[list[str] | None] = [_encode_kinds(lists[u]) for u in users]
            for cid in conversations:
                members = _members_from_sql(cid, REFILL_MAX_MEMBERS + 1)
                loaded.append(_encode_members(members)
                              if len(members[0]) <= REFILL_MAX_MEMBERS else None)
            return loaded

        batch = Batch(self._redis)
        for key, generation, fields in zip(keys, generations, _read_released(load),
                                           strict=True):
            if fields is not None and len(fields) <= 2 * MAX_CACHED_FIELDS:
                batch.script(self._fill, [key, key + ":gen"],
                             [generation or b"0", MEMBERS_TTL, *fields])
        if len(batch):
            batch.run()

    def read_moved(self, conversation_id: int, user_id: int, message_id: str) -> None:
        key = self.members_key(conversation_id)
        self._mark(keys=[key, key + ":gen"], args=[user_id, message_id, GENERATION_TTL])


class MemoryMembership:
    """The same in this process, for the single-process embedded default."""

    def __init__(self, max_entries: int = 50_000, push_max: int = 50):
        self._members: dict[int, tuple[dict[int, str | None], bool]] = {}
        self._conversations: dict[int, dict[int, int | str | None]] = {}
        self._push_max = push_max
        self._generation = 0
        self._max = max_entries
        self._lock = threading.Lock()

    def _cached(self, table: dict, key: int, load):
        with self._lock:
            if key in table:
                return table[key]
            generation = self._generation
        value = _read_released(load)  # SQL may yield to another greenlet that changes it
        with self._lock:
            if generation == self._generation:
                if len(table) >= self._max:
                    table.clear()
                table[key] = value
        return value

    def state(self, conversation_id: int) -> tuple[dict[int, str | None], bool]:
        members, archived = self._cached(self._members, conversation_id,
                                         lambda: _members_from_sql(conversation_id))
        return dict(members), archived

    def members(self, conversation_id: int) -> dict[int, str | None]:
        return self.state(conversation_id)[0]

    def conversations(self, user_id: int) -> list[int]:
        return sorted(self.direct_peers(user_id))

    def _kinds(self, user_id: int) -> dict[int, int | str | None]:
        return self._cached(self._conversations, user_id,
                            lambda: _conversations_from_sql(user_id, self._push_max))

    def direct_peers(self, user_id: int) -> dict[int, int | None]:
        return {cid: None if v == BIG else v for cid, v in self._kinds(user_id).items()}

    def presence_audience(self, user_id: int) -> tuple[list[int], set[int]]:
        kinds = self._kinds(user_id)
        return ([cid for cid, v in kinds.items() if v != BIG],
                {v for v in kinds.values() if isinstance(v, int)})

    def listed_markers_view(self, conversation_id: int, user_id: int
                            ) -> tuple[dict[int, str | None], int] | None:
        if conversation_id not in self._kinds(user_id):
            return None
        return self.markers_view(conversation_id, user_id)

    def markers_view(self, conversation_id: int, user_id: int
                     ) -> tuple[dict[int, str | None], int]:
        members = self._cached(self._members, conversation_id,
                               lambda: _members_from_sql(conversation_id))[0]
        with self._lock:  # read_moved changes the cached markers in place
            return _bounded(members, user_id, self._push_max), len(members)

    def members_among(self, conversation_id: int, user_ids: list[int]) -> list[int]:
        members = self._cached(self._members, conversation_id,
                               lambda: _members_from_sql(conversation_id))[0]
        return [uid for uid in user_ids if uid in members]

    def changed(self, conversation_ids: Iterable[int], user_ids: Iterable[int]) -> None:
        with self._lock:
            self._generation += 1
            for cid in conversation_ids:
                self._members.pop(cid, None)
            for uid in user_ids:
                self._conversations.pop(uid, None)

    def refill(self, conversation_ids: Iterable[int], user_ids: Iterable[int]) -> None:
        """Nothing: in this process a fill is one local query, with no round trip to save."""

    def read_moved(self, conversation_id: int, user_id: int, message_id: str) -> None:
        with self._lock:
            cached = self._members.get(conversation_id)
            if cached is None:
                self._generation += 1
                return
            cached = cached[0]
            if user_id in cached and (cached[user_id] or "") < message_id:
                cached[user_id] = message_id


def membership() -> RedisMembership | MemoryMembership:
    """This app's membership cache, built on first use."""
    def build(app) -> RedisMembership | MemoryMembership:
        redis, push_max = services().redis, app.config["CHAT_PRESENCE_PUSH_MAX_MEMBERS"]
        return (RedisMembership(redis, app.config["REDIS_KEY_PREFIX"], push_max)
                if redis is not None else MemoryMembership(push_max=push_max))

    return built_once("simplechat.membership", build)


# app.extensions' list of callables told of each change (conversation ids, user ids) made here.
MEMBERSHIP_LISTENERS = "simplechat.membership_listeners"


def commit_members_change(conversation_ids: Iterable[int], user_ids: Iterable[int]) -> None:
    """Commit the session's change of who takes part in these conversations, whole or not at
    all: the cached copies are dropped before the commit (Redis unreachable: the change is
    rolled back and the error raised, so the caller answers ``unavailable`` with nothing
    changed, where a cache restored later would otherwise keep a leaver in), and again after
    it (``members_changed``: a reader that filled the cache from SQL in between held the old
    membership)."""
    conversation_ids, user_ids = list(conversation_ids), list(user_ids)
    try:
        membership().changed(conversation_ids, user_ids)
    except Exception:
        db.session.rollback()
        raise
    db.session.commit()
    members_changed(conversation_ids, user_ids)


def members_changed(conversation_ids: Iterable[int], user_ids: Iterable[int]) -> None:
    """Call after committing a change of who takes part in these conversations."""
    conversation_ids, user_ids = list(conversation_ids), list(user_ids)
    from flask import current_app

    # What this process keeps of the change's effect elsewhere (a send refused ``forbidden``
    # is answered again for a second: realtime/event_limits.py) is dropped at once.
    for listener in current_app.extensions.get(MEMBERSHIP_LISTENERS, ()):
        listener(conversation_ids, user_ids)
    try:
        membership().changed(conversation_ids, user_ids)
    except Exception:
        # The cached copies still expire within MEMBERS_TTL; say so loudly.
        log.error("membership cache of conversations %s not invalidated", conversation_ids,
                  exc_info=True)
        return
    try:
        membership().refill(conversation_ids, user_ids)
    except Exception:  # the next reads fill them, one by one
        log.warning("membership cache of conversations %s not filled again", conversation_ids,
                    exc_info=True)


def participant_ids(conversation_id: int) -> list[int]:
    """The ids of everyone taking part in a conversation (empty if it does not exist)."""
    return list(membership().members(conversation_id))


def conversation_ids_of(user_id: int) -> list[int]:
    return membership().conversations(user_id)


def is_participant(user_id: int, conversation_id: int) -> bool:
    return user_id in membership().members(conversation_id)


def is_archived(conversation_id: int) -> bool:
    """Whether the conversation is archived (read-only), from the membership cache."""
    return membership().state(conversation_id)[1]


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


def write_refusal(user_id: int, conversation_id: object) -> str | None:
    """membership_refusal for a change to the conversation's messages (an edit, a deletion, a
    reaction): also ``archived`` while it is read-only. One read of the membership cache."""
    if not valid_conversation_id(conversation_id):
        return "invalid"
    members, archived = membership().state(conversation_id)
    if user_id not in members:
        return "forbidden"
    return "archived" if archived else None
