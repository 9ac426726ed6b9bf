"""End-to-end harness: fresh databases, real gunicorn and Celery processes, users over HTTP and
real Socket.IO clients. Shared by every test that starts processes.

Typical use (see tests/e2e/conftest.py for the fixtures)::

    stack = Stack(TestDatabase.create_migrated("postgresql"), log_dir)
    web = stack.start_web(workers=1)
    stack.start_worker()
    ada = stack.register(web, "ada")
    sock = ada.socket(web)
"""

from __future__ import annotations

import itertools
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import redis as redis_lib
import requests
import socketio
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url

from config import database_url as normalise_url

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent  # the venv's bin: gunicorn, celery, flask
NAMESPACE = "/chat"
PASSWORD = "correct horse battery"

# Servers the end-to-end tests talk to; each test makes its own database, key prefix and queue.
ADMIN_URLS = {
    "postgresql": os.environ.get("E2E_POSTGRES_URL", "postgresql://root@127.0.0.1:5432/postgres"),
    "mariadb": os.environ.get("E2E_MARIADB_URL", "mysql://root@127.0.0.1:3306/test"),
}
# Redis db 15 belongs to the unit and integration suite; end-to-end runs use their own.
E2E_REDIS_URL = os.environ.get("E2E_REDIS_URL", "redis://127.0.0.1:6379/13")
PORTS = range(18200, 18400)

T = TypeVar("T")


# --------------------------------------------------------------------------- waiting


