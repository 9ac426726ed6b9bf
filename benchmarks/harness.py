"""Starting and stopping what the benchmarks measure: a scratch PostgreSQL database, gunicorn
(eventlet) servers and a Celery worker, all on 127.0.0.1, cleaned up on exit."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)
PG_ADMIN = os.environ.get("BENCH_PG_ADMIN", "postgresql://root@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/11")


def pg_url(name: str) -> str:
    return PG_ADMIN.rsplit("/", 1)[0] + "/" + name


@contextlib.contextmanager
def scratch_database(tag: str, migrate: bool = True) -> Iterator[str]:
    """A fresh PostgreSQL database (migrated to the current schema), dropped afterwards."""
    from sqlalchemy import create_engine, text

    name = f"simplechat_bench_{tag}_{os.getpid()}"
    admin = create_engine(PG_ADMIN.replace("postgresql://", "postgresql+psycopg2://"),
                          isolation_level="AUTOCOMMIT", pool_pre_ping=True)
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {name}"))
        conn.execute(text(f"CREATE DATABASE {name}"))
    url = pg_url(name)
    try:
        if migrate:
            subprocess.run([f"{BIN}/flask", "--app", "wsgi", "db", "upgrade"], cwd=ROOT,
                           env=app_env(url, "migrate:"), check=True, capture_output=True,
                           timeout=120)
        yield url
    finally:
        _drop_database(admin, name)


def _drop_database(admin, name: str) -> None:
    """Drop a scratch database, riding out a PostgreSQL restart (other suites restart it)."""
    from sqlalchemy import text

    for attempt in range(10):
        try:
            with admin.connect() as conn:
                conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                  f"WHERE datname = '{name}' AND pid <> pg_backend_pid()"))
                conn.execute(text(f"DROP DATABASE IF EXISTS {name}"))
            break
        except Exception as exc:
            if attempt == 9:
                print(f"could not drop database {name}: {exc}", file=sys.stderr)
            time.sleep(2)
    admin.dispose()


def unique_prefix(tag: str) -> str:
    return f"bench-{tag}-{secrets.token_hex(4)}:"


def app_env(database_url: str, prefix: str, **extra: str) -> dict[str, str]:
    """The environment of a production-configured Simple Chat process for a benchmark."""
    env = dict(os.environ)
    env.update({
        "SIMPLECHAT_CONFIG": "production",
        "SECRET_KEY": secrets.token_hex(32),
        "SESSION_COOKIE_SECURE": "0",  # plain HTTP on 127.0.0.1
        "DATABASE_URL": database_url,
        "REDIS_URL": REDIS_URL,
        "REDIS_KEY_PREFIX": prefix,
        "CELERY_QUEUE": queue_name(prefix),
        "CHAT_RATE_LIMIT": "off",
        # Every benchmark user logs in from 127.0.0.1 and may start many conversations: the
        # limits meant for one hostile address or account would throttle the load itself.
        "LOGIN_SUCCESS_RATE_LIMIT_IP": "off",
        "LOGIN_SUCCESS_RATE_LIMIT_ACCOUNT": "off",
        "CHAT_CONVERSATION_RATE_LIMIT": "off",
        "LOG_LEVEL": "WARNING",
    })
    env.update(extra)
    return env


def queue_name(prefix: str) -> str:
    """The Celery queue of one benchmark run, so runs never consume each other's tasks."""
    return prefix.rstrip(":").replace(":", "-")


def drop_redis_keys(prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=prefix + "*", count=1000))
    queue = queue_name(prefix)
    keys += [queue, f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}"]
    for start in range(0, len(keys), 1000):
        client.delete(*keys[start:start + 1000])
    client.close()


def port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port(low: int = 18500, high: int = 18599) -> int:
    for port in range(low, high + 1):
        if port_is_free(port):
            return port
    raise RuntimeError(f"no free port in {low}-{high}")


class Processes:
    """Child processes started in their own process groups, stopped in reverse order."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen] = []

    def start(self, argv: list[str], env: dict[str, str], log_path: str,
              cwd: str = ROOT) -> subprocess.Popen:
        log = open(log_path, "wb")  # noqa: SIM115 (kept open for the child's lifetime)
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        self.started.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in reversed(self.started):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        for proc in reversed(self.started):
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        self.started.clear()


def gunicorn(procs: Processes, target: str, port: int, env: dict[str, str], log: str,
             cwd: str = ROOT) -> subprocess.Popen:
    return procs.start([f"{BIN}/gunicorn", "-k", "eventlet", "-w", "1", "--worker-connections",
                        "10000", "--timeout", "120", "-b", f"127.0.0.1:{port}", target],
                       env, log, cwd)


def checkout(ref: str, into: str) -> str:
    """The tree of a git commit, extracted into a directory (no change to the repository)."""
    archive = subprocess.run(["git", "archive", "--format=tar", ref], cwd=ROOT, check=True,
                             capture_output=True, timeout=60).stdout
    subprocess.run(["tar", "-x", "-C", into], input=archive, check=True, timeout=60)
    return into


def celery_worker(procs: Processes, env: dict[str, str], log: str, concurrency: int = 1,
                  ) -> subprocess.Popen:
    return procs.start([f"{BIN}/celery", "-A", "celery_worker.celery", "worker",
                        "--loglevel=warning", "-c", str(concurrency), "-Q", env["CELERY_QUEUE"],
                        "-n", f"{env['CELERY_QUEUE']}@%h", "--without-gossip",
                        "--without-mingle", "--without-heartbeat"], env, log)


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode} before serving")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


def worker_pid(master: subprocess.Popen) -> int:
    """The pid of gunicorn's single worker process."""
    for _ in range(50):
        with open(f"/proc/{master.pid}/task/{master.pid}/children") as f:
            children = f.read().split()
        if children:
            return int(children[0])
        time.sleep(0.1)
    raise RuntimeError("gunicorn started no worker")


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load_note() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min) {five:.2f} (5 min) on {os.cpu_count()} CPUs"
