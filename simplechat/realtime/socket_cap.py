"""How many ``/chat`` sockets each user holds open, on every web process, so that a socket past
CHAT_MAX_SOCKETS_PER_USER is refused at connect.

With Redis, each user's sockets are the fields of a hash (``<prefix>user-sockets:<user id>``:
socket id → the id of the process holding it), and each process keeps a lease key
(``<prefix>socket-lease:<process id>``) alive while it holds sockets. Admitting a socket is one
Lua script, so two processes admitting at once cannot both take the last place: it drops the
fields of processes whose lease has lapsed (a process that died; its sockets stop counting
within CHAT_PRESENCE_TTL seconds), counts the rest and adds the socket if there is room. The
count does not depend on clients sending anything (heartbeat or not). The embedded default
keeps the same in process.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections.abc import Callable

from simplechat.extensions import socketio
from simplechat.infra.redis_client import Batch
from simplechat.infra.services import built_once, services

log = logging.getLogger(__name__)

USER_KEY_TTL = 24 * 3600  # a user's hash outlives its last connect by a day at most

# KEYS: the user's hash, this process's lease. ARGV: socket id, process id, cap, lease ttl,
# lease key prefix, hash ttl. Returns {1 if admitted else 0, live sockets before this one}.
# The leases of other processes are read by name (KEYS cannot list them before the hash is
# read): fine on one Redis server, which is what REDIS_URL is.
_ADMIT = """
redis.call('SET', KEYS[2], '1', 'EX', tonumber(ARGV[4]))
local fields = redis.call('HGETALL', KEYS[1])
local live, alive = 0, {}
for i = 1, #fields, 2 do
  local sid, process = fields[i], fields[i + 1]
  if sid == ARGV[1] then return {1, 0} end
  if alive[process] == nil then
    alive[process] = redis.call('EXISTS', ARGV[5] .. process) == 1
  end
  if alive[process] then live = live + 1 else redis.call('HDEL', KEYS[1], sid) end
end
if live >= tonumber(ARGV[3]) then return {0, live} end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[6]))
return {1, live}
"""


class RedisSocketCap:
    """The sockets of every user on every process, in Redis (see the module's docstring)."""

    def __init__(self, redis, prefix: str, cap: int, lease_ttl: int,
                 start: Callable[..., object], sleep: Callable[[float], object]):
        self._redis = redis
        self._prefix = prefix
        self.cap = cap
        self._lease_ttl = max(int(lease_ttl), 3)
        self._start = start
        self._sleep = sleep
        self.process_id = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self._admit = redis.register_script(_ADMIT)
        self._held: dict[str, int] = {}  # the sockets this process admitted → their user
        self._renewing = False
        self._lock = threading.Lock()

    def _user_key(self, user_id: int) -> str:
        return f"{self._prefix}user-sockets:{user_id}"

    @property
    def lease_key(self) -> str:
        return f"{self._prefix}socket-lease:{self.process_id}"

    def admit(self, user_id: int, sid: str) -> bool:
        """Count this socket for its user if the user holds fewer than the cap; False if not."""
        return self.admitted(user_id, sid, self._admit(*self._admit_call(user_id, sid)))

    def queue_admit(self, batch: Batch, user_id: int, sid: str) -> int:
        """``admit`` as a step of a batch (a Batch); its reply goes to ``admitted``."""
        return batch.script(self._admit, *self._admit_call(user_id, sid))

    def _admit_call(self, user_id: int, sid: str) -> tuple[list, list]:
        return ([self._user_key(user_id), self.lease_key],
                [sid, self.process_id, self.cap, self._lease_ttl,
                 f"{self._prefix}socket-lease:", USER_KEY_TTL])

    def admitted(self, user_id: int, sid: str, reply) -> bool:
        """Whether the admit step let the socket in (an error reply raises)."""
        if isinstance(reply, Exception):
            raise reply
        admitted, _live = reply
        if admitted:
            with self._lock:
                self._held[sid] = user_id
                start = not self._renewing
                self._renewing = True
            if start:
                self._start(self._renew)
        return bool(admitted)

    def release(self, sid: str) -> None:
        """Stop counting a socket this process admitted (nothing for any other)."""
        with self._lock:
            user_id = self._held.pop(sid, None)
        if user_id is not None:
            self._redis.hdel(self._user_key(user_id), sid)

    def queue_release(self, batch: Batch, sid: str) -> None:
        """``release`` as a step of a batch."""
        with self._lock:
            user_id = self._held.pop(sid, None)
        if user_id is not None:
            batch.command("HDEL", self._user_key(user_id), sid)

    def sids(self, user_id: int) -> set[str]:
        """The sockets counted for a user (those of a dead process too, until the next admit)."""
        return {s.decode() for s in self._redis.hkeys(self._user_key(user_id))}

    def _renew(self) -> None:
        """Keep this process's lease while it holds sockets; the task ends when it holds none
        (the next admit sets the lease again, and starts it again)."""
        while True:
            self._sleep(self._lease_ttl / 3)
            with self._lock:
                if not self._held:
                    self._renewing = False
                    return
            try:
                self._redis.set(self.lease_key, "1", ex=self._lease_ttl)
            except Exception:
                log.warning("socket lease %s not renewed", self.lease_key, exc_info=True)


class MemorySocketCap:
    """The same in this process, for the single-process embedded default."""

    def __init__(self, cap: int):
        self.cap = cap
        self._sockets: dict[int, set[str]] = {}
        self._users: dict[str, int] = {}
        self._lock = threading.Lock()

    def admit(self, user_id: int, sid: str) -> bool:
        with self._lock:
            held = self._sockets.setdefault(user_id, set())
            if sid not in held and len(held) >= self.cap:
                return False
            held.add(sid)
            self._users[sid] = user_id
            return True

    def release(self, sid: str) -> None:
        with self._lock:
            user_id = self._users.pop(sid, None)
            held = self._sockets.get(user_id) if user_id is not None else None
            if held is not None:
                held.discard(sid)
                if not held:
                    del self._sockets[user_id]

    def sids(self, user_id: int) -> set[str]:
        with self._lock:
            return set(self._sockets.get(user_id, ()))


def socket_cap() -> RedisSocketCap | MemorySocketCap | None:
    """This app's per-user socket count, built on first use; None when there is no cap
    (CHAT_MAX_SOCKETS_PER_USER = 0)."""
    def build(app) -> RedisSocketCap | MemorySocketCap | bool:
        cap = app.config["CHAT_MAX_SOCKETS_PER_USER"]
        if cap <= 0:
            return False  # kept, so that the setting is read once
        redis = services().redis
        if redis is None:
            return MemorySocketCap(cap)
        return RedisSocketCap(redis, app.config["REDIS_KEY_PREFIX"], cap,
                              app.config["CHAT_PRESENCE_TTL"], socketio.start_background_task,
                              socketio.sleep)

    return built_once("simplechat.socket_cap", build) or None
