"""Socket.IO fan-out by room over Redis: each emit is published to the channels of the rooms it
names, and a process subscribes to a room's channel only while it holds a socket in that room.

``SOCKETIO_FANOUT=rooms`` (the default) uses :class:`RoomFanoutManager`; ``broadcast`` keeps
python-socketio's stock ``RedisManager``, which sends every emit to every process. Channels, for
the Redis key prefix ``P`` (``REDIS_KEY_PREFIX`` + "socketio"):

- ``P/chat#<room>``: emits naming the room, and (for a socket's own room, its sid) the
  disconnect, enter_room and leave_room requests and callbacks addressed to that socket;
- ``P/chat``: emits to the whole namespace (no room), held by every process with a socket there,
  and emits naming more than WIDE_EMIT_ROOMS rooms (a message to a big channel names its room
  and each member's own): one copy to every such process, which delivers it to its sockets in
  any of the rooms named, instead of one publish per room and one copy per room held;
- ``P@<host_id>``: acknowledgements returning to the process that asked for them.

Channels are spread over several Redis servers by CRC-32 of the channel name (a comma-separated
``SOCKETIO_MESSAGE_QUEUE``), or over a Redis Cluster's primaries by its key slot with sharded
pub/sub (``SOCKETIO_REDIS_CLUSTER=1``: ``SPUBLISH``/``SSUBSCRIBE``). With ``REDIS_SENTINELS``
the one server is whichever the sentinels name primary, found again after a failover.

A socket event's answer goes out before its own process's share of a wide emit: the sender of a
message to a channel of 5,000 is answered first, then the 5,000 copies are queued (other
processes get the publish at once, as before). See ``answer_first.py``.

What is published while a listener is cut off (Redis restarted, failed over) never reaches its
process: once it has subscribed again, the process sends ``resync {}`` to each of its sockets,
and clients catch up with ``join`` + ``after``.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any
from urllib.parse import urlparse

import hiredis
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from socketio import Manager, PubSubManager, RedisManager

from simplechat.infra import fastjson
from simplechat.infra.redis_client import QuickPool, Sentinels, connection_options
from simplechat.realtime.answer_first import AnswerFirst, is_wide

log = logging.getLogger(__name__)

FANOUT_MODES = ("rooms", "broadcast")
SUBSCRIBE_WAIT = 3.0  # seconds a join waits at most for Redis to confirm its subscription
RETRY_FIRST, RETRY_MAX = 0.1, 2.0  # the listener's reconnect backoff, in seconds
QUIET_PING = 15.0  # a listener that heard nothing this long sends PING; no answer: reconnect
RECENT_EMITS = 10_000  # emit ids remembered to drop a second copy (see RecentIds)
REDIS_SCHEMES = ("redis", "rediss", "unix")
# ARGV: the payload, then the channels. Publishes the payload to each channel.
PUBLISH_EACH = """
for i = 2, #ARGV do
    redis.call('PUBLISH', ARGV[i], ARGV[1])
