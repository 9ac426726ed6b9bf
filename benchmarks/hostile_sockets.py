"""A bystander's service while one user attacks with sockets (issue 27): the bystander's
heartbeat round trip and /healthz latency (p50, p99), the worker's RSS, and what the server did
to the attacker, measured quiet (the baseline), under attack and after it, in one run.

    .venv/bin/python benchmarks/hostile_sockets.py [--seconds 10] [--flood-rate 50]
        [--idle 200] [--ref <commit>]

The attack, from this process: the attacker keeps CHAT_MAX_SOCKETS_PER_USER + 5 sockets trying
to be open (a refused or closed one tries again half a second later); each open one sends
heartbeat and join (of a conversation of 100 messages of 4,000 characters, ~1.7 MB an answer)
at --flood-rate frames a second and never reads a byte, with a 4 KiB receive window. Beside
it, --idle raw engine.io connections that never join a namespace. One gunicorn-eventlet worker,
PostgreSQL and Redis on 127.0.0.1; the attacker and the bystander share the host's CPUs with
the server, so the load average is printed with the figures. No assertion: figures only.

``--ref`` runs the same again on the code of another commit (extracted with ``git archive``;
it must have the same database schema), e.g. the commit before these limits, for comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import requests  # noqa: E402
import socketio  # noqa: E402
import websocket  # noqa: E402

from benchmarks import harness  # noqa: E402
from simplechat.tools.loadtest import NAMESPACE, prepare_full  # noqa: E402

PASSWORD = "load-test-password"  # the load-test tool's default
LONG_TEXT = ("<b>read</b> & <i>this</i> " * 200)[:3990]
ATTACKERS = 25  # CHAT_MAX_SOCKETS_PER_USER + 5


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Bystander:
    """A fresh socket of the bystander per phase (each socket has its own event budget):
    heartbeats at 10 a second, /healthz at 10 a second, each timed."""

    def __init__(self, url: str, cookie: str):
        self.url, self.cookie = url, cookie

    def run(self, seconds: float) -> dict:
        beats, beat_failures = [], 0
        health, health_failures = [], 0
        sio = socketio.Client(reconnection=False)
        try:
            sio.connect(self.url, headers={"Cookie": self.cookie}, transports=["websocket"],
                        namespaces=[NAMESPACE], wait_timeout=30)
        except Exception as exc:  # noqa: BLE001
            return {"error": f"bystander could not connect: {exc}"}
        stop = time.monotonic() + seconds

        def probe_health() -> None:
            nonlocal health_failures
            while time.monotonic() < stop:
                started = time.perf_counter()
                try:
                    ok = requests.get(self.url + "/healthz", timeout=5).status_code == 200
                except requests.RequestException:
                    ok = False
                health.append(time.perf_counter() - started)
                health_failures += not ok
                time.sleep(0.1)

        prober = threading.Thread(target=probe_health, daemon=True)
        prober.start()
        while time.monotonic() < stop:
            started = time.perf_counter()
            try:
                ok = sio.call("heartbeat", {}, namespace=NAMESPACE, timeout=5) == {"ok": True}
            except Exception:  # noqa: BLE001  (a timeout or a lost connection)
                ok = False
            beats.append(time.perf_counter() - started)
            beat_failures += not ok
            time.sleep(0.1)
        prober.join(10)
        sio.disconnect()
        return {"beats": beats, "beat_failures": beat_failures, "health": health,
                "health_failures": health_failures}


class Attack:
    """The attacker's sockets and the idle connections (see the module's docstring)."""

    def __init__(self, url: str, cookie: str, conversation_id: int, flood_rate: float,
                 idle: int):
        self.ws_url = url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket"
        self.cookie = cookie
        self.conversation_id = conversation_id
        self.interval = 1.0 / flood_rate
        self.idle_count = idle
        self.stop = threading.Event()
        self.lock = threading.Lock()
        # failed: a connection or its namespace connect that failed (not an answer)
        self.stats = {"admitted": 0, "refused": 0, "cut": 0, "frames": 0, "open_now": 0,
                      "failed": 0}
        self.refusals: Counter = Counter()  # the CONNECT_ERROR messages of refused sockets
        self.idle: list[websocket.WebSocket] = []
        self.threads: list[threading.Thread] = []

    def _count(self, key: str, n: int = 1) -> None:
        with self.lock:
            self.stats[key] += n

    def _open(self, cookie: str | None) -> websocket.WebSocket:
        ws = websocket.create_connection(
            self.ws_url, header=[f"Cookie: {cookie}"] if cookie else [], timeout=10,
            sockopt=((socket.SOL_SOCKET, socket.SO_RCVBUF, 4096),))
        ws.recv()  # engine.io OPEN
        return ws

    def _attacker(self) -> None:
        while not self.stop.is_set():
            try:
                ws = self._open(self.cookie)
                ws.send(f"40{NAMESPACE},")
                answer = ws.recv()
                while not answer.startswith((f"40{NAMESPACE},", f"44{NAMESPACE},")):
                    answer = ws.recv()
            except (OSError, websocket.WebSocketException):
                self._count("failed")
                self.stop.wait(0.5)
                continue
            if answer.startswith(f"44{NAMESPACE},"):
                self._count("refused")
                with self.lock:
                    self.refusals[refusal_message(answer)] += 1
                ws.close()
                self.stop.wait(0.5)
                continue
            self._count("admitted")
            self._count("open_now")
            n = 0
            try:
                while not self.stop.is_set():  # never a recv() from here on
                    event = "join" if n % 2 else "heartbeat"
                    data = (f'{{"conversation_id":{self.conversation_id}}}' if event == "join"
                            else "{}")
                    ws.send(f'42{NAMESPACE},{n}["{event}",{data}]')
                    n += 1
                    self._count("frames")
                    self.stop.wait(self.interval)
            except (OSError, websocket.WebSocketException):
                self._count("cut")
            finally:
                self._count("open_now", -1)
                ws.close()
            self.stop.wait(0.5)

    def start(self) -> None:
        for _ in range(self.idle_count):
            try:
                self.idle.append(self._open(None))
            except (OSError, websocket.WebSocketException):
                break
        for _ in range(ATTACKERS):
            thread = threading.Thread(target=self._attacker, daemon=True)
            thread.start()
            self.threads.append(thread)

    def idle_closed(self) -> int:
        """How many of the idle connections the server has closed."""
        closed = 0
        for ws in self.idle:
            ws.settimeout(0.01)
            try:
                while True:
                    if not ws.recv():
                        closed += 1
                        break
            except websocket.WebSocketTimeoutException:
                pass
            except (OSError, websocket.WebSocketException):
                closed += 1
        return closed

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(15)
        for ws in self.idle:
            ws.close()


def refusal_message(packet: str) -> str:
    """The message of a CONNECT_ERROR packet ``44/chat,{"message": ...}``."""
    try:
        data = json.loads(packet.split(",", 1)[1])
    except (IndexError, ValueError):
        return packet[:60]
    return str(data.get("message", data)) if isinstance(data, dict) else str(data)


def ms(value: float) -> str:
    return f"{value * 1000:7.1f}"


def report(label: str, phase: str, figures: dict, rss_mib: float) -> None:
    if "error" in figures:
        print(f"{label:>10} {phase:<7} {figures['error']}")
        return
    beats, health = figures["beats"], figures["health"]
    print(f"{label:>10} {phase:<7} heartbeat p50 {ms(percentile(beats, 0.5))} "
          f"p99 {ms(percentile(beats, 0.99))} ms (n={len(beats)}, failed "
          f"{figures['beat_failures']})  /healthz p50 {ms(percentile(health, 0.5))} "
          f"p99 {ms(percentile(health, 0.99))} ms (n={len(health)}, failed "
          f"{figures['health_failures']})  worker RSS {rss_mib:7.1f} MiB")


def seed_long_conversation(url: str, cookie: str, conversation_id: int, count: int = 100
                           ) -> None:
    """``count`` messages of 4,000 characters into the conversation, one after the other (the
    server must not rate-limit them: CHAT_RATE_LIMIT off), so that a join answers ~1.7 MB."""
    writer = socketio.Client(reconnection=False)
    writer.connect(url, headers={"Cookie": cookie}, transports=["websocket"],
                   namespaces=[NAMESPACE], wait_timeout=30)
    for n in range(count):
        ack = writer.call("send_message", {"conversation_id": conversation_id,
                                           "message": f"{n} {LONG_TEXT}"},
                          namespace=NAMESPACE, timeout=30)
        if not ack.get("ok"):
            raise RuntimeError(f"seeding refused: {ack}")
    writer.disconnect()


def run(label: str, code_dir: str, workdir: str, args: argparse.Namespace) -> None:
    prefix = harness.unique_prefix("hostile")
    procs = harness.Processes()
    try:
        with harness.scratch_database("hostile") as database_url:
            env = harness.app_env(database_url, prefix, CHAT_RATE_LIMIT="off",
                                  REGISTER_RATE_LIMIT="off", LOGIN_RATE_LIMIT_IP="off",
                                  LOGIN_RATE_LIMIT_ACCOUNT="off",
                                  LOGIN_SUCCESS_RATE_LIMIT_IP="off",
                                  LOGIN_SUCCESS_RATE_LIMIT_ACCOUNT="off",
                                  CHAT_CONVERSATION_RATE_LIMIT="off", LOG_LEVEL="INFO")
            subprocess.run([sys.executable, "-m", "simplechat.tools.loadtest", "--prefix", "hs",
                            "--seed-users", "2"], cwd=harness.ROOT, env=env, check=True,
                           timeout=120)
            port = harness.free_port()
            log_path = os.path.join(workdir, f"{label}.log")
            master = harness.gunicorn(procs, "wsgi:app", port, env, log_path, cwd=code_dir)
            harness.celery_worker(procs, env, os.path.join(workdir, f"{label}-celery.log"))
            url = f"http://127.0.0.1:{port}"
            harness.wait_http(url + "/auth/login", master)
            pid = harness.worker_pid(master)
            (bob, eve), (conversation_id, _) = asyncio.run(
                prepare_full(url, ["hs00000", "hs00001"], PASSWORD, 1, False, 2))
            seed_long_conversation(url, eve, conversation_id)

            bystander = Bystander(url, bob)
            report(label, "quiet", bystander.run(args.seconds), harness.rss_kib(pid) / 1024)
            attack = Attack(url, eve, conversation_id, args.flood_rate, args.idle)
            attack.start()
            peak = [harness.rss_kib(pid)]
            sampling = threading.Event()

            def sample() -> None:
                while not sampling.wait(0.25):
                    try:
                        peak.append(harness.rss_kib(pid))
                    except (OSError, RuntimeError):
                        return

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            under = bystander.run(args.seconds)
            closed_idle = attack.idle_closed()
            attack.finish()
            sampling.set()
            sampler.join(5)
            report(label, "attack", under, max(peak) / 1024)
            time.sleep(2)
            report(label, "after", bystander.run(args.seconds), harness.rss_kib(pid) / 1024)
            with open(log_path, errors="replace") as f:
                log = f.read()
            stats = attack.stats
            print(f"{label:>10} attacker: {stats['admitted']} sockets admitted, "
                  f"{stats['refused']} refused (too_many_sockets), {stats['cut']} cut by the "
                  f"server, {stats['frames']} frames sent; idle connections closed "
                  f"{closed_idle} of {len(attack.idle)}; log: "
                  f"{log.count('is not reading')} 'is not reading', "
                  f"{log.count('joined no namespace')} 'joined no namespace', "
                  f"{log.count('events in flight')} 'events in flight'")
            print(f"{label:>10} {harness.load_note()}")
    finally:
        procs.stop_all()
        harness.drop_redis_keys(prefix)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each phase")
    parser.add_argument("--flood-rate", type=float, default=50.0,
                        help="frames a second from each of the attacker's open sockets")
    parser.add_argument("--idle", type=int, default=200,
                        help="raw connections that never join a namespace")
    parser.add_argument("--ref", help="also run the code of this commit, for comparison")
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="simplechat-hostile-")
    print(f"logs in {workdir}; {harness.load_note()}")
    print(f"attack: {ATTACKERS} sockets of one user kept trying, heartbeat + join at "
          f"{args.flood_rate:g}/s each, never reading; {args.idle} idle connections; "
          f"phases of {args.seconds:g} s")
    run("current", harness.ROOT, workdir, args)
    if args.ref:
        ref_dir = harness.checkout(args.ref, tempfile.mkdtemp(prefix="simplechat-ref-"))
        run(args.ref[:10], ref_dir, workdir, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
