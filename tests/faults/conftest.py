"""Fault tests: the end-to-end harness (tests/e2e/harness.py) on ports 18600-18699, redis-servers
of their own on 18780-18799 and a PostgreSQL server of their own on 18760-18779, plus helpers to
send a numbered stream of messages and to check that every acknowledged one is stored once."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis as redis_lib
from e2e.conftest import _failed, pytest_runtest_makereport  # noqa: F401  (reused hook)
from e2e.harness import ChatSocket, Process, Stack, TestDatabase, free_port, wait_until

# Redelivery of a dead worker's unacknowledged tasks after 3 s instead of 5 minutes, and no
# send limit, so a stream is steady.
FAULT_ENV = {"CELERY_VISIBILITY_TIMEOUT": "3", "CHAT_RATE_LIMIT": "off"}
WEB_PORTS = range(18600, 18700)
REDIS_PORTS = range(18780, 18800)
POSTGRES_PORTS = range(18760, 18780)
POSTGRES_BIN = Path("/usr/lib/postgresql")


class OwnRedis:
    """A throwaway redis-server (no persistence) that a test may crash and start again.

    Fault tests run on one of these rather than the shared server: a short visibility timeout
    makes their worker redeliver any deployment's unacknowledged tasks in the same database,
    and a crash must not touch anyone else."""

    def __init__(self, port: int, log_dir: Path):
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self.log_path = log_dir / f"redis-{port}.log"
        self.process: subprocess.Popen | None = None
        # A test may set this before a start: an append-only file synced on every write, in
        # its own folder, so that a crash loses nothing written.
        self.appendonly = False
        self.dir = log_dir / f"redis-{port}"

    def start(self) -> None:
        persistence = ["--appendonly", "no"]
        if self.appendonly:
            self.dir.mkdir(exist_ok=True)
            persistence = ["--appendonly", "yes", "--appendfsync", "always",
                           "--dir", str(self.dir)]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [shutil.which("redis-server"), "--port", str(self.port), "--bind", "127.0.0.1",
                 "--save", "", *persistence, "--daemonize", "no"],
                stdout=log, stderr=subprocess.STDOUT)
        client = self.client()
        try:
            wait_until(lambda: self._ping(client), 10, 0.1, "redis-server to answer")
        finally:
            client.close()

    @staticmethod
    def _ping(client) -> bool:
        try:
            return client.ping()
        except redis_lib.RedisError:
            return False

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def crash(self) -> None:
        if self.running():
            self.process.kill()
            self.process.wait(10)

    def client(self) -> redis_lib.Redis:
        return redis_lib.Redis.from_url(self.url)


@pytest.fixture
def own_redis(tmp_path):
    if not shutil.which("redis-server"):
        pytest.skip("redis-server not installed")
    server = OwnRedis(free_port(REDIS_PORTS), tmp_path)
    server.start()
    yield server
    server.crash()


class OwnPostgres:
    """A throwaway PostgreSQL server (initdb into a temporary directory, trust auth, no fsync)
    that a test may stop and start again without touching the machine's own server, which the
    other suites, run beside this one, are using. As root, the server runs as ``postgres``."""

    def __init__(self, port: int, log_dir: Path):
        versions = sorted(POSTGRES_BIN.iterdir(), key=lambda p: int(p.name))
        self.bin = versions[-1] / "bin"
        self.port = port
        self.log_path = log_dir / f"postgres-{port}.log"
        self.data = Path(tempfile.mkdtemp(prefix="simplechat-pg-"))
        self.admin_url = f"postgresql://root@127.0.0.1:{port}/postgres"
        self.process: subprocess.Popen | None = None
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            shutil.chown(self.data, "postgres", "postgres")
        done = subprocess.run(self._command("initdb", "-D", str(self.data / "db"), "-U", "root",
                                            "--auth=trust", "--no-sync", "-E", "UTF8"),
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"initdb: {done.stdout}{done.stderr}"

    def _command(self, program: str, *args: str) -> list[str]:
        command = [str(self.bin / program), *args]
        return ["runuser", "-u", "postgres", "--", *command] if self._as_postgres else command

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self._command("postgres", "-D", str(self.data / "db"), "-p", str(self.port),
                              "-c", "listen_addresses=127.0.0.1",
                              "-c", f"unix_socket_directories={self.data}",
                              "-c", "fsync=off", "-c", "max_connections=200"),
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_until(self.accepting, 30, 0.1, f"PostgreSQL on port {self.port}")

    def accepting(self) -> bool:
        return subprocess.run([str(self.bin / "pg_isready"), "-h", "127.0.0.1", "-p",
                               str(self.port)], capture_output=True).returncode == 0

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        """A fast shutdown (SIGINT): clients are cut off, as when an operator stops it."""
        if self.running():
            os.killpg(self.process.pid, signal.SIGINT)
            self.process.wait(30)

    def remove(self) -> None:
        if self.running():
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        shutil.rmtree(self.data, ignore_errors=True)


@pytest.fixture
def own_postgres(tmp_path):
    if not POSTGRES_BIN.is_dir():
        pytest.skip("PostgreSQL's server programs are not installed")
    server = OwnPostgres(free_port(POSTGRES_PORTS), tmp_path)
    try:
        server.start()
        yield server
    finally:
        server.remove()


@pytest.fixture
def fault_stack(request, own_redis, tmp_path):
    """A deployment (see tests/e2e/harness.py) on a fresh PostgreSQL database and a
    redis-server of its own, with FAULT_ENV; nothing started yet."""
    yield from _fault_stack(request, own_redis, tmp_path, None)


@pytest.fixture
def fault_stack_own_postgres(request, own_redis, own_postgres, tmp_path):
    """``fault_stack`` with its database on ``own_postgres``, for a test that stops it."""
    yield from _fault_stack(request, own_redis, tmp_path, own_postgres.admin_url)


def _fault_stack(request, own_redis, tmp_path, admin_url):
    database = TestDatabase.create_migrated("postgresql", admin_url, log_dir=tmp_path)
    stack = Stack(database, tmp_path, redis_url=own_redis.url, ports=WEB_PORTS, **FAULT_ENV)
    yield stack
    try:
        if _failed(request):
            print(f"\n===== process logs ({tmp_path}) =====\n{stack.logs()}")
    finally:
        try:
            stack.stop_processes()  # the redis-server, perhaps crashed, goes with its keys
        finally:
            database.drop()


def start_sender(stack: Stack, quiet: bool = True) -> tuple[Process, int, ChatSocket]:
    """A web process and a solo worker; ada and bob in a conversation, ada's socket joined to
    it. Returns the worker, the conversation id and the socket."""
    web = stack.start_web()
    worker = stack.start_worker(pool="solo", quiet=quiet)
    ada, bob = stack.register(web, "ada"), stack.register(web, "bob")
    conversation_id = ada.start_conversation(web, [bob.id])
    sock = ada.socket(web)
    sock.join(conversation_id)
    return worker, conversation_id, sock


@dataclass
class Stream:
    """What a sender was told: acknowledged payloads, refusals by error code, and sends whose
    answer never came (their fate is unknown, so they may or may not be stored)."""

    acked: list[dict] = field(default_factory=list)
    refused: dict[str, int] = field(default_factory=dict)
    unanswered: list[str] = field(default_factory=list)

    @property
    def acked_ids(self) -> list[str]:
        return [m["id"] for m in self.acked]

    def summary(self) -> str:
        return (f"sent={len(self.acked) + sum(self.refused.values()) + len(self.unanswered)} "
                f"acked={len(self.acked)} refused={self.refused} "
                f"unanswered={len(self.unanswered)}")


def send_stream(sock: ChatSocket, conversation_id: int, count: int, label: str,
                stream: Stream | None = None, between=None, pause: float = 0.0,
                timeout: float = 10.0) -> Stream:
    """Send ``count`` numbered messages one after another; ``between(i)`` runs before each."""
    stream = stream or Stream()
    for i in range(count):
        if between is not None:
            between(i)
        client_id = f"{label}-{i}"
        try:
            ack = sock.call("send_message", {"conversation_id": conversation_id,
                                             "message": f"{label} {i}", "client_id": client_id},
                            timeout=timeout)
        except Exception:  # noqa: BLE001  (a timeout: no answer at all)
            stream.unanswered.append(client_id)
            continue
        if isinstance(ack, dict) and ack.get("ok") is True:
            assert ack["message"]["client_id"] == client_id
            stream.acked.append(ack["message"])
        else:
            code = ack.get("error") if isinstance(ack, dict) else repr(ack)
            stream.refused[code] = stream.refused.get(code, 0) + 1
        if pause:
            time.sleep(pause)
    return stream


def assert_stored_exactly_once(database: TestDatabase, conversation_id: int, stream: Stream,
                               timeout: float = 90.0) -> None:
    """Every acknowledged message reaches SQL, once, with its text; nothing refused is stored."""
    wanted = set(stream.acked_ids)
    wait_until(lambda: wanted <= set(database.message_ids(conversation_id)), timeout, 0.5,
               f"{len(wanted)} acknowledged messages in SQL")
    rows = database.rows("SELECT id, text FROM messages WHERE conversation_id = :c",
                         c=conversation_id)
    stored = {row[0]: row[1] for row in rows}
    assert len(rows) == len(stored)
    for message in stream.acked:
        assert stored[message["id"]] == message["message"]
    # Only an unanswered send may have been stored without the sender knowing.
    extra = {text for key, text in stored.items() if key not in wanted}
    labels = {f"{cid.rsplit('-', 1)[0]} {cid.rsplit('-', 1)[1]}" for cid in stream.unanswered}
    assert extra <= labels, sorted(extra - labels)[:5]
    # A redelivered or retried write left no second trace either.
    duplicates = database.rows(
        "SELECT detail->>'message_id', count(*) FROM generic_activity_log "
        "WHERE action = 'message_sent' GROUP BY 1 HAVING count(*) > 1")
    assert duplicates == []
    logged = database.scalar("SELECT count(*) FROM generic_activity_log "
                             "WHERE action = 'message_sent'")
    assert logged == len(rows)


def unacked_tasks(stack) -> int:
    """Tasks of this stack's queue that a worker took and has not acknowledged (kombu keeps
    them in the ``unacked`` hash until the ack, or until redelivery after the visibility
    timeout)."""
    client = redis_lib.Redis.from_url(stack.redis_url)
    try:
        count = 0
        for raw in client.hvals("unacked"):
            try:
                _message, _exchange, routing_key = json.loads(raw)
            except (ValueError, TypeError):
                continue
            count += routing_key == stack.queue
        return count
    finally:
        client.close()


def report(name: str, **figures) -> None:
    """One line of figures per fault test (shown with ``-s``, or in the log of a failure)."""
    print(f"\n[{name}] " + " ".join(f"{k}={v}" for k, v in figures.items()))
