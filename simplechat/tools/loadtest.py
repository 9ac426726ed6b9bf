"""Load test: N logged-in Socket.IO clients in M conversations send at a set rate for a set time;
reports acks, deliveries/s and send→deliver latency.  ``python -m simplechat.tools.loadtest --help``

Every message carries its send time (CLOCK_MONOTONIC, shared by all processes on one host) in
its ``client_id``, so any client, in any of the tool's processes, measures the latency of every
copy it receives, and notices a copy it has received before (a duplicate).
``--baseline`` drives ``benchmarks/baseline_server.py`` with the same code.

A client told ``resync`` (its server's fan-out missed messages) joins again with ``after`` its
newest message, as the browser does; one told ``server_restart`` (a deploy) waits the time
given, reconnects and joins with ``after``. What such a catch-up brings counts as delivered
(late), so a run through a failover or a deploy shows what was missed and what was recovered.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing as mp
import os
import re
import resource
import sys
import time
from array import array
from collections import Counter
from dataclasses import dataclass, field

NAMESPACE = "/chat"
TAG = "lt"
_INPUT = re.compile(r"<input[^>]*name=\"csrf_token\"[^>]*>")
_VALUE = re.compile(r"value=\"([^\"]*)\"")
_CONVERSATION_URL = re.compile(r"/chat/(\d+)$")


# --- setup over HTTP: log in (or register) each user, start the conversations -------------------

class HttpUser:
    """One user's cookies, kept by hand so many users can share one aiohttp session."""

    def __init__(self, http, base: str, username: str):
        self.http = http
        self.base = base
        self.username = username
        self.cookies: dict[str, str] = {}

    @property
    def cookie_header(self) -> str:
        return "; ".join(f"{k}={v}" for k, v in self.cookies.items())

    async def request(self, method: str, path: str, **kwargs):
        headers = {"Cookie": self.cookie_header} if self.cookies else {}
        async with self.http.request(method, self.base + path, headers=headers,
                                     allow_redirects=False, **kwargs) as response:
            body = await response.text()
            for name, morsel in response.cookies.items():
                if morsel.value:
                    self.cookies[name] = morsel.value
                else:
                    self.cookies.pop(name, None)
            return response.status, response.headers.get("Location", ""), body

    async def csrf_token(self, path: str) -> str:
        status, _, body = await self.request("GET", path)
        tag = _INPUT.search(body)
        value = _VALUE.search(tag.group(0)) if tag else None
        if status != 200 or value is None:
            raise RuntimeError(f"no CSRF token on {path} (HTTP {status})")
        return value.group(1)

    async def login(self, password: str) -> bool:
        token = await self.csrf_token("/auth/login")
        status, location, _ = await self.request("POST", "/auth/login", data={
            "csrf_token": token, "username": self.username, "password": password})
        return status == 302 and "/auth/login" not in location

    async def register(self, password: str) -> bool:
        token = await self.csrf_token("/auth/register")
        status, location, _ = await self.request("POST", "/auth/register", data={
            "csrf_token": token, "username": self.username, "first_name": "Load",
            "last_name": self.username, "email": f"{self.username}@loadtest.example.com",
            "password": password, "confirm": password})
        return status == 302 and "/auth/register" not in location

    async def user_id(self, username: str) -> int:
        status, _, body = await self.request("GET", "/api/users", params={"q": username})
        if status != 200:
            raise RuntimeError(f"user search failed (HTTP {status})")
        for hit in json.loads(body)["results"]:
            if hit["text"].endswith(f"(@{username})"):
                return int(hit["id"])
        raise RuntimeError(f"user {username} not found")

    async def start_conversation(self, member_ids: list[int], title: str) -> int:
        token = await self.csrf_token("/chat/new")
        data = [("csrf_token", token), ("title", title)]
        data += [("participants", str(i)) for i in member_ids]
        status, location, _ = await self.request("POST", "/chat/new", data=data)
        found = _CONVERSATION_URL.search(location)
        if status != 302 or not found:
            raise RuntimeError(f"could not start a conversation (HTTP {status})")
        return int(found.group(1))


async def gather_limited(limit: int, coros) -> list:
    gate = asyncio.Semaphore(limit)

    async def run(coro):
        async with gate:
            return await coro

    return await asyncio.gather(*(run(c) for c in coros))