def wait_until(probe: Callable[[], T], timeout: float = 15.0, interval: float = 0.1,
               message: str = "condition") -> T:
    """Call ``probe`` until it returns something truthy; that value, or AssertionError."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {message}")
        time.sleep(interval)


# --------------------------------------------------------------------------- ports

_handed_out: set[int] = set()
_port_lock = threading.Lock()


def free_port(ports: range = PORTS) -> int:
    """A port in ``ports`` that nothing listens on and this process has not handed out.

    Each suite that starts servers keeps to a range of its own (unit tests' own redis-servers
    18000-18099, metrics 18100-18199, end-to-end 18200-18399, browser 18400-18499, security
    18500-18599, faults 18600-18799) so that suites run at the same time (``make test`` runs
    them side by side) never race for a port."""
    candidates = list(ports)
    random.shuffle(candidates)
    with _port_lock:
        for port in candidates:
            if port in _handed_out:
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
                try:
                    probe.bind(("127.0.0.1", port))
                except OSError:
                    continue
            _handed_out.add(port)
            return port
    raise RuntimeError(f"no free port in {ports.start}-{ports.stop - 1}")


# --------------------------------------------------------------------------- databases


class TestDatabase:
    """A database of its own on the PostgreSQL or MariaDB server, dropped by ``drop()``."""

    __test__ = False  # not a pytest test class

    def __init__(self, kind: str, admin_url: str | None = None):
        self.kind = kind
        raw_admin = admin_url or ADMIN_URLS[kind]
        self.name = f"simplechat_e2e_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        admin = make_url(normalise_url(raw_admin))
        # What the processes get as DATABASE_URL (config.database_url leaves it as it is).
        self.url = admin.set(database=self.name).render_as_string(hide_password=False)
        self._admin = create_engine(admin.render_as_string(hide_password=False),
                                    isolation_level="AUTOCOMMIT", pool_pre_ping=True)
        self._engine: Engine | None = None

    @classmethod
    def create_migrated(cls, kind: str = "postgresql", admin_url: str | None = None,
                        log_dir: Path | None = None) -> TestDatabase:
        database = cls(kind, admin_url)
        database.create()
        try:
            database.migrate(log_dir)
        except BaseException:
            database.drop()
            raise
        return database

    def create(self) -> None:
        with self._admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {self.name}"))

    def migrate(self, log_dir: Path | None = None) -> None:
        """``flask --app wsgi db upgrade``, as a deployment runs it."""
        env = base_env({
            "DATABASE_URL": self.url,
            "SECRET_KEY": "e2e-" + uuid.uuid4().hex,
            "SIMPLECHAT_CONFIG": "production",
        })
        result = subprocess.run([str(BIN / "flask"), "--app", "wsgi", "db", "upgrade"], cwd=ROOT,
                                env=env, capture_output=True, text=True, timeout=120)
        if log_dir is not None:
            (log_dir / "migrate.log").write_text(result.stdout + result.stderr)
        if result.returncode != 0:
            raise RuntimeError(f"db upgrade failed:\n{result.stdout}\n{result.stderr}")

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = create_engine(normalise_url(self.url), pool_pre_ping=True)
        return self._engine

    def rows(self, sql: str, **params: Any) -> list[tuple]:
        with self.engine.connect() as conn:
            return [tuple(row) for row in conn.execute(text(sql), params)]

    def scalar(self, sql: str, **params: Any) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(text(sql), params).scalar()

    def user_id(self, username: str) -> int:
        return self.scalar("SELECT id FROM users WHERE username = :u", u=username)

    def message_ids(self, conversation_id: int) -> list[str]:
        return [r[0] for r in self.rows(
            "SELECT id FROM messages WHERE conversation_id = :c ORDER BY id", c=conversation_id)]

    def wait_for_messages(self, conversation_id: int, count: int,
                          timeout: float = 30.0) -> list[str]:
        """Poll SQL until the conversation holds at least ``count`` messages; their ids."""
        return wait_until(
            lambda: (ids := self.message_ids(conversation_id)) and len(ids) >= count and ids,
            timeout, 0.2, f"{count} messages of conversation {conversation_id} in SQL")

    def drop(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
        with self._admin.connect() as conn:
            if self._admin.dialect.name == "postgresql":
                conn.execute(text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :name AND pid <> pg_backend_pid()"), {"name": self.name})
            conn.execute(text(f"DROP DATABASE IF EXISTS {self.name}"))
        self._admin.dispose()


# --------------------------------------------------------------------------- processes

_CLEARED_ENV = ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "CELERY_QUEUE",
                "REDIS_KEY_PREFIX", "SOCKETIO_ASYNC_MODE", "SIMPLECHAT_CONFIG", "SECRET_KEY",
                "TEST_DATABASE_URL", "TEST_REDIS_URL", "WEB_CONCURRENCY", "PORT", "BIND",
                "REDIS_SENTINELS", "REDIS_SENTINEL_MASTER", "REDIS_SENTINEL_PASSWORD",
                "CHAT_ACK_REPLICAS", "SOCKETIO_MESSAGE_QUEUE")


def base_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _CLEARED_ENV}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


class Process:
    """A child process in its own process group, its output in a log file."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_path: Path):
        self.name = name
        self.args = args
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115  (closed in stop)
        self.popen = subprocess.Popen(args, cwd=ROOT, env=env, stdout=self._log,
                                      stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                      start_new_session=True)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def signal(self, sig: int) -> None:
        try:
            os.killpg(self.popen.pid, sig)
        except ProcessLookupError:
            pass

    def stop(self, timeout: float = 8.0) -> None:
        """SIGTERM to the whole group, SIGKILL after ``timeout``; always reaps the child."""
        if self.alive():
            self.signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        # Whatever is left of the group (workers of a dead master) goes too.
        self.signal(signal.SIGKILL)
        try:
            self.popen.wait(5)
        except subprocess.TimeoutExpired:
            pass
        self._log.close()

    def kill(self) -> None:
        """SIGKILL the group at once, as a crash would."""
        self.signal(signal.SIGKILL)
        self.popen.wait(5)

    def __repr__(self) -> str:
        return f"<Process {self.name} pid={self.pid}>"


class WebProcess(Process):
    def __init__(self, name: str, args: list[str], env: dict[str, str], log_path: Path,
                 port: int, workers: int):
        super().__init__(name, args, env, log_path)
        self.port = port
        self.workers = workers
        self.url = f"http://127.0.0.1:{port}"

    def booted_workers(self) -> int:
        return self.log().count("Booting worker with pid")

    def worker_pids(self) -> list[int]:
        """The gunicorn workers of this master, from /proc (Linux)."""
        pids = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    stat = (entry / "stat").read_text()
                except OSError:
                    continue
                # "pid (comm) state ppid ...": comm may hold spaces, so split after the ")".
                if int(stat.rsplit(")", 1)[1].split()[1]) == self.pid:
                    pids.append(int(entry.name))
        return sorted(pids)

    def worker_serving(self, sock: ChatSocket) -> int | None:
        """Which worker holds the server side of ``sock``'s websocket connection (Linux)."""
        client_port = sock.local_port()
        inode = _server_socket_inode(self.port, client_port)
        if inode is None:
            return None
        target = f"socket:[{inode}]"
        for pid in self.worker_pids():
            try:
                fds = list(Path(f"/proc/{pid}/fd").iterdir())
            except OSError:
                continue
            for fd in fds:
                try:
                    if os.readlink(fd) == target:
                        return pid
                except OSError:
                    continue
        return None


