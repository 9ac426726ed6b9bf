"""Threads against the main flow, in one run (issue 29's goals): what a thread reply costs the
send path next to a main-flow message, and what opening a thread of 1,000 replies costs next to
joining a conversation of 100 messages.

Starts the full server as run_all.py does (gunicorn -k eventlet, one worker; a fresh PostgreSQL
database; Redis db 11 under a unique key prefix; one Celery worker; CHAT_RATE_LIMIT=off), logs
three users in and drives it with Socket.IO clients, one request at a time:

- sends: the same one-line text, sent as a main-flow message to one group and as a reply in a
  thread of another (its root the oldest of a full recent list, as a thread under a recent
  message is), in alternating blocks, so drift in the machine's load falls on both alike.
  Reported: the ack's round trip (p50, mean) and the server worker's CPU time per message,
  and the same for a third arm equal to the first (main-flow sends to another group): how far
  two equal arms differ in the same run; the thread is also set against both main-flow arms
  pooled. The arms' order turns each round, and each block's writes settle before the next.
  Then the same for a thread whose root is older than the recent list, for the record.
- reads: ``thread`` of a thread of 1,000 replies (the newest 100 and its root) and ``join`` of
  a conversation of 100 messages, alternating.

    .venv/bin/python benchmarks/threads.py [--sends 2000] [--reads 400] [--block 50]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

import requests
import socketio

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import harness  # noqa: E402

PASSWORD = "load-test-password"
NS = "/chat"
_CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


def login(base: str, username: str) -> requests.Session:
    http = requests.Session()
    token = _CSRF.search(http.get(base + "/auth/login").text).group(1)
    answer = http.post(base + "/auth/login", allow_redirects=False, data={
        "csrf_token": token, "username": username, "password": PASSWORD})
    if answer.status_code != 302 or "/auth/login" in answer.headers.get("Location", ""):
        raise RuntimeError(f"{username} could not log in")
    return http


def start_group(base: str, http: requests.Session, member_ids: list[int], title: str) -> int:
    token = _CSRF.search(http.get(base + "/chat/new").text).group(1)
    answer = http.post(base + "/chat/new", allow_redirects=False, data=[
        ("csrf_token", token), ("title", title), *[("participants", str(i)) for i in member_ids]])
    return int(answer.headers["Location"].rstrip("/").rsplit("/", 1)[1])


def user_id(base: str, http: requests.Session, username: str) -> int:
    hits = http.get(base + "/api/users", params={"q": username}).json()["results"]
    return next(h["id"] for h in hits if h["text"].endswith(f"(@{username})"))


def connect(base: str, http: requests.Session) -> socketio.Client:
    sio = socketio.Client(reconnection=False)
    cookie = "; ".join(f"{k}={v}" for k, v in http.cookies.items())
    sio.connect(base, namespaces=[NS], transports=["websocket"], headers={"Cookie": cookie})
    return sio


def call(sio: socketio.Client, event: str, payload: dict) -> dict:
    answer = sio.call(event, payload, namespace=NS, timeout=30)
    if not answer.get("ok"):
        raise RuntimeError(f"{event}: {answer}")
    return answer


def timed(sio, event: str, payload: dict) -> float:
    start = time.perf_counter()
    call(sio, event, payload)
    return time.perf_counter() - start


def summary(samples: list[float], cpu: float, celery_cpu: float = 0.0) -> dict:
    ordered = sorted(samples)
    return {"n": len(samples), "p50_ms": 1000 * ordered[len(ordered) // 2],
            "p95_ms": 1000 * ordered[int(len(ordered) * 0.95)],
            "mean_ms": 1000 * statistics.fmean(samples),
            "cpu_us": 1e6 * cpu / len(samples), "celery_us": 1e6 * celery_cpu / len(samples)}


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of a process and its children (the Celery worker and its pool)."""
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        children = [int(c) for c in f.read().split()]
    return harness.cpu_seconds(pid) + sum(harness.cpu_seconds(c) for c in children)


def alternate(pid: int, celery_pid: int, runs: dict, total: int, block: int) -> dict:
    """Run each named step ``total`` times, in alternating blocks of ``block`` (the order of
    the arms turning each round); the latency of each, and the CPU seconds the web worker and
    the Celery worker spent in its blocks (the worker's share stored after the block, as the
    next block starts, counts for the next: the turning order spreads it)."""
    samples = {name: [] for name in runs}
    cpu = dict.fromkeys(runs, 0.0)
    celery_cpu = dict.fromkeys(runs, 0.0)
    names = list(runs)
    done = 0
    while done < total:
        for name in names:
            before, celery_before = harness.cpu_seconds(pid), tree_cpu_seconds(celery_pid)
            samples[name] += [runs[name](done + i) for i in range(block)]
            time.sleep(0.05)  # the block's writes stored before the next block's clock starts
            cpu[name] += harness.cpu_seconds(pid) - before
            celery_cpu[name] += tree_cpu_seconds(celery_pid) - celery_before
        names = names[1:] + names[:1]
        done += block
    return {name: {**summary(samples[name], cpu[name], celery_cpu[name]),
                   "raw": (samples[name], cpu[name], celery_cpu[name])} for name in runs}


def pooled(*arms: dict) -> dict:
    """One summary of equal arms' samples together."""
    return summary([x for arm in arms for x in arm["raw"][0]],
                   sum(arm["raw"][1] for arm in arms), sum(arm["raw"][2] for arm in arms))


