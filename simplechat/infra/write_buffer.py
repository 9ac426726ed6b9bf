"""The write buffer: acknowledged messages waiting for their SQL write, stored in batches.

The send path appends each payload here before it acknowledges the sender; a ``flush_writes``
task (simplechat/messaging/tasks.py) stores what has queued up, up to ``BATCH`` rows per statement.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import redis as redis_lib

from simplechat.infra.cache import FIND_STEP, id_needle
from simplechat.infra.fastjson import dumps, loads

BATCH = 500
MAX_BATCHES_PER_RUN = 20
FLAG_TTL = 5  # seconds: a flush flag whose task was lost heals on the next send after this
LEASE_MS = 15_000  # one flusher at a time; a dead one's lease runs out after this

Store = Callable[[list[dict]], int]

# Lua, for this buffer and the send script (infra.intake): appends ``payload`` to ``buffer_key``
# and sets ``flush_needed`` to 1 when no flush was pending (the caller queues one), else 0.
APPEND_STEP = """
redis.call('RPUSH', buffer_key, payload)
flush_needed = 0
if redis.call('SET', flag_key, '1', 'NX', 'EX', flag_ttl) then flush_needed = 1 end
"""

# KEYS: buffer, flag. ARGV: payload json, flag ttl.
_APPEND = """
local buffer_key, flag_key, payload, flag_ttl = KEYS[1], KEYS[2], ARGV[1], tonumber(ARGV[2])
local flush_needed
""" + APPEND_STEP + """
return flush_needed
"""

# KEYS: buffer, processing. ARGV: K. A processing list left by a flush that did not finish is
# returned as it is; otherwise up to K payloads move from the buffer to the processing list.
_TAKE = """
local left = redis.call('LRANGE', KEYS[2], 0, -1)
if #left > 0 then return left end
local items = redis.call('LRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1)
if #items == 0 then return items end
redis.call('RPUSH', KEYS[2], unpack(items))
redis.call('LTRIM', KEYS[1], #items, -1)
return items
"""

# KEYS: lease, processing. ARGV: token, lease ms. A stored batch is dropped only by the lease
# owner, which also renews the lease; returns 0 when the lease was lost.
_DONE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[2])
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
  return 1
end
return 0
"""

# KEYS: lease. ARGV: token. Releases the lease if it is still ours.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


# KEYS: buffer, processing. ARGV: needle, message id. The payload waiting with that id, or "".
_FIND = """
local needle, message_id, found, raw = ARGV[1], ARGV[2], nil, nil
for _, key in ipairs(KEYS) do
  local items = redis.call('LRANGE', key, 0, -1)
""" + FIND_STEP + """
  if raw then return raw end
end
return ''
"""


def _json(payload: dict) -> str:
    return dumps(payload)  # one encoding everywhere: the buffer finds a payload by its bytes


@dataclass
class Flushed:
    """What one flush did: rows newly stored, whether payloads are still waiting in the buffer
    (run another flush now), and, when another flusher held the lease over a batch in flight,
    after how many seconds to look again in case that flusher died."""

    stored: int = 0
    more: bool = False
    recheck_in: float | None = None


class WriteBuffer(Protocol):
    def append(self, payload: dict) -> bool: ...
    def take_back(self, payload: dict) -> bool: ...
    def flush(self, store: Store, max_batches: int = MAX_BATCHES_PER_RUN,
              take_over: bool = False) -> Flushed: ...
    def pending(self) -> int: ...
    def find(self, message_id: str) -> dict | None: ...


class RedisWriteBuffer:
    """The buffer as Redis lists, on the same server as the broker: a payload is in Redis
    before the sender hears ``ok`` and leaves it only after its row is committed."""

    def __init__(self, redis: redis_lib.Redis, prefix: str, batch: int = BATCH):
        self.batch = batch
        self._redis = redis
        base = f"{prefix}writes:"
        self.buffer_key, self.processing_key = base + "buffer", base + "processing"
        self.lease_key, self.flag_key = base + "lease", base + "flush-queued"
        self._append = redis.register_script(_APPEND)
        self._take = redis.register_script(_TAKE)
        self._done = redis.register_script(_DONE)
        self._release = redis.register_script(_RELEASE)
        self._find = redis.register_script(_FIND)

    def find(self, message_id: str) -> dict | None:
        """A payload still waiting for its SQL write (in the buffer or a batch in flight)."""
        raw = self._find(keys=[self.buffer_key, self.processing_key],
                         args=[id_needle(message_id), message_id])
        return loads(raw) if raw else None

    def append(self, payload: dict) -> bool:
        """Buffer ``payload`` in one round trip; True when the caller must queue a flush."""
        return bool(self._append(keys=[self.buffer_key, self.flag_key],
                                 args=[_json(payload), FLAG_TTL]))

    def take_back(self, payload: dict) -> bool:
        """Remove a payload whose flush could not be queued. False when a flush has already
        taken it: it will be stored."""
        with self._redis.pipeline() as pipe:
            pipe.lrem(self.buffer_key, 1, _json(payload))
            pipe.delete(self.flag_key)  # so the next send queues a flush again
            removed, _ = pipe.execute()
        return bool(removed)

    def pending(self) -> int:
        """Payloads not stored yet: in the buffer and in a batch in flight."""
        with self._redis.pipeline(transaction=False) as pipe:
            pipe.llen(self.buffer_key)
            pipe.llen(self.processing_key)
            return sum(pipe.execute())

    def backlog(self) -> tuple[int, dict | None]:
        """Payloads not stored yet, and the oldest of them (a batch in flight first), in one
        round trip."""
        with self._redis.pipeline(transaction=False) as pipe:
            pipe.llen(self.buffer_key)
            pipe.llen(self.processing_key)
            pipe.lindex(self.processing_key, 0)
            pipe.lindex(self.buffer_key, 0)
            waiting, processing, first_processing, first_waiting = pipe.execute()
        oldest = first_processing or first_waiting
        return waiting + processing, loads(oldest) if oldest else None

    def flush(self, store: Store, max_batches: int = MAX_BATCHES_PER_RUN,
              take_over: bool = False) -> Flushed:
        """Store up to ``max_batches`` batches, a batch left by a dead flusher first.

        ``take_over`` takes the lease even if another flusher holds it (a worker that starts
        after a crash): two flushers storing one batch is harmless, since inserts skip stored
        ids, and the one that lost the lease stops after its batch. An error from ``store``
        propagates and leaves the batch in the processing list for the next flush.
        """
        redis = self._redis
        token = uuid.uuid4().hex
        if not redis.set(self.lease_key, token, nx=not take_over, px=LEASE_MS):
            # The holder looks at the buffer again before it leaves; should it have died
            # instead, its lease runs out and the payloads waiting are this flush's to store.
            if self.pending():
                left = redis.pttl(self.lease_key)
                return Flushed(recheck_in=max(left, 0) / 1000 + 0.5)
            return Flushed()
        stored = 0
        try:
            for _ in range(max_batches):
                items = self._take(keys=[self.buffer_key, self.processing_key],
                                   args=[self.batch])
                if not items:
                    break
                stored += store([json.loads(raw) for raw in items])
                if not self._done(keys=[self.lease_key, self.processing_key],
                                  args=[token, LEASE_MS]):
                    return Flushed(stored)  # taken over: the new owner carries on
        finally:
            self._release(keys=[self.lease_key], args=[token])
        # From here on an append queues the next flush itself; one that came before is counted.
        redis.delete(self.flag_key)
        return Flushed(stored, more=bool(redis.llen(self.buffer_key)))


class MemoryWriteBuffer:
    """The same in this process, for the embedded default, where flushes run inline."""

    def __init__(self, batch: int = BATCH):
        self.batch = batch
        self._items: deque[dict] = deque()
        self._lock = threading.Lock()
        self._flushing = threading.Lock()

    def append(self, payload: dict) -> bool:
        with self._lock:
            self._items.append(payload)
        return True  # always flush: nothing else would

    def take_back(self, payload: dict) -> bool:
        with self._lock:
            try:
                self._items.remove(payload)
            except ValueError:
                return False
        return True

    def pending(self) -> int:
        with self._lock:
            return len(self._items)

    def find(self, message_id: str) -> dict | None:
        with self._lock:
            return next((p for p in self._items if p["id"] == message_id), None)

    def flush(self, store: Store, max_batches: int = MAX_BATCHES_PER_RUN,
              take_over: bool = False) -> Flushed:
        stored = 0
        with self._flushing:
            for _ in range(max_batches):
                with self._lock:
                    batch = [self._items.popleft()
                             for _ in range(min(self.batch, len(self._items)))]
                if not batch:
                    break
                try:
                    stored += store(batch)
                except BaseException:
                    with self._lock:
                        self._items.extendleft(reversed(batch))
                    raise
        return Flushed(stored, more=self.pending() > 0)


def write_buffer() -> WriteBuffer:
    """This app's write buffer, built on first use beside the other Redis-backed services."""
    from simplechat.infra.services import built_once, services

    def build(app) -> WriteBuffer:
        redis = services().redis
        return (RedisWriteBuffer(redis, app.config["REDIS_KEY_PREFIX"]) if redis is not None
                else MemoryWriteBuffer())

    return built_once("write_buffer", build)