def _server_socket_inode(server_port: int, client_port: int) -> int | None:
    """The inode of the accepted TCP socket 127.0.0.1:server_port <- 127.0.0.1:client_port."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, inode = fields[1], fields[2], int(fields[9])
        if (int(local.split(":")[1], 16) == server_port
                and int(remote.split(":")[1], 16) == client_port and inode):
            return inode
    return None


class RedisServer:
    """A redis-server of a test's own on a free port, without persistence (``--save ""
    --appendonly no``); in cluster mode its node file sits in its own folder, so ``restart()``
    brings the node back with its slots."""

    def __init__(self, log_dir: Path, ports: range = PORTS, cluster: bool = False,
                 name: str = "redis"):
        self.name = name
        self.cluster = cluster
        self.port = free_port(ports) if not cluster else _free_cluster_port(ports)
        self.dir = Path(log_dir) / f"{name}-{self.port}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.url = f"redis://127.0.0.1:{self.port}"
        self.process: Process | None = None
        self.start()

    def _args(self) -> list[str]:
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--dir", str(self.dir)]
        if self.cluster:
            args += ["--cluster-enabled", "yes",
                     "--cluster-config-file", str(self.dir / "nodes.conf"),
                     "--cluster-node-timeout", "2000"]
        return args

    def start(self, timeout: float = 10.0) -> None:
        self.process = Process(self.name, self._args(), base_env({}),
                               Path(self.dir) / "redis.log")
        wait_until(self.answers, timeout, 0.05, f"{self.name} on port {self.port}")

    def answers(self) -> bool:
        client = redis_lib.Redis(host="127.0.0.1", port=self.port, socket_timeout=1)
        try:
            return bool(client.ping())
        except redis_lib.RedisError:
            return False
        finally:
            client.close()

    def client(self) -> redis_lib.Redis:
        return redis_lib.Redis(host="127.0.0.1", port=self.port)

    def restart(self) -> None:
        """Stop the server (its clients lose their connections and everything it held) and
        start it again on the same port."""
        self.stop()
        self.start()

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None

    def alive(self) -> bool:
        return self.process is not None and self.process.alive()


class RedisSentinelSet:
    """A Redis primary, its replicas and the sentinels that watch them (``redis-server
    --sentinel``), each a process of its own on a free port of 127.0.0.1 with its folder under
    ``folder``. The servers keep an append-only file (the primary's can be deleted with it, as
    a lost host's would be). Short ``down_after_ms`` and ``failover_timeout_ms`` make a failover
    take a few seconds.

    ``env()`` is what a web process or worker needs to find the primary through the sentinels
    (REDIS_URL's host is not used then: it names the first primary, which may be gone)."""

    def __init__(self, folder: Path, replicas: int = 2, sentinels: int = 3,
                 ports: range = PORTS, master: str = "mymaster", down_after_ms: int = 1000,
                 failover_timeout_ms: int = 4000):
        self.folder = Path(folder)
        self.master = master
        self.ports = ports
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        self.servers: dict[int, Process] = {}
        self.sentinels: dict[int, Process] = {}
        self.quorum = sentinels // 2 + 1
        try:
            first = self._start_server(None)
            for _ in range(replicas):
                self._start_server(first)
            for _ in range(sentinels):
                self._start_sentinel(first)
            self.wait_until_watched(replicas)
        except BaseException:
            self.stop()
            raise

    # ----- processes

    def _dir(self, kind: str, port: int) -> Path:
        path = self.folder / f"{kind}-{port}"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _start_server(self, primary: int | None, port: int | None = None) -> int:
        port = port or free_port(self.ports)
        folder = self._dir("redis", port)
        args = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder),
                "--save", "", "--appendonly", "yes", "--appendfsync", "everysec",
                "--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0"]
        if primary is not None:
            args += ["--replicaof", "127.0.0.1", str(primary)]
        self.servers[port] = Process(f"redis-{port}", args, base_env({}), folder / "redis.log")
        wait_until(lambda: _pings(port), 10, 0.05, f"redis-server on {port}")
        return port

    def _start_sentinel(self, primary: int) -> int:
        port = free_port(self.ports)
        folder = self._dir("sentinel", port)
        conf = folder / "sentinel.conf"
        conf.write_text(
            f"port {port}\nbind 127.0.0.1\ndir {folder}\n"
            f"sentinel monitor {self.master} 127.0.0.1 {primary} {self.quorum}\n"
            f"sentinel down-after-milliseconds {self.master} {self.down_after_ms}\n"
            f"sentinel failover-timeout {self.master} {self.failover_timeout_ms}\n"
            f"sentinel parallel-syncs {self.master} 2\n")
        self.sentinels[port] = Process(f"sentinel-{port}", ["redis-server", str(conf),
                                                            "--sentinel"],
                                       base_env({}), folder / "sentinel.log")
        wait_until(lambda: _pings(port), 10, 0.05, f"sentinel on {port}")
        return port

    def stop(self) -> None:
        for process in [*self.sentinels.values(), *self.servers.values()]:
            process.stop(timeout=3)

    # ----- what the sentinels say

    def sentinel(self, port: int | None = None) -> redis_lib.Redis:
        return redis_lib.Redis(host="127.0.0.1", port=port or next(iter(self.sentinels)),
                               socket_timeout=2, decode_responses=True)

    def primary(self) -> int:
        """The port of the primary, as the first sentinel that answers names it."""
        for port in self.sentinels:
            client = self.sentinel(port)
            try:
                return int(client.sentinel_get_master_addr_by_name(self.master)[1])
            except (redis_lib.RedisError, TypeError):
                continue
            finally:
                client.close()
        raise AssertionError("no sentinel names a primary")

    def wait_until_watched(self, replicas: int, timeout: float = 30.0) -> None:
        """Until every sentinel knows the others, the primary and ``replicas`` replicas up and
        linked to it (so that a failover can start at once)."""
        def watched() -> bool:
            for port in self.sentinels:
                client = self.sentinel(port)
                try:
                    master = client.sentinel_master(self.master)
                    seen = [r for r in client.sentinel_slaves(self.master)
                            if not (r["is_sdown"] or r["is_odown"])
                            and r.get("master-link-status") == "ok"]
                    others = client.sentinel_sentinels(self.master)
                except redis_lib.RedisError:
                    return False
                finally:
                    client.close()
                if (master["is_sdown"] or len(seen) < replicas
                        or len(others) < len(self.sentinels) - 1):
                    return False
            return True

        wait_until(watched, timeout, 0.2, "the sentinels to watch the primary and its replicas")

    def env(self) -> dict[str, str]:
        return {"REDIS_SENTINELS": ",".join(f"127.0.0.1:{p}" for p in self.sentinels),
                "REDIS_SENTINEL_MASTER": self.master}

    def url(self, db: int = 0) -> str:
        """A REDIS_URL for processes that ask the sentinels (its host is the first primary's,
        not used by them)."""
        return f"redis://127.0.0.1:{self.primary()}/{db}"

    def client(self) -> redis_lib.Redis:
        """A client of the current primary."""
        return redis_lib.Redis(host="127.0.0.1", port=self.primary(), socket_timeout=5)

    # ----- faults

    def kill_primary(self, delete_data: bool = True) -> int:
        """SIGKILL the primary (and delete its folder, as a host that is gone would lose it);
        its port."""
        port = self.primary()
        self.servers[port].kill()
        if delete_data:
            shutil.rmtree(self.folder / f"redis-{port}", ignore_errors=True)
        return port

    def wait_for_failover(self, old: int, timeout: float = 30.0) -> int:
        """Until every sentinel names a primary other than ``old`` that answers as one."""
        def promoted() -> int | None:
            named = set()
            for port in self.sentinels:
                client = self.sentinel(port)
                try:
                    named.add(int(client.sentinel_get_master_addr_by_name(self.master)[1]))
                except (redis_lib.RedisError, TypeError):
                    return None
                finally:
                    client.close()
            if len(named) != 1 or old in named:
                return None
            new = named.pop()
            client = redis_lib.Redis(host="127.0.0.1", port=new, socket_timeout=2)
            try:
                return new if client.info("replication")["role"] == "master" else None
            except redis_lib.RedisError:
                return None
            finally:
                client.close()

        return wait_until(promoted, timeout, 0.1, "a new primary")

    def restore(self, port: int, replicas: int) -> None:
        """Start the server of ``port`` again, empty, as a replica of the current primary, and
        wait until the sentinels watch ``replicas`` replicas again."""
        self.servers[port].stop(timeout=1)
        self._start_server(self.primary(), port)
        self.wait_until_watched(replicas, timeout=60)


