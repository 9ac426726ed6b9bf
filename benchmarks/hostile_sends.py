"""What a flood of costly sends does to everyone else: one gunicorn-eventlet worker, a flooder
sending 4,000-character pathological Markdown ("[" * 4000, some 70 ms of markdown-it-py each)
as fast as its acks come back, while a bystander heartbeats on its own socket and polls /healthz.

Three phases, each --seconds long, in one run: the bystander alone (the baseline), the flooder
sending to its own conversation past the rate limit (CHAT_RATE_LIMIT 1/2s: nearly every send
answered rate_limited), then to a conversation it is not in (every send answered forbidden).
For each: the bystander's heartbeat and /healthz latency (p50, p99, max), the flooder's answers
by code, and the worker's CPU seconds; the load average before and after.

    .venv/bin/python benchmarks/hostile_sends.py [--seconds 10] [--sockets 4] [--inflight 8]
        [--ref COMMIT]

``--ref`` runs the same phases against a checkout of another commit too (e.g. 3becab1, before
issue 27's send path), on its own server. The flooder runs in a process of its own, so its
client work does not delay the bystander's measurements. The per-socket event budget
(CHAT_SOCKET_EVENT_RATE) is off so the bystander may heartbeat every --pause seconds; sends are
not under it anyway. Servers listen on 127.0.0.1 only; nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import requests  # noqa: E402
import socketio  # noqa: E402

from benchmarks import harness  # noqa: E402

PASSWORD = "load-test-password"
PATHOLOGICAL = "[" * 4000


# --------------------------------------------------------------------------- set-up


def flask(env: dict[str, str], tree: str, *args: str) -> str:
    result = subprocess.run([f"{harness.BIN}/flask", "--app", "wsgi", *args], cwd=tree, env=env,
                            capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise RuntimeError(f"flask {' '.join(args)}: {result.stdout}{result.stderr}")
    return result.stdout


def login(base: str, username: str) -> str:
    """The cookie header of a fresh login."""
    http = requests.Session()
    page = http.get(base + "/auth/login", timeout=30).text
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page)[1]
    response = http.post(base + "/auth/login", allow_redirects=False, timeout=30,
                         data={"username": username, "password": PASSWORD, "csrf_token": token})
    if response.status_code != 302:
        raise RuntimeError(f"login of {username}: {response.status_code}")
    return "; ".join(f"{c.name}={c.value}" for c in http.cookies)


def people(env: dict[str, str], tree: str, tag: str) -> tuple[dict[str, str], int, int]:
    """A flooder, a bystander and a third user; the flooder's conversation with the bystander
    and the bystander's with the third (which the flooder is not in)."""
    names = {role: f"hs-{tag}-{role}" for role in ("flooder", "bystander", "other")}
    for name in names.values():
        flask(env, tree, "users", "create", name, "--email", f"{name}@example.com",
              "--password", PASSWORD)
    own = flask(env, tree, "conversations", "create", "--users",
                f"{names['flooder']},{names['bystander']}")
    foreign = flask(env, tree, "conversations", "create", "--users",
                    f"{names['bystander']},{names['other']}")
    return (names, int(re.search(r"conversation (\d+)", own)[1]),
            int(re.search(r"conversation (\d+)", foreign)[1]))


# --------------------------------------------------------------------------- the flooder


async def _flood(base: str, cookie: str, conversation_id: int, seconds: float, sockets: int,
                 inflight: int, on_connected: Callable[[], None] | None = None) -> Counter:
    """Connect ``sockets`` sockets, then keep ``inflight`` sends unanswered on each for
    ``seconds``; the answers by code (``on_connected`` is called once all are connected)."""
    answers: Counter = Counter()
    clients = []
    for _ in range(sockets):
        sio = socketio.AsyncClient(reconnection=False)
        await sio.connect(base, namespaces=["/chat"], transports=["websocket"],
                          headers={"Cookie": cookie}, wait_timeout=30)
        clients.append(sio)
    if on_connected is not None:
        on_connected()
    end = time.monotonic() + seconds

    async def sender(sio) -> None:
        while time.monotonic() < end:
            try:
                ack = await sio.call("send_message", {
                    "conversation_id": conversation_id, "message": PATHOLOGICAL,
                    "client_id": secrets.token_hex(8)}, namespace="/chat", timeout=120)
                answers["ok" if ack.get("ok") else ack.get("error", "?")] += 1
            except Exception as exc:  # a timeout or a closed socket: counted, and go on
                answers[type(exc).__name__] += 1
                await asyncio.sleep(0.1)

    await asyncio.gather(*(sender(sio) for sio in clients for _ in range(inflight)))
    for sio in clients:
        await sio.disconnect()
    return answers


def _flood_process(args: tuple, out) -> None:
    out.put(dict(asyncio.run(_flood(*args))))


# --------------------------------------------------------------------------- the bystander


