"""Presence: who has a live socket, correct across web processes and when one dies.

Each socket of a user is a field of a Redis hash (``<prefix>presence:<user id>``) whose value is
the time it stops counting. Connecting and the client's heartbeat push that time forward; a
process that dies stops refreshing its sockets, so its users go offline within
CHAT_PRESENCE_TTL seconds.

Who hears a change (``audience``): the rooms of the user's direct conversations and of groups
of at most CHAT_PRESENCE_PUSH_MAX_MEMBERS members, the direct peers' personal rooms, and the
sockets that subscribed to the user (``presence_room``). A bigger room hears nothing pushed, so
a member coming or going costs no delivery per member there: its pages subscribe to the members
they show (``subscribe``), at most SUBSCRIBE_MAX users per socket.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime

from flask import current_app

from simplechat.answers import TIMESTAMP_FORMAT, error
from simplechat.extensions import socketio
from simplechat.infra.membership import membership, valid_conversation_id
from simplechat.infra.redis_client import Batch
from simplechat.infra.services import built_once, services
from simplechat.realtime.rooms import (
    NAMESPACE,
    PRESENCE_ROOM_PREFIX,
    presence_room,
    room,
    user_room,
)

log = logging.getLogger(__name__)

HEARTBEAT_INTERVAL = 25  # what the browser client uses; CHAT_PRESENCE_TTL must exceed it
SUBSCRIBE_MAX = 100  # users one socket may subscribe to (presence_subscribe), and ask about

# KEYS: hash, last-seen key. ARGV: sid, now, expires_at, key ttl.
# Returns 1 if the user had no live socket before this one.
_TOUCH = """
local now = tonumber(ARGV[2])
local was_online = 0
local fields = redis.call('HGETALL', KEYS[1])
for i = 1, #fields, 2 do
  if tonumber(fields[i + 1]) > now then
    if fields[i] ~= ARGV[1] then was_online = 1 end
  else
    redis.call('HDEL', KEYS[1], fields[i])
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[4]))
redis.call('SET', KEYS[2], ARGV[2])
return 1 - was_online
"""

# KEYS: hash, last-seen key. ARGV: sid, now. Returns 1 if no live socket is left.
_DROP = """
local now = tonumber(ARGV[2])
redis.call('HDEL', KEYS[1], ARGV[1])
local fields = redis.call('HGETALL', KEYS[1])
for i = 1, #fields, 2 do
  if tonumber(fields[i + 1]) > now then return 0 end
