"""Soak: many logged-in Socket.IO clients over two gunicorn-eventlet processes, steady sending
for minutes; reports errors, lost messages and deliveries, and the server processes' memory.

    .venv/bin/python benchmarks/soak.py --clients 300 --duration 300 --interval 10

Starts its own stack (a fresh PostgreSQL database, Redis key prefix and Celery queue, two web
processes, one worker) on ports 18700-18799 and removes it at the end. Users and conversations
are seeded straight into SQL; every client logs in through the real form, connects over
websocket, joins its group conversation and sends one message every ``--interval`` seconds.

Afterwards: every acknowledged message must be in SQL (``lost``), and must have reached every
member's socket exactly once (``missed_deliveries``, ``duplicate_deliveries``). ``errors``
counts failed logins and connects, refused or unanswered sends, and sockets dropped by the
server. Exit status 1 when any of errors, lost, missed or duplicates is not 0.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import socketio

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from e2e import harness  # noqa: E402
from e2e.harness import Stack, TestDatabase  # noqa: E402

NAMESPACE = "/chat"
PASSWORD = "soak-test-password"
_CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]*)"|value="([^"]*)"[^>]*name="csrf_token"')


@dataclass
class Tally:
    errors: Counter = field(default_factory=Counter)
    acked: dict[str, int] = field(default_factory=dict)  # message id -> conversation id
    ack_latency: list[float] = field(default_factory=list)


class Client:
    def __init__(self, username: str, conversation_id: int, url: str, tally: Tally):
        self.username = username
        self.conversation_id = conversation_id
        self.url = url
        self.tally = tally
        self.received: Counter[str] = Counter()
        self.closing = False
        self.sio = socketio.AsyncClient(reconnection=False)
        self.sio.on("message", self._on_message, namespace=NAMESPACE)
        self.sio.on("disconnect", self._on_disconnect, namespace=NAMESPACE)

    async def _on_message(self, data) -> None:
        self.received[data.get("id")] += 1

    async def _on_disconnect(self, *_args) -> None:
        if not self.closing:
            self.tally.errors["dropped_socket"] += 1

    async def start(self) -> None:
        jar = aiohttp.CookieJar(unsafe=True)  # cookies for an IP-address host
        async with aiohttp.ClientSession(cookie_jar=jar) as http:
            async with http.get(self.url + "/auth/login") as page:
                match = _CSRF.search(await page.text())
            token = (match.group(1) or match.group(2)) if match else ""
            async with http.post(self.url + "/auth/login", allow_redirects=False, data={
                    "csrf_token": token, "username": self.username,
                    "password": PASSWORD}) as response:
                if response.status != 302:
                    raise RuntimeError(f"login {self.username}: HTTP {response.status}")
            cookie = "; ".join(f"{c.key}={c.value}" for c in jar)
        await self.sio.connect(self.url, headers={"Cookie": cookie}, transports=["websocket"],
                               namespaces=[NAMESPACE], wait_timeout=30)
        ack = await self.sio.call("join", {"conversation_id": self.conversation_id},
                                  namespace=NAMESPACE, timeout=30)
        if not ack.get("ok"):
            raise RuntimeError(f"join {self.username}: {ack}")

    async def send_steadily(self, until: float, interval: float) -> None:
        await asyncio.sleep(random.uniform(0, interval))
        n = 0
        while time.monotonic() < until:
            started = time.monotonic()
            try:
                ack = await self.sio.call("send_message", {
                    "conversation_id": self.conversation_id,
                    "message": f"soak {self.username} {n}",
                    "client_id": f"{self.username}-{n}"}, namespace=NAMESPACE, timeout=30)
            except Exception as exc:  # noqa: BLE001  (no answer: counted, keep going)
                self.tally.errors[f"send:{type(exc).__name__}"] += 1
            else:
                if isinstance(ack, dict) and ack.get("ok"):
                    self.tally.acked[ack["message"]["id"]] = self.conversation_id
                    self.tally.ack_latency.append(time.monotonic() - started)
                else:
                    code = ack.get("error") if isinstance(ack, dict) else repr(ack)
                    self.tally.errors[f"send:{code}"] += 1
            n += 1
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))

    async def close(self) -> None:
        self.closing = True
        try:
            await self.sio.disconnect()
        except Exception:  # noqa: BLE001
            pass


def seed(database: TestDatabase, clients: int, group: int, tag: str) -> list[tuple[str, int]]:
    """Users and group conversations straight into SQL; (username, conversation id) per user."""
    from sqlalchemy import text
    from werkzeug.security import generate_password_hash

    password_hash = generate_password_hash(PASSWORD, method="pbkdf2:sha256:1000")
    out = []
    with database.engine.begin() as conn:
        conversation_id = None
        for i in range(clients):
            username = f"{tag}{i:04d}"
            user_id = conn.execute(text(
                "INSERT INTO users (username, first_name, last_name, email, password_hash) "
                "VALUES (:u, :f, 'Soak', :e, :h) RETURNING id"),
                {"u": username, "f": f"User{i}", "e": f"{username}@example.com",
                 "h": password_hash}).scalar()
            if i % group == 0:
                conversation_id = conn.execute(text(
                    "INSERT INTO conversations (title, is_group) VALUES (:t, true) RETURNING id"),
                    {"t": f"soak {i // group}"}).scalar()
            conn.execute(text("INSERT INTO participants (conversation_id, user_id) "
                              "VALUES (:c, :u)"), {"c": conversation_id, "u": user_id})
            out.append((username, conversation_id))
    return out


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def server_rss(webs, worker) -> dict[str, float]:
    figures = {}
    for web in webs:
        for pid in web.worker_pids():
            figures[f"{web.name}:{pid}"] = rss_mib(pid)
    figures[f"celery:{worker.pid}"] = rss_mib(worker.pid)
    return figures


async def drive(urls: list[str], members: list[tuple[str, int]], duration: float,
                interval: float, progress: bool, on_connected) -> tuple[Tally, list[Client], dict]:
    tally = Tally()
    clients = [Client(name, conv, urls[i % len(urls)], tally)
               for i, (name, conv) in enumerate(members)]
    gate = asyncio.Semaphore(20)

    async def start(client: Client) -> Client | None:
        async with gate:
            try:
                await client.start()
                return client
            except Exception as exc:  # noqa: BLE001
                tally.errors[f"connect:{type(exc).__name__}"] += 1
                return None

    started = time.monotonic()
    live = [c for c in await asyncio.gather(*(start(c) for c in clients)) if c]
    timing = {"connect_s": round(time.monotonic() - started, 1), "rss_mib_start": on_connected()}
    if progress:
        print(f"{len(live)}/{len(clients)} clients connected in {timing['connect_s']} s",
              flush=True)
    until = time.monotonic() + duration
    senders = [asyncio.create_task(c.send_steadily(until, interval)) for c in live]
    if progress:
        while time.monotonic() < until:
            await asyncio.sleep(min(30.0, max(0.1, until - time.monotonic())))
            print(f"  {len(tally.acked)} acknowledged, errors {dict(tally.errors)}", flush=True)
    await asyncio.gather(*senders)
    return tally, live, timing


async def wait_deliveries(tally: Tally, live: list[Client], timeout: float) -> tuple[int, int]:
    """Wait for every acknowledged message to reach every member's socket; (missed, dups)."""
    expected: dict[int, list[Client]] = {}
    for client in live:
        expected.setdefault(client.conversation_id, []).append(client)
    deadline = time.monotonic() + timeout
    while True:
        missed = sum(1 for mid, conv in tally.acked.items()
                     for c in expected.get(conv, []) if not c.received[mid])
        if not missed or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    dups = sum(n - 1 for c in live for n in c.received.values() if n > 1)
    return missed, dups


