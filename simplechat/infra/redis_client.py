"""Redis clients: ``redis_from_url`` (fails fast, blocks on a full pool), a connection whose
check on every pool checkout is one poll(2) system call, and :class:`Sentinels`, which points
every client at whichever server Redis Sentinel names primary (``REDIS_SENTINELS``).

redis-py asks each connection it takes from the pool whether data is waiting (a reply left over
would be read by the next command). It asks ``select.poll``, which eventlet's monkey patching
removes, so it falls back to a green ``select`` that goes through the hub with a timer: 40% of
a worker's CPU in a burst of ``join`` events (benchmarks/run_all.py, py-spy). This class asks the
operating system's ``poll`` directly, with a zero timeout, and leaves every other case (data
waiting, a closed socket, a timeout, another parser) to redis-py.
"""

from __future__ import annotations

import select
import sys
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlparse

import redis
from redis.commands.core import Script
from redis.connection import parse_url
from redis.maint_notifications import MaintNotificationsConfig
from redis.sentinel import (
    Sentinel,
    SentinelConnectionPool,
    SentinelManagedConnection,
    SentinelManagedSSLConnection,
)


def _unpatched_poll() -> Callable | None:
    """``select.poll`` as the operating system has it, under eventlet or gevent too."""
    if "eventlet" in sys.modules:  # importing eventlet otherwise only warns that it is deprecated
        import eventlet.patcher

        if eventlet.patcher.is_monkey_patched("select"):
            return getattr(eventlet.patcher.original("select"), "poll", None)
    if "gevent" in sys.modules:
        from gevent import monkey

        if monkey.is_module_patched("select"):
            return monkey.get_original("select", "poll")
    return getattr(select, "poll", None)


POLLIN = 0x001  # poll(2)'s "data to read", on Linux, BSDs and macOS alike


class _QuickCheck:
    def can_read(self, timeout: float = 0) -> bool:
        reader = getattr(self._parser, "_reader", None)  # hiredis' reader
        poll = _POLL
        if timeout or self._sock is None or reader is None or poll is None:
            return super().can_read(timeout)
        if reader.has_data():
            return True
        poller = poll()
        poller.register(self._sock.fileno(), POLLIN)
        if not poller.poll(0):
            return False  # the usual answer: nothing waiting, and the socket is open
        return super().can_read(timeout)  # data or a close: redis-py tells which


class QuickCheckConnection(_QuickCheck, redis.Connection):
    pass


class QuickCheckSentinelConnection(_QuickCheck, SentinelManagedConnection):
    """The same check on a connection that asks the sentinels where the primary is."""


_POLL = None


def connection_options(url: str) -> dict:
    """Options for ``Redis.from_url`` that use QuickCheckConnection for a plain ``redis://``
    URL (TLS and Unix sockets keep redis-py's own connection classes).

    A new connection sends no CLIENT SETINFO and no CLIENT MAINT_NOTIFICATIONS: redis-py
    otherwise names itself in two more round trips, after looking its version up in the
    installed packages' metadata (0.4 ms of CPU), and asks for maintenance notices (a managed
    service's) in a third; a fresh worker that a burst of sockets reaches opens dozens of
    connections at once (1.2 ms of CPU each with all of that, 0.4 ms without)."""
    if urlparse(url).scheme != "redis":
        return {}
    _look_up_poll()
    return {"connection_class": QuickCheckConnection, "driver_info": None,
            "maint_notifications_config": MaintNotificationsConfig(enabled=False)}


def _look_up_poll() -> None:
    global _POLL
    if _POLL is None:
        _POLL = _unpatched_poll()  # looked up at first use: after the worker's monkey patching


# Seconds to reach one sentinel, or to hear its answer, before the next one is asked.
SENTINEL_TIMEOUT = 1.0


class BlockingPool(redis.BlockingConnectionPool):
    """redis-py's blocking pool, without the check of deprecated arguments that redis-py 8 runs
    on every checkout (it inspects the call's arguments each time: 4% of a web worker's CPU in a
    reconnect storm, by py-spy); this project never passes any."""

    get_connection = getattr(redis.BlockingConnectionPool.get_connection, "__wrapped__",
                             redis.BlockingConnectionPool.get_connection)


class QuickPool(redis.ConnectionPool):
    """redis-py's ordinary pool, without the same check (the fan-out's publishing client takes
    a connection from it for every publish: 4% of a worker's samples in a reconnect storm)."""

    get_connection = getattr(redis.ConnectionPool.get_connection, "__wrapped__",
                             redis.ConnectionPool.get_connection)