async def prepare_full(base: str, usernames: list[str], password: str, conversations: int,
                       register: bool, concurrency: int) -> tuple[list[str], list[int]]:
    """Log every user in (registering if asked) and start the conversations over HTTP.

    Returns each user's cookie header and the conversation id of each user (user i takes part
    in conversation i mod M)."""
    import aiohttp

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar(),
                                     timeout=aiohttp.ClientTimeout(total=60)) as http:
        users = [HttpUser(http, base, name) for name in usernames]

        async def log_in(user: HttpUser) -> None:
            if await user.login(password):
                return
            if not register or not await user.register(password):
                raise RuntimeError(f"could not log in as {user.username}")

        await gather_limited(concurrency, (log_in(u) for u in users))
        groups = [list(range(k, len(users), conversations)) for k in range(conversations)]

        async def start(k: int) -> int:
            creator = users[groups[k][0]]
            ids = [await creator.user_id(users[i].username) for i in groups[k][1:]]
            return await creator.start_conversation(ids, f"load test {k}")

        conversation_ids = await gather_limited(concurrency, (start(k) for k in
                                                               range(conversations)))
        cookies = [u.cookie_header for u in users]
    return cookies, [conversation_ids[i % conversations] for i in range(len(users))]


# --- the clients: connect, join, send, measure ----------------------------------------------------

@dataclass
class WorkerPlan:
    index: int
    url: str
    clients: list[tuple[str | None, int, bool]]  # (cookie header, conversation id, sends)
    rate: float  # messages per second this process sends
    duration: float
    drain: float
    inflight: int
    message: str
    connect_concurrency: int


@dataclass
class WorkerResult:
    connected: Counter = field(default_factory=Counter)  # conversation id -> sockets joined
    sent: int = 0
    acks_ok: Counter = field(default_factory=Counter)  # conversation id -> ok acks
    refusals: Counter = field(default_factory=Counter)  # error code in the ack -> count
    errors: Counter = field(default_factory=Counter)  # client-side failures -> count
    send_times: array = field(default_factory=lambda: array("d"))  # seconds after start
    latencies: array = field(default_factory=lambda: array("d"))  # ms, one per delivery
    ack_latencies: array = field(default_factory=lambda: array("d"))  # ms, one per ack
    max_send_lag_ms: float = 0.0  # how far the sender fell behind its schedule
    duplicates: int = 0  # copies of a message that a client had already received
    # live copies of a message that a catch-up had just brought (the socket joins the room
    # before the answer is read, so such a message may come both ways; skipped by id)
    overlaps: int = 0
    resyncs: int = 0  # resync events received (each answered by a join with after)
    restarts: int = 0  # server_restart events received (each: reconnect, then join with after)
    caught_up: int = 0  # deliveries that came in the answer of such a join
    senders: int = 0  # sockets of this process that send
    # CLOCK_MONOTONIC seconds: the first connect, the last ok join ack, the first send and the
    # end of the drain (before the sockets disconnect).
    connect_started: float | None = None
    last_joined: float | None = None
    send_started: float | None = None
    send_ended: float | None = None


CATCH_UP_MARGIN_MS = 5000  # a catch-up asks from this long before the newest message held


def catch_up_from(message_id: str | None, margin_ms: int = CATCH_UP_MARGIN_MS) -> str | None:
    """The ``after`` of a catch-up: an id ``margin_ms`` older than ``message_id`` (UUIDv7:
    its first 48 bits are its time in ms). An id is given when a send starts, so a message
    with a slightly older id can arrive after a newer one; asking from a little earlier brings
    it too (what was received already is skipped). None: no bound, the recent messages."""
    if not message_id or len(message_id) < 13:
        return None
    try:
        ms = int(message_id[:8] + message_id[9:13], 16) - margin_ms
    except ValueError:
        return None
    if ms <= 0:
        return None
    stamp = f"{ms:012x}"
    return f"{stamp[:8]}-{stamp[8:]}-7000-8000-000000000000"


def is_sender(user: int, conversations: int, senders: int) -> bool:
    """Whether user ``user`` sends: it is member ``user // conversations`` of its conversation,
    and only the first ``senders`` members of each conversation send (0: all of them)."""
    return senders <= 0 or user // conversations < senders