end
return #ARGV - 1
"""
READ_BLOCK = 65536  # bytes the listener asks its socket for at a time
# Sent (PING <this>) after the subscriptions of a listener that connected again: its answer
# comes after every subscription's confirmation, and the process then tells its sockets.
RESUBSCRIBED = b"simplechat-resubscribed"
RESYNC_EVENT = "resync"


def client_manager(config: dict, queue_url: str) -> PubSubManager | None:
    """The Socket.IO client manager for ``queue_url`` (one URL or a comma-separated list);
    None for a queue that is not Redis (Flask-SocketIO then picks one by the URL)."""
    mode = config.get("SOCKETIO_FANOUT") or "rooms"
    if mode not in FANOUT_MODES:
        raise ValueError(f"SOCKETIO_FANOUT must be one of {', '.join(FANOUT_MODES)}: {mode!r}")
    urls = [url.strip() for url in queue_url.split(",") if url.strip()]
    cluster = bool(config.get("SOCKETIO_REDIS_CLUSTER"))
    channel = config["REDIS_KEY_PREFIX"] + "socketio"
    sentinels = Sentinels.from_config(config)
    schemes = {urlparse(url).scheme for url in urls}
    if not schemes <= set(REDIS_SCHEMES):
        if len(urls) == 1 and not cluster:
            return None
        raise ValueError(f"SOCKETIO_MESSAGE_QUEUE: only redis:// URLs can be listed: {urls!r}")
    if sentinels is not None and (len(urls) > 1 or cluster):
        raise ValueError("REDIS_SENTINELS name one primary: SOCKETIO_MESSAGE_QUEUE takes one "
                         "URL, and no Redis Cluster")
    if mode == "broadcast":
        if len(urls) > 1 or cluster:
            raise ValueError("several Redis servers or a Redis Cluster need SOCKETIO_FANOUT=rooms")
        url = urls[0]
        if sentinels is not None:
            return ResyncingRedisManager(
                sentinels.socketio_url(url), channel=channel,
                redis_options={"sentinel_kwargs": sentinels.sentinel_options(),
                               "socket_connect_timeout": 2})
        return ResyncingRedisManager(url, channel=channel, redis_options=connection_options(url))
    if cluster and len(urls) > 1:
        raise ValueError("SOCKETIO_REDIS_CLUSTER=1 takes one URL: any node of the cluster")
    return RoomFanoutManager(urls, channel=channel, cluster=cluster, json=fastjson,
                             sentinels=sentinels)


def tell_to_resync(manager: Manager) -> int:
    """Send ``resync {}`` to every socket of this process (not through Redis: each process
    tells its own); how many sockets were told."""
    told = 0
    for namespace in list(manager.get_namespaces()):
        sockets = len(manager.rooms.get(namespace, {}).get(None, ()))
        if sockets:
            Manager.emit(manager, RESYNC_EVENT, {}, namespace=namespace)
            told += sockets
    log.info("subscribed to Redis again: told %d socket(s) to resync", told)
    return told


class ResyncingRedisManager(RedisManager):
    """python-socketio's stock Redis manager (SOCKETIO_FANOUT=broadcast) that tells its sockets
    to resync once its listener has subscribed again after a lost connection."""

    def _redis_connect(self):
        super()._redis_connect()
        # Confirmations are read (and dropped by ``_listen``): the second one is a resubscribe.
        self.pubsub = self.redis.pubsub(ignore_subscribe_messages=False)

    def _redis_listen_with_retries(self):
        confirmations = 0
        for message in super()._redis_listen_with_retries():
            if isinstance(message, dict) and message.get("type") == "subscribe":
                confirmations += 1
                if confirmations > 1:
                    tell_to_resync(self)
            yield message


class RecentIds:
    """The last ``size`` ids seen, to tell a first copy from a repeat."""

    def __init__(self, size: int):
        self._order: deque = deque()
        self._ids: set = set()
        self._size = size
        self._lock = threading.Lock()

    def add(self, key: Any) -> bool:
        """Remember ``key``; False if it was remembered already."""
        with self._lock:
            if key in self._ids:
                return False
            if len(self._order) >= self._size:
                self._ids.discard(self._order.popleft())
            self._order.append(key)
            self._ids.add(key)
            return True


class Shard:
    """One Redis server (or one primary of a cluster): a client to publish on, and one
    subscriber connection read by one green thread, shared by every channel of this shard.

    Subscriptions are counted per channel (one count per local socket in the room, plus the
    process's own channel): the first hold sends SUBSCRIBE, the last release UNSUBSCRIBE, both
    under one lock so the commands reach Redis in the order of the counts. Every SUBSCRIBE sent
    queues an event that Redis's confirmation sets, so a join can wait until messages published
    from then on will reach this process."""

    def __init__(self, url: str, sharded: bool = False, client_name: str | None = None,
                 sentinels: Sentinels | None = None):
        self.url = url if sentinels is None else f"{sentinels.master} (sentinels)"
        # One quick retry: a send waits for a publish, and redis-py's default backs off for
        # seconds while a server is down (the clients catch up with join + after instead).
        publishing = {"retry": Retry(NoBackoff(), 1), "socket_connect_timeout": 2}
        # CLIENT LIST shows the subscriber by this name (the tests find it so, to kill it).
        listening = {"socket_keepalive": True, "socket_timeout": QUIET_PING,
                     "client_name": client_name}
        if sentinels is not None:  # each connection asks them where the primary is
            self.client = redis.Redis(connection_pool=sentinels.pool(url, **publishing))
            self._pool = sentinels.pool(url, **listening)
        else:
            options = connection_options(url)
            self.client = redis.Redis.from_pool(QuickPool.from_url(url, **publishing,
                                                                   **options))
            self._pool = QuickPool.from_url(url, **listening, **options)
        self.sharded = sharded
        prefix = "S" if sharded else ""
        self._publish, self._subscribe, self._unsubscribe = (
            prefix + "PUBLISH", prefix + "SUBSCRIBE", prefix + "UNSUBSCRIBE")
        # A script may publish only to channels of its own slot on a cluster: a pipeline there.
        self._fan_script = None if sharded else self.client.register_script(PUBLISH_EACH)
        self._held: dict[bytes, int] = {}
        self._ready: dict[bytes, threading.Event] = {}
        self._pending: dict[bytes, deque[threading.Event]] = {}
        self._lock = threading.Lock()
        self._conn = None
        self._closed = False
        self._listening = False
        self._backoff = RETRY_FIRST
        self._resubscribed: Callable[[], None] | None = None

    def start_listening(self) -> bool:
        """True the first time only: the caller then starts the one listener of this shard."""
        with self._lock:
            first, self._listening = not self._listening, True
            return first

    def publish(self, channels: list[bytes], payload: bytes) -> None:
        """One round trip for every channel of this shard: one command, a script that
        publishes to each channel (a pipeline of PUBLISH commands costs 2.6 times the client's
        CPU for the 51 channels of a message in a conversation of 50), or, on a cluster, or a
        server that refuses scripts, a pipeline."""
        if len(channels) == 1:
            self.client.execute_command(self._publish, channels[0], payload)
            return
        if self._fan_script is not None:
            try:
                self._fan_script(args=[payload, *channels])
                return
            except redis.ResponseError as exc:  # NOSCRIPT is handled by the script itself
                log.warning("Redis %s refused the publishing script (%s); publishing with a "
                            "pipeline from now on", self.url, exc)
                self._fan_script = None
        with self.client.pipeline(transaction=False) as pipe:
            for channel in channels:
                pipe.execute_command(self._publish, channel, payload)
            pipe.execute()

    def start_publish(self, channels: list[bytes], payload: bytes
                      ) -> tuple | redis.RedisError | None:
        """Send what :meth:`publish` would, without waiting for the answer: the connection it
        went out on, how many answers to read and whether it was the script. None when a
        pooled connection failed to send (:meth:`finish_publish` then publishes the ordinary
        way, as redis-py retries a stale connection); the error when the server could not be
        reached at all (not tried again: a send must not wait twice for a server that is
        down)."""
        scripted = len(channels) > 1 and self._fan_script is not None
        if len(channels) == 1:
            commands = [(self._publish, channels[0], payload)]
        elif scripted:
            commands = [("EVALSHA", self._fan_script.sha, 0, payload, *channels)]
        else:
            commands = [(self._publish, channel, payload) for channel in channels]
        pool = self.client.connection_pool
        try:
            conn = pool.get_connection()
        except redis.RedisError as exc:
            return exc
        try:
            conn.send_packed_command(conn.pack_commands(commands), check_health=False)
        except (redis.RedisError, OSError):
            conn.disconnect()
            pool.release(conn)
            return None
        return conn, len(commands), scripted

    def finish_publish(self, started: tuple | redis.RedisError | None, channels: list[bytes],
                       payload: bytes) -> None:
        """Read the answers of :meth:`start_publish`. A connection lost on the way publishes
        once more the ordinary way, as redis-py's one retry would; so does a script Redis did
        not know (NOSCRIPT after a restart) or refused, which :meth:`publish` handles."""
        if started is None:
            self.publish(channels, payload)
            return
        if isinstance(started, redis.RedisError):
            raise started
        conn, answers, scripted = started
        pool = self.client.connection_pool
        refused: list[redis.ResponseError] = []
        try:
            for _ in range(answers):
                try:
                    conn.read_response()
                except redis.ResponseError as exc:
                    refused.append(exc)
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            conn.disconnect()
            pool.release(conn)
            self.publish(channels, payload)
            return
        pool.release(conn)
        if refused and scripted:
            self.publish(channels, payload)
        elif refused:
            raise refused[0]

    def held(self) -> dict[bytes, int]:
        """Each subscribed channel with its count (a copy)."""
        with self._lock:
            return dict(self._held)

    def hold(self, channel: bytes, wait: bool) -> bool:
        """Count one more holder of ``channel``; subscribe on the first. With ``wait``, return
        once Redis has confirmed the subscription (False if it did not within SUBSCRIBE_WAIT)."""
        ready = self.start_hold(channel)
        return self.confirmed(channel, ready) if wait else True

    def start_hold(self, channel: bytes) -> threading.Event:
        """``hold`` without the wait: the event that Redis's confirmation sets (``confirmed``
        waits for it)."""
        with self._lock:
            count = self._held.get(channel, 0)
            self._held[channel] = count + 1
            if count == 0:
                self._ready[channel] = threading.Event()
                self._pending.setdefault(channel, deque()).append(self._ready[channel])
                self._send(self._subscribe, channel)
            return self._ready[channel]

    def confirmed(self, channel: bytes, ready: threading.Event) -> bool:
        """Wait for ``start_hold``'s event; False if Redis did not confirm within
        SUBSCRIBE_WAIT."""
        if not ready.wait(SUBSCRIBE_WAIT):
            log.warning("Redis %s did not confirm the subscription to %s in %.0f s",
                        self.url, channel.decode(errors="replace"), SUBSCRIBE_WAIT)
            return False
        return True

    def release(self, channel: bytes) -> None:
        """Count one holder less; unsubscribe after the last."""
        with self._lock:
            count = self._held.get(channel, 0)
            if count > 1:
                self._held[channel] = count - 1
            elif count == 1:
                del self._held[channel]
                del self._ready[channel]
                self._send(self._unsubscribe, channel)

    def _send(self, command: str, *channels: bytes) -> None:
        """Send on the subscriber connection (with the lock held); while it is down, the
        listener subscribes every held channel when it reconnects."""
        if self._conn is None:
            return
        try:
            self._conn.send_command(command, *channels, check_health=False)
        except Exception:  # the listener's read fails too, and it reconnects
            log.warning("%s on Redis %s failed", command, self.url, exc_info=True)
            conn, self._conn = self._conn, None  # sending again would open a stray connection
            conn.disconnect()

    def listen(self, deliver: Callable[[bytes, bytes], None],
               resubscribed: Callable[[], None] | None = None) -> None:
        """Read the subscriber connection until ``close()``: messages go to ``deliver(channel,
        payload)``. A lost connection is opened again with backoff and every held channel
        subscribed again; what was published meanwhile is lost, so once Redis has confirmed
        those subscriptions ``resubscribed()`` is called (the process tells its sockets to
        catch up with ``join`` + ``after``). Every connection after the first attempt counts
        as such, a first one that failed included."""
        attempts = 0
        while not self._closed:
            conn = self._pool.make_connection()
            again, attempts = attempts > 0, attempts + 1
            if again:
                self._drop_idle_publishing()
            try:
                conn.connect()
                with self._lock:
                    channels = list(self._held)
                    # The confirmations of these SUBSCRIBEs wake whoever still waits.
                    self._pending = {c: deque([self._ready[c]]) for c in channels}
                    # Sharded: one SSUBSCRIBE per channel, as the channels of one command must
                    # share a slot.
                    groups = [[c] for c in channels] if self.sharded else [channels]
                    commands = [(self._subscribe, *group) for group in groups if group]
                    if again and resubscribed is not None:
                        # Answered after every confirmation above (on a cluster node, only
                        # once it has them all).
                        commands.append(("PING", RESUBSCRIBED))
                    if commands:
                        conn.send_packed_command(conn.pack_commands(commands),
                                                 check_health=False)
                    self._conn = conn
                    self._resubscribed = resubscribed if again else None
                if self._backoff > RETRY_FIRST:
                    log.info("listening to Redis %s again (%d channels)", self.url, len(channels))
                self._read(conn, deliver)
            except Exception as exc:
                if self._closed:
                    break
                log.warning("lost the subscriber connection to Redis %s (%s); retrying in "
                            "%.1f s", self.url, exc, self._backoff)
            finally:
                with self._lock:
                    if self._conn is conn:
                        self._conn = None
                conn.disconnect()
            if not self._closed:
                time.sleep(self._backoff)
                self._backoff = min(self._backoff * 2, RETRY_MAX)

    def _drop_idle_publishing(self) -> None:
        """The subscriber lost its server: the publishing connections may still be on one that
        is no longer the primary (after a failover, PUBLISH on a replica succeeds and reaches
        that replica's subscribers only, so nothing would say it was lost). The idle ones are
        closed: the next publish connects to the server that is the primary now."""
        try:
            self.client.connection_pool.disconnect(inuse_connections=False)
        except Exception:
            log.warning("closing the publishing connections to Redis %s failed", self.url,
                        exc_info=True)

    def _read(self, conn, deliver: Callable[[bytes, bytes], None]) -> None:
        """Read replies off the subscriber connection until it fails.

        The socket is read in blocks into a hiredis reader of its own, not reply by reply
        through redis-py: a process gets a copy of its own emits on every channel they name
        that it holds (the copies it drops at once), so most of what it reads is thrown
        away, and redis-py's path costs about 12 µs a reply against 2.6 µs this way
        (a 51-channel emit in a conversation of 50: 0.6 ms of every send)."""
        sock = conn._sock
        reader = hiredis.Reader()
        pinged = False
        while True:
            reply = reader.gets()
            if reply is False:  # nothing whole is buffered: read the socket
                try:
                    data = sock.recv(READ_BLOCK)
                except TimeoutError:  # the connection's socket_timeout, QUIET_PING
                    if pinged:
                        raise redis.TimeoutError("no answer to PING") from None
                    with self._lock:
                        self._send("PING")
                    pinged = True
                    continue
                if not data:
                    raise redis.ConnectionError("Redis closed the subscriber connection")
                reader.feed(data)
                pinged = False
                self._backoff = RETRY_FIRST  # the connection works: a later loss starts afresh
                continue
            if isinstance(reply, hiredis.ReplyError):
                # A refused (S)SUBSCRIBE: a cluster still down after a restart (CLUSTERDOWN)
                # or a slot elsewhere (MOVED). Subscribe everything again, after the backoff.
                log.error("Redis %s refused a subscription: %s", self.url, reply)
                raise redis.ResponseError(str(reply))
            self._handle(reply, deliver)

    def _handle(self, reply: list | bytes, deliver: Callable[[bytes, bytes], None]) -> None:
        if reply == RESUBSCRIBED:  # PING's answer as this Redis gives it (as to a plain client)
            self._tell_resubscribed()
            return
        kind = reply[0]
        if kind in (b"message", b"smessage"):
            deliver(reply[1], reply[2])
        elif kind in (b"subscribe", b"ssubscribe"):
            with self._lock:
                waiting = self._pending.get(reply[1])
                if waiting:
                    waiting.popleft().set()
                    if not waiting:
                        del self._pending[reply[1]]
        elif kind == b"pong" and reply[1:] == [RESUBSCRIBED]:  # a subscriber's PING answer
            self._tell_resubscribed()
        elif kind == b"sunsubscribe":
            with self._lock:
                still_held = reply[1] in self._held
            if still_held:  # the cluster moved the channel's slot (see README "Scaling out")
                log.warning("Redis %s dropped %s (slot moved); reconnecting", self.url, reply[1])
                raise redis.ConnectionError("slot moved")

    def _tell_resubscribed(self) -> None:
        told, self._resubscribed = self._resubscribed, None
        if told is not None:
            told()

    def close(self) -> None:
        self._closed = True
        with self._lock:
            conn = self._conn
        if conn is not None:
            conn.disconnect()
        self.client.close()


class ShardRouter:
    """Which shard carries a channel: CRC-32 of its name over a fixed list of servers, or the
    cluster primary that owns its key slot."""

    def __init__(self, urls: list[str], cluster: bool = False, client_name: str | None = None,
                 sentinels: Sentinels | None = None):
        self._urls = urls
        self._cluster_mode = cluster
        self._client_name = client_name
        self._fixed = [] if cluster else [Shard(url, client_name=client_name, sentinels=sentinels)
                                          for url in urls]
        self._by_node: dict[str, Shard] = {}
        self._cluster: redis.RedisCluster | None = None
        self._lock = threading.Lock()

    @property
    def cluster(self) -> bool:
        """Whether the channels live on a Redis Cluster (by key slot)."""
        return self._cluster_mode

    def shard_of(self, channel: bytes) -> Shard:
        if not self._cluster_mode:
            return self._fixed[zlib.crc32(channel) % len(self._fixed)]
        with self._lock:
            if self._cluster is None:  # connects: at first use, not when the app is built
                self._cluster = redis.RedisCluster.from_url(self._urls[0])
            node = self._cluster.get_node_from_key(channel)
            shard = self._by_node.get(node.name)
            if shard is None:
                shard = self._by_node[node.name] = Shard(
                    _node_url(self._urls[0], node), sharded=True, client_name=self._client_name)
            return shard

    def shards(self) -> list[Shard]:
        with self._lock:
            return self._fixed + list(self._by_node.values())

    def publish(self, channels: Iterable[bytes], payload: bytes) -> None:
        """One round trip to each server the channels live on. With several, every server's
        command goes out before any answer is read, so the waits overlap: a send costs one
        wait (and one wake-up of a quiet process), not one per server."""
        groups: dict[Shard, list[bytes]] = {}
        for channel in channels:
            groups.setdefault(self.shard_of(channel), []).append(channel)
        if len(groups) == 1:
            for shard, named in groups.items():
                shard.publish(named, payload)
            return
        started = [(shard, named, shard.start_publish(named, payload))
                   for shard, named in groups.items()]
        failed: Exception | None = None
        for shard, named, sent in started:
            try:  # every connection taken is read and given back, whatever one of them did
                shard.finish_publish(sent, named, payload)
            except Exception as exc:
                failed = failed or exc
        if failed is not None:
            raise failed

    def close(self) -> None:
        for shard in self.shards():
            shard.close()
        if self._cluster is not None:
            self._cluster.close()


def _node_url(url: str, node) -> str:
    """``url`` (its scheme and credentials) pointed at one cluster node."""
    parsed = urlparse(url)
    credentials = parsed.netloc.rpartition("@")[0]
    netloc = (credentials + "@" if credentials else "") + f"{node.host}:{node.port}"
    return parsed._replace(netloc=netloc, path="").geturl()


class RoomFanoutManager(AnswerFirst, PubSubManager):
    """python-socketio's pub/sub manager, publishing per room and subscribing per room.

    The process emitting delivers to its own sockets at once (as the stock manager does) and
    publishes one copy per named room; another process gets a copy on each channel it holds.
    Exactly once per socket: the receiver delivers a copy to its local sockets in ANY of the
    rooms named (python-socketio's participant union, so a socket in two of them gets it once)
    and drops later copies of the same emit by its id, kept in a bounded set of recent ids
    (:class:`RecentIds`). Chosen over the stateless "deliver only to sockets whose first room
    of the list is this channel's room" because that rule loses the message for a socket that
    joins an earlier room of the list between the two copies, and doubles it for one that
    leaves. The copies of one emit are published in one pipeline per server, so they arrive
    nearly together; a repeat is missed only after RECENT_EMITS other emits came in between.
    Emits naming one room carry no id and cost no bookkeeping.

    An external process (Celery, the CLI) never initializes the manager: it only publishes,
    per room like the web processes.
    """

    name = "redis-rooms"

    def __init__(self, urls: list[str], channel: str = "socketio", cluster: bool = False,
                 write_only: bool = False, logger=None, json=None,
                 sentinels: Sentinels | None = None):
        super().__init__(channel=channel, write_only=write_only, logger=logger, json=json)
        self.subscriber_name = f"{channel}-listener-{self.host_id[:12]}"
        self.router = ShardRouter(urls, cluster, self.subscriber_name, sentinels)
        self._sender = self.host_id.encode()
        self._host_channel = self._channel_of_host(self.host_id)
        self._emit_ids = itertools.count(1)
        self._seen = RecentIds(RECENT_EMITS)
        self._on_listener = threading.local()
        self._entering = threading.local()  # enter_rooms' waits, while it enters the rooms
        self.listening = False

    # ----- channels

    def channel_of(self, namespace: str, room: str | None) -> bytes:
        """The channel of a room (None: the whole namespace)."""
        if room is None:
            return f"{self.channel}{namespace}".encode()
        return f"{self.channel}{namespace}#{room}".encode()

    def _channel_of_host(self, host_id: str) -> bytes:
        return f"{self.channel}@{host_id}".encode()

    # ----- subscriptions follow the local rooms

    def initialize(self):
        super(PubSubManager, self).initialize()  # not the stock single-channel listener
        if not self.write_only:
            self.listening = True
            self._hold(self._host_channel, wait=True)
        self._get_logger().info("%s backend initialized.", self.name)

    def _hold(self, channel: bytes, wait: bool) -> None:
        shard = self.router.shard_of(channel)
        if shard.start_listening():
            self.server.start_background_task(self._listen, shard)
        # A listener must not wait for a confirmation only it can read.
        wait = wait and not getattr(self._on_listener, "active", False)
        waits = getattr(self._entering, "waits", None)
        if wait and waits is not None:
            waits.append((shard, channel, shard.start_hold(channel)))
        else:
            shard.hold(channel, wait)

    def enter_rooms(self, sid: str, namespace: str, rooms: list[str]) -> None:
        """Put a socket in several rooms at once: the SUBSCRIBEs of the rooms new to this
        process all go out before any confirmation is awaited, so a connect that subscribes
        its user's room and its login's waits for one round trip, not one per room."""
        self._entering.waits = waits = []
        try:
            for room in rooms:
                self.enter_room(sid, namespace, room)
        finally:
            self._entering.waits = None
        for shard, channel, ready in waits:
            shard.confirmed(channel, ready)

    def basic_enter_room(self, sid, namespace, room, eio_sid=None):
        present = sid in self.rooms.get(namespace, {}).get(room, ())
        super().basic_enter_room(sid, namespace, room, eio_sid=eio_sid)
        if not present and self.listening:
            # A named room waits for Redis's confirmation, so that a join answered afterwards
            # misses nothing published later; a socket's own room and the namespace's cannot
            # be addressed before the connection is accepted.
            self._hold(self.channel_of(namespace, room), wait=room is not None and room != sid)

    def basic_leave_room(self, sid, namespace, room):
        present = sid in self.rooms.get(namespace, {}).get(room, ())
        super().basic_leave_room(sid, namespace, room)
        if present and self.listening:
            self.router.shard_of(self.channel_of(namespace, room)).release(
                self.channel_of(namespace, room))

    # ----- a socket event's answer before its wide fan-out (AnswerFirst)

    def emit(self, event, data, namespace=None, room=None, skip_sid=None, callback=None,
             to=None, **kwargs):
        if kwargs.get("ignore_queue") and callback is None:  # local only: PubSubManager
            held = self.holding(wide=False)  # delivers it at once, through no _handle_emit
            if held is not None:
                held.append(partial(super().emit, event, self.kept(data),
                                    namespace=namespace, room=room, skip_sid=skip_sid,
                                    to=to, **kwargs))
                return None
        return super().emit(event, data, namespace=namespace, room=room, skip_sid=skip_sid,
                            callback=callback, to=to, **kwargs)

    def _handle_emit(self, message: dict) -> None:
        if message.get("host_id") == self.host_id and message.get("callback") is None:
            held = self.holding(is_wide(message.get("room")))
            if held is not None:
                held.append(partial(super()._handle_emit,
                                    dict(message, data=self.kept(message["data"]))))
                return
        super()._handle_emit(message)

    # ----- publishing

    def _channels_for(self, message: dict) -> list[bytes]:
        method = message["method"]
        namespace = message.get("namespace") or "/"
        if method == "emit":
            room = message.get("room")
            rooms = list(dict.fromkeys(room)) if isinstance(room, (list, tuple)) else [room]
            if is_wide(rooms):
                # One copy per process, not one per room: a channel of 5,000 members named
                # 5,001 rooms, each copy carrying the whole list, and the emitting process read
                # back a copy for every member it held.
                return [self.channel_of(namespace, None)]
            if len(rooms) > 1:
                message["id"] = next(self._emit_ids)
            return [self.channel_of(namespace, r) for r in rooms]
        if method == "callback":
            return [self._channel_of_host(message["host_id"])]
        if method in ("disconnect", "enter_room", "leave_room"):
            return [self.channel_of(namespace, message["sid"])]
        if method == "close_room":
            return [self.channel_of(namespace, message["room"])]
        raise ValueError(f"no channel for a {method!r} message")

    def _publish(self, data: dict) -> None:
        channels = self._channels_for(data)
        payload = self._sender + b"|" + self.json.dumps(data).encode()
        try:
            self.router.publish(channels, payload)
        except redis.RedisError as exc:
            self._get_logger().error("Cannot publish a %s to Redis: %s", data["method"], exc)

    # ----- receiving

    def _listen(self, shard: Shard) -> None:
        self._on_listener.active = True
        shard.listen(self._deliver, lambda: tell_to_resync(self))

    def _deliver(self, channel: bytes, payload: bytes) -> None:
        sender, _, body = payload.partition(b"|")
        if sender == self._sender:
            return  # this process's own emit: its sockets have it already
        try:
            message = self.json.loads(body)
            method = message.get("method")
            if method == "emit":
                if "id" in message and not self._seen.add((sender, message["id"])):
                    return  # a copy already delivered, through another of the rooms named
                self._handle_emit(message)
            elif method == "callback":
                self._handle_callback(message)
            elif method == "disconnect":
                self._handle_disconnect(message)
            elif method == "enter_room":
                self._handle_enter_room(message)
            elif method == "leave_room":
                self._handle_leave_room(message)
            elif method == "close_room":
                self._handle_close_room(message)
        except Exception:
            self._get_logger().exception("Handler error for a message on %s", channel)

    def close(self) -> None:
        """Stop listening and close every connection (for tests and a clean shutdown)."""
        self.listening = False
        self.router.close()
