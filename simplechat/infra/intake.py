"""Taking in a message: membership, de-duplication, the rate limit, the recent list and the
write buffer, in one Redis round trip (one Lua script), or in process for the embedded default.

The script reads the conversation's cached members (infra.membership); when they are not cached
it answers ``unknown`` and the caller loads them from SQL once and asks again.

``admit`` takes the first three steps alone, for a send with costly work ahead (rendering,
mention lookups, a reply, files): membership, a retry's original, then the rate limit, taken
(atomically, as ``take`` would). A stranger or a sender past the limit is thus refused before
any of that work, and so is every send but one of a burst in flight together (a look that took
nothing let them all through, each rendered, until the first reached ``take``). The admitted
send is then taken in with ``limited=False``: one token per message either way.

With ``CHAT_ACK_REPLICAS`` = N > 0, ``take`` sends ``WAIT N CHAT_ACK_TIMEOUT_MS`` right behind
the script, on the same connection and in the same round trip, and the send is ``ok`` only when
N replicas have its entry. When they do not, or the answer is lost on the way, the entry is
withdrawn (the withdrawing script): the send is ``unconfirmed`` (the sender hears
``unavailable``) and nothing of it can be stored later, so a retry, with or without the same
``client_id``, makes exactly one message. One exception: a flush that has already taken the
entry stores it, and the send is answered ``ok`` (docs/DEPLOY.md).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import redis as redis_lib

from simplechat.infra.cache import (
    PUSH_STEP,
    ROOT_STEP,
    SUMMARY_STEP,
    bump_thread,
    id_needle,
    lists_of,
)
from simplechat.infra.fastjson import dumps, loads
from simplechat.infra.ratelimit import GCRA_STEP
from simplechat.infra.write_buffer import APPEND_STEP, FLAG_TTL

OK = "ok"
UNKNOWN = "unknown"  # members not cached: load them, then ask again
FORBIDDEN = "forbidden"
ARCHIVED = "archived"  # a member, but the conversation is read-only
DUPLICATE = "duplicate"
RATE_LIMITED = "rate_limited"
INVALID = "invalid"  # a thread reply whose root is no root (a reply, a system line)
ROOT_UNKNOWN = "root_unknown"  # the root is not in the main list: find it, then ask again
UNCONFIRMED = "unconfirmed"  # CHAT_ACK_REPLICAS did not confirm it: withdrawn, nothing stored
# Seconds a send whose entry's fate is unknown (Redis lost mid-answer) keeps trying to look it
# up and withdraw it before answering: a Sentinel failover takes a few.
WITHDRAW_PATIENCE = 10.0

# The steps ``admit`` and ``take`` share, with ``sender``, ``rl_interval`` and ``rl_tolerance``
# set. KEYS: members hash ("" when the caller checked membership), dedupe key (""), rate key
# (""). Returns {'unknown'}, {'forbidden'}, {'archived'} (the hash's '_' field says so, see
# infra.membership), {'duplicate', original} or {'rate_limited', wait ms} when the send goes no
# further; else ``ids`` holds the member ids (when read). ``take`` checks a thread reply's root
# between the membership step and the others (ROOT_STEP), so that a root looked up elsewhere
# does not cost a second token.
_MEMBER_STEP = """
local ids = {}
if KEYS[1] ~= '' then
  local fields = redis.call('HKEYS', KEYS[1])
  if #fields == 0 then return {'unknown'} end
  local member = false
  for _, f in ipairs(fields) do
    if f ~= '_' then
      ids[#ids + 1] = f
      if f == sender then member = true end
    end
  end
  if not member then return {'forbidden'} end
  if redis.call('HGET', KEYS[1], '_') == 'archived' then return {'archived'} end
end
"""
_LIMIT_STEPS = """
if KEYS[2] ~= '' then
  local existing = redis.call('GET', KEYS[2])
  if existing then return {'duplicate', existing} end
end
if KEYS[3] ~= '' then
  local rl_key = KEYS[3]
  local rl_wait
""" + GCRA_STEP + """
  if rl_wait > 0 then return {'rate_limited', rl_wait} end
end
"""
_ADMIT_STEPS = _MEMBER_STEP + _LIMIT_STEPS

# KEYS: the three above, then recent list, recent state, write buffer, flush flag, and, for
# a thread reply, the thread's list, its state and its root's hint. ARGV: sender id, payload
# json, recent length, recent ttl, dedupe ttl, rate interval ms, rate tolerance ms, flag ttl,
# then, for a thread reply, the root's id, 'known' when the caller found the root elsewhere,
# '1' when the reply is also sent to the conversation, the reply's timestamp and the root's id
# needle.
# Returns {'ok', flush needed, the root's new payload or '', member id, ...} or what the steps
# return ({'invalid'} and {'root_unknown'}: ROOT_STEP). A thread reply goes on its thread's
# list (and the main one when also sent to the conversation), and its root gets its summary.
_INTAKE = """
local sender, rl_interval, rl_tolerance = ARGV[1], tonumber(ARGV[6]), tonumber(ARGV[7])
local root_id, root_check, reply_at, root_needle = ARGV[9] or '', ARGV[10], ARGV[12], ARGV[13]
local main_list_key, thread_list_key, root_hint_key = KEYS[4], KEYS[8] or '', KEYS[10] or ''
""" + _MEMBER_STEP + ROOT_STEP + _LIMIT_STEPS + """
local payload = ARGV[2]
local max_length, ttl = tonumber(ARGV[3]), tonumber(ARGV[4])
""" + SUMMARY_STEP + """
if root_id == '' or ARGV[11] == '1' then
  local list_key, state_key = KEYS[4], KEYS[5]
""" + PUSH_STEP + """
end
if root_id ~= '' then
  local list_key, state_key = KEYS[8], KEYS[9]
""" + PUSH_STEP + """
end
if KEYS[2] ~= '' then
  redis.call('SET', KEYS[2], payload, 'EX', tonumber(ARGV[5]))
end
local buffer_key, flag_key, flag_ttl = KEYS[6], KEYS[7], tonumber(ARGV[8])
local flush_needed
""" + APPEND_STEP + """
return {'ok', flush_needed, root_new, unpack(ids)}
"""

# KEYS: write buffer, processing list, recent list, dedupe key (""), flush flag, a thread
# reply's thread list (""). ARGV: the payload json as the intake script pushed it. Takes a
# send's entry back when no flush has it: returns 1 (withdrawn: nothing of it is left), 0 (a
# flush took it: it will be stored) or -1 (the intake never took it in). A thread reply's root
# keeps its cached summary (the next stored batch recomputes it from SQL).
_WITHDRAW = """
local payload = ARGV[1]
if redis.call('LREM', KEYS[1], 1, payload) == 1 then
  redis.call('LREM', KEYS[3], 1, payload)
  if KEYS[6] ~= '' then redis.call('LREM', KEYS[6], 1, payload) end
  if KEYS[4] ~= '' and redis.call('GET', KEYS[4]) == payload then
    redis.call('DEL', KEYS[4])
  end
  redis.call('DEL', KEYS[5])  -- the next send queues a flush again
  return 1
end
if redis.call('LPOS', KEYS[2], payload) or redis.call('LPOS', KEYS[3], payload)
    or (KEYS[6] ~= '' and redis.call('LPOS', KEYS[6], payload)) then
  return 0
end
return -1
"""

# KEYS: the three of the shared steps. ARGV: sender id, rate interval ms, rate tolerance ms.
# Returns {'ok', member id, ...} or what the shared steps return.
_ADMIT = """
local sender, rl_interval, rl_tolerance = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
""" + _ADMIT_STEPS + """
return {'ok', unpack(ids)}
"""


@dataclass
class Taken:
    """What the intake made of one send."""

    status: str
    members: list[int] = field(default_factory=list)
    original: dict | None = None  # DUPLICATE: the first message with this client id
    wait: float = 0.0  # RATE_LIMITED: seconds
    flush: bool = False  # OK: queue a flush of the write buffer
    root: dict | None = None  # OK, a thread reply: its root with the new summary, if cached


def _refusal(reply: list) -> Taken:
    """What the shared steps answered when the send goes no further."""
    status = reply[0].decode()
    if status == DUPLICATE:
        return Taken(DUPLICATE, original=loads(reply[1]))
    if status == RATE_LIMITED:
        return Taken(RATE_LIMITED, wait=max(int(reply[1]), 1) / 1000)
    return Taken(status)


class RedisIntake:
    def __init__(self, redis, membership, cache, limiter, buffer, ack_replicas: int = 0,
                 ack_timeout_ms: int = 1000):
        self._redis = redis
        self._membership = membership
        self._cache = cache
        self._limiter = limiter
        self._buffer = buffer
        self._script = redis.register_script(_INTAKE)
        self._admit = redis.register_script(_ADMIT)
        self._withdraw = redis.register_script(_WITHDRAW)
        self.ack_replicas = max(0, ack_replicas)
        self.ack_timeout_ms = max(1, ack_timeout_ms)

    def _keys(self, conversation_id: int, sender_id: int, dedupe_key: str | None,
              members: list[int] | None, limited: bool) -> list[str]:
        return ["" if members is not None else self._membership.members_key(conversation_id),
                self._cache.dedupe_key(dedupe_key) if dedupe_key else "",
                self._limiter.key(str(sender_id)) if limited and self._limiter.rate else ""]

    def admit(self, conversation_id: int, sender_id: int, dedupe_key: str | None,
              members: list[int] | None = None) -> Taken:
        """Membership, a retry's original and the rate limit (taken), one round trip: OK with
        the member ids, or why not; ``members`` (from SQL) skips the cached membership."""
        rate = self._limiter.rate
        reply = self._admit(
            keys=self._keys(conversation_id, sender_id, dedupe_key, members, True),
            args=[sender_id, rate.interval_ms if rate else 0, rate.tolerance_ms if rate else 0])
        if reply[0].decode() != OK:
            return _refusal(reply)
        return Taken(OK, members if members is not None else [int(m) for m in reply[1:]])

    def take(self, conversation_id: int, sender_id: int, payload: dict,
             dedupe_key: str | None, members: list[int] | None = None,
             limited: bool = True, root_known: bool = False) -> Taken:
        """Run the script; ``members`` (from SQL) skips the cached membership check and the
        archived one (the caller did them, or, for a system line, means to pass them),
        ``limited=False`` the rate limit; ``root_known``: a thread reply's root was found
        outside the main list (SQL, the write buffer) by the caller."""
        list_key, state_key = self._cache.keys(conversation_id)
        rate = self._limiter.rate if limited else None
        keys = [*self._keys(conversation_id, sender_id, dedupe_key, members, limited),
                list_key, state_key, self._buffer.buffer_key, self._buffer.flag_key]
        args = [sender_id, dumps(payload), self._cache.size, self._cache.ttl,
                self._cache.dedupe_ttl, rate.interval_ms if rate else 0,
                rate.tolerance_ms if rate else 0, FLAG_TTL]
        keys, args = self._thread_parts(conversation_id, payload, root_known, keys, args)
        if self.ack_replicas:
            return self._take_replicated(conversation_id, keys, args, members)
        return _taken(self._script(keys=keys, args=args), members)

    def _take_replicated(self, conversation_id: int, keys: list[str], args: list,
                         members: list[int] | None) -> Taken:
        """The intake script and ``WAIT`` in one round trip; the entry withdrawn unless
        ``ack_replicas`` replicas confirmed it (or a flush has taken it already)."""
        try:
            reply, replicas = self._script_and_wait(keys, args)
        except NotSent as exc:
            raise exc.__cause__ from None
        except (redis_lib.ConnectionError, redis_lib.TimeoutError):
            # The script may have run, and a replica may hold its entry: look before
            # answering, on a new connection, for as long as a failover takes (the new primary
            # is one of the replicas); if Redis cannot be reached at all, nothing is known.
            if self._withdrawn_patiently(keys, args) != 0:
                raise
            # A flush took it already: it will be stored.
            return Taken(OK, members if members is not None
                         else list(self._membership.members(conversation_id)))
        taken = _taken(reply, members)
        if taken.status != OK or replicas >= self.ack_replicas:
            return taken
        return taken if self._withdrawn_patiently(keys, args) == 0 else Taken(UNCONFIRMED)

    def _withdrawn_patiently(self, keys: list[str], args: list) -> int:
        """``_withdrawn``, tried again while Redis cannot be reached, for WITHDRAW_PATIENCE."""
        deadline = time.monotonic() + WITHDRAW_PATIENCE
        while True:
            try:
                return self._withdrawn(keys, args)
            except (redis_lib.ConnectionError, redis_lib.TimeoutError):
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.25)

    def _script_and_wait(self, keys: list[str], args: list) -> tuple[list, int]:
        """EVALSHA of the intake script, then WAIT, sent together on one connection (WAIT
        counts the replicas that have this connection's writes); the script is loaded once if
        Redis does not know it (a restart, a failover). NotSent when no connection could be
        had; any other error may come after the script ran."""
        pool = self._redis.connection_pool
        for attempt in (1, 2):
            try:
                conn = pool.get_connection()
            except (redis_lib.ConnectionError, redis_lib.TimeoutError) as exc:
                raise NotSent from exc  # no connection: the script did not run
            try:
                conn.send_packed_command(conn.pack_commands([
                    ("EVALSHA", self._script.sha, len(keys), *keys, *args),
                    ("WAIT", self.ack_replicas, self.ack_timeout_ms)]), check_health=False)
                answers = []
                for _ in range(2):
                    try:
                        answers.append(conn.read_response())
                    except redis_lib.ResponseError as exc:
                        answers.append(exc)
            except BaseException:
                conn.disconnect()
                raise
            finally:
                pool.release(conn)
            reply, replicas = answers
            if isinstance(reply, redis_lib.exceptions.NoScriptError) and attempt == 1:
                self._redis.script_load(_INTAKE)
                continue
            for answer in (reply, replicas):
                if isinstance(answer, Exception):
                    raise answer
            return reply, int(replicas)
        raise AssertionError("unreachable")

    def _withdrawn(self, keys: list[str], args: list) -> int:
        """Take the entry of ``args``' payload back: 1 withdrawn, 0 a flush has it, -1 the
        intake never took it in."""
        return int(self._withdraw(
            keys=[self._buffer.buffer_key, self._buffer.processing_key, keys[3], keys[1],
                  self._buffer.flag_key, keys[7] if len(keys) > 7 else ""],
            args=[args[1]]))

    def _thread_parts(self, conversation_id: int, payload: dict, root_known: bool,
                      keys: list[str], args: list) -> tuple[list[str], list]:
        """The script's keys and arguments of a thread reply: its thread's list, its root."""
        root_id = payload.get("thread_id")
        if not root_id:
            return keys, args
        return ([*keys, *self._cache.keys((conversation_id, root_id)),
                 self._cache.root_hint_key(conversation_id, root_id)],
                [*args, root_id, "known" if root_known else "",
                 "1" if payload.get("also_to_conversation") else "", payload["timestamp"],
                 id_needle(root_id)])


class NotSent(Exception):
    """No connection to Redis could be had: nothing was sent (the cause says why)."""


def _taken(reply: list, members: list[int] | None) -> Taken:
    """The intake script's answer."""
    if reply[0].decode() != OK:
        return _refusal(reply)
    return Taken(OK, members if members is not None else [int(m) for m in reply[3:]],
                 flush=bool(reply[1]), root=loads(reply[2]) if reply[2] else None)


class MemoryIntake:
    """The same steps on the in-process cache, limiter and buffer (the embedded default)."""

    def __init__(self, membership, cache, limiter, buffer):
        self._membership = membership
        self._cache = cache
        self._limiter = limiter
        self._buffer = buffer

    def _refusal(self, conversation_id: int, sender_id: int, members: list[int] | None
                 ) -> tuple[list[int], str | None]:
        if members is not None:
            return members, None if sender_id in members else FORBIDDEN
        cached, archived = self._membership.state(conversation_id)
        if sender_id not in cached:
            return list(cached), FORBIDDEN
        return list(cached), ARCHIVED if archived else None

    def admit(self, conversation_id: int, sender_id: int, dedupe_key: str | None,
              members: list[int] | None = None) -> Taken:
        members, refused = self._refusal(conversation_id, sender_id, members)
        if refused:
            return Taken(refused)
        if dedupe_key and (original := self._cache.lookup(dedupe_key)) is not None:
            return Taken(DUPLICATE, original=original)
        wait = self._limiter.hit(str(sender_id))
        return Taken(RATE_LIMITED, wait=wait) if wait else Taken(OK, members)

    def take(self, conversation_id: int, sender_id: int, payload: dict,
             dedupe_key: str | None, members: list[int] | None = None,
             limited: bool = True, root_known: bool = False) -> Taken:
        members, refused = self._refusal(conversation_id, sender_id, members)
        if refused:
            return Taken(refused)
        root_id = payload.get("thread_id")
        if root_id:
            root = self._cache.find(conversation_id, root_id)
            if root is None and not root_known and not self._cache.recent(
                    (conversation_id, root_id))[0]:  # no reply taken in yet: check it
                return Taken(ROOT_UNKNOWN)
            if root is not None and (root.get("thread_id") or root.get("kind") == "system"):
                return Taken(INVALID)
        if dedupe_key and (original := self._cache.lookup(dedupe_key)) is not None:
            return Taken(DUPLICATE, original=original)
        wait = self._limiter.hit(str(sender_id)) if limited else 0
        if wait:
            return Taken(RATE_LIMITED, wait=wait)
        first, *more = lists_of(payload)
        original = self._cache.push(first, payload, dedupe_key)
        if original is not None:
            return Taken(DUPLICATE, original=original)
        for list_id in more:
            self._cache.push(list_id, payload, None)
        root = None
        if root_id:
            root = self._cache.update(conversation_id, root_id, lambda current: bump_thread(
                current, sender_id, payload["timestamp"]))
        return Taken(OK, members, flush=self._buffer.append(payload), root=root)


def intake() -> RedisIntake | MemoryIntake:
    """This app's intake, built on first use over its cache, limiter and write buffer."""
    from simplechat.infra.membership import membership
    from simplechat.infra.services import built_once, services
    from simplechat.infra.write_buffer import write_buffer

    def build(app) -> RedisIntake | MemoryIntake:
        svc = services()
        parts = (membership(), svc.cache, svc.limiter, write_buffer())
        if svc.redis is None:
            return MemoryIntake(*parts)  # one process, no replica: CHAT_ACK_REPLICAS ignored
        return RedisIntake(svc.redis, *parts, ack_replicas=app.config["CHAT_ACK_REPLICAS"],
                           ack_timeout_ms=app.config["CHAT_ACK_TIMEOUT_MS"])

    return built_once("simplechat.intake", build)
