"""Issue 28, big rooms: a public channel of 5,000 member sockets on one web process.

    .venv/bin/python benchmarks/big_room.py [--members 5000] [--small 50] [--rounds 100]
        [--workers 4] [--shown 50] [--skip-bare]

On a scratch PostgreSQL database and a Redis key prefix of its own, with one Celery worker, for
the bare Flask-SocketIO server (benchmarks/baseline_server.py: join a room, broadcast, ack) and
then for Simple Chat, each one gunicorn-eventlet process, the same clients:

- ``--members`` member sockets of one public channel and ``--small`` sockets of a group of that
  size (other users), over raw websocket Socket.IO clients in ``--workers`` processes (a few
  thousand per process; the script raises its open-file limit). Users, API tokens (the clients
  connect with ``auth: {"token"}``), the channel and the group are written straight to SQL.
  Like the chat page, each channel socket joins asking for the presence of the ``--shown``
  members a page header shows (owner first, then by name: ``presence_of``; a server whose join
  does not answer it is asked with a ``presence`` event after the join, as the page did
  before); ``--follow-header`` subscribes to them instead (presence_subscribe), to see what
  that would cost.
- messages: ``--rounds`` sends into the channel and as many into the group, alternating, one in
  flight: each next send waits until every member socket has the last one. The sender's
  acknowledgement p50/p99 for each, their ratio (goal: channel p99 <= 1.5x group p99), and
  deliveries: every message must reach every member socket exactly once.
- presence (Simple Chat only): one ordinary channel member's socket leaves, then connects
  again; the presence events about them that reach the other sockets (goal: fewer than 50; one
  socket subscribed to them, as an open members panel is, gets each). The same for a member
  every page's header shows.
- restart: the web process is killed and started again; once it answers, every socket connects
  again at once (no jitter), joins (with ``after``, as the page does) and, on Simple Chat,
  asks for the header's presence. The seconds from that moment until all are back and joined,
  for both servers (goal: Simple Chat within 2x the bare server). Before the new process
  starts, every user's presence is dropped from Redis, as a stop that disconnects each socket
  records it: every reconnect is then announced (the worst case). Then one more message must
  reach every socket exactly once.

Prints the load average at each phase: the machine is shared; compare figures of one run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import random
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import harness  # noqa: E402

NS = "/chat"
BARE = "benchmarks.baseline_server:app"
FULL = "wsgi:app"


# --------------------------------------------------------------------------- seeding


def seed(members: int, small: int) -> dict:
    """Users (never logging in: a token each), the channel of ``members`` (the first its owner)
    and a private group of ``small`` other users, straight into SQL; the app's environment must
    be set. Returns the tokens, user ids and conversation ids."""
    from sqlalchemy import insert, select

    from simplechat.app import create_app
    from simplechat.extensions import db
    from simplechat.infra.secrets import token_hash
    from simplechat.models import ApiToken, Conversation, Participant, User

    app = create_app()
    names = [f"br{i:05d}" for i in range(members)] + [f"bs{i:05d}" for i in range(small)]
    with app.app_context():
        db.session.execute(insert(User), [
            {"username": n, "first_name": "Load", "last_name": n, "email": f"{n}@bench.invalid",
             "password_hash": "!"} for n in names])
        ids = dict(db.session.execute(select(User.username, User.id)
                                      .where(User.username.in_(names))).all())
        tokens = {n: "sct_" + secrets.token_urlsafe(24) for n in names}
        db.session.execute(insert(ApiToken), [
            {"user_id": ids[n], "name": "bench", "token_hash": token_hash(t),
             "hint": t[:8]} for n, t in tokens.items()])
        big = Conversation(title="Everyone", is_group=True, visibility="public",
                           created_by_id=ids[names[0]])
        group = Conversation(title="Fifty", is_group=True, visibility="private",
                             created_by_id=ids[names[members]])
        db.session.add_all([big, group])
        db.session.flush()
        db.session.execute(insert(Participant), [
            {"conversation_id": big.id, "user_id": ids[n], "role": "owner" if i == 0 else "member"}
            for i, n in enumerate(names[:members])] + [
            {"conversation_id": group.id, "user_id": ids[n],
             "role": "owner" if i == 0 else "member"} for i, n in enumerate(names[members:])])
        db.session.commit()
        return {"big": big.id, "small": group.id,
                "clients": [(tokens[n], ids[n], big.id if i < members else group.id)
                            for i, n in enumerate(names)]}


# --------------------------------------------------------------------------- the clients


def _retrieved(future: asyncio.Future) -> None:
    """Mark a future's exception seen: a socket closing fails what waits on it, and what
    stopped waiting (a timeout, a retry) would otherwise be reported at exit."""
    if not future.cancelled():
        future.exception()


class Client:
    """One Socket.IO socket over a raw websocket (engine.io 4): connect to /chat, call events,
    count what arrives into its worker's tallies."""

    def __init__(self, worker: Worker, index: int, token: str, user_id: int, conversation: int):
        self.worker, self.index = worker, index
        self.token, self.user_id, self.conversation = token, user_id, conversation
        self.ws = None
        self.seen: set[str] = set()
        self.newest: str | None = None
        self.acks: dict[int, asyncio.Future] = {}
        self.ids = 0
        self.connected: asyncio.Future | None = None
        self.reader: asyncio.Task | None = None

    async def open(self, url: str, subscribe: list[int] | None, deadline: float) -> dict:
        """Connect, join (with ``after``, once something was seen) and subscribe, trying again
        until ``deadline``; the time each step was done."""
        while True:
            try:
                return await self._open_once(url, subscribe)
            except Exception as exc:
                await self.close()
                if time.time() > deadline:
                    raise RuntimeError(f"client {self.index}: {exc!r}") from exc
                self.worker.errors[type(exc).__name__] += 1
                await asyncio.sleep(random.uniform(0.2, 1.0))

    async def _open_once(self, url: str, subscribe: list[int] | None) -> dict:
        loop = asyncio.get_running_loop()
        self.ws = await self.worker.http.ws_connect(
            url.replace("http", "ws", 1) + "/socket.io/?EIO=4&transport=websocket",
            heartbeat=None, max_msg_size=0, timeout=30)
        opened = await asyncio.wait_for(self.ws.receive(), 30)
        if not (isinstance(opened.data, str) and opened.data.startswith("0")):
            raise RuntimeError(f"no engine.io open: {opened!r}")
        self.connected = loop.create_future()
        self.connected.add_done_callback(_retrieved)
        self.reader = asyncio.create_task(self._read(self.ws))
        await self.ws.send_str(f"40{NS}," + json.dumps({"token": self.token}))
        await asyncio.wait_for(self.connected, 60)
        times = {"connected": time.time()}
        payload = {"conversation_id": self.conversation}
        if self.newest:
            payload["after"] = self.newest
        if subscribe is not None and not self.worker.follow:
            payload["presence_of"] = subscribe  # as the chat page's join asks for its header
        while True:
            joined = await self.call("join", payload)
            if joined.get("ok"):
                break
            if joined.get("error") != "rate_limited":
                raise RuntimeError(f"join refused: {joined}")
            await asyncio.sleep(float(joined.get("retry_after") or 1))
        for m in joined.get("messages", []):
            self.newest = max(self.newest or "", m["id"])
        times["joined"] = time.time()
        answered = joined.get("presence") or {}
        if subscribe is not None and joined.get("presence_pushed") is False and (
                self.worker.follow or not all(str(u) in answered for u in subscribe)):
            # The page follows the members its header shows (--follow-header), or asks for
            # them with a presence event (a server whose join takes no presence_of).
            event = "presence_subscribe" if self.worker.follow else "presence"
            answer = await self.call(event, {"conversation_id": self.conversation,
                                             "user_ids": subscribe})
            if not answer.get("ok"):
                raise RuntimeError(f"{event} refused: {answer}")
            times["subscribed"] = time.time()
        elif subscribe is not None and joined.get("presence_pushed") is False:
            times["subscribed"] = times["joined"]  # the join's answer had them
        return times

    async def call(self, event: str, data: dict, timeout: float = 120) -> dict:
        self.ids += 1
        future = asyncio.get_running_loop().create_future()
        future.add_done_callback(_retrieved)
        self.acks[self.ids] = future
        await self.ws.send_str(f"42{NS},{self.ids}" + json.dumps([event, data]))
        try:
            return (await asyncio.wait_for(future, timeout))[0]
        finally:
            self.acks.pop(self.ids, None)

    async def _read(self, ws) -> None:
        prefix = len(f"42{NS},")
        try:
            async for msg in ws:
                text = msg.data
                if not isinstance(text, str):
                    continue
                if text == "2":
                    await ws.send_str("3")
                elif text.startswith(f"42{NS},"):
                    name, data = json.loads(text[prefix:])[:2]
                    self._event(name, data)
                elif text.startswith(f"43{NS},"):
                    rest = text[prefix:]
                    cut = rest.index("[")
                    future = self.acks.get(int(rest[:cut]))
                    if future is not None and not future.done():
                        future.set_result(json.loads(rest[cut:]))
                elif text.startswith(f"40{NS},"):
                    if self.connected is not None and not self.connected.done():
                        self.connected.set_result(True)
                elif text.startswith(f"44{NS},"):
                    if self.connected is not None and not self.connected.done():
                        self.connected.set_exception(RuntimeError(f"refused: {text}"))
        finally:
            for future in list(self.acks.values()) + [self.connected]:
                if future is not None and not future.done():
                    future.set_exception(ConnectionError("socket closed"))

    def _event(self, name: str, data) -> None:
        w = self.worker
        if name == "message" and isinstance(data, dict):
            mid = data.get("id")
            if data.get("conversation_id") != self.conversation:
                return
            if mid in self.seen:
                w.duplicates += 1
                return
            self.seen.add(mid)
            self.newest = max(self.newest or "", mid)
            w.delivered[mid] += 1
        elif name == "presence" and isinstance(data, dict):
            w.presence[data.get("user_id")] += 1

    def is_open(self) -> bool:
        return self.ws is not None and not self.ws.closed

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self.reader is not None:
            await asyncio.gather(self.reader, return_exceptions=True)
        self.ws = self.reader = None