def split_clients(cookies: list[str | None], conversation_of: list[int], conversations: int,
                  senders: int, processes: int) -> list[list[tuple[str | None, int, bool]]]:
    """The clients of each load-test process: user i goes to process i mod P."""
    return [[(cookies[i], conversation_of[i], is_sender(i, conversations, senders))
             for i in range(p, len(cookies), processes)] for p in range(processes)]


def record_delivery(result: WorkerResult, seen: set[str], data: object, start_ns: int,
                    now_ns: int) -> bool:
    """Count one ``message`` event received by the client whose received client_ids are
    ``seen``: a delivery with its latency, or a duplicate when that client has received this
    message before. Returns whether it was a new delivery; events the load test did not send
    are ignored."""
    cid = data.get("client_id") if isinstance(data, dict) else None
    if not isinstance(cid, str) or not cid.startswith(TAG):
        return False
    try:
        sent_ns = int(cid.rsplit("-", 1)[1])
    except (IndexError, ValueError):
        return False
    if cid in seen:
        result.duplicates += 1
        return False
    seen.add(cid)
    result.send_times.append((sent_ns - start_ns) / 1e9)
    result.latencies.append((now_ns - sent_ns) / 1e6)
    return True


@dataclass
class Received:
    """What one client has received: the client_ids of every copy, and of those that came
    first in a catch-up's answer (``join`` with ``after``), whose one live copy may still
    follow."""

    seen: set[str] = field(default_factory=set)
    fetched: set[str] = field(default_factory=set)

    def record(self, result: WorkerResult, data: object, caught_up: bool, start_ns: int,
               now_ns: int) -> bool:
        """Count a copy as record_delivery does; but a catch-up's copy of a message held
        already, and the one live copy of a message a catch-up brought first, are skipped by
        id (docs/PROTOCOL.md: a catch-up and the room may both bring a message). Returns
        whether it was a new delivery."""
        cid = data.get("client_id") if isinstance(data, dict) else None
        if caught_up and cid in self.seen:
            return False  # asked from a little before the newest: had it already
        if not caught_up and cid in self.fetched:
            self.fetched.discard(cid)
            result.overlaps += 1
            return False
        if not record_delivery(result, self.seen, data, start_ns, now_ns):
            return False
        if caught_up:
            self.fetched.add(cid)
            result.caught_up += 1
        return True