def run(clients: int = 300, webs: int = 2, duration: float = 300.0, interval: float = 10.0,
        group: int = 10, ports: range = range(18700, 18800), progress: bool = True,
        log_dir: Path | None = None) -> dict:
    """Start a stack, soak it, tear it down; the figures as a dict."""
    harness.PORTS = ports
    log_dir = Path(log_dir or tempfile.mkdtemp(prefix="soak-"))
    database = TestDatabase.create_migrated("postgresql", log_dir=log_dir)
    stack = Stack(database, log_dir)
    try:
        web_processes = [stack.start_web(workers=1) for _ in range(webs)]
        worker = stack.start_worker(pool="solo")
        members = seed(database, clients, group, "soak")

        async def main():
            # Memory is read once every client is connected, and again at the end.
            tally, live, timing = await drive(
                [w.url for w in web_processes], members, duration, interval, progress,
                lambda: server_rss(web_processes, worker))
            missed, dups = await wait_deliveries(tally, live, 60)
            await asyncio.gather(*(c.close() for c in live))
            return tally, live, timing, missed, dups

        tally, live, timing, missed, dups = asyncio.run(main())

        wanted = set(tally.acked)
        deadline = time.monotonic() + 120
        stored: set[str] = set()
        while time.monotonic() < deadline:
            stored = {r[0] for r in database.rows("SELECT id FROM messages")}
            if wanted <= stored:
                break
            time.sleep(1)
        rss_end = server_rss(web_processes, worker)
        latency = sorted(tally.ack_latency)
        figures = {
            "clients": clients, "connected": len(live), "web_processes": webs,
            "duration_s": duration, "interval_s": interval, **timing,
            "acknowledged": len(tally.acked), "stored": len(wanted & stored),
            "lost": len(wanted - stored), "missed_deliveries": missed,
            "duplicate_deliveries": dups, "errors": sum(tally.errors.values()),
            "error_kinds": dict(tally.errors),
            "ack_ms_p50": round(statistics.median(latency) * 1000, 1) if latency else None,
            "ack_ms_p99": round(latency[int(len(latency) * 0.99)] * 1000, 1) if latency else None,
            "rss_mib_end": rss_end,
            "servers_alive": all(p.alive() for p in stack.processes),
        }
        return figures
    finally:
        stack.close()
        database.drop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=300)
    parser.add_argument("--webs", type=int, default=2, help="gunicorn-eventlet processes")
    parser.add_argument("--duration", type=float, default=300.0, help="seconds of sending")
    parser.add_argument("--interval", type=float, default=10.0,
                        help="seconds between two sends of one client")
    parser.add_argument("--group", type=int, default=10, help="members per conversation")
    args = parser.parse_args()
    figures = run(args.clients, args.webs, args.duration, args.interval, args.group)
    print(json.dumps(figures, indent=2))
    bad = (figures["errors"] or figures["lost"] or figures["missed_deliveries"]
           or figures["duplicate_deliveries"] or not figures["servers_alive"])
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
