"""A batching write path, measured by bench_writes.py (not the production path yet).

Send side: the payload is appended to a Redis list (the write buffer) and one small
``bench.flush_writes`` task is queued per message, as today. Worker side: a flush moves up to K
payloads from the buffer to a processing list in one atomic step, stores them with the idempotent
multi-row ``store_messages``, then deletes the processing list.

No loss: a payload is in Redis (the same server as the broker) before the sender is
acknowledged, and leaves Redis only after its row is committed. A worker that dies mid-flush
leaves its payloads in the processing list; the task it was running is redelivered
(acks_late, reject_on_worker_lost) and any later flush stores that list first. No duplicates:
the insert skips ids already stored, so storing a processing list twice is harmless.

    celery -A benchmarks.write_buffer.celery worker -c 1
"""

from __future__ import annotations

import json
import uuid

from simplechat import create_app
from simplechat.services import services
from simplechat.storage import store_messages

BATCH = 500
MAX_BATCHES_PER_RUN = 20

# KEYS: buffer, processing. ARGV: K. Moves up to K payloads unless a processing list is left
# over from a flush that did not finish, which is returned as it is.
_TAKE = """
local left = redis.call('LRANGE', KEYS[2], 0, -1)
if #left > 0 then return left end
local items = redis.call('LRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1)
if #items == 0 then return items end
redis.call('RPUSH', KEYS[2], unpack(items))
redis.call('LTRIM', KEYS[1], #items, -1)
return items
"""

# KEYS: lock, processing. ARGV: token. Done with a batch: drop it only while still the owner.
_DONE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[2])
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
  return 1
end
return 0
"""
LEASE_MS = 60_000

app = create_app()
celery = app.extensions["celery"]


def _keys() -> tuple[str, str, str]:
    prefix = app.config["REDIS_KEY_PREFIX"]
    return f"{prefix}writes:buffer", f"{prefix}writes:processing", f"{prefix}writes:lock"


def _flag() -> str:
    return app.config["REDIS_KEY_PREFIX"] + "writes:flush-queued"


def buffer_write(payload: dict) -> None:
    """The send side: append the payload to the buffer, then queue one flush."""
    buffer, _, _ = _keys()
    services().redis.rpush(buffer, json.dumps(payload, separators=(",", ":")))
    flush_writes.apply_async()


def buffer_write_coalesced(payload: dict) -> None:
    """The same, queueing a flush only when none is queued yet (a flag set with NX).

    The flusher clears the flag before it drains, so a payload pushed after its last take
    finds the flag clear and queues the next flush; the flag's TTL bounds the wait should a
    queued flush ever be lost."""
    redis = services().redis
    buffer, _, _ = _keys()
    redis.rpush(buffer, json.dumps(payload, separators=(",", ":")))
    if redis.set(_flag(), 1, nx=True, ex=30):
        flush_writes.apply_async()


@celery.task(name="bench.flush_writes", acks_late=True, reject_on_worker_lost=True)
def flush_writes() -> int:
    """Store what has queued up, K at a time; most runs in a burst find the buffer empty.

    One flusher at a time holds a lease; a flusher that outlived its lease stores its batch
    (harmless: idempotent) but leaves the processing list to the new owner."""
    redis = services().redis
    take, done = redis.register_script(_TAKE), redis.register_script(_DONE)
    buffer, processing, lock = _keys()
    token = uuid.uuid4().hex
    redis.delete(_flag())
    if not redis.set(lock, token, nx=True, px=LEASE_MS):
        return 0  # the lease holder drains the buffer, and checks it again before leaving
    stored = 0
    try:
        for _ in range(MAX_BATCHES_PER_RUN):
            items = take(keys=[buffer, processing], args=[BATCH])
            if not items:
                break
            stored += store_messages([json.loads(raw) for raw in items])
            if not done(keys=[lock, processing], args=[token, LEASE_MS]):
                return stored
    finally:
        if redis.get(lock) == token.encode():
            redis.delete(lock)
    if redis.llen(buffer):  # arrived after the last take, while others saw the lease held
        flush_writes.apply_async()
    return stored


@celery.task(name="bench.store_one", acks_late=True, reject_on_worker_lost=True)
def store_one(payload: dict) -> int:
    """One task, one insert: the shape of the production store_message task."""
    return store_messages([payload])