class BlockingSentinelPool(SentinelConnectionPool, BlockingPool):
    """redis-py's pool of connections to the primary the sentinels name, blocking (as
    ``redis_from_url``'s) when all its connections are in use."""


@dataclass(frozen=True)
class Sentinels:
    """The sentinels that say which Redis server is primary (``REDIS_SENTINELS``, host and port
    pairs), the name they know it by (``REDIS_SENTINEL_MASTER``) and their own password
    (``REDIS_SENTINEL_PASSWORD``). With them, a Redis URL's host and port are not used: its db
    number, user name, password and TLS still are.

    A connection asks a sentinel for the primary's address each time it connects; after a
    failover the connections to the old primary fail once (the command's caller hears an
    error, as for any lost connection), and the next ones reach the new primary."""

    hosts: tuple[tuple[str, int], ...]
    master: str = "mymaster"
    password: str | None = None

    @classmethod
    def from_config(cls, config: Mapping) -> Sentinels | None:
        """The sentinels of an app's config; None when ``REDIS_SENTINELS`` is unset."""
        hosts = config.get("REDIS_SENTINELS")
        if not hosts:
            return None
        return cls(tuple((str(host), int(port)) for host, port in hosts),
                   config.get("REDIS_SENTINEL_MASTER") or "mymaster",
                   config.get("REDIS_SENTINEL_PASSWORD") or None)

    def sentinel_options(self) -> dict:
        """Connection options for the sentinels themselves."""
        options = {"socket_timeout": SENTINEL_TIMEOUT,
                   "socket_connect_timeout": SENTINEL_TIMEOUT}
        if self.password:
            options["password"] = self.password
        return options

    def manager(self) -> Sentinel:
        """redis-py's client of these sentinels (connects on first use)."""
        return Sentinel(list(self.hosts), sentinel_kwargs=self.sentinel_options())

    def pool(self, url: str, pool_class: type = SentinelConnectionPool,
             **options) -> redis.ConnectionPool:
        """A pool of connections to the primary, with ``url``'s db number and credentials."""
        kwargs = primary_options(url)
        kwargs.update(options)
        return pool_class(self.master, self.manager(), **kwargs)

    def broker_url(self, url: str) -> str:
        """Celery's (kombu's) ``sentinel://`` broker URL for a ``redis://`` one: one
        ``sentinel://`` part per sentinel, each with ``url``'s credentials and db number
        (kombu connects to the primary with them); the master's name goes in the transport
        options (``master_name``)."""
        parsed = urlparse(url)
        if parsed.scheme != "redis":
            raise ValueError(f"REDIS_SENTINELS needs a redis:// broker URL, not {url!r}")
        credentials = parsed.netloc.rpartition("@")[0]
        credentials = credentials + "@" if credentials else ""
        db = parsed.path if parsed.path not in ("", "/") else "/0"
        return ";".join(f"sentinel://{credentials}{_netloc(host, port)}{db}"
                        for host, port in self.hosts)

    def socketio_url(self, url: str) -> str:
        """python-socketio's ``redis+sentinel://`` URL for a ``redis://`` one (its stock
        ``RedisManager``, SOCKETIO_FANOUT=broadcast)."""
        options = primary_options(url)
        credentials = ""
        if options.get("password") or options.get("username"):
            credentials = (quote(options.get("username") or "", safe="") + ":"
                           + quote(options.get("password") or "", safe="") + "@")
        hosts = ",".join(_netloc(host, port) for host, port in self.hosts)
        return (f"redis+sentinel://{credentials}{hosts}/{options.get('db', 0)}/"
                f"{quote(self.master, safe='')}")