async def _run_worker(plan: WorkerPlan, progress, lineup, ready, go, sending) -> WorkerResult:
    import socketio

    result = WorkerResult()
    prefix = f"{TAG}{plan.index}-"
    start_ns = 0
    sockets: list[socketio.AsyncClient] = []
    senders: list[tuple[list, int]] = []  # [the client's socket now], its conversation

    def receiver(newest: list):
        received = Received()  # what this client received, on any of its sockets

        def on_message(data, caught_up: bool = False):
            if isinstance(data, dict) and isinstance(data.get("id"), str):
                newest[0] = max(newest[0] or "", data["id"])
            if received.record(result, data, caught_up, start_ns, time.monotonic_ns()):
                progress[plan.index * 3 + 2] += 1
        return on_message

    async def catch_up(sio, conversation_id: int, on_message, newest: list) -> None:
        """Join again with ``after`` a little before the newest message this socket has
        (``catch_up_from``), until nothing more."""
        after = catch_up_from(newest[0])
        for _ in range(100):
            try:
                ack = await sio.call("join", {"conversation_id": conversation_id,
                                              "after": after} if after else
                                     {"conversation_id": conversation_id},
                                     namespace=NAMESPACE, timeout=30)
            except Exception as exc:
                result.errors[f"catch_up:{type(exc).__name__}"] += 1
                return
            if not (isinstance(ack, dict) and ack.get("ok")):
                result.errors[f"catch_up:{ack.get('error') if isinstance(ack, dict) else ack}"] += 1
                return
            messages = ack.get("messages") or []
            for message in messages:
                on_message(message, caught_up=True)
            if not (ack.get("has_more") and after and messages):
                return
            after = messages[-1]["id"]

    async def open_one(cookie: str | None, conversation_id: int, sends: bool) -> None:
        newest: list = [None]  # the newest message id this socket received
        on_message = receiver(newest)
        headers = {"Cookie": cookie} if cookie else {}
        current: list = []  # this client's socket now (a new one after server_restart)

        def spawn(handler):  # each runs apart: a join's answer arrives on the reading task
            return lambda data=None: asyncio.get_running_loop().create_task(handler(data))

        def new_client():
            client = socketio.AsyncClient(reconnection=False, handle_sigint=False)
            client.on("message", on_message, namespace=NAMESPACE)
            client.on("resync", spawn(on_resync), namespace=NAMESPACE)
            client.on("server_restart", spawn(on_server_restart), namespace=NAMESPACE)
            return client

        async def on_resync(_data=None):
            result.resyncs += 1
            await catch_up(current[0], conversation_id, on_message, newest)

        async def on_server_restart(data=None):
            """Wait the time given, then a new socket, joined with after."""
            result.restarts += 1
            wait = data.get("reconnect_in_ms") if isinstance(data, dict) else None
            wait = min(max(wait, 0), 60_000) if isinstance(wait, int | float) else 0
            old = current[0]
            await asyncio.sleep(wait / 1000)
            await old.disconnect()
            for attempt in range(10):
                fresh = new_client()
                try:
                    # A copy each time: python-engineio takes the cookie out of the dict.
                    await fresh.connect(plan.url, headers=dict(headers), transports=["websocket"],
                                        namespaces=[NAMESPACE], wait_timeout=30)
                    break
                except Exception as exc:
                    result.errors[f"reconnect:{type(exc).__name__}"] += 1
                    await asyncio.sleep(0.5 * (attempt + 1))
            else:
                return
            current[0] = fresh
            sockets.append(fresh)
            await catch_up(fresh, conversation_id, on_message, newest)

        sio = new_client()
        current.append(sio)
        try:
            await sio.connect(plan.url, headers=dict(headers),
                              transports=["websocket"], namespaces=[NAMESPACE], wait_timeout=30)
        except Exception as exc:
            result.errors[f"connect:{type(exc).__name__}"] += 1
            return
        try:
            ack = await sio.call("join", {"conversation_id": conversation_id},
                                 namespace=NAMESPACE, timeout=30)
        except Exception as exc:
            result.errors[f"join:{type(exc).__name__}"] += 1
            await sio.disconnect()
            return
        if not (isinstance(ack, dict) and ack.get("ok")):
            result.errors[f"join:{ack.get('error') if isinstance(ack, dict) else ack}"] += 1
            await sio.disconnect()
            return
        result.last_joined = time.monotonic()
        for message in ack.get("messages") or []:  # a catch-up starts after the newest
            if isinstance(message, dict) and isinstance(message.get("id"), str):
                newest[0] = max(newest[0] or "", message["id"])
        sockets.append(sio)
        if sends:
            senders.append((current, conversation_id))
        result.connected[conversation_id] += 1

    # Every process starts connecting at once, after its imports, so that the connect + join
    # time is the server's and not the time it took to fork and import.
    await asyncio.get_running_loop().run_in_executor(None, lineup.wait, 60)
    result.connect_started = time.monotonic()
    await gather_limited(plan.connect_concurrency,
                          (open_one(c, k, sends) for c, k, sends in plan.clients))
    result.senders = len(senders)
    ready.set()
    await asyncio.get_running_loop().run_in_executor(None, go.wait)

    start_ns = time.monotonic_ns()
    result.send_started = start_ns / 1e9
    pending: set[str] = set()
    slots = asyncio.Semaphore(plan.inflight) if plan.inflight else None

    def on_ack(client_id: str, sent_ns: int):
        def callback(ack=None, *_):
            pending.discard(client_id)
            if slots:
                slots.release()
            result.ack_latencies.append((time.monotonic_ns() - sent_ns) / 1e6)
            if isinstance(ack, dict) and ack.get("ok"):
                result.acks_ok[ack["message"]["conversation_id"]] += 1
            else:
                result.refusals[ack.get("error") if isinstance(ack, dict) else "bad_ack"] += 1
            progress[plan.index * 3 + 1] += 1
        return callback

    if senders and plan.rate > 0:
        interval_ns = int(1e9 / plan.rate)
        end_ns = start_ns + int(plan.duration * 1e9)
        due = start_ns
        seq = 0
        while due < end_ns:
            now = time.monotonic_ns()
            if due > now:
                await asyncio.sleep((due - now) / 1e9)
            elif slots is None:
                result.max_send_lag_ms = max(result.max_send_lag_ms, (now - due) / 1e6)
            if slots:
                await slots.acquire()  # closed loop: the schedule waits for the server
                due = max(due, time.monotonic_ns())
            current, conversation_id = senders[seq % len(senders)]
            sio = current[0]
            sent_ns = time.monotonic_ns()
            client_id = f"{prefix}{seq}-{sent_ns}"
            pending.add(client_id)
            try:
                await sio.emit("send_message", {"conversation_id": conversation_id,
                                                "message": plan.message, "client_id": client_id},
                               namespace=NAMESPACE, callback=on_ack(client_id, sent_ns))
            except Exception as exc:
                pending.discard(client_id)
                if slots:
                    slots.release()
                result.errors[f"send:{type(exc).__name__}"] += 1
            result.sent += 1
            progress[plan.index * 3] += 1
            seq += 1
            due += interval_ns
            if slots is None and seq % 64 == 0:
                await asyncio.sleep(0)  # let deliveries in even when behind schedule

    sending[plan.index] = 0
    # Let the last acks and deliveries arrive: stop once nothing changed for a while after every
    # process has sent its share (a process that only receives must not stop while a loaded
    # sender is still behind its schedule).
    deadline = time.monotonic() + plan.drain
    last, quiet_since = -1, time.monotonic()
    while time.monotonic() < deadline:
        seen = len(result.latencies) + len(result.ack_latencies)
        if seen != last:
            last, quiet_since = seen, time.monotonic()
        elif not pending and not any(sending) and time.monotonic() - quiet_since > 0.5:
            break
        await asyncio.sleep(0.1)
    result.send_ended = time.monotonic()
    if pending:
        result.errors["no_ack"] += len(pending)
    await gather_limited(100, (sio.disconnect() for sio in sockets))
    return result


