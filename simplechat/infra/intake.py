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
"""

from __future__ import annotations

from dataclasses import dataclass, field

from simplechat.infra.cache import PUSH_STEP
from simplechat.infra.fastjson import dumps, loads
from simplechat.infra.ratelimit import GCRA_STEP
from simplechat.infra.write_buffer import APPEND_STEP, FLAG_TTL

OK = "ok"
UNKNOWN = "unknown"  # members not cached: load them, then ask again
FORBIDDEN = "forbidden"
DUPLICATE = "duplicate"
RATE_LIMITED = "rate_limited"

# The steps ``admit`` and ``take`` share, with ``sender``, ``rl_interval`` and ``rl_tolerance``
# set. KEYS: members hash ("" when the caller checked membership), dedupe key (""), rate key
# (""). Returns {'unknown'}, {'forbidden'}, {'duplicate', original} or {'rate_limited', wait ms}
# when the send goes no further; else ``ids`` holds the member ids (when read).
_ADMIT_STEPS = """
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
end
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

# KEYS: the three above, then recent list, recent state, write buffer, flush flag. ARGV: sender
# id, payload json, recent length, recent ttl, dedupe ttl, rate interval ms, rate tolerance ms,
# flag ttl. Returns {'ok', flush needed, member id, ...} or what the shared steps return.
_INTAKE = """
local sender, rl_interval, rl_tolerance = ARGV[1], tonumber(ARGV[6]), tonumber(ARGV[7])
""" + _ADMIT_STEPS + """
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


def _refusal(reply: list) -> Taken:
    """What the shared steps answered when the send goes no further."""
    status = reply[0].decode()
    if status == DUPLICATE:
        return Taken(DUPLICATE, original=loads(reply[1]))
    if status == RATE_LIMITED:
        return Taken(RATE_LIMITED, wait=max(int(reply[1]), 1) / 1000)
    return Taken(status)


class RedisIntake:
    def __init__(self, redis, membership, cache, limiter, buffer):
        self._membership = membership
        self._cache = cache
        self._limiter = limiter
        self._buffer = buffer
        self._script = redis.register_script(_INTAKE)
        self._admit = redis.register_script(_ADMIT)

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
             limited: bool = True) -> Taken:
        """Run the script; ``members`` (from SQL) skips the cached membership check,
        ``limited=False`` the rate limit."""
        list_key, state_key = self._cache.keys(conversation_id)
        rate = self._limiter.rate if limited else None
        reply = self._script(
            keys=[*self._keys(conversation_id, sender_id, dedupe_key, members, limited),
                  list_key, state_key, self._buffer.buffer_key, self._buffer.flag_key],
            args=[sender_id, dumps(payload), self._cache.size, self._cache.ttl,
                  self._cache.dedupe_ttl, rate.interval_ms if rate else 0,
                  rate.tolerance_ms if rate else 0, FLAG_TTL],
        )
        if reply[0].decode() != OK:
            return _refusal(reply)
        return Taken(OK, members if members is not None else [int(m) for m in reply[2:]],
                     flush=bool(reply[1]))


class MemoryIntake:
    """The same steps on the in-process cache, limiter and buffer (the embedded default)."""

    def __init__(self, membership, cache, limiter, buffer):
        self._membership = membership
        self._cache = cache
        self._limiter = limiter
        self._buffer = buffer

    def admit(self, conversation_id: int, sender_id: int, dedupe_key: str | None,
              members: list[int] | None = None) -> Taken:
        if members is None:
            members = list(self._membership.members(conversation_id))
        if sender_id not in members:
            return Taken(FORBIDDEN)
        if dedupe_key and (original := self._cache.lookup(dedupe_key)) is not None:
            return Taken(DUPLICATE, original=original)
        wait = self._limiter.hit(str(sender_id))
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