class Worker:
    """A process's share of the clients, driven by the controller's commands over a pipe."""

    def __init__(self, specs: list[tuple], follow: bool):
        self.follow = follow
        self.clients = {i: Client(self, i, *spec) for i, *spec in specs}
        self.delivered: Counter = Counter()
        self.presence: Counter = Counter()
        self.errors: Counter = Counter()
        self.duplicates = 0
        self.http = None

    async def command(self, name: str, *args):
        return await getattr(self, "do_" + name)(*args)

    async def do_open(self, url: str, which: list[int] | None, limit: int | None,
                      subscribe: list[int] | None, deadline: float) -> dict:
        clients = [self.clients[i] for i in (self.clients if which is None else which)]
        gate = asyncio.Semaphore(limit or len(clients) or 1)

        async def one(client: Client) -> dict:
            async with gate:
                return await client.open(url, subscribe, deadline)

        done = await asyncio.gather(*(one(c) for c in clients), return_exceptions=True)
        failed = [repr(d) for d in done if isinstance(d, BaseException)]
        times = [d for d in done if isinstance(d, dict)]
        last = {k: max((t[k] for t in times if k in t), default=None)
                for k in ("connected", "joined", "subscribed")}
        return {"opened": len(times), "failed": failed[:3], "failures": len(failed), **last}

    async def do_close(self, which: list[int]) -> int:
        await asyncio.gather(*(self.clients[i].close() for i in which))
        return len(which)

    async def do_send(self, index: int, conversation: int, text: str) -> tuple[float, str]:
        client = self.clients[index]
        started = time.perf_counter()
        ack = await client.call("send_message", {"conversation_id": conversation,
                                                 "message": text,
                                                 "client_id": secrets.token_hex(8)})
        elapsed = (time.perf_counter() - started) * 1000
        if not ack.get("ok"):
            raise RuntimeError(f"send refused: {ack}")
        return elapsed, ack["message"]["id"]

    async def do_subscribe(self, index: int, user_ids: list[int]) -> dict:
        client = self.clients[index]
        return await client.call("presence_subscribe", {"conversation_id": client.conversation,
                                                        "user_ids": user_ids})

    async def do_tally(self, mids: list[str], user_ids: list[int]) -> dict:
        return {"delivered": {m: self.delivered[m] for m in mids},
                "presence": {u: self.presence[u] for u in user_ids},
                "duplicates": self.duplicates, "errors": dict(self.errors),
                "open": sum(c.is_open() for c in self.clients.values())}

    async def do_reset_presence(self) -> None:
        self.presence.clear()

    async def do_reset(self) -> None:
        """Forget what was counted (a new server's run)."""
        self.delivered.clear()
        self.presence.clear()
        self.errors.clear()
        self.duplicates = 0
        for client in self.clients.values():
            client.seen.clear()
            client.newest = None

    async def do_wait_closed(self, timeout: float) -> int:
        """Wait until the server has closed every socket (it was killed); how many are open."""
        end = time.time() + timeout
        while time.time() < end and any(c.is_open() for c in self.clients.values()):
            await asyncio.sleep(0.1)
        for client in self.clients.values():
            await client.close()
        return sum(c.is_open() for c in self.clients.values())


