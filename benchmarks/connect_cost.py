"""What a socket's life costs the worker, phase by phase: CPU per connect, per join and per
disconnect, for the full server and the bare one in the same run; optionally a py-spy profile
of the full server's phases.

    .venv/bin/python benchmarks/connect_cost.py [--users 200] [--group 50] [--rounds 4]
        [--stacks out.txt]

Each round connects every user's socket (50 at a time), joins each to its conversation, then
disconnects them all; the worker's CPU time (from /proc/<pid>/stat) is read between the phases,
after a short pause for the work a phase leaves behind (presence announcements). The first round
warms caches and pools; the figures are the median of the others.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import socketio  # noqa: E402

from benchmarks import harness  # noqa: E402
from simplechat.tools.loadtest import NAMESPACE, gather_limited, prepare_full  # noqa: E402

PHASES = ("connect", "join", "disconnect")
PASSWORD = "load-test-password"  # the load-test tool's default


async def measure(url: str, pid: int, cookies: list[str | None], conversation_ids: list[int],
                  rounds: int) -> dict[str, list[float]]:
    """CPU milliseconds per socket of each phase, one figure per round."""
    spent: dict[str, list[float]] = {phase: [] for phase in PHASES}

    async def settle(phase: str, before: float) -> float:
        await asyncio.sleep(0.5)
        now = harness.cpu_seconds(pid)
        spent[phase].append((now - before) * 1000 / len(cookies))
        return now

    for _ in range(rounds):
        clients = [socketio.AsyncClient(reconnection=False) for _ in cookies]
        mark = harness.cpu_seconds(pid)
        await gather_limited(50, (
            client.connect(url, headers={"Cookie": cookie} if cookie else {},
                           transports=["websocket"], namespaces=[NAMESPACE], wait_timeout=30)
            for client, cookie in zip(clients, cookies, strict=True)))
        mark = await settle("connect", mark)
        acks = await gather_limited(50, (
            client.call("join", {"conversation_id": cid}, namespace=NAMESPACE, timeout=30)
            for client, cid in zip(clients, conversation_ids, strict=True)))
        refused = [a for a in acks if not (isinstance(a, dict) and a.get("ok"))]
        if refused:
            raise RuntimeError(f"{len(refused)} joins refused: {refused[:3]}")
        mark = await settle("join", mark)
        await gather_limited(50, (client.disconnect() for client in clients))
        await settle("disconnect", mark)
    return spent


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--group", type=int, default=50, help="members per conversation")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--stacks", help="py-spy the full server's rounds into this file")
    args = parser.parse_args()
    prefix = harness.unique_prefix("connect")
    procs = harness.Processes()
    workdir = tempfile.mkdtemp(prefix="simplechat-connect-")
    print(f"logs in {workdir}; {harness.load_note()}")
    results: dict[str, dict[str, list[float]]] = {}
    try:
        with harness.scratch_database("connect") as database_url:
            env = harness.app_env(database_url, prefix)
            subprocess.run([sys.executable, "-m", "simplechat.tools.loadtest", "--prefix", "cc",
                            "--seed-users", str(args.users)], cwd=harness.ROOT, env=env,
                           check=True, timeout=120)
            base_port = harness.free_port()
            full_port = harness.free_port(low=base_port + 1)  # the first may not be bound yet
            base = harness.gunicorn(procs, "benchmarks.baseline_server:app", base_port, env,
                                    os.path.join(workdir, "bare.log"))
            full = harness.gunicorn(procs, "wsgi:app", full_port, env,
                                    os.path.join(workdir, "full.log"))
            harness.celery_worker(procs, env, os.path.join(workdir, "celery.log"))
            base_url, full_url = (f"http://127.0.0.1:{p}" for p in (base_port, full_port))
            harness.wait_http(base_url + "/healthz", base)
            harness.wait_http(full_url + "/auth/login", full)
            names = [f"cc{i:05d}" for i in range(args.users)]
            groups = max(1, args.users // args.group)
            cookies, conversation_ids = asyncio.run(
                prepare_full(full_url, names, PASSWORD, groups, False, 20))

            results["bare"] = asyncio.run(measure(
                base_url, harness.worker_pid(base), [None] * args.users, conversation_ids,
                args.rounds))
            print(f"bare done; {harness.load_note()}")
            spy = None
            if args.stacks:
                spy = subprocess.Popen([f"{harness.BIN}/py-spy", "record", "--pid",
                                        str(harness.worker_pid(full)), "--rate", "200",
                                        "--format", "raw", "--nonblocking", "--output",
                                        args.stacks, "--duration", str(8 * args.rounds)])
            results["full"] = asyncio.run(measure(
                full_url, harness.worker_pid(full), cookies, conversation_ids, args.rounds))
            print(f"full done; {harness.load_note()}")
            if spy is not None:
                spy.wait(timeout=60 * args.rounds)
    finally:
        procs.stop_all()
        harness.drop_redis_keys(prefix)

    print(f"\n{args.users} sockets in conversations of {args.group}; worker CPU ms per socket, "
          f"median of rounds 2-{args.rounds} (every round)")
    print(f"{'phase':<11} {'bare':>8} {'full':>8} {'full/bare':>10}")
    for phase in PHASES:
        bare, full = (statistics.median(results[k][phase][1:] or results[k][phase])
                      for k in ("bare", "full"))
        rounds = " ".join(f"{x:.2f}" for x in results["full"][phase])
        print(f"{phase:<11} {bare:8.2f} {full:8.2f} {full / bare if bare else 0:9.1f}×"
              f"   full: {rounds}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