class Bystander:
    """Heartbeats on its own socket and polls /healthz, each in a thread of its own, one after
    the other with --pause between (``poll_pause`` between polls if given); keeps (sent at,
    latency) of each, and (sent at, answer) in beat_answers and poll_answers: "ok" or the
    heartbeat's error code, the HTTP status of /healthz, or the exception's name."""

    def __init__(self, base: str, cookie: str, pause: float, poll_pause: float | None = None):
        self.base, self.pause = base, pause
        self.poll_pause = pause if poll_pause is None else poll_pause
        self.sio = socketio.Client(reconnection=False)
        self.sio.connect(base, namespaces=["/chat"], transports=["websocket"],
                         headers={"Cookie": cookie}, wait_timeout=30)
        self.beats: list[tuple[float, float]] = []
        self.polls: list[tuple[float, float]] = []
        self.beat_answers: list[tuple[float, str]] = []
        self.poll_answers: list[tuple[float, str]] = []
        self.failures = 0
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._beat, daemon=True),
                        threading.Thread(target=self._poll, daemon=True)]
        for thread in self.threads:
            thread.start()

    def _beat(self) -> None:
        while not self.stopping.is_set():
            sent = time.monotonic()
            try:
                ack = self.sio.call("heartbeat", {}, namespace="/chat", timeout=120)
                ok = bool(ack.get("ok"))
                answer = "ok" if ok else str(ack.get("error", "?"))
            except Exception as exc:
                ok, answer = False, type(exc).__name__
            self.beats.append((sent, time.monotonic() - sent))
            self.beat_answers.append((sent, answer))
            self.failures += not ok
            time.sleep(self.pause)

    def _poll(self) -> None:
        with requests.Session() as http:
            while not self.stopping.is_set():
                sent = time.monotonic()
                try:
                    status = http.get(self.base + "/healthz", timeout=120).status_code
                    ok, answer = status == 200, str(status)
                except requests.RequestException as exc:
                    ok, answer = False, type(exc).__name__
                self.polls.append((sent, time.monotonic() - sent))
                self.poll_answers.append((sent, answer))
                self.failures += not ok
                time.sleep(self.poll_pause)

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(130)
        self.sio.disconnect()


def between(samples: list[tuple[float, float]], start: float, end: float) -> list[float]:
    return sorted(latency for sent, latency in list(samples) if start <= sent < end)


def percentile(values: list[float], q: int) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def line(name: str, values: list[float]) -> str:
    return (f"{name}: {len(values)} in the phase, p50 {percentile(values, 50) * 1000:.1f} ms, "
            f"p99 {percentile(values, 99) * 1000:.1f} ms, "
            f"max {(values[-1] if values else float('nan')) * 1000:.1f} ms")


# --------------------------------------------------------------------------- one server


def run_target(label: str, base: str, server, env: dict[str, str], tree: str, args) -> None:
    names, own, foreign = people(env, tree, secrets.token_hex(3))
    flooder_cookie = login(base, names["flooder"])
    bystander = Bystander(base, login(base, names["bystander"]), args.pause)
    print(f"\n== {label} ({base}); before: {harness.load_note()}", flush=True)
    phases = [("bystander alone (baseline)", None),
              (f"flood past the rate limit: its own conversation {own}", own),
              (f"flood as a stranger: conversation {foreign}", foreign)]
    try:
        time.sleep(1.0)  # warm: connections, caches
        for name, conversation_id in phases:
            pid = harness.worker_pid(server)
            cpu_before, start = harness.cpu_seconds(pid), time.monotonic()
            answers: dict = {}
            if conversation_id is None:
                time.sleep(args.seconds)
            else:
                queue = multiprocessing.Queue()
                flooder = multiprocessing.Process(target=_flood_process, args=(
                    (base, flooder_cookie, conversation_id, args.seconds, args.sockets,
                     args.inflight), queue))
                flooder.start()
                answers = queue.get(timeout=args.seconds + 300)
                flooder.join(30)
            end, cpu = time.monotonic(), harness.cpu_seconds(pid) - cpu_before
            time.sleep(0.5)  # the last samples of the phase come back
            print(f"  {name} ({end - start:.1f} s)")
            print("    " + line("heartbeat", between(bystander.beats, start, end)))
            print("    " + line("/healthz ", between(bystander.polls, start, end)))
            if answers:
                total = sum(answers.values())
                print(f"    flooder: {total} sends answered ({total / (end - start):.1f}/s): "
                      + ", ".join(f"{code} {n}" for code, n in sorted(answers.items())))
            print(f"    worker: {cpu:.2f} s CPU ({cpu / (end - start):.0%} of a core)",
                  flush=True)
    finally:
        bystander.stop()
    if bystander.failures:
        print(f"  bystander: {bystander.failures} heartbeats or polls failed")
    print(f"  after: {harness.load_note()}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0,
                        help="each phase lasts this long (default 10)")
    parser.add_argument("--sockets", type=int, default=4, help="the flooder's sockets")
    parser.add_argument("--inflight", type=int, default=8,
                        help="sends each flooder socket keeps unanswered (default 8)")
    parser.add_argument("--pause", type=float, default=0.05,
                        help="seconds between the bystander's heartbeats, and its polls")
    parser.add_argument("--ref", help="also measure this commit's server (git ref)")
    args = parser.parse_args()
    print(f"{harness.load_note()}")
    prefix = harness.unique_prefix("hostile-sends")
    procs = harness.Processes()
    workdir = tempfile.mkdtemp(prefix="simplechat-hostile-sends-")
    try:
        with harness.scratch_database("hsends") as database_url:
            env = harness.app_env(database_url, prefix, CHAT_RATE_LIMIT="1/2s",
                                  CHAT_SOCKET_EVENT_RATE="off")
            targets = [("this tree", harness.ROOT)]
            if args.ref:
                targets.append((f"commit {args.ref}", harness.checkout(
                    args.ref, tempfile.mkdtemp(prefix="simplechat-ref-"))))
            for label, tree in targets:
                port = harness.free_port()
                os.makedirs(workdir, exist_ok=True)
                log = os.path.join(workdir, f"web-{port}.log")
                server = harness.gunicorn(procs, "wsgi:app", port, env, log, cwd=tree)
                base = f"http://127.0.0.1:{port}"
                harness.wait_http(base + "/auth/login", server)
                run_target(label, base, server, env, tree, args)
                procs.stop_all()
    finally:
        procs.stop_all()
        harness.drop_redis_keys(prefix)
    print(f"\nlogs: {workdir}")


if __name__ == "__main__":
    main()