def worker_main(conn, specs: list[tuple], follow: bool) -> None:
    import aiohttp

    from simplechat.tools.loadtest import raise_open_file_limit

    raise_open_file_limit()

    async def serve() -> None:
        worker = Worker(specs, follow)
        worker.http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        loop = asyncio.get_running_loop()
        inbox: asyncio.Queue = asyncio.Queue()
        loop.add_reader(conn.fileno(), lambda: inbox.put_nowait(conn.recv()))
        while True:
            name, args = await inbox.get()
            if name == "quit":
                break
            try:
                conn.send(("ok", await worker.command(name, *args)))
            except Exception as exc:
                conn.send(("error", repr(exc)))
        for client in worker.clients.values():
            await client.close()
        await worker.http.close()

    asyncio.run(serve())


class Workers:
    def __init__(self, clients: list[tuple], count: int, follow: bool):
        ctx = mp.get_context("spawn")
        self.share = [list(range(k, len(clients), count)) for k in range(count)]
        self.owner = {i: k for k, idx in enumerate(self.share) for i in idx}
        self.conns, self.procs = [], []
        for idx in self.share:
            ours, theirs = ctx.Pipe()
            proc = ctx.Process(target=worker_main,
                               args=(theirs, [(i, *clients[i]) for i in idx], follow), daemon=True)
            proc.start()
            self.conns.append(ours)
            self.procs.append(proc)

    def ask(self, k: int, name: str, *args):
        self.conns[k].send((name, args))
        return self._answer(k)

    def _answer(self, k: int):
        status, value = self.conns[k].recv()
        if status != "ok":
            raise RuntimeError(f"worker {k}: {value}")
        return value

    def all(self, name: str, *args) -> list:
        for conn in self.conns:
            conn.send((name, args))
        return [self._answer(k) for k in range(len(self.conns))]

    def on(self, index: int, name: str, *args):
        return self.ask(self.owner[index], name, *args)

    def open(self, url: str, which: list[int], limit: int | None, subscribe: list[int] | None,
             deadline: float) -> list:
        for k, conn in enumerate(self.conns):
            mine = [i for i in which if self.owner[i] == k]
            conn.send(("open", (url, mine, limit, subscribe, deadline)))
        return [self._answer(k) for k in range(len(self.conns))]

    def tally(self, mids: list[str], user_ids: list[int] = ()) -> dict:
        parts = self.all("tally", list(mids), list(user_ids))
        return {"delivered": {m: sum(p["delivered"][m] for p in parts) for m in mids},
                "presence": {u: sum(p["presence"][u] for p in parts) for u in user_ids},
                "duplicates": sum(p["duplicates"] for p in parts),
                "errors": sum((Counter(p["errors"]) for p in parts), Counter()),
                "open": sum(p["open"] for p in parts)}

    def stop(self) -> None:
        for conn in self.conns:
            try:
                conn.send(("quit", ()))
            except OSError:
                pass
        for proc in self.procs:
            proc.join(5)  # a worker busy with a command reads "quit" only after it
            if proc.is_alive():
                proc.kill()