end
redis.call('SET', KEYS[2], ARGV[2])
return 1
"""


# KEYS: hash, last-seen key, for each user. ARGV: now. Returns, for each user, 1 and "" when
# online, else 0 and the last-seen time ("" if never seen): one round trip, however many users.
_STATUS = """
local now = tonumber(ARGV[1])
local result = {}
for i = 1, #KEYS, 2 do
  local online = 0
  for _, until_ in ipairs(redis.call('HVALS', KEYS[i])) do
    if tonumber(until_) > now then online = 1; break end
  end
  result[#result + 1] = online
  result[#result + 1] = online == 1 and '' or (redis.call('GET', KEYS[i + 1]) or '')
end
return result
"""


def status_after(came_online: bool, last_seen: float | None = None) -> dict:
    """A user's status right after ``touch`` brought them online or ``drop`` took them offline
    at ``last_seen``: what ``status`` would answer, without asking again."""
    return {"online": came_online, "last_seen": None if came_online else _format(last_seen)}


def _format(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, tz=UTC).strftime(TIMESTAMP_FORMAT)


class RedisPresence:
    def __init__(self, redis, prefix: str, ttl: int):
        self._redis = redis
        self._prefix = prefix
        self._ttl = ttl
        self._touch = redis.register_script(_TOUCH)
        self._drop = redis.register_script(_DROP)
        self._status = redis.register_script(_STATUS)

    def _keys(self, user_id: int) -> list[str]:
        return [f"{self._prefix}presence:{user_id}", f"{self._prefix}lastseen:{user_id}"]

    def touch(self, user_id: int, sid: str) -> bool:
        """Mark a socket live; True if the user just came online."""
        now = time.time()
        return bool(self._touch(keys=self._keys(user_id),
                                args=[sid, now, now + self._ttl, self._ttl * 2]))

    def queue_touch(self, batch: Batch, user_id: int, sid: str) -> int:
        """``touch`` as a step of a batch (a Batch); its reply goes to ``touched``."""
        now = time.time()
        return batch.script(self._touch, self._keys(user_id),
                            [sid, now, now + self._ttl, self._ttl * 2])

    @staticmethod
    def touched(reply) -> bool:
        if isinstance(reply, Exception):
            raise reply
        return bool(reply)

    def drop(self, user_id: int, sid: str) -> float | None:
        """Forget a socket; when the user has no live socket left, the last-seen time."""
        now = time.time()
        return now if self._drop(keys=self._keys(user_id), args=[sid, now]) else None

    def queue_drop(self, batch: Batch, user_id: int, sid: str) -> tuple[int, float]:
        """``drop`` as a step of a batch; its index and time go to ``dropped``."""
        now = time.time()
        return batch.script(self._drop, self._keys(user_id), [sid, now]), now

    @staticmethod
    def dropped(reply, now: float) -> float | None:
        if isinstance(reply, Exception):
            raise reply
        return now if reply else None

    def sids(self, user_id: int) -> list[str]:
        now = time.time()
        fields = self._redis.hgetall(self._keys(user_id)[0])
        return [sid.decode() for sid, until in fields.items() if float(until) > now]

    def live_count(self) -> int:
        """Live sockets of all users on every process."""
        now = time.time()
        total = 0
        for key in self._redis.scan_iter(match=f"{self._prefix}presence:*", count=1000):
            total += sum(1 for until in self._redis.hvals(key) if float(until) > now)
        return total

    def status(self, user_ids: list[int]) -> dict[int, dict]:
        if not user_ids:
            return {}
        return self.status_from(user_ids, self._status(
            keys=[k for uid in user_ids for k in self._keys(uid)], args=[time.time()]))

    def queue_status(self, batch: Batch, user_ids: list[int]) -> int:
        """``status`` as a step of a batch (``user_ids`` not empty); its reply goes to
        ``status_from``."""
        return batch.script(self._status, [k for uid in user_ids for k in self._keys(uid)],
                            [time.time()])

    @staticmethod
    def status_from(user_ids: list[int], replies) -> dict[int, dict]:
        if isinstance(replies, Exception):
            raise replies
        result = {}
        for i, uid in enumerate(user_ids):
            online, seen = replies[2 * i], replies[2 * i + 1]
            result[uid] = {"online": bool(online),
                           "last_seen": None if online or not seen else _format(float(seen))}
        return result


class MemoryPresence:
    """The same, kept in this process, for the single-process embedded default."""

    def __init__(self, ttl: int):
        self._ttl = ttl
        self._sockets: dict[int, dict[str, float]] = {}
        self._seen: dict[int, float] = {}
        self._lock = threading.Lock()

    def _live(self, user_id: int, now: float) -> dict[str, float]:
        live = {s: t for s, t in self._sockets.get(user_id, {}).items() if t > now}
        self._sockets[user_id] = live
        return live

    def touch(self, user_id: int, sid: str) -> bool:
        now = time.time()
        with self._lock:
            live = self._live(user_id, now)
            came_online = not any(s != sid for s in live)
            live[sid] = now + self._ttl
            self._seen[user_id] = now
        return came_online

    def drop(self, user_id: int, sid: str) -> float | None:
        now = time.time()
        with self._lock:
            live = self._live(user_id, now)
            live.pop(sid, None)
            if live:
                return None
            self._seen[user_id] = now
            return now

    def sids(self, user_id: int) -> list[str]:
        with self._lock:
            return list(self._live(user_id, time.time()))

    def live_count(self) -> int:
        now = time.time()
        with self._lock:
            return sum(len(self._live(uid, now)) for uid in list(self._sockets))

    def status(self, user_ids: list[int]) -> dict[int, dict]:
        now = time.time()
        with self._lock:
            result = {}
            for uid in user_ids:
                online = bool(self._live(uid, now))
                result[uid] = {"online": online,
                               "last_seen": None if online else _format(self._seen.get(uid))}
            return result


def presence() -> RedisPresence | MemoryPresence:
    """This app's presence tracker, built on first use."""
    def build(app) -> RedisPresence | MemoryPresence:
        redis, ttl = services().redis, app.config["CHAT_PRESENCE_TTL"]
        return (RedisPresence(redis, app.config["REDIS_KEY_PREFIX"], ttl) if redis is not None
                else MemoryPresence(ttl))

    return built_once("simplechat.presence", build)


def audience(user_id: int) -> list[str]:
    """The rooms that hear of the user's presence: the user's direct conversations and small
    groups (their chat pages), the direct peers' personal rooms (their conversation lists show a
    dot for them, with no room joined) and the user's subscribers; never a big group's room.
    From the membership cache, in one read."""
    return _rooms_of(user_id, membership().presence_audience(user_id))


def queue_audience(batch: Batch, user_id: int) -> int:
    """``audience`` as a step of a batch (a Batch); its reply goes to
    ``audience_from``."""
    return membership().queue_presence_audience(batch, user_id)


def audience_from(user_id: int, reply) -> list[str]:
    """``audience`` from a batch's reply (read from SQL when the cache did not have it)."""
    return _rooms_of(user_id, membership().presence_audience_from(user_id, reply))


def _rooms_of(user_id: int, found: tuple[list[int], set[int]]) -> list[str]:
    conversation_ids, peers = found
    return ([room(cid) for cid in conversation_ids] + [user_room(uid) for uid in sorted(peers)]
            + [presence_room(user_id)])


# Set by init_socketio when the fan-out's channels live on the app's own Redis (one server,
# room by room): a presence room's subscribers can then be counted in a batch of the app's.
FOLLOWERS_COUNTABLE = "simplechat.presence.followers_countable"


def queue_followers(batch: Batch, user_id: int) -> int | None:
    """How many web processes hold a socket that follows the user's presence (``subscribe``),
    as a step of a batch: PUBSUB NUMSUB of the presence room's channel (a process subscribes
    to it while one of its sockets is in the room). None when it cannot be counted so (no
    Redis, the stock broadcast fan-out, another Redis, a cluster): the room is then taken as
    followed. Queue it after the presence change: a socket that starts following after this
    count reads the status after its subscription is confirmed, so it sees the change."""
    if not current_app.extensions.get(FOLLOWERS_COUNTABLE):
        return None
    return batch.command("PUBSUB", "NUMSUB",
                         socketio.server.manager.channel_of(NAMESPACE, presence_room(user_id)))


def heard_by(user_id: int, rooms: list[str], followers) -> list[str]:
    """``rooms`` (an ``audience``) without the user's presence room when ``followers``, the
    reply to ``queue_followers`` (None: not asked), says no process follows it: a user in big
    rooms only, whom no page follows, is then announced to nobody, with no publish at all."""
    if followers is None or isinstance(followers, Exception):
        return rooms
    try:
        _channel, count = followers  # PUBSUB NUMSUB's reply: [channel, subscribers]
    except (TypeError, ValueError):
        return rooms
    if count:
        return rooms
    quiet = presence_room(user_id)
    return [name for name in rooms if name != quiet]


def statuses(user_ids: list[int]) -> dict[str, dict]:
    """Each user's status, keyed by the id as a string (as answered); empty when the tracker
    cannot answer (presence is a nicety)."""
    try:
        return {str(uid): status for uid, status in presence().status(user_ids).items()}
    except Exception:
        log.warning("presence unavailable", exc_info=True)
        return {}


def asked_user_ids(value: object) -> list[int] | None:
    """The user ids of a presence request, each once in the order given: a list of at most
    SUBSCRIBE_MAX positive 64-bit integers; None for anything else."""
    if (not isinstance(value, list) or len(value) > SUBSCRIBE_MAX
            or not all(valid_conversation_id(uid) for uid in value)):
        return None
    return list(dict.fromkeys(value))


def subscribe(sid: str, user_id: int, conversation_id: object, user_ids: object) -> dict:
    """``presence_subscribe``: the socket's presence subscriptions become the members of the
    conversation among ``user_ids`` (the caller must be one too); the answer holds their
    current status. The rooms are joined before the status is read, so a change after the read
    is pushed, and none between is lost."""
    if not valid_conversation_id(conversation_id):
        return error("invalid")
    wanted = asked_user_ids(user_ids)
    if wanted is None:
        return error("invalid")
    members = membership().members_among(conversation_id, [user_id, *wanted])
    if user_id not in members:
        return error("forbidden")
    present = set(members)
    kept = [uid for uid in wanted if uid in present]
    new_rooms = {presence_room(uid) for uid in kept}
    server = socketio.server
    for name in server.rooms(sid, namespace=NAMESPACE):
        if name.startswith(PRESENCE_ROOM_PREFIX) and name not in new_rooms:
            server.leave_room(sid, name, namespace=NAMESPACE)
    held = set(server.rooms(sid, namespace=NAMESPACE))
    for name in sorted(new_rooms - held):
        server.enter_room(sid, name, namespace=NAMESPACE)
    return {"ok": True, "presence": statuses(kept)}
