"""Taking in a message: membership, de-duplication, the rate limit, the recent list and the
write buffer, in one Redis round trip (one Lua script), or in process for the embedded default.

The script reads the conversation's cached members (infra.membership); when they are not cached
it answers ``unknown`` and the caller loads them from SQL once and asks again.

``admit`` asks the first questions alone, taking nothing: is the sender a member, and would the
rate limit let a send through now? The send path asks it before costly work (rendering, mention
lookups, replies, files), so a stranger or a flooder over the limit costs one round trip and no
CPU; ``take`` still decides, atomically, with the limit taken.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from simplechat.infra.cache import PUSH_STEP
from simplechat.infra.fastjson import dumps, loads
from simplechat.infra.ratelimit import GCRA_PEEK_STEP, GCRA_STEP
from simplechat.infra.write_buffer import APPEND_STEP, FLAG_TTL

OK = "ok"
UNKNOWN = "unknown"  # members not cached: load them, then ask again
FORBIDDEN = "forbidden"
DUPLICATE = "duplicate"
RATE_LIMITED = "rate_limited"

# KEYS: members hash ("" when the caller checked membership), dedupe key (""), rate key (""),
# recent list, recent state, write buffer, flush flag. ARGV: sender id, payload json, recent
# length, recent ttl, dedupe ttl, rate interval ms, rate tolerance ms, flag ttl.
# Returns {'ok', flush needed, member id, ...} or {status, detail}.
_INTAKE = """
local ids = {}
if KEYS[1] ~= '' then
  local fields = redis.call('HKEYS', KEYS[1])
  if #fields == 0 then return {'unknown'} end
  local member = false
  for _, f in ipairs(fields) do
    if f ~= '_' then
      ids[#ids + 1] = f
      if f == ARGV[1] then member = true end
    end
  end
  if not member then return {'forbidden'} end
end
if KEYS[2] ~= '' then
  local existing = redis.call('GET', KEYS[2])
  if existing then return {'duplicate', existing} end
end
if KEYS[3] ~= '' then
  local rl_key, rl_interval, rl_tolerance = KEYS[3], tonumber(ARGV[6]), tonumber(ARGV[7])
  local rl_wait
""" + GCRA_STEP + """
  if rl_wait > 0 then return {'rate_limited', rl_wait} end
end
local payload = ARGV[2]
local list_key, state_key = KEYS[4], KEYS[5]
local max_length, ttl = tonumber(ARGV[3]), tonumber(ARGV[4])
""" + PUSH_STEP + """
if KEYS[2] ~= '' then
  redis.call('SET', KEYS[2], payload, 'EX', tonumber(ARGV[5]))
end
local buffer_key, flag_key, flag_ttl = KEYS[6], KEYS[7], tonumber(ARGV[8])
local flush_needed
""" + APPEND_STEP + """
return {'ok', flush_needed, unpack(ids)}
"""

# KEYS: members hash, rate key ("": no limit). ARGV: sender id, rate tolerance ms.
# Returns {'unknown', wait}, {'forbidden', wait} or {'ok', wait, member id, ...}; wait in ms.
_ADMIT = """
local fields = redis.call('HKEYS', KEYS[1])
local status, ids = 'unknown', {}
if #fields > 0 then
  status = 'forbidden'
  for _, f in ipairs(fields) do
    if f ~= '_' then
      ids[#ids + 1] = f
      if f == ARGV[1] then status = 'ok' end
    end
  end
end
local rl_wait = 0
if KEYS[2] ~= '' then
  local rl_key, rl_tolerance = KEYS[2], tonumber(ARGV[2])
""" + GCRA_PEEK_STEP + """
end
if status ~= 'ok' then return {status, rl_wait} end
return {status, rl_wait, unpack(ids)}
"""


@dataclass
class Taken:
    """What the intake made of one send."""

    status: str
    members: list[int] = field(default_factory=list)
    original: dict | None = None  # DUPLICATE: the first message with this client id
    wait: float = 0.0  # RATE_LIMITED (and admit's UNKNOWN): seconds
    flush: bool = False  # OK: queue a flush of the write buffer


class RedisIntake:
    def __init__(self, redis, membership, cache, limiter, buffer):
        self._membership = membership
        self._cache = cache
        self._limiter = limiter
        self._buffer = buffer
        self._script = redis.register_script(_INTAKE)
        self._admit = redis.register_script(_ADMIT)

    def admit(self, conversation_id: int, sender_id: int) -> Taken:
        """Membership and the rate limit, read in one round trip, taking nothing: OK (with the
        member ids), FORBIDDEN, RATE_LIMITED (with the wait), or UNKNOWN (members not cached;
        ``wait`` holds the rate limit's answer all the same)."""
        rate = self._limiter.rate
        reply = self._admit(
            keys=[self._membership.members_key(conversation_id),
                  self._limiter.key(str(sender_id)) if rate else ""],
            args=[sender_id, rate.tolerance_ms if rate else 0])
        status, wait = reply[0].decode(), max(int(reply[1]), 0) / 1000
        if status == OK and wait:
            return Taken(RATE_LIMITED, wait=wait)
        return Taken(status, [int(m) for m in reply[2:]], wait=wait)

    def take(self, conversation_id: int, sender_id: int, payload: dict,
             dedupe_key: str | None, members: list[int] | None = None,
             limited: bool = True) -> Taken:
        """Run the script; ``members`` (from SQL) skips the cached membership check,
        ``limited=False`` the rate limit."""
        list_key, state_key = self._cache.keys(conversation_id)
        rate = self._limiter.rate if limited else None
        reply = self._script(
            keys=["" if members is not None else self._membership.members_key(conversation_id),
                  self._cache.dedupe_key(dedupe_key) if dedupe_key else "",
                  self._limiter.key(str(sender_id)) if rate else "",
                  list_key, state_key, self._buffer.buffer_key, self._buffer.flag_key],
            args=[sender_id, dumps(payload), self._cache.size, self._cache.ttl,
                  self._cache.dedupe_ttl, rate.interval_ms if rate else 0,
                  rate.tolerance_ms if rate else 0, FLAG_TTL],
        )
        status = reply[0].decode()
        if status == OK:
            return Taken(OK, members if members is not None else [int(m) for m in reply[2:]],
                         flush=bool(reply[1]))
        if status == DUPLICATE:
            return Taken(DUPLICATE, original=loads(reply[1]))
        if status == RATE_LIMITED:
            return Taken(RATE_LIMITED, wait=max(int(reply[1]), 1) / 1000)
        return Taken(status)


class MemoryIntake:
    """The same steps on the in-process cache, limiter and buffer (the embedded default)."""

    def __init__(self, membership, cache, limiter, buffer):
        self._membership = membership
        self._cache = cache
        self._limiter = limiter
        self._buffer = buffer

    def admit(self, conversation_id: int, sender_id: int) -> Taken:
        members = list(self._membership.members(conversation_id))
        if sender_id not in members:
            return Taken(FORBIDDEN)
        wait = self._limiter.wait(str(sender_id))
        return Taken(RATE_LIMITED, wait=wait) if wait else Taken(OK, members)

    def take(self, conversation_id: int, sender_id: int, payload: dict,
             dedupe_key: str | None, members: list[int] | None = None,
             limited: bool = True) -> Taken:
        if members is None:
            members = list(self._membership.members(conversation_id))
        if sender_id not in members:
            return Taken(FORBIDDEN)
        if dedupe_key and (original := self._cache.lookup(dedupe_key)) is not None:
            return Taken(DUPLICATE, original=original)
        wait = self._limiter.hit(str(sender_id)) if limited else 0
        if wait:
            return Taken(RATE_LIMITED, wait=wait)
        original = self._cache.push(conversation_id, payload, dedupe_key)
        if original is not None:
            return Taken(DUPLICATE, original=original)
        return Taken(OK, members, flush=self._buffer.append(payload))


def intake() -> RedisIntake | MemoryIntake:
    """This app's intake, built on first use over its cache, limiter and write buffer."""
    from simplechat.infra.membership import membership
    from simplechat.infra.services import built_once, services
    from simplechat.infra.write_buffer import write_buffer

    def build(app) -> RedisIntake | MemoryIntake:
        svc = services()
        parts = (membership(), svc.cache, svc.limiter, write_buffer())
        return RedisIntake(svc.redis, *parts) if svc.redis is not None else MemoryIntake(*parts)

    return built_once("simplechat.intake", build)