def show(title: str, figures: dict, base: str, other: str, goal: float) -> None:
    print(f"\n{title}")
    for name, f in figures.items():
        print(f"  {name:<28} p50 {f['p50_ms']:7.3f} ms  p95 {f['p95_ms']:7.3f} ms  "
              f"mean {f['mean_ms']:7.3f} ms  worker CPU {f['cpu_us']:7.1f} µs  "
              f"Celery CPU {f['celery_us']:7.1f} µs  (n={f['n']})")
    for key, label in (("p50_ms", "p50"), ("mean_ms", "mean"), ("cpu_us", "CPU")):
        ratio = figures[other][key] / figures[base][key]
        print(f"  {other} / {base} ({label}): {ratio:.3f}  (goal ≤ {goal})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sends", type=int, default=2000, help="sends of each kind")
    parser.add_argument("--reads", type=int, default=400, help="thread and join each")
    parser.add_argument("--block", type=int, default=50, help="steps per alternating block")
    args = parser.parse_args()
    prefix = harness.unique_prefix("threads")
    procs = harness.Processes()
    workdir = tempfile.mkdtemp(prefix="simplechat-threads-")
    print(f"logs in {workdir}; before: {harness.load_note()}")
    try:
        with harness.scratch_database("threads") as database_url:
            env = harness.app_env(database_url, prefix, CHAT_SOCKET_EVENT_RATE="off",
                                  CHAT_SOCKET_JOIN_RATE="off")
            subprocess.run([sys.executable, "-m", "simplechat.tools.loadtest", "--prefix", "th",
                            "--seed-users", "3"], cwd=harness.ROOT, env=env, check=True,
                           timeout=120)
            port = harness.free_port()
            server = harness.gunicorn(procs, "wsgi:app", port, env,
                                      os.path.join(workdir, "server.log"))
            celery = harness.celery_worker(procs, env, os.path.join(workdir, "celery.log"))
            base = f"http://127.0.0.1:{port}"
            harness.wait_http(base + "/auth/login", server)
            pid = harness.worker_pid(server)
            ada = login(base, "th00000")
            others = [user_id(base, ada, f"th0000{i}") for i in (1, 2)]
            main_flow, control, threads, joined, cold, long = (
                start_group(base, ada, others, t) for t in (
                    "main flow", "main flow too", "threads", "a hundred messages", "cold root",
                    "a long thread"))
            sio = connect(base, ada)
            for conversation in (main_flow, control, threads, joined, cold, long):
                call(sio, "join", {"conversation_id": conversation})
            text = "the same line of plain words, sent either way"

            def send(conversation: int, **extra):
                return call(sio, "send_message", {"conversation_id": conversation,
                                                  "message": text, **extra})["message"]

            root = send(threads)
            for _ in range(98):  # its recent list full, the root still in it (the oldest)
                send(threads)
            cold_root = send(cold)
            for _ in range(110):  # the cold root falls off its recent list (100)
                send(cold)
            for _ in range(100):
                send(joined)
            for _ in range(10):  # warm both paths up
                send(main_flow)
                send(threads, thread_id=root["id"])
            sends = alternate(pid, celery.pid, {
                "main-flow send": lambda i: timed(sio, "send_message", {
                    "conversation_id": main_flow, "message": text}),
                "thread send": lambda i: timed(sio, "send_message", {
                    "conversation_id": threads, "message": text, "thread_id": root["id"]}),
                # The same as the first, to another group: how far two equal arms differ here.
                "main-flow send, control": lambda i: timed(sio, "send_message", {
                    "conversation_id": control, "message": text}),
            }, args.sends, args.block)
            cold_sends = alternate(pid, celery.pid, {
                "main-flow send": lambda i: timed(sio, "send_message", {
                    "conversation_id": main_flow, "message": text}),
                "thread send, root not cached": lambda i: timed(sio, "send_message", {
                    "conversation_id": cold, "message": text, "thread_id": cold_root["id"]}),
            }, max(args.sends // 4, args.block), args.block)
            # A thread of 1,000 replies, under a root of its own conversation.
            long_root = send(long)
            for _ in range(1000):
                send(long, thread_id=long_root["id"])
            time.sleep(2)  # the worker has stored them
            size = call(sio, "thread", {"conversation_id": long, "thread_id": long_root["id"]})
            print(f"\nthread of {size['root']['thread']['reply_count']} replies answers "
                  f"{len(size['messages'])}; join answers "
                  f"{len(call(sio, 'join', {'conversation_id': joined})['messages'])}")
            reads = alternate(pid, celery.pid, {
                "join (100 messages)": lambda i: timed(sio, "join", {"conversation_id": joined}),
                "thread (1,000 replies)": lambda i: timed(sio, "thread", {
                    "conversation_id": long, "thread_id": long_root["id"]}),
            }, args.reads, args.block)
            sio.disconnect()
            show("Send path (the same text, alternating blocks)", sends, "main-flow send",
                 "thread send", 1.05)
            show("Send path: the thread against both main-flow arms together", {
                "main-flow sends, pooled": pooled(sends["main-flow send"],
                                                  sends["main-flow send, control"]),
                "thread send": sends["thread send"]}, "main-flow sends, pooled", "thread send",
                1.05)
            show("Send path: two equal arms (the noise)", {
                k: sends[k] for k in ("main-flow send", "main-flow send, control")},
                "main-flow send", "main-flow send, control", 1.05)
            show("Send path, a thread whose root left the recent list", cold_sends,
                 "main-flow send", "thread send, root not cached", 1.05)
            show("Opening", reads, "join (100 messages)", "thread (1,000 replies)", 1.5)
            print(f"\nafter: {harness.load_note()}")
    finally:
        procs.stop_all()
        harness.drop_redis_keys(prefix)
    return 0


if __name__ == "__main__":
    sys.exit(main())