def _pings(port: int) -> bool:
    client = redis_lib.Redis(host="127.0.0.1", port=port, socket_timeout=1)
    try:
        return bool(client.ping())
    except redis_lib.RedisError:
        return False
    finally:
        client.close()


def _free_cluster_port(ports: range) -> int:
    """A free port whose cluster bus port (port + 10000) is free as well."""
    for _attempt in range(50):
        port = free_port(ports)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


def create_cluster(nodes: list[RedisServer], timeout: float = 20.0) -> None:
    """``redis-cli --cluster create`` over ``nodes`` (primaries only), then wait until every
    node reports the cluster ok."""
    result = subprocess.run(
        ["redis-cli", "--cluster", "create", *(f"127.0.0.1:{n.port}" for n in nodes),
         "--cluster-replicas", "0", "--cluster-yes"],
        capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise RuntimeError(f"cluster create failed:\n{result.stdout}\n{result.stderr}")

    def all_ok() -> bool:
        for node in nodes:
            client = node.client()
            try:
                if client.cluster("info").get("cluster_state") != "ok":
                    return False
            finally:
                client.close()
        return True

    wait_until(all_ok, timeout, 0.2, "the cluster to be ok")


def _ready(url: str) -> bool:
    try:
        response = requests.get(url + "/healthz", timeout=2)
        if response.status_code == 200:
            return True
        if response.status_code == 404:  # no health route: the login page answers instead
            return requests.get(url + "/auth/login", timeout=2).status_code == 200
    except requests.RequestException:
        pass
    return False


class Stack:
    """One deployment under test: its database, a Redis key prefix and Celery queue of its own,
    and the web and worker processes started on them. ``close()`` stops everything.

    ``ports`` is the suite's own port range for web processes; ``label`` names the suite in the
    key prefix and queue."""

    def __init__(self, database: TestDatabase, log_dir: Path, redis_url: str = E2E_REDIS_URL,
                 ports: range = PORTS, label: str = "e2e", **env: str):
        self.database = database
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.redis_url = redis_url
        self.ports = ports
        tag = uuid.uuid4().hex[:10]
        self.prefix = f"simplechat-{label}:{tag}:"
        self.queue = f"simplechat-{label}-{tag}"
        self.secret = "e2e-" + uuid.uuid4().hex
        self.env = {
            "DATABASE_URL": database.url,
            "REDIS_URL": redis_url,
            "REDIS_KEY_PREFIX": self.prefix,
            "CELERY_QUEUE": self.queue,
            "SECRET_KEY": self.secret,
            "SIMPLECHAT_CONFIG": "production",
            "SESSION_COOKIE_SECURE": "0",  # plain http in tests
            "LOG_LEVEL": "INFO",
        }
        self.env.update(env)
        self.processes: list[Process] = []
        self.redis_servers: list[RedisServer] = []
        self.users: list[ChatUser] = []
        self._names = itertools.count(1)

    # ----- processes

    def _env(self, extra: dict[str, str] | None) -> dict[str, str]:
        return base_env({**self.env, **(extra or {})})

    def start_web(self, workers: int = 1, worker_class: str = "eventlet",
                  env: dict[str, str] | None = None, timeout: float = 40.0,
                  port: int | None = None, graceful_timeout: float = 3) -> WebProcess:
        """``gunicorn -c gunicorn.conf.py -k <class> -w N -b 127.0.0.1:PORT wsgi:app``, ready.

        PORT is a free one of ``self.ports`` unless ``port`` is given (to start a process again
        where its clients expect it). ``graceful_timeout``: 3 s, so that stopping a test's
        processes is quick (gunicorn.conf.py's own is 15)."""
        extra = dict(env or {})
        if worker_class == "gevent":
            extra.setdefault("SOCKETIO_ASYNC_MODE", "gevent")
        fixed = port
        for _attempt in range(1 if fixed else 3):
            port = fixed or free_port(self.ports)
            name = f"web{next(self._names)}-{port}"
            args = [str(BIN / "gunicorn"), "-c", str(ROOT / "gunicorn.conf.py"),
                    "-k", worker_class, "-w", str(workers), "-b", f"127.0.0.1:{port}",
                    "--graceful-timeout", str(graceful_timeout), "wsgi:app"]
            web = WebProcess(name, args, self._env(extra), self.log_dir / f"{name}.log",
                             port, workers)
            self.processes.append(web)
            try:
                wait_until(lambda w=web: not w.alive() or (
                    w.booted_workers() >= workers and _ready(w.url)),
                    timeout, 0.2, f"{name} to answer")
            except AssertionError as exc:
                raise AssertionError(f"{exc}\n--- {name} log ---\n{web.tail()}") from None
            if web.alive():
                return web
            if "Address already in use" not in web.log():
                raise AssertionError(f"{name} exited {web.popen.returncode}:\n{web.tail()}")
        raise AssertionError("could not bind a web process to a free port")

    def start_worker(self, pool: str = "solo", concurrency: int = 1,
                     env: dict[str, str] | None = None, timeout: float = 60.0,
                     queues: Iterable[str] | None = None, quiet: bool = True) -> Process:
        """``celery -A celery_worker.celery worker -P <pool> -Q <queues>``, ready to consume.

        ``queues``: by default both of this stack's queues, its own (``self.queue``) and that
        of webhook deliveries (``self.queue + "-webhooks"``, CELERY_WEBHOOK_QUEUE's default);
        name one to start a worker on it alone; empty: no ``-Q``, the app's queues decide.
        ``quiet=False``: with Celery's gossip and mingle, which it starts by default."""
        name = f"worker{next(self._names)}"
        if queues is None:
            queues = (self.queue, f"{self.queue}-webhooks")
        queues = list(queues)
        args = [str(BIN / "celery"), "-A", "celery_worker.celery", "worker", "--loglevel=info",
                "-P", pool, f"--concurrency={concurrency}",
                *(("-Q", ",".join(queues)) if queues else ()),
                "-n", f"{name}-{self.queue}@%h",
                *(("--without-gossip", "--without-mingle") if quiet else ())]
        worker = Process(name, args, self._env(env), self.log_dir / f"{name}.log")
        self.processes.append(worker)
        try:
            wait_until(lambda: not worker.alive() or " ready." in worker.log(),
                       timeout, 0.2, f"{name} to be ready")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- {name} log ---\n{worker.tail()}") from None
        if not worker.alive():
            raise AssertionError(f"{name} exited {worker.popen.returncode}:\n{worker.tail()}")
        return worker

    def start_redis(self, count: int = 1, cluster: bool = False) -> list[RedisServer]:
        """``count`` redis-server processes of this stack's own (a cluster of them with
        ``cluster``); stopped by ``close()`` after the web processes."""
        first = len(self.redis_servers) + 1
        servers = [RedisServer(self.log_dir, self.ports, cluster, f"redis{first + i}")
                   for i in range(count)]
        self.redis_servers.extend(servers)
        if cluster:
            create_cluster(servers)
        return servers

    def close(self) -> None:
        self.stop_processes()
        for server in self.redis_servers:
            server.stop()
        self._drop_redis_keys()

    def stop_processes(self) -> None:
        """Close the users' sockets and stop every process; Redis is left as is. All of them
        get SIGTERM at once and share one deadline: one after the other, the graceful stops of a
        stack's three or four processes took 3-6 s of every test's teardown."""
        for user in self.users:
            user.close_sockets()
        processes = list(reversed(self.processes))
        for process in processes:
            if process.alive():
                process.signal(signal.SIGTERM)
        deadline = time.monotonic() + 8.0
        for process in processes:
            process.stop(timeout=max(0.0, deadline - time.monotonic()))

    def flush_cache(self) -> int:
        """Drop this stack's own Redis keys (recent lists, limiter state), as a Redis flush or
        eviction would; the Celery queue is kept. Returns how many keys went."""
        client = redis_lib.Redis.from_url(self.redis_url)
        try:
            keys = list(client.scan_iter(match=self.prefix + "*", count=1000))
            return client.delete(*keys) if keys else 0
        finally:
            client.close()

    def _drop_redis_keys(self) -> None:
        client = redis_lib.Redis.from_url(self.redis_url)
        try:
            keys = list(client.scan_iter(match=self.prefix + "*", count=1000))
            for queue in (self.queue, f"{self.queue}-webhooks"):  # start_worker's two
                keys += [queue, f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}"]
                keys += [f"{queue}\x06\x16{p}" for p in range(10)]  # priority sub-queues
            client.delete(*keys)
        finally:
            client.close()

    def logs(self, lines: int = 80) -> str:
        """The tail of every process's log, for a failure report."""
        parts = []
        for process in self.processes:
            state = "running" if process.alive() else f"exited {process.popen.returncode}"
            parts.append(f"--- {process.name} ({state}): {' '.join(process.args[1:])}\n"
                         f"{process.tail(lines)}")
        return "\n".join(parts)

    # ----- users and conversations

    def register(self, web: WebProcess, username: str | None = None,
                 password: str = PASSWORD) -> ChatUser:
        user = register(web.url, username or f"u{uuid.uuid4().hex[:10]}", password)
        user.id = self.database.user_id(user.username)
        self.users.append(user)
        return user


# --------------------------------------------------------------------------- HTTP users

_CSRF_INPUT = re.compile(r"<input[^>]*name=\"csrf_token\"[^>]*>")
_VALUE = re.compile(r"value=\"([^\"]*)\"")


def csrf_token(html: str) -> str:
    """The value of the form's hidden ``csrf_token`` input."""
    match = _CSRF_INPUT.search(html)
    value = match and _VALUE.search(match.group(0))
    if not value:
        raise AssertionError("no csrf_token input on the page")
    return value.group(1)


class ChatUser:
    """A user with a logged-in ``requests`` session (cookies work on every process)."""

    def __init__(self, username: str, password: str, session: requests.Session):
        self.username = username
        self.password = password
        self.session = session
        self.id: int | None = None
        self.sockets: list[ChatSocket] = []

    @property
    def cookie_header(self) -> str:
        return "; ".join(f"{c.name}={c.value}" for c in self.session.cookies)

    def socket(self, web: WebProcess | str, transports: Iterable[str] = ("websocket",)
               ) -> ChatSocket:
        """A connected python-socketio client on ``/chat`` with this user's session."""
        url = web if isinstance(web, str) else web.url
        sock = ChatSocket(f"{self.username}@{url}")
        sock.connect(url, self.cookie_header, transports)
        self.sockets.append(sock)
        return sock

    def start_conversation(self, web: WebProcess | str, participant_ids: Iterable[int],
                           title: str = "") -> int:
        """POST /chat/new as the form does; the id from the redirect to /chat/<id>."""
        url = web if isinstance(web, str) else web.url
        page = self.session.get(url + "/chat/new", timeout=10)
        page.raise_for_status()
        response = self.session.post(url + "/chat/new", timeout=10, allow_redirects=False, data={
            "csrf_token": csrf_token(page.text),
            "participants": [str(i) for i in participant_ids],
            "title": title,
        })
        match = re.search(r"/chat/(\d+)$", response.headers.get("Location", ""))
        if response.status_code != 302 or not match:
            raise AssertionError(f"/chat/new answered {response.status_code}: "
                                 f"{response.text[:500]}")
        return int(match.group(1))

    def close_sockets(self) -> None:
        for sock in self.sockets:
            sock.close()


def register(base_url: str, username: str, password: str = PASSWORD) -> ChatUser:
    """Register through the real form (which logs the new user in)."""
    session = requests.Session()
    page = session.get(base_url + "/auth/register", timeout=10)
    page.raise_for_status()
    response = session.post(base_url + "/auth/register", timeout=10, allow_redirects=False, data={
        "csrf_token": csrf_token(page.text),
        "username": username,
        "first_name": username.capitalize(),
        "last_name": "Tester",
        "email": f"{username}@example.com",
        "password": password,
        "confirm": password,
    })
    if response.status_code != 302:
        raise AssertionError(f"register {username} answered {response.status_code}: "
                             f"{response.text[:500]}")
    return ChatUser(username, password, session)


def login(base_url: str, username: str, password: str = PASSWORD) -> ChatUser:
    session = requests.Session()
    page = session.get(base_url + "/auth/login", timeout=10)
    page.raise_for_status()
    response = session.post(base_url + "/auth/login", timeout=10, allow_redirects=False, data={
        "csrf_token": csrf_token(page.text), "username": username, "password": password,
    })
    if response.status_code != 302:
        raise AssertionError(f"login {username} answered {response.status_code}")
    return ChatUser(username, password, session)


# --------------------------------------------------------------------------- Socket.IO


class ChatSocket:
    """A real python-socketio client on ``/chat`` that records every server event, in order,
    from its own receiving thread; read them with ``events()``/``messages()``/``wait_for()``."""

    def __init__(self, name: str = ""):
        self.name = name
        self.sio = socketio.Client(reconnection=False)
        self._events: list[tuple[str, Any]] = []
        self._changed = threading.Condition()
        self.sio.on("*", self._record, namespace=NAMESPACE)
        self.sio.on("disconnect", self._on_disconnect, namespace=NAMESPACE)

    def _record(self, event: str, *args: Any) -> None:
        with self._changed:
            self._events.append((event, args[0] if len(args) == 1 else args))
            self._changed.notify_all()

    def _on_disconnect(self, *args: Any) -> None:
        with self._changed:
            self._events.append(("disconnect", args))
            self._changed.notify_all()

    def connect(self, url: str, cookie: str, transports: Iterable[str] = ("websocket",)) -> None:
        self.sio.connect(url, headers={"Cookie": cookie}, transports=list(transports),
                         namespaces=[NAMESPACE], wait_timeout=10)

    def local_port(self) -> int:
        """The client side port of the websocket connection."""
        return self.sio.eio.ws.sock.getsockname()[1]

    @property
    def connected(self) -> bool:
        return self.sio.connected and NAMESPACE in self.sio.namespaces

    def call(self, event: str, data: Any, timeout: float = 10.0) -> Any:
        return self.sio.call(event, data, namespace=NAMESPACE, timeout=timeout)

    def join(self, conversation_id: int, **extra: Any) -> dict:
        ack = self.call("join", {"conversation_id": conversation_id, **extra})
        if not (isinstance(ack, dict) and ack.get("ok")):
            raise AssertionError(f"{self.name} could not join {conversation_id}: {ack}")
        return ack

    def send(self, conversation_id: int, text_: str, client_id: str | None = None) -> dict:
        data = {"conversation_id": conversation_id, "message": text_}
        if client_id is not None:
            data["client_id"] = client_id
        return self.call("send_message", data)

    def events(self, name: str | None = None) -> list[Any]:
        with self._changed:
            return [data for event, data in self._events if name is None or event == name]

    def messages(self, conversation_id: int | None = None) -> list[dict]:
        return [m for m in self.events("message")
                if conversation_id is None or m.get("conversation_id") == conversation_id]

    def wait_for(self, predicate: Callable[[ChatSocket], bool], timeout: float = 10.0) -> bool:
        """Wait until ``predicate(self)`` holds; False on timeout (the caller asserts)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate(self):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(remaining)
        return True

    def wait_messages(self, count: int, conversation_id: int | None = None,
                      timeout: float = 10.0) -> list[dict]:
        self.wait_for(lambda s: len(s.messages(conversation_id)) >= count, timeout)
        return self.messages(conversation_id)

    def close(self) -> None:
        try:
            if self.sio.connected:
                self.sio.disconnect()
        except Exception:  # noqa: BLE001  (closing a client whose server is gone)
            pass