def _netloc(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def primary_options(url: str) -> dict:
    """Connection options of a ``redis://`` or ``rediss://`` URL for a server the sentinels
    find: everything the URL says but its host and port, and a connection class that asks
    them."""
    scheme = urlparse(url).scheme
    if scheme not in ("redis", "rediss"):
        raise ValueError(f"REDIS_SENTINELS needs redis:// or rediss:// URLs, not {url!r}")
    options = parse_url(url)
    options.pop("host", None)
    options.pop("port", None)
    if scheme == "rediss":
        options["connection_class"] = SentinelManagedSSLConnection
    else:
        _look_up_poll()
        options["connection_class"] = QuickCheckSentinelConnection
    return options


def redis_from_url(url: str, max_connections: int = 100,
                   sentinels: Sentinels | None = None) -> redis.Redis:
    """A client that fails fast: a down Redis must turn into an error, not a hung request.

    The pool blocks when all its connections are in use: one eventlet worker runs hundreds of
    events at once, and redis-py's default pool answers the 101st with an error instead.
    With ``sentinels``, it connects to whichever server they name primary."""
    options = {"max_connections": max_connections, "timeout": 5, "socket_connect_timeout": 2,
               "socket_timeout": 5, "health_check_interval": 30}
    if sentinels is not None:
        pool = sentinels.pool(url, BlockingSentinelPool, **options)
    else:
        pool = BlockingPool.from_url(url, **options, **connection_options(url))
    return redis.Redis(connection_pool=pool)


# ------------------------------------------------------------------- one round trip, many steps
# Several Redis commands and Lua scripts of different modules in one round trip.
#
# redis-py's pipeline checks its scripts with SCRIPT EXISTS first: a second round trip each time.
# A :class:`Batch` sends scripts as plain EVALSHA and, when Redis does not know one (NOSCRIPT: a
# restart, a flushed script cache), loads the scripts and sends the whole batch again, once. So
# every step of a batch must be safe to run twice (each names the one socket it records or forgets).


class Batch:
    """Steps queued by the modules that own them, sent together by :meth:`run`."""

    def __init__(self, redis: redis.Redis):
        self._redis = redis
        self._steps: list[tuple[Script | None, tuple]] = []

    def command(self, *args) -> int:
        """Queue a command; returns the index of its reply in :meth:`run`'s list."""
        self._steps.append((None, args))
        return len(self._steps) - 1

    def script(self, script: Script, keys: Sequence, args: Sequence) -> int:
        """Queue a registered script; returns the index of its reply."""
        self._steps.append((script, (len(keys), *keys, *args)))
        return len(self._steps) - 1

    def __len__(self) -> int:
        return len(self._steps)

    def run(self) -> list:
        """Every step's reply in order; a step Redis refused has its exception as its reply. A
        connection that fails raises, as a single command would."""
        replies = self._send()
        if any(isinstance(r, redis.exceptions.NoScriptError) for r in replies):
            for script in {id(s): s for s, _ in self._steps if s is not None}.values():
                script.sha = self._redis.script_load(script.script)
            replies = self._send()
        return replies

    def _send(self) -> list:
        shared = getattr(self._redis, SHARED, None)
        if shared is not None:
            return shared.run(self._redis, self._steps)
        return _pipelined(self._redis, self._steps)


def commands(client: redis.Redis, *steps: tuple) -> list:
    """``steps`` (each a command and its arguments) as one Batch, so that they share a round
    trip with the batches that other green threads run at the same time; the first refused
    step's error is raised, as the client's own methods would raise it."""
    batch = Batch(client)
    for step in steps:
        batch.command(*step)
    return raise_any(batch.run())


def raise_any(replies: list) -> list:
    """A batch's replies, after raising the first that is a refused step's error."""
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    return replies


def _pipelined(client: redis.Redis, steps: Sequence[tuple[Script | None, tuple]]) -> list:
    """Every step's reply, in one pipeline (no transaction): a refused step's reply is its
    exception; a connection that fails raises."""
    with client.pipeline(transaction=False) as pipe:
        for script, args in steps:
            if script is None:
                pipe.execute_command(*args)
            else:
                pipe.evalsha(script.sha, *args)
        return pipe.execute(raise_on_error=False)


# ------------------------------------------------------------- batches of many green threads
# A round trip costs a web worker far more than the commands in it: sending on a loopback TCP
# socket, waiting in the event loop's poll and reading again took 190-450 us of the worker's
# CPU for a batch of three commands, mostly in the kernel; 32 such batches sent as one pipeline
# took 20-30 us each (measured with eventlet, the app's client and a local Redis). So batches
# that green threads run while another batch is on its way wait for it and go together in the
# next one (a group commit): a lone batch leaves at once, as before; a burst of sockets pays a
# few round trips, not one each.

SHARED = "simplechat_shared_trips"  # the attribute of a client whose batches share round trips
GROUP_STEPS = 2_000  # steps in one shared pipeline at most; the callers beyond go in the next
WAIT_SLACK = 5.0  # seconds a waiting caller allows beyond the client's socket timeout


class _Caller:
    __slots__ = ("steps", "done", "replies", "error", "leads")

    def __init__(self, steps: Sequence[tuple[Script | None, tuple]], done: Any = None):
        self.steps, self.done = steps, done  # the event it waits on, if it has to wait
        self.replies: list | None = None
        self.error: BaseException | None = None
        self.leads = False  # told to send the next group (the one before it is back)

    def answer(self) -> list:
        if self.error is None:
            return self.replies
        if isinstance(self.error, Exception):
            raise self.error
        # The green thread that sent it was killed: this caller's steps may or may not have run.
        raise redis.exceptions.ConnectionError("a shared round trip was stopped") from self.error


class SharedTrips:
    """At most ``lanes`` pipelines of a client's batches on their way at once; a batch run
    while all lanes are busy waits, and the first waiting one, when a lane comes back, sends
    every batch waiting by then (up to GROUP_STEPS steps) in one pipeline, each caller getting
    its own steps' replies, or the exception of a connection that failed. Each step stays a
    command of its own: Redis runs the batches one after another, in the order they came.

    With one lane, the callers of a group resume in the group's order (the leader first, then
    each waiter as its event is set), all before the next group leaves: each caller's code up
    to its first wait runs in the order Redis ran the batches. The presence announcements rely
    on it (a socket closing and another opening at once are announced in Redis's order). With
    two, a batch on the other lane can be answered and handled before the waiters of a group
    that Redis ran earlier resume: a page was told its peer had gone offline after being told
    the peer was back.

    The lock and the events are made at first use, after the worker's monkey patching (green
    under eventlet and gevent). A caller killed while it waits (a timeout of its green thread)
    leaves the queue, or hands its lead on."""

    def __init__(self, lanes: int, wait: float):
        self.lanes, self._wait = lanes, wait
        self._lock: threading.Lock | None = None
        self._made = threading.Lock()
        self._waiting: deque[_Caller] = deque()
        self._busy = 0
        self.trips = 0  # pipelines sent (for tests and benchmarks)
        self.batches = 0  # batches they carried

    def run(self, client: redis.Redis, steps: Sequence[tuple[Script | None, tuple]]) -> list:
        lock = self._lock or self._make()
        me = _Caller(steps)
        with lock:
            if self._busy < self.lanes:
                self._busy += 1
                me.leads = True
            else:
                me.done = threading.Event()
                self._waiting.append(me)
        if not me.leads:
            self._await(me)
            if not me.leads:
                return me.answer()
        self._lead(client, me)
        return me.answer()

    def _make(self) -> threading.Lock:
        with self._made:
            if self._lock is None:
                self._lock = threading.Lock()
            return self._lock

    def _await(self, me: _Caller) -> None:
        try:
            if not me.done.wait(self._wait):
                raise redis.exceptions.TimeoutError(
                    f"no shared round trip in {self._wait:.0f} s")
        except BaseException:
            with self._lock:
                if me in self._waiting:
                    self._waiting.remove(me)
                    raise
            if me.leads:  # told to lead as it gave up: the next one leads instead
                self._next()
            raise

    def _lead(self, client: redis.Redis, me: _Caller) -> None:
        group = [me]
        try:
            with self._lock:
                steps = len(me.steps)
                while self._waiting and steps + len(self._waiting[0].steps) <= GROUP_STEPS:
                    caller = self._waiting.popleft()
                    steps += len(caller.steps)
                    group.append(caller)
            self.trips += 1
            self.batches += len(group)
            try:
                replies = _pipelined(client, [step for c in group for step in c.steps])
            except BaseException as exc:
                for caller in group:
                    caller.error = exc
                raise
            at = 0
            for caller in group:
                caller.replies = replies[at:at + len(caller.steps)]
                at += len(caller.steps)
        finally:
            for caller in group[1:]:
                caller.done.set()
            self._next()

    def _next(self) -> None:
        """A lane is back: the first waiting caller leads the next group, else the lane is
        free."""
        with self._lock:
            if self._waiting:
                caller = self._waiting.popleft()
                caller.leads = True
                caller.done.set()
            else:
                self._busy -= 1


def share_round_trips(client: redis.Redis, lanes: int) -> redis.Redis:
    """Let ``client``'s batches share round trips (SharedTrips) with ``lanes`` pipelines on
    their way at once; 0 lanes: each batch its own round trip. Returns the client."""
    if lanes > 0:
        timeout = client.connection_pool.connection_kwargs.get("socket_timeout") or 5.0
        setattr(client, SHARED, SharedTrips(lanes, timeout + WAIT_SLACK))
    return client