# --------------------------------------------------------------------------- the servers


def start_server(procs: harness.Processes, target: str, port: int, env: dict, log: str,
                 cwd: str = harness.ROOT):
    master = procs.start([f"{harness.BIN}/gunicorn", "-k", "eventlet", "-w", "1",
                          "--worker-connections", "20000", "--backlog", "4096",
                          "--timeout", "300", "-b", f"127.0.0.1:{port}", target], env, log, cwd)
    harness.wait_http(f"http://127.0.0.1:{port}" + ("/healthz" if target == BARE
                                                    else "/auth/login"), master, timeout=120)
    return master


def kill(master) -> None:
    """The web process dies as a crash would: every socket drops at once."""
    try:
        os.killpg(master.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    master.wait(timeout=30)


def drop_presence(prefix: str, what: str = "presence:") -> int:
    """Drop the app's keys under ``prefix`` + ``what`` (every app key with ``what=""``; the
    Celery queue's keys are not under the prefix)."""
    import redis

    client = redis.Redis.from_url(harness.REDIS_URL)
    keys = list(client.scan_iter(match=prefix + what + "*", count=1000))
    for start in range(0, len(keys), 1000):
        client.delete(*keys[start:start + 1000])
    client.close()
    return len(keys)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load {one:.2f}/{five:.2f} (1/5 min, {os.cpu_count()} CPUs)"


# --------------------------------------------------------------------------- the phases


def messages_phase(workers: Workers, data: dict, args, out: dict) -> list[str]:
    """Alternating sends into the channel and the group, one in flight."""
    big_idx, small_idx = 0, args.members
    expected = {data["big"]: args.members, data["small"]: args.small}
    latency: dict[str, list[float]] = {"big": [], "small": []}
    mids: list[tuple[str, int]] = []
    waited: list[float] = []
    for n in range(args.rounds):
        for kind, index, conversation in (("big", big_idx, data["big"]),
                                          ("small", small_idx, data["small"])):
            ms, mid = workers.on(index, "send", index, conversation, f"{kind} message {n}")
            latency[kind].append(ms)
            mids.append((mid, expected[conversation]))
            started = time.perf_counter()
            while workers.tally([mid])["delivered"][mid] < expected[conversation]:
                if time.perf_counter() - started > 60:
                    break
                time.sleep(0.01)
            if kind == "big":
                waited.append(time.perf_counter() - started)
    final = workers.tally([m for m, _ in mids])
    missed = sum(max(0, want - final["delivered"][m]) for m, want in mids)
    out["messages"] = {
        "big_p50": statistics.median(latency["big"]), "big_p99": percentile(latency["big"], 99),
        "small_p50": statistics.median(latency["small"]),
        "small_p99": percentile(latency["small"], 99),
        "big_all_delivered_p50_s": statistics.median(waited),
        "sent": len(mids), "missed": missed, "duplicates": final["duplicates"]}
    return [m for m, _ in mids]


def presence_phase(workers: Workers, data: dict, args, url: str, shown: list[int],
                   out: dict) -> None:
    """An ordinary member leaves and comes back, followed by one socket (an open members
    panel); then a member the header shows."""
    users = [c[1] for c in data["clients"]]
    watcher = 1
    results = {}
    for label, who in (("ordinary member", args.members - 1), ("member every page shows", 2)):
        uid = users[who]
        answer = workers.on(watcher, "subscribe", watcher, [uid])
        # A server before big rooms knows no presence_subscribe: it pushes to the room.
        assert answer.get("ok") or answer.get("error") == "unknown_event", answer
        counts = []
        for step in ("leaves", "connects"):
            workers.all("reset_presence")
            if step == "leaves":
                workers.on(who, "close", [who])
            else:
                workers.open(url, [who], None, shown, time.time() + 60)
            deadline = time.time() + 20
            while workers.tally([], [uid])["presence"][uid] < 1 and time.time() < deadline:
                time.sleep(0.02)
            time.sleep(1.5)  # stragglers: what reaches the others arrives within this
            counts.append(workers.tally([], [uid])["presence"][uid])
        results[label] = counts
    out["presence"] = results


def restart_phase(workers: Workers, procs, target: str, port: int, env: dict, log: str,
                  master, args, subscribe: list[int] | None, prefix: str | None,
                  out: dict) -> object:
    url = f"http://127.0.0.1:{port}"
    kill(master)
    still = sum(workers.all("wait_closed", 30.0))
    if prefix:
        out["presence_keys_dropped"] = drop_presence(prefix)
    master = start_server(procs, target, port, env, log, args.tree)
    spy = None
    if args.spy and target == FULL:  # py-spy's raw stacks of the reconnect
        spy = subprocess.Popen([f"{harness.BIN}/py-spy", "record", "--nonblocking", "--pid",
                                str(harness.worker_pid(master)), "--rate", "100", "--format",
                                "raw", "--output", args.spy])
    total = args.members + args.small
    go = time.time()
    parts = workers.open(url, list(range(total)), None, subscribe, go + 300)
    opened = sum(p["opened"] for p in parts)

    def last(key: str) -> float | None:
        values = [p[key] for p in parts if p[key] is not None]
        return max(values) - go if values else None

    # The new worker's CPU from its start (imports included) to the last join: next to the
    # wall time, whether the reconnect was busy or waiting.
    worker_cpu = harness.cpu_seconds(harness.worker_pid(master))
    out["restart"] = {"sockets": total, "back": opened, "still_open_at_kill": still,
                      "worker_cpu_s": round(worker_cpu, 1),
                      "failures": sum(p["failures"] for p in parts),
                      "examples": [f for p in parts for f in p["failed"]][:3],
                      "all_connected_s": last("connected"), "all_joined_s": last("joined"),
                      "all_subscribed_s": last("subscribed"), "load": load()}
    if spy is not None:
        spy.send_signal(signal.SIGINT)
        spy.wait(timeout=60)
    # One more message: everyone back must get it once.
    ms, mid = workers.on(0, "send", 0, args.conversations["big"], "after the restart")
    deadline = time.time() + 60
    while workers.tally([mid])["delivered"][mid] < args.members and time.time() < deadline:
        time.sleep(0.02)
    time.sleep(1.0)
    final = workers.tally([mid])
    out["restart"]["after_message_delivered"] = final["delivered"][mid]
    out["restart"]["duplicates_total"] = final["duplicates"]
    return master


def run_server(label: str, target: str, workers: Workers, data: dict, args, env: dict,
               prefix: str | None, workdir: str) -> dict:
    out: dict = {"label": label, "load_start": load()}
    procs = harness.Processes()
    port = harness.free_port()
    url = f"http://127.0.0.1:{port}"
    log = os.path.join(workdir, f"{label}.log")
    users = [c[1] for c in data["clients"]]
    shown = users[:args.shown]
    subscribe = shown if target == FULL else None
    workers.all("reset")
    if prefix:
        drop_presence(prefix, "")  # each server's run starts on empty caches
    try:
        master = start_server(procs, target, port, env, log, args.tree)
        started = time.time()
        parts = workers.open(url, list(range(args.members + args.small)), 200, subscribe,
                             time.time() + 600)
        out["connect"] = {"opened": sum(p["opened"] for p in parts),
                          "failures": sum(p["failures"] for p in parts),
                          "examples": [f for p in parts for f in p["failed"]][:3],
                          "seconds": round(time.time() - started, 1), "load": load()}
        print(f"[{label}] connected {out['connect']}", flush=True)
        if args.idle:  # what the open sockets cost with nothing happening
            pid = harness.worker_pid(master)
            before = harness.cpu_seconds(pid)
            time.sleep(args.idle)
            out["idle_cpu_percent"] = round((harness.cpu_seconds(pid) - before) / args.idle
                                            * 100, 1)
            print(f"[{label}] idle: {out['idle_cpu_percent']}% of a core", flush=True)
        messages_phase(workers, data, args, out)
        out["messages"]["load"] = load()
        print(f"[{label}] messages {out['messages']}", flush=True)
        if target == FULL:
            presence_phase(workers, data, args, url, shown, out)
            print(f"[{label}] presence {out['presence']}", flush=True)
        master = restart_phase(workers, procs, target, port, env, log, master, args, subscribe,
                               prefix, out)
        print(f"[{label}] restart {out['restart']}", flush=True)
        out["errors"] = dict(workers.tally([])["errors"])
        workers.all("wait_closed", 0.0)
    finally:
        procs.stop_all()
    out["load_end"] = load()
    return out


def report(results: dict, args) -> None:
    print(f"\nbig_room: a channel of {args.members} member sockets and a group of {args.small} "
          f"on one gunicorn-eventlet process; {args.rounds} sends to each")
    for label, r in results.items():
        print(f"\n== {label} (start: {r['load_start']}; end: {r['load_end']})")
        c = r["connect"]
        print(f"connect: {c['opened']} sockets in {c['seconds']} s, {c['failures']} failed "
              f"({c['load']})")
        if "idle_cpu_percent" in r:
            print(f"idle, the sockets open and nothing sent: {r['idle_cpu_percent']}% of a core")
        m = r["messages"]
        ratio = m["big_p99"] / m["small_p99"] if m["small_p99"] else float("nan")
        print(f"send ack ms: channel p50 {m['big_p50']:.1f} p99 {m['big_p99']:.1f}; group p50 "
              f"{m['small_p50']:.1f} p99 {m['small_p99']:.1f}; p99 ratio {ratio:.2f}x "
              f"(goal <= 1.5x); a channel message on all sockets after "
              f"{m['big_all_delivered_p50_s'] * 1000:.0f} ms (p50); {m['sent']} messages, "
              f"{m['missed']} deliveries missed, "
              f"{m['duplicates']} duplicated ({m['load']})")
        if "presence" in r:
            for who, (left, came) in r["presence"].items():
                print(f"presence deliveries, {who}: leaving {left}, connecting {came}")
        s = r["restart"]
        print(f"restart: {s['back']}/{s['sockets']} back; all connected "
              f"{s['all_connected_s']:.2f} s, all joined {s['all_joined_s']:.2f} s "
              f"(the new worker's CPU by then: {s['worker_cpu_s']:.1f} s)"
              + (f", all had the header's presence {s['all_subscribed_s']:.2f} s"
                 if s.get("all_subscribed_s") else "")
              + f"; {s['failures']} gave up; retries {r['errors']}; then a message reached "
              f"{s['after_message_delivered']}/{args.members}, duplicates in the run "
              f"{s['duplicates_total']} ({s['load']})")
    if "bare" in results and "full" in results:
        full, bare = results["full"]["restart"], results["bare"]["restart"]
        print(f"\nrestart, all back and joined: Simple Chat {full['all_joined_s']:.2f} s vs bare "
              f"{bare['all_joined_s']:.2f} s = {full['all_joined_s'] / bare['all_joined_s']:.2f}x "
              "(goal <= 2x)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--members", type=int, default=5000)
    parser.add_argument("--small", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--shown", type=int, default=50)
    parser.add_argument("--skip-bare", action="store_true")
    parser.add_argument("--follow-header", action="store_true",
                        help="channel sockets subscribe to the --shown members (presence_subscribe)"
                             " instead of asking for them once (presence with user_ids), as the "
                             "page does")
    parser.add_argument("--json", help="write the figures here too")
    parser.add_argument("--idle", type=float, default=0,
                        help="seconds to measure the web process's CPU with the sockets idle")
    parser.add_argument("--spy", help="py-spy the Simple Chat reconnect into this file (raw)")
    parser.add_argument("--ref", help="also run Simple Chat as of this commit, to compare (the "
                                      "channels and big rooms landed together in 83f95f7: main "
                                      "has no commit of channels before big rooms)")
    parser.add_argument("--seed", nargs=2, type=int, metavar=("MEMBERS", "SMALL"),
                        help=argparse.SUPPRESS)  # the seeding step, run with the app's env
    args = parser.parse_args()
    if args.seed:
        print(json.dumps(seed(*args.seed)))
        return 0

    from simplechat.tools.loadtest import raise_open_file_limit

    print(f"open files: {raise_open_file_limit()}; {load()}", flush=True)
    prefix = harness.unique_prefix("bigroom")
    workdir = tempfile.mkdtemp(prefix="simplechat-bigroom-")
    print(f"logs in {workdir}", flush=True)
    procs = harness.Processes()
    results: dict = {}
    try:
        with harness.scratch_database("bigroom") as database_url:
            env = harness.app_env(database_url, prefix, BASELINE_REDIS_URL=harness.REDIS_URL,
                                  BASELINE_CHANNEL=prefix + "baseline")
            started = time.time()
            seeded = subprocess.run(  # config.py reads the environment once, at import
                [sys.executable, os.path.abspath(__file__), "--seed", str(args.members),
                 str(args.small)], cwd=harness.ROOT, env=env, capture_output=True,
                text=True, timeout=600)
            if seeded.returncode:
                raise RuntimeError(f"seeding failed: {seeded.stderr[-3000:]}")
            data = json.loads(seeded.stdout.strip().splitlines()[-1])
            print(f"seeded {len(data['clients'])} users in {time.time() - started:.1f} s",
                  flush=True)
            args.conversations = {"big": data["big"], "small": data["small"]}
            harness.celery_worker(procs, env, os.path.join(workdir, "celery.log"))
            workers = Workers(data["clients"], args.workers, args.follow_header)
            try:
                args.tree = harness.ROOT
                if not args.skip_bare:
                    results["bare"] = run_server("bare", BARE, workers, data, args, env, None,
                                                 workdir)
                if args.ref:  # the same on an earlier commit's tree
                    args.tree = harness.checkout(args.ref, tempfile.mkdtemp(dir=workdir))
                    results[f"full at {args.ref}"] = run_server(
                        "full-ref", FULL, workers, data, args, env, prefix, workdir)
                    args.tree = harness.ROOT
                results["full"] = run_server("full", FULL, workers, data, args, env, prefix,
                                             workdir)
            finally:
                workers.stop()
    finally:
        procs.stop_all()
        harness.drop_redis_keys(prefix)
    report(results, args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