def _worker_main(plan: WorkerPlan, progress, lineup, ready, go, sending, results) -> None:
    try:
        results.put((plan.index, asyncio.run(
            _run_worker(plan, progress, lineup, ready, go, sending))))
    except BaseException as exc:  # reported by the parent, which waits for every worker
        sending[plan.index] = 0
        lineup.abort()
        results.put((plan.index, exc))
        ready.set()


# --- the report ---------------------------------------------------------------------------------

def percentile(ordered: list[float], p: float) -> float | None:
    if not ordered:
        return None
    rank = max(0, min(len(ordered) - 1, math.ceil(p / 100 * len(ordered)) - 1))  # nearest rank
    return ordered[rank]


def _rounded(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def summarise(config: dict, results: list[WorkerResult]) -> dict:
    connected: Counter = Counter()
    acks_ok: Counter = Counter()
    refusals: Counter = Counter()
    errors: Counter = Counter()
    for r in results:
        connected.update(r.connected)
        acks_ok.update(r.acks_ok)
        refusals.update(r.refusals)
        errors.update(r.errors)
    send_times = [t for r in results for t in r.send_times]
    latencies = [x for r in results for x in r.latencies]
    ack_latencies = sorted(x for r in results for x in r.ack_latencies)
    duration = config["duration"]
    expected = sum(n * connected[k] for k, n in acks_ok.items())
    in_window = sum(1 for t, x in zip(send_times, latencies, strict=True)
                    if t + x / 1000 <= duration)
    ordered = sorted(latencies)
    series = []
    buckets: dict[int, list[float]] = {}
    for t, x in zip(send_times, latencies, strict=True):
        buckets.setdefault(int(t), []).append(x)
    arrived = Counter(int(t + x / 1000) for t, x in zip(send_times, latencies, strict=True))
    for second in range(max([*buckets, *arrived], default=-1) + 1):
        values = sorted(buckets.get(second, []))
        series.append({"t": second, "sent_then": len(values), "deliveries": arrived[second],
                       "p50_ms": _rounded(percentile(values, 50)),
                       "p99_ms": _rounded(percentile(values, 99)),
                       "max_ms": _rounded(values[-1] if values else None)})
    sent = sum(r.sent for r in results)
    clock = {name: [getattr(r, name) for r in results if getattr(r, name) is not None]
             for name in ("connect_started", "last_joined", "send_started", "send_ended")}
    edges = {name: min(values) if name.endswith("started") else max(values)
             for name, values in clock.items() if values}
    connect_join = (edges["last_joined"] - edges["connect_started"]
                    if "last_joined" in edges and "connect_started" in edges else None)
    return {
        "config": config,
        "clients_connected": sum(connected.values()),
        "senders": sum(r.senders for r in results),
        # Wall time from the first connect to the last join ack, over every process.
        "connect_join_seconds": _rounded(connect_join, 3),
        # CLOCK_MONOTONIC seconds (shared by the processes of one host): the first connect,
        # the last join ack, the first send and the end of the last drain.
        "clock": {name: round(t, 4) for name, t in edges.items()},
        "messages_sent": sent,
        "send_rate": _rounded(sent / duration),
        "acks_ok": sum(acks_ok.values()),
        "refusals": dict(refusals),
        "errors": dict(errors),
        "deliveries": len(latencies),
        "deliveries_expected": expected,
        "deliveries_missing": max(0, expected - len(latencies)),
        "deliveries_duplicate": sum(r.duplicates for r in results),
        # Through resync and server_restart: events received, and deliveries that came late,
        # in the answer of the join with after that followed.
        "resyncs": sum(r.resyncs for r in results),
        "restarts": sum(r.restarts for r in results),
        "deliveries_caught_up": sum(r.caught_up for r in results),
        "deliveries_overlap": sum(r.overlaps for r in results),
        "deliveries_per_s": _rounded(in_window / duration),
        "latency_ms": {
            "p50": _rounded(percentile(ordered, 50)),
            "p95": _rounded(percentile(ordered, 95)),
            "p99": _rounded(percentile(ordered, 99)),
            "max": _rounded(ordered[-1] if ordered else None),
        },
        "ack_latency_ms": {
            "p50": _rounded(percentile(ack_latencies, 50)),
            "p99": _rounded(percentile(ack_latencies, 99)),
        },
        "max_send_lag_ms": _rounded(max((r.max_send_lag_ms for r in results), default=0)),
        "series": series,
    }


def format_report(report: dict) -> str:
    lat, ack = report["latency_ms"], report["ack_latency_ms"]
    cfg = report["config"]
    lines = [
        f"target       {cfg['url']} ({'baseline' if cfg['baseline'] else 'full'}), "
        f"{cfg['users']} clients, {cfg['conversations']} conversations, "
        f"{cfg['rate']} msg/s for {cfg['duration']} s, {cfg['processes']} process(es)",
        f"connected    {report['clients_connected']}, {report['senders']} sending; "
        f"connect + join {report['connect_join_seconds']} s (first connect to last join ack)",
        f"sent         {report['messages_sent']} ({report['send_rate']}/s), "
        f"acks ok {report['acks_ok']}",
        f"delivered    {report['deliveries']} of {report['deliveries_expected']} expected "
        f"({report['deliveries_missing']} missing, {report['deliveries_duplicate']} duplicate), "
        f"{report['deliveries_per_s']}/s",
        f"caught up    {report['deliveries_caught_up']} late, after {report['resyncs']} resync "
        f"and {report['restarts']} server_restart event(s); {report['deliveries_overlap']} of "
        f"them also came live (skipped by id)",
        f"latency ms   p50 {lat['p50']}  p95 {lat['p95']}  p99 {lat['p99']}  max {lat['max']}",
        f"ack ms       p50 {ack['p50']}  p99 {ack['p99']}",
        f"refusals     {report['refusals'] or 'none'}",
        f"errors       {report['errors'] or 'none'}",
        f"client lag   max {report['max_send_lag_ms']} ms behind schedule",
    ]
    return "\n".join(lines)


def plot_reports(labelled: list[tuple[str, dict]], path: str) -> None:
    """Latency (p50, p99 of the messages sent in each second) and deliveries arriving per
    second, one line per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 5.5), sharex=True)
    for label, report in labelled:
        series = report["series"]
        t = [s["t"] for s in series]
        line, = top.plot(t, [s["p99_ms"] for s in series], label=f"{label} p99")
        top.plot(t, [s["p50_ms"] for s in series], linestyle="--", color=line.get_color(),
                 label=f"{label} p50")
        bottom.plot(t, [s["deliveries"] for s in series], color=line.get_color(), label=label)
    bottom.set_title("deliveries arriving per second", fontsize=9)
    top.set_ylabel("send→deliver ms")
    top.set_yscale("log")
    top.legend(fontsize=8)
    top.grid(True, alpha=0.3)
    bottom.set_ylabel("deliveries/s")
    bottom.set_xlabel("seconds since the first send")
    bottom.legend(fontsize=8)
    bottom.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


# --- driving it --------------------------------------------------------------------------------

def _progress_bar(progress, processes: int, duration: float, started: float) -> str:
    sent = sum(progress[i * 3] for i in range(processes))
    acked = sum(progress[i * 3 + 1] for i in range(processes))
    delivered = sum(progress[i * 3 + 2] for i in range(processes))
    elapsed = min(time.monotonic() - started, duration)
    filled = int(30 * elapsed / duration) if duration else 30
    return (f"[{'#' * filled}{'.' * (30 - filled)}] {elapsed:5.1f}/{duration:g}s  "
            f"sent {sent}  acked {acked}  delivered {delivered}")


def run(args: argparse.Namespace) -> dict:
    base = args.url.rstrip("/")
    users = args.users
    if args.baseline:
        cookies: list[str | None] = [None] * users
        conversation_of = [k % args.conversations + 1 for k in range(users)]
    else:
        names = [f"{args.prefix}{i:05d}" for i in range(users)]
        print(f"logging in {users} users and starting {args.conversations} conversations…",
              file=sys.stderr)
        cookies, conversation_of = asyncio.run(prepare_full(
            base, names, args.password, args.conversations, args.register, args.concurrency))
    processes = max(1, min(args.processes, users))
    clients = split_clients(cookies, conversation_of, args.conversations, args.senders,
                            processes)
    all_senders = sum(sends for share in clients for _, _, sends in share) or 1
    ctx = mp.get_context("fork")
    progress = ctx.Array("q", processes * 3, lock=False)
    lineup = ctx.Barrier(processes)
    go = ctx.Event()
    sending = ctx.Array("b", [1] * processes, lock=False)  # processes still sending
    results_queue = ctx.Queue()
    workers, readies = [], []
    for p in range(processes):
        share = clients[p]
        plan = WorkerPlan(
            index=p, url=base, clients=share,
            rate=args.rate * sum(sends for _, _, sends in share) / all_senders,
            duration=args.duration, drain=args.drain,
            inflight=args.inflight, message=(args.text * (args.size // len(args.text) + 1))
            [:args.size], connect_concurrency=args.concurrency)
        ready = ctx.Event()
        proc = ctx.Process(target=_worker_main,
                           args=(plan, progress, lineup, ready, go, sending, results_queue),
                           daemon=True)
        proc.start()
        workers.append(proc)
        readies.append(ready)
    print(f"connecting {users} clients in {processes} process(es)…", file=sys.stderr)
    for ready in readies:
        ready.wait()
    go.set()
    started = time.monotonic()
    tty = sys.stderr.isatty()
    collected: dict[int, WorkerResult] = {}
    last_line = 0.0
    while len(collected) < processes:
        try:
            index, outcome = results_queue.get(timeout=0.5)
        except Exception:
            outcome = None
        else:
            if isinstance(outcome, BaseException):
                raise RuntimeError(f"load-test process {index} failed: {outcome!r}")
            collected[index] = outcome
        if args.progress and (tty or time.monotonic() - last_line >= 5):
            last_line = time.monotonic()
            bar = _progress_bar(progress, processes, args.duration, started)
            print(("\r" + bar) if tty else bar, end="" if tty else "\n", file=sys.stderr,
                  flush=True)
    if args.progress and tty:
        print(file=sys.stderr)
    for proc in workers:
        proc.join(timeout=10)
    config = {"url": base, "baseline": args.baseline, "users": users,
              "conversations": args.conversations, "senders": args.senders, "rate": args.rate,
              "duration": args.duration, "inflight": args.inflight, "size": args.size,
              "processes": processes, "host_load_1m": round(os.getloadavg()[0], 2),
              "cpus": os.cpu_count()}
    return summarise(config, [collected[i] for i in sorted(collected)])


def raise_open_file_limit() -> int:
    """Raise this process's soft limit on open files to the hard limit (children inherit it):
    thousands of sockets need thousands of descriptors. Returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == hard:
        return soft
    wanted = max(soft, 1 << 20) if hard == resource.RLIM_INFINITY else hard
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    except (ValueError, OSError):  # above fs.nr_open, say: keep the soft limit
        return soft
    return wanted


# --- seeding users straight into the database, for large runs ------------------------------------

def seed_users(count: int, prefix: str, password: str, hash_method: str) -> int:
    """Create ``prefix00000``… accounts that do not exist yet, all with one password hash.

    Uses the app's database settings (DATABASE_URL). Registering a thousand users over HTTP
    spends minutes in the password hash; this takes a second. Returns how many were created."""
    from sqlalchemy import insert, select
    from werkzeug.security import generate_password_hash

    from simplechat.app import create_app
    from simplechat.extensions import db
    from simplechat.models import User

    app = create_app()
    with app.app_context():
        names = [f"{prefix}{i:05d}" for i in range(count)]
        existing = set(db.session.scalars(select(User.username).where(User.username.in_(names))))
        password_hash = generate_password_hash(password, method=hash_method)
        rows = [{"username": n, "first_name": "Load", "last_name": n,
                 "email": f"{n}@loadtest.invalid", "password_hash": password_hash}
                for n in names if n not in existing]
        if rows:
            db.session.execute(insert(User), rows)
            db.session.commit()
        return len(rows)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m simplechat.tools.loadtest",
        description="Drive a Simple Chat server (or the bare baseline) with Socket.IO clients.")
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--users", type=int, default=50, help="clients, one per user")
    parser.add_argument("--conversations", type=int, default=5,
                        help="user i takes part in conversation i mod M (at most 50 per group)")
    parser.add_argument("--rate", type=float, default=10.0, help="messages per second in total")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of sending")
    parser.add_argument("--drain", type=float, default=10.0,
                        help="seconds to wait for late acks and deliveries")
    parser.add_argument("--senders", type=int, default=0, metavar="N",
                        help="only the first N clients of each conversation send; the others "
                             "only receive (0: all send)")
    parser.add_argument("--inflight", type=int, default=0,
                        help="at most this many unacknowledged sends per process (0: no cap)")
    parser.add_argument("--size", type=int, default=40, help="characters per message")
    parser.add_argument("--text", default="load test message ",
                        help="what each message says, repeated or cut to --size")
    parser.add_argument("--processes", type=int, default=1, help="client processes")
    parser.add_argument("--concurrency", type=int, default=50,
                        help="logins and connects at once")
    parser.add_argument("--prefix", default="loadtest", help="usernames are PREFIX00000…")
    parser.add_argument("--password", default="load-test-password")
    parser.add_argument("--register", action="store_true",
                        help="register users that cannot log in (slow: one password hash each)")
    parser.add_argument("--baseline", action="store_true",
                        help="drive benchmarks/baseline_server.py: no login, rooms 1..M")
    parser.add_argument("--json", metavar="FILE", help="write the report as JSON")
    parser.add_argument("--plot", metavar="FILE.png", help="plot latency over time")
    parser.add_argument("--no-progress", dest="progress", action="store_false")
    parser.add_argument("--seed-users", type=int, metavar="N", default=0,
                        help="first create N users PREFIX00000… in DATABASE_URL directly "
                             "(with a cheap password hash: load-test accounts only), then exit "
                             "unless --run is given")
    parser.add_argument("--hash-method", default="pbkdf2:sha256:1000", help=argparse.SUPPRESS)
    parser.add_argument("--run", action="store_true", help="run the load test after seeding")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.conversations < 1 or args.users < args.conversations * 2 and not args.baseline:
        print("need at least two users per conversation", file=sys.stderr)
        return 2
    if args.senders < 0:
        print("--senders must be 0 (all) or more", file=sys.stderr)
        return 2
    if args.seed_users:
        created = seed_users(args.seed_users, args.prefix, args.password, args.hash_method)
        print(f"created {created} users ({args.seed_users - created} existed)", file=sys.stderr)
        if not args.run:
            return 0
    raise_open_file_limit()
    report = run(args)
    print(format_report(report))
    if args.json:
        with open(args.json, "w") as out:
            json.dump(report, out, indent=1)
    if args.plot:
        plot_reports([("baseline" if args.baseline else "full", report)], args.plot)
    return 0 if report["clients_connected"] else 1


if __name__ == "__main__":
    sys.exit(main())
