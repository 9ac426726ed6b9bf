"""Issue 17: what a web process pays for the rooms it does not serve, per fan-out mode.

For each mode of ``--modes`` (``SOCKETIO_FANOUT`` of the web processes), on a redis-server of its
own (a free port, no persistence), a fresh PostgreSQL database and one Celery worker:

- idle/busy: three gunicorn-eventlet web processes A, B, C (one worker each); eight pairs chat
  closed-loop across A and B (each pair has one member on A and one on B, both sending), C holds
  one idle socket in a quiet conversation. Prints C's CPU / A's CPU over the sending window.
- scaling: 1, 2 and 4 web processes under the same offered load (a fixed total rate over pairs
  whose two members sit on different processes), and a control: 4 processes with both members
  of each pair on the same one, so that no message has to reach a second process. Each runs
  ``--repeats`` times in turn; prints the medians of cluster-wide web CPU per delivered
  message, its growth from 1 to 4 processes, how much of that growth the control shows
  (splitting the load by itself) and how much crossing processes adds, and the web
  processes' sleeps (voluntary context switches) per send.
- model: from the runs above, µs of web CPU per send, per delivery (two single-process runs
  with different deliveries per send, solved for both) and per foreign message decoded and
  dropped (C's CPU above its own idle baseline, per message published to Redis).
- bare: the scaling runs' load on the bare Flask-SocketIO server (benchmarks/baseline_server.py,
  no message queue) on 1 process and on 4 with every pair inside one: what splitting the load
  costs on this host with no Simple Chat code and no fan-out at all.

``--queue three`` puts the fan-out's channels on three more redis-servers of their own
(``SOCKETIO_MESSAGE_QUEUE`` with three URLs), ``--queue cluster`` on a three-primary Redis
Cluster made for the run (sharded pub/sub); the caches, the write buffer and Celery stay on
the first server. Redis CPU is the sum over all of them.

Ports: web processes on 18700-18799 and the redis-servers on 18800-18899, away from run_all.py's
18500-18599, so the two can run side by side.

Before measuring, each mode is checked on Redis itself (``PUBSUB CHANNELS``): ``broadcast``
subscribes every process to the one channel ``<prefix>socketio``, ``rooms`` to per-room channels
``<prefix>socketio/chat#<room>``. A server that ignores ``SOCKETIO_FANOUT`` fails the check
instead of being measured twice as broadcast.

    .venv/bin/python benchmarks/fanout_scaling.py [--modes broadcast rooms] [--quick]
        [--rate 150] [--repeats 3] [--queue one|three|cluster]
        [--skip idle scaling model bare] [--out results.json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import harness  # noqa: E402
from benchmarks.run_all import CLOSED, Sampler, load_average  # noqa: E402
from simplechat.tools import loadtest  # noqa: E402

PASSWORD = "load-test-password"
MODES = ("broadcast", "rooms")


class FanoutCheckFailed(RuntimeError):
    pass


# --- infrastructure --------------------------------------------------------------------------

QUEUES = ("one", "three", "cluster")


def start_redis(procs: harness.Processes, workdir: str, cluster: bool = False):
    """A redis-server on a free port with no persistence (a cluster node with ``cluster``,
    whose bus port, port + 10000, is free too); returns (url, pid, client)."""
    import redis

    port = harness.free_port(18800, 18899)
    while cluster and not harness.port_is_free(port + 10000):
        port = harness.free_port(port + 1, 18899)
    args = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no"]
    if cluster:
        node_dir = tempfile.mkdtemp(prefix=f"node-{port}-", dir=workdir)
        args += ["--cluster-enabled", "yes", "--dir", node_dir,
                 "--cluster-config-file", "nodes.conf"]
    proc = procs.start(args, dict(os.environ), os.path.join(workdir, f"redis-{port}.log"))
    client = redis.Redis(port=port)
    for _ in range(100):
        with contextlib.suppress(redis.ConnectionError):
            if client.ping():
                break
        time.sleep(0.05)
    else:
        raise RuntimeError("redis-server did not start")
    return f"redis://127.0.0.1:{port}" + ("" if cluster else "/0"), proc.pid, client


class Redises:
    """The run's Redis servers: the main one (caches, write buffer, Celery's broker and, with
    ``--queue one``, the fan-out) and, with ``three`` or ``cluster``, three more that carry the
    fan-out alone (``SOCKETIO_MESSAGE_QUEUE``)."""

    def __init__(self, procs: harness.Processes, workdir: str, queue: str):
        self.queue = queue
        self.url, pid, client = start_redis(procs, workdir)
        self.pids, self.clients = [pid], [client]
        self.fanout = [client]  # the servers the channels live on
        self.env: dict[str, str] = {}
        if queue != "one":
            started = [start_redis(procs, workdir, cluster=queue == "cluster")
                       for _ in range(3)]
            self.pids += [pid for _, pid, _ in started]
            self.fanout = [client for _, _, client in started]
            self.clients += self.fanout
            urls = [url for url, _, _ in started]
            if queue == "cluster":
                make_cluster(urls, self.fanout)
                self.env = {"SOCKETIO_MESSAGE_QUEUE": urls[0], "SOCKETIO_REDIS_CLUSTER": "1"}
            else:
                self.env = {"SOCKETIO_MESSAGE_QUEUE": ",".join(urls)}

    def channels(self, pattern: str) -> list[str]:
        command = ("PUBSUB", "SHARDCHANNELS" if self.queue == "cluster" else "CHANNELS", pattern)
        return sorted(c.decode() for client in self.fanout
                      for c in client.execute_command(*command))

    def numsub(self, channel: str) -> int:
        return sum(n for client in self.fanout for _, n in client.pubsub_numsub(channel))

    def publishes(self) -> int:
        total = 0
        for client in self.clients:
            stats = client.info("commandstats")
            total += sum(stats.get(f"cmdstat_{c}", {}).get("calls", 0)
                         for c in ("publish", "spublish"))
        return total

    def close(self) -> None:
        for client in self.clients:
            client.close()


def make_cluster(urls: list[str], clients: list, timeout: float = 20.0) -> None:
    """Three empty nodes made one cluster of three primaries (``redis-cli --cluster create``),
    waited for until every node reports it ok."""
    subprocess.run(["redis-cli", "--cluster", "create",
                    *(url.removeprefix("redis://") for url in urls),
                    "--cluster-replicas", "0", "--cluster-yes"],
                   check=True, capture_output=True, timeout=60)
    deadline = time.monotonic() + timeout
    while any(c.cluster("info").get("cluster_state") != "ok" for c in clients):
        if time.monotonic() > deadline:
            raise RuntimeError("the cluster did not become ok")
        time.sleep(0.2)


BARE = "benchmarks.baseline_server:app"  # the bare Flask-SocketIO server of run_all.py


def start_web(procs: harness.Processes, count: int, env: dict, workdir: str, tag: str,
              target: str = "wsgi:app") -> tuple[list[str], list[int], list]:
    """``count`` gunicorn-eventlet processes (one worker each) of ``target``: their URLs,
    worker pids and masters (to stop them)."""
    masters, urls = [], []
    port = 18700
    for i in range(count):
        port = harness.free_port(port, 18799)
        masters.append(harness.gunicorn(procs, target, port, env,
                                        os.path.join(workdir, f"web-{tag}-{i}.log")))
        urls.append(f"http://127.0.0.1:{port}")
        port += 1
    ready = "/healthz" if target == BARE else "/auth/login"
    for url, master in zip(urls, masters, strict=True):
        harness.wait_http(url + ready, master)
    return urls, [harness.worker_pid(m) for m in masters], masters


def stop(masters: list) -> None:
    for master in masters:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(master.pid, 15)
    for master in masters:
        master.wait(timeout=20)


def check_mode(redises: Redises, prefix: str, mode: str) -> dict:
    """What the web processes subscribed to on Redis, and whether it is what ``mode`` does."""
    base = prefix + "socketio"
    channels = redises.channels(base + "*")
    rooms = [c for c in channels if "#" in c]
    seen = {"channels": len(channels), "room_channels": len(rooms),
            "broadcast_subscribers": redises.numsub(base) if channels else 0}
    if mode == "broadcast" and (rooms or not seen["broadcast_subscribers"]):
        raise FanoutCheckFailed(f"SOCKETIO_FANOUT=broadcast, but Redis shows {seen}")
    if mode == "rooms" and (not rooms or seen["broadcast_subscribers"]):
        raise FanoutCheckFailed(
            f"SOCKETIO_FANOUT=rooms, but Redis shows {seen}: no per-room channels, so this "
            "server does not know the setting (it is running the stock broadcast queue)")
    return seen


# --- the clients -----------------------------------------------------------------------------

def drive(plans: list[loadtest.WorkerPlan], config: dict, during=None) -> dict:
    """Run the load test's client processes, one per plan (each plan names its server), and
    return the load test's report over all of them; ``during()`` runs once every client is
    connected and the sends have started."""
    ctx = mp.get_context("fork")
    progress = ctx.Array("q", len(plans) * 3, lock=False)
    lineup, go, results = ctx.Barrier(len(plans)), ctx.Event(), ctx.Queue()
    sending = ctx.Array("b", [1] * len(plans), lock=False)
    readies, workers = [], []
    for plan in plans:
        ready = ctx.Event()
        proc = ctx.Process(target=loadtest._worker_main, daemon=True,
                           args=(plan, progress, lineup, ready, go, sending, results))
        proc.start()
        readies.append(ready)
        workers.append(proc)
    try:
        for ready in readies:
            if not ready.wait(240):
                raise RuntimeError("clients did not connect within 240 s")
        go.set()
        extra = during() if during else None
        collected = {}
        while len(collected) < len(plans):
            index, outcome = results.get(timeout=config["duration"] + 120)
            if isinstance(outcome, BaseException):
                raise RuntimeError(f"client process {index} failed: {outcome!r}")
            collected[index] = outcome
    finally:
        for proc in workers:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
    report = loadtest.summarise(config, [collected[i] for i in sorted(collected)])
    report["during"] = extra
    return report


class IdleSocket(threading.Thread):
    """One socket, connected and joined to a conversation, held open until stopped."""

    def __init__(self, url: str, cookie: str, conversation_id: int):
        super().__init__(daemon=True)
        self.url, self.cookie, self.conversation_id = url, cookie, conversation_id
        self.joined = threading.Event()
        self.error: str | None = None
        self.received = 0
        self._quit = None
        self._loop = None

    def run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        import socketio

        self._loop = asyncio.get_running_loop()
        self._quit = asyncio.Event()
        sio = socketio.AsyncClient(reconnection=False, handle_sigint=False)

        @sio.on("message", namespace=loadtest.NAMESPACE)
        def on_message(data):
            self.received += 1

        try:
            await sio.connect(self.url, headers={"Cookie": self.cookie},
                              transports=["websocket"], namespaces=[loadtest.NAMESPACE])
            ack = await sio.call("join", {"conversation_id": self.conversation_id},
                                 namespace=loadtest.NAMESPACE, timeout=30)
            if not (isinstance(ack, dict) and ack.get("ok")):
                raise RuntimeError(f"join refused: {ack!r}")
        except Exception as exc:
            self.error = repr(exc)
            self.joined.set()
            return
        self.joined.set()
        await self._quit.wait()
        await sio.disconnect()

    def stop(self) -> None:
        if self._loop and self._quit:
            self._loop.call_soon_threadsafe(self._quit.set)
        self.join(timeout=10)


def plan(index: int, url: str, clients: list, rate: float, duration: float, inflight: int
         ) -> loadtest.WorkerPlan:
    return loadtest.WorkerPlan(index=index, url=url, clients=clients, rate=rate,
                               duration=duration, drain=10, inflight=inflight,
                               message="load test message, forty characters long.",
                               connect_concurrency=50)


def login(url: str, names: list[str], conversations: int) -> tuple[list[str], list[int]]:
    """Cookies of ``names`` and the conversation of each (user i in conversation i mod M).
    Tried six times: on a shared host PostgreSQL can briefly refuse connections."""
    for attempt in range(6):
        try:
            return asyncio.run(loadtest.prepare_full(url, names, PASSWORD, conversations,
                                                     register=False, concurrency=20))
        except RuntimeError as exc:
            if attempt == 5:
                raise
            print(f"   logins failed ({exc}); again in 5 s", file=sys.stderr, flush=True)
            time.sleep(5)
    raise AssertionError("unreachable")


def window_cpu(samplers: list[Sampler], start: float, end: float) -> list[float]:
    return [s.cpu_at(end) - s.cpu_at(start) for s in samplers]


def sampled(pids: list[int]) -> list[Sampler]:
    samplers = [Sampler(pid) for pid in pids]
    for s in samplers:
        s.start()
    return samplers


def finish(samplers: list[Sampler]) -> None:
    for s in samplers:
        s.stopped.set()
        s.join()
        s.sample()


def lost_dup(report: dict) -> dict:
    return {"deliveries": report["deliveries"], "expected": report["deliveries_expected"],
            "lost": report["deliveries_missing"], "duplicated": report["deliveries_duplicate"],
            "errors": report["errors"], "refusals": report["refusals"]}


# --- the scenarios ---------------------------------------------------------------------------

def idle_busy(env: dict, procs, workdir: str, redises: Redises, prefix: str,
              mode: str, users: list[str], duration: float) -> dict:
    urls, pids, masters = start_web(procs, 3, env, workdir, f"{mode}-idle")
    try:
        pairs = 8
        # users 0..7 and 8..15: the eight pairs; 16 and 17: the quiet conversation
        cookies, conv = login(urls[0], users[:2 * pairs], pairs)
        quiet_cookies, quiet_conv = login(urls[2], users[2 * pairs:2 * pairs + 2], 1)
        idle = IdleSocket(urls[2], quiet_cookies[0], quiet_conv[0])
        idle.start()
        idle.joined.wait(60)
        if idle.error:
            raise RuntimeError(f"idle socket on C: {idle.error}")
        samplers = sampled([*pids, *redises.pids])
        time.sleep(3)  # C's own idle cost, before the chatting starts
        quiet = (time.monotonic() - 3, time.monotonic())
        on_a = [(cookies[k], conv[k], True) for k in range(pairs)]
        on_b = [(cookies[k + pairs], conv[k + pairs], True) for k in range(pairs)]
        plans = [plan(0, urls[0], on_a, CLOSED / 2, duration, 64),
                 plan(1, urls[1], on_b, CLOSED / 2, duration, 64)]
        config = {"scenario": "idle_busy", "mode": mode, "duration": duration}
        published: list[int] = [redises.publishes()]

        def during():
            time.sleep(min(2.0, duration / 3))
            return check_mode(redises, prefix, mode)

        load_before = load_average()
        report = drive(plans, config, during)
        finish(samplers)
        idle.stop()
        published.append(redises.publishes())
        start = report["clock"]["send_started"]
        end = start + duration
        a, b, c, *rs = window_cpu(samplers, start, end)
        r = sum(rs)
        c_idle = window_cpu(samplers, *quiet)[2] / (quiet[1] - quiet[0]) * duration
        return {
            "mode": mode, "duration_s": duration, "load": {"before": load_before,
                                                           "after": load_average()},
            "redis_check": report["during"],
            "cpu_s": {"A": round(a, 3), "B": round(b, 3), "C": round(c, 3), "redis": round(r, 3),
                      "C_idle_baseline": round(c_idle, 3)},
            "idle_over_busy": round(c / a, 4) if a else None,
            "messages_sent": report["messages_sent"], "acks_ok": report["acks_ok"],
            "published": published[1] - published[0],
            "idle_socket_received": idle.received,
            **lost_dup(report),
        }
    finally:
        stop(masters)


def scaling_run(env: dict, procs, workdir: str, redises: Redises, prefix: str,
                mode: str, users: list[str], count: int, pairs: int, rate: float,
                duration: float, cross: bool) -> dict:
    """One run of ``pairs`` pairs at ``rate`` msg/s in all on ``count`` web processes. Pair k:
    its sender on client process k mod 4 and its receiver on (k+1) mod 4 (``cross``) or on the
    same one; client process j talks to web process j mod ``count``. So with ``cross`` a pair
    spans two web processes whenever ``count`` > 1, and without it no message ever has to
    reach a second process: the control that shows what splitting the load costs by itself.

    ``mode`` "bare" runs the bare server instead (no login, no queue: pair k is its
    conversation k + 1, and only local pairs make sense)."""
    bare = mode == "bare"
    tag = f"{mode}-{count}{'' if cross else 'L'}"
    urls, pids, masters = start_web(procs, count, env, workdir, tag, BARE if bare else "wsgi:app")
    try:
        if bare:
            cookies, conv = [""] * (2 * pairs), [k % pairs + 1 for k in range(2 * pairs)]
        else:
            cookies, conv = login(urls[0], users[:2 * pairs], pairs)
        shares: list[list] = [[] for _ in range(4)]
        for k in range(pairs):
            shares[k % 4].append((cookies[k], conv[k], True))
            shares[(k + 1) % 4 if cross else k % 4].append(
                (cookies[k + pairs], conv[k + pairs], False))
        senders = [sum(s for _, _, s in share) for share in shares]
        plans = [plan(j, urls[j % count], shares[j], rate * senders[j] / pairs, duration, 0)
                 for j in range(4)]
        config = {"scenario": "scaling", "mode": mode, "processes": count, "cross": cross,
                  "duration": duration, "rate": rate}
        samplers = sampled([*pids, *redises.pids])
        published = redises.publishes()
        load_before = load_average()
        switches: list[int] = []

        def during():
            switches.append(sleeps(pids))
            return check_mode(redises, prefix, mode) if count > 1 and not bare else None

        report = drive(plans, config, during)
        switches.append(sleeps(pids))
        finish(samplers)
        published = redises.publishes() - published
        clock = report["clock"]
        cpus = window_cpu(samplers, clock["send_started"], clock["send_ended"])
        web = sum(cpus[:len(pids)])
        return {
            "processes": count, "cross": cross,
            "load": {"before": load_before, "after": load_average()},
            "redis_check": report["during"],
            "web_cpu_s": [round(x, 3) for x in cpus[:len(pids)]],
            "redis_cpu_s": round(sum(cpus[len(pids):]), 3),
            "window_s": round(clock["send_ended"] - clock["send_started"], 2),
            "messages_sent": report["messages_sent"], "acks_ok": report["acks_ok"],
            "published": published,
            "web_cpu_per_delivery_us": (round(web / report["deliveries"] * 1e6, 1)
                                        if report["deliveries"] else None),
            "web_cpu_per_send_us": (round(web / report["acks_ok"] * 1e6, 1)
                                    if report["acks_ok"] else None),
            "sleeps_per_send": (round((switches[1] - switches[0]) / report["acks_ok"], 2)
                                if report["acks_ok"] else None),
            "latency_ms": report["latency_ms"],
            **lost_dup(report),
        }
    finally:
        stop(masters)


def sleeps(pids: list[int]) -> int:
    """Voluntary context switches of these processes so far: each is a process that ran out
    of work, slept in epoll_wait and was woken again (``/proc/<pid>/status``)."""
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("voluntary_ctxt_switches:"):
                    total += int(line.split()[1])
    return total


def scaling(env: dict, procs, workdir: str, redises: Redises, prefix: str,
            mode: str, users: list[str], counts: list[int], pairs: int, rate: float,
            duration: float, repeats: int) -> dict:
    """The same offered load on 1, 2, 4… web processes with pairs across processes, and on
    the most processes with every pair inside one process (the control), ``repeats`` rounds
    of them all in turn; figures are the medians of the rounds.

    - ``growth``: CPU per delivery on the most processes over one process (the issue's goal);
    - ``spread``: the same for the control, where nothing crosses processes: what running
      the load as N smaller processes on this host costs by itself (wake-ups that find one
      event instead of several, N interpreters sharing the caches of the cores);
    - ``crossing``: the most processes with pairs across them over the control: what
      delivering through a second process adds (its decode, and waking it)."""
    most = counts[-1]
    configs = [(c, True) for c in counts] + [(most, False)]
    runs: dict[str, list[dict]] = {key(c, x): [] for c, x in configs}
    for round_ in range(repeats):
        for count, cross in configs:
            print(f"   round {round_ + 1}/{repeats}: {key(count, cross)}", flush=True)
            runs[key(count, cross)].append(scaling_run(
                env, procs, workdir, redises, prefix, mode, users, count,
                pairs, rate, duration, cross))
    out: dict = {"runs": runs, "median_us": {}}
    overloaded = sorted({k for k, rs in runs.items() for r in rs
                         if r["errors"] or r["acks_ok"] < r["messages_sent"]})
    if overloaded:  # a process that did not keep up: its CPU per delivery means nothing
        out["overloaded"] = overloaded
        return out
    med = out["median_us"] = {k: median([r["web_cpu_per_delivery_us"] for r in rs])
                              for k, rs in runs.items()}
    first, last, control = med[key(counts[0], True)], med[key(most, True)], med[key(most, False)]
    out["growth"] = round(last / first - 1, 4)
    out["spread"] = round(control / first - 1, 4)
    out["crossing"] = round(last / control - 1, 4)
    return out


def bare_scaling(procs, workdir: str, redises: Redises, most: int, pairs: int,
                 rate: float, duration: float, repeats: int) -> dict:
    """The platform's own price for splitting a load: the bare Flask-SocketIO server (no
    Simple Chat code, no message queue, so nothing can cross processes) on one process and on
    ``most``, under the same load as the scaling runs, each pair inside one process. Its
    growth is what eventlet and python-socketio on this host pay for running the load as
    ``most`` smaller processes; no fan-out manager can do better than that."""
    env = {k: v for k, v in os.environ.items() if k != "BASELINE_REDIS_URL"}
    runs: dict[str, list[dict]] = {key(1, True): [], key(most, False): []}
    for round_ in range(repeats):
        for count, cross in ((1, True), (most, False)):
            print(f"   round {round_ + 1}/{repeats}: bare {key(count, cross)}", flush=True)
            runs[key(count, cross)].append(scaling_run(
                env, procs, workdir, redises, "", "bare", [], count, pairs,
                rate, duration, cross))
    out: dict = {"runs": runs}
    if any(r["errors"] or r["acks_ok"] < r["messages_sent"] for rs in runs.values() for r in rs):
        out["overloaded"] = True
        return out
    med = out["median_us"] = {k: median([r["web_cpu_per_delivery_us"] for r in rs])
                              for k, rs in runs.items()}
    out["spread"] = round(med[key(most, False)] / med[key(1, True)] - 1, 4)
    return out


def key(count: int, cross: bool) -> str:
    return str(count) if cross or count == 1 else f"{count} local"


def median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else round((ordered[mid - 1] + ordered[mid]) / 2, 1)


def group_run(env: dict, procs, workdir: str, mode: str, users: list[str], size: int,
              rate: float, duration: float) -> dict:
    """One web process, groups of ``size``, one sender each, open loop: CPU per send with
    ``size`` deliveries each (for the model, beside the pairs run of the scaling section)."""
    urls, pids, masters = start_web(procs, 1, env, workdir, f"{mode}-group")
    try:
        groups = len(users) // size
        cookies, conv = login(urls[0], users[:groups * size], groups)
        clients = [(cookies[i], conv[i], i < groups) for i in range(groups * size)]
        samplers = sampled(pids)
        report = drive([plan(0, urls[0], clients, rate, duration, 0)],
                       {"scenario": "group", "duration": duration})
        finish(samplers)
        clock = report["clock"]
        cpu = window_cpu(samplers, clock["send_started"], clock["send_ended"])[0]
        return {"size": size, "cpu_s": round(cpu, 3), "sends": report["acks_ok"],
                **lost_dup(report)}
    finally:
        stop(masters)


def pooled(runs: list[dict]) -> dict:
    """Several runs of one configuration as one: their sends, deliveries and CPU summed."""
    return {"acks_ok": sum(r["acks_ok"] for r in runs),
            "deliveries": sum(r["deliveries"] for r in runs),
            "web_cpu_s": [sum(sum(r["web_cpu_s"]) for r in runs)]}


def model(pairs_run: dict, group: dict, idle: dict) -> dict:
    """µs per send and per delivery from two single-process runs (cpu = s·sends + d·deliveries,
    solved), and per foreign message from the idle process of the idle/busy run."""
    s1, d1 = pairs_run["acks_ok"], pairs_run["deliveries"]
    c1 = sum(pairs_run["web_cpu_s"])
    s2, d2, c2 = group["sends"], group["deliveries"], group["cpu_s"]
    det = s1 * d2 - s2 * d1
    out: dict = {}
    if det:
        out["send_us"] = round((c1 * d2 - c2 * d1) / det * 1e6, 1)
        out["delivery_us"] = round((s1 * c2 - s2 * c1) / det * 1e6, 1)
    foreign = idle["cpu_s"]["C"] - idle["cpu_s"]["C_idle_baseline"]
    if idle["published"] and idle["idle_socket_received"] == 0:
        out["foreign_message_us"] = round(foreign / idle["published"] * 1e6, 1)
    return out


# --- main ------------------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--quick", action="store_true", help="shorter runs, for a smoke run")
    parser.add_argument("--out", help="write the figures as JSON")
    parser.add_argument("--rate", type=float,
                        help="total msg/s of the scaling runs (default 150; 100 with --quick): "
                             "low enough for one web process to keep up")
    parser.add_argument("--repeats", type=int,
                        help="rounds of the scaling runs, medians reported (default 3; 1 with "
                             "--quick)")
    parser.add_argument("--queue", choices=QUEUES, default="one",
                        help="where the fan-out's channels live: the one Redis of the caches "
                             "and Celery (default), three more servers of their own, or a "
                             "three-primary Redis Cluster (rooms mode only)")
    parser.add_argument("--skip", nargs="*", default=[],
                        choices=["idle", "scaling", "model", "bare"])
    args = parser.parse_args()
    if args.queue != "one" and "broadcast" in args.modes:
        parser.error("--queue three or cluster: the stock broadcast queue has one server; "
                     "use --modes rooms")
    duration = 5.0 if args.quick else 12.0  # the idle/busy window of the issue
    scale_duration = 5.0 if args.quick else 8.0
    pairs, rate = (20, 100.0) if args.quick else (40, 150.0)
    rate = args.rate or rate
    repeats = args.repeats or (1 if args.quick else 3)
    counts = [1, 2, 4]
    loadtest.raise_open_file_limit()
    procs = harness.Processes()
    workdir = tempfile.mkdtemp(prefix="simplechat-fanout-")
    results: dict = {"load_before": harness.load_note(), "quick": args.quick, "modes": {}}
    print(f"logs in {workdir}; {results['load_before']}", flush=True)
    prefix = harness.unique_prefix("fanout")
    failed = False
    try:
        redises = Redises(procs, workdir, args.queue)
        results["queue"] = args.queue
        with contextlib.closing(redises), harness.scratch_database("fanout") as database_url:
            harness.REDIS_URL = redises.url  # app_env reads it
            base_env = dict(harness.app_env(database_url, prefix), **redises.env)
            users = [f"lt{i:05d}" for i in range(max(2 * pairs, 100))]
            subprocess.run([sys.executable, "-m", "simplechat.tools.loadtest", "--prefix", "lt",
                            "--seed-users", str(len(users))], cwd=harness.ROOT, env=base_env,
                           check=True, timeout=120)
            harness.celery_worker(procs, base_env, os.path.join(workdir, "celery.log"))
            for mode in args.modes:
                env = dict(base_env, SOCKETIO_FANOUT=mode)
                entry: dict = {}
                results["modes"][mode] = entry
                try:
                    if "idle" not in args.skip:
                        print(f"\n== {mode}: idle/busy ({harness.load_note()})", flush=True)
                        entry["idle_busy"] = idle_busy(env, procs, workdir, redises, prefix,
                                                       mode, users, duration)
                        print(json.dumps(entry["idle_busy"]), flush=True)
                    if "scaling" not in args.skip:
                        print(f"\n== {mode}: scaling {counts} ({harness.load_note()})",
                              flush=True)
                        entry["scaling"] = scaling(env, procs, workdir, redises,
                                                   prefix, mode, users, counts, pairs, rate,
                                                   scale_duration, repeats)
                        print(json.dumps(entry["scaling"]), flush=True)
                    if "model" not in args.skip and "scaling" in entry and "idle_busy" in entry:
                        print(f"\n== {mode}: groups of 10 for the model", flush=True)
                        entry["group10"] = group_run(env, procs, workdir, mode, users, 10,
                                                     rate / 4, scale_duration)
                        entry["model"] = model(pooled(entry["scaling"]["runs"]["1"]),
                                               entry["group10"],
                                               entry["idle_busy"])
                except FanoutCheckFailed as exc:
                    print(f"!! {mode}: {exc}", file=sys.stderr, flush=True)
                    entry["failed"] = str(exc)
                    failed = True
            if "bare" not in args.skip and "scaling" not in args.skip:
                print(f"\n== bare Flask-SocketIO: 1 and {counts[-1]} processes, pairs inside "
                      f"one ({harness.load_note()})", flush=True)
                results["bare"] = bare_scaling(procs, workdir, redises,
                                               counts[-1], pairs, rate, scale_duration, repeats)
                print(json.dumps(results["bare"]), flush=True)
    finally:
        procs.stop_all()
    results["load_after"] = harness.load_note()
    print_summary(results)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)
    return 1 if failed else 0


def print_summary(results: dict) -> None:
    print(f"\nload before: {results['load_before']}\nload after:  {results['load_after']}")
    for mode, entry in results["modes"].items():
        print(f"\n[{mode}, fan-out on {results.get('queue', 'one')} Redis]")
        if "failed" in entry:
            print(f"  FAILED: {entry['failed']}")
        ib = entry.get("idle_busy")
        if ib:
            cpu = ib["cpu_s"]
            print(f"  idle/busy over {ib['duration_s']:g} s: C {cpu['C']} s / A {cpu['A']} s "
                  f"CPU = {ib['idle_over_busy']:.1%} (B {cpu['B']} s, Redis {cpu['redis']} s, "
                  f"C idle alone {cpu['C_idle_baseline']} s); sent {ib['messages_sent']}, "
                  f"published {ib['published']}; lost {ib['lost']}, duplicated "
                  f"{ib['duplicated']}; load {ib['load']['before']} -> {ib['load']['after']}; "
                  f"Redis: {ib['redis_check']}")
        sc = entry.get("scaling")
        if sc:
            for name, runs in sc["runs"].items():
                label = (f"{name.split()[0]} web process(es)"
                         + (", pairs inside one process (control)" if "local" in name else ""))
                per = ", ".join(f"{r['web_cpu_per_delivery_us']:g}" for r in runs)
                naps = median([r["sleeps_per_send"] for r in runs])
                worst = {"lost": sum(r["lost"] for r in runs),
                         "duplicated": sum(r["duplicated"] for r in runs)}
                loads = " ".join(f"{r['load']['before'][0]:g}" for r in runs)
                print(f"  {label}: {sc['median_us'].get(name, '-')} µs web CPU per delivery "
                      f"(median of {per}), {naps:g} sleeps per send; lost {worst['lost']}, "
                      f"duplicated "
                      f"{worst['duplicated']}; load before each: {loads}")
            if sc.get("overloaded"):
                print(f"  growth: not measured, {sc['overloaded']} did not keep up "
                      "(unacknowledged sends); lower --rate")
            elif sc.get("growth") is not None:
                most = max(int(k.split()[0]) for k in sc["runs"])
                print(f"  growth 1 -> {most}: {sc['growth']:+.1%} = splitting the load alone "
                      f"(control) {sc['spread']:+.1%}, then crossing processes "
                      f"{sc['crossing']:+.1%}")
        if entry.get("model"):
            print(f"  model (µs of web CPU): {entry['model']}")
    bare = results.get("bare")
    if bare:
        print("\n[bare Flask-SocketIO, no queue: the platform alone]")
        for name, runs in bare["runs"].items():
            per = ", ".join(f"{r['web_cpu_per_delivery_us']:g}" for r in runs)
            naps = median([r["sleeps_per_send"] for r in runs])
            print(f"  {name.split()[0]} web process(es): {bare.get('median_us', {}).get(name, '-')}"
                  f" µs web CPU per delivery (median of {per}), {naps:g} sleeps per send")
        if bare.get("overloaded"):
            print("  growth: not measured, a run did not keep up; lower --rate")
        else:
            print(f"  growth from splitting the load alone: {bare['spread']:+.1%}")


if __name__ == "__main__":
    sys.exit(main())
