"""Connect + join of a group, the bare server and Simple Chat now and as of an earlier commit,
side by side in one run: rounds interleaved (the order turned round every other round), so
that the machine's drift falls on every arm alike.

    .venv/bin/python benchmarks/connect_ab.py [--ref HEAD] [--users 50] [--groups 1]
        [--rounds 30] [--stacks DIR] [--ref-env NAME=VALUE ...]

Each round, the clients of one group (``--users`` / ``--groups`` users, one conversation)
connect and join, 50 at a time; the wall time from the first connect to the last join's answer
and the worker's CPU (until 0.3 s after) are taken; then they disconnect. With ``--groups`` N
each round takes the next group's users, who have not connected yet to that arm: their cached
conversation lists are cold for whichever arm the round reaches first (the arms share Redis).
Figures: the median wall time (the first two rounds dropped when every round is the same group)
and the mean CPU per socket, and the ratios now/bare, ref/bare and now/ref. ``--stacks`` writes
py-spy's raw stacks of the bare and the current worker there.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import socketio  # noqa: E402

from benchmarks import harness  # noqa: E402
from simplechat.tools.loadtest import NAMESPACE, gather_limited, prepare_full  # noqa: E402

PASSWORD = "load-test-password"  # the load-test tool's default


async def one_round(url: str, cookies: list[str | None], conversation_ids: list[int],
                    pid: int) -> tuple[float, float]:
    """Wall seconds from the first connect to the last join's answer, and the worker's CPU
    seconds until a little after."""
    clients = [socketio.AsyncClient(reconnection=False) for _ in cookies]
    cpu, started = harness.cpu_seconds(pid), time.perf_counter()

    async def connect_and_join(client, cookie, conversation_id):
        await client.connect(url, headers={"Cookie": cookie} if cookie else {},
                             transports=["websocket"], namespaces=[NAMESPACE], wait_timeout=30)
        answer = await client.call("join", {"conversation_id": conversation_id},
                                   namespace=NAMESPACE, timeout=30)
        if not (isinstance(answer, dict) and answer.get("ok")):
            raise RuntimeError(f"join refused: {answer}")

    await gather_limited(50, (connect_and_join(c, k, cid) for c, k, cid
                              in zip(clients, cookies, conversation_ids, strict=True)))
    wall = time.perf_counter() - started
    await asyncio.sleep(0.3)  # the presence announcements a round leaves behind
    cpu = harness.cpu_seconds(pid) - cpu
    await gather_limited(50, (c.disconnect() for c in clients))
    await asyncio.sleep(0.4)
    return wall, cpu


async def run(arms: dict[str, tuple], args) -> dict[str, tuple[float, float]]:
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in arms}
    spies = []
    if args.stacks:
        for name in ("bare", "now"):
            spies.append(subprocess.Popen(
                [f"{harness.BIN}/py-spy", "record", "--nonblocking", "--pid", str(arms[name][3]),
                 "--rate", "200",
                 "--format", "raw", "--output",
                 os.path.join(args.stacks, f"{name}.txt")],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        await asyncio.sleep(1.5)
    for n in range(args.rounds):
        order = list(arms.items())
        if n % 2:
            order.reverse()
        for name, (url, cookies, conversation_ids, pid) in order:
            group = [i for i in range(len(cookies)) if i % args.groups == n % args.groups]
            results[name].append(await one_round(
                url, [cookies[i] for i in group], [conversation_ids[i] for i in group], pid))
    for spy in spies:
        spy.send_signal(2)
        spy.wait(timeout=60)
    per_socket = args.users // args.groups
    figures = {}
    for name, rounds in results.items():
        kept = rounds[2:] if args.groups == 1 else rounds
        figures[name] = (statistics.median(w for w, _ in kept),
                         sum(c for _, c in kept) / len(kept) / per_socket)
        print(f"{name:>5}: wall median {figures[name][0] * 1000:.1f} ms, worker CPU "
              f"{figures[name][1] * 1000:.2f} ms per socket; walls "
              f"{[round(w * 1000) for w, _ in kept]}")
    return figures


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ref", default="HEAD", help="the commit to compare with")
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--groups", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--stacks", help="a directory for py-spy's raw stacks")
    parser.add_argument("--ref-env", action="append", default=[], metavar="NAME=VALUE",
                        help="a setting of the reference arm's server alone (repeatable): "
                             "with the default --ref, what one setting costs")
    args = parser.parse_args()
    prefix = harness.unique_prefix("ab")
    procs = harness.Processes()
    workdir = tempfile.mkdtemp(prefix="simplechat-connect-ab-")
    print(f"logs in {workdir}; {harness.load_note()}")
    try:
        old_tree = harness.checkout(args.ref, tempfile.mkdtemp(prefix="simplechat-ref-"))
        with harness.scratch_database("ab") as database_url:
            env = harness.app_env(database_url, prefix)
            subprocess.run([sys.executable, "-m", "simplechat.tools.loadtest", "--prefix", "cc",
                            "--seed-users", str(args.users)], cwd=harness.ROOT, env=env,
                           check=True, capture_output=True, timeout=300)
            ports: list[int] = []
            for _ in range(3):
                ports.append(harness.free_port(low=max(ports, default=18499) + 1))
            bare = harness.gunicorn(procs, "benchmarks.baseline_server:app", ports[0], env,
                                    os.path.join(workdir, "bare.log"))
            now = harness.gunicorn(procs, "wsgi:app", ports[1], env,
                                   os.path.join(workdir, "now.log"))
            ref_env = dict(env, **dict(item.split("=", 1) for item in args.ref_env))
            ref = harness.gunicorn(procs, "wsgi:app", ports[2], ref_env,
                                   os.path.join(workdir, "ref.log"), cwd=old_tree)
            harness.celery_worker(procs, env, os.path.join(workdir, "celery.log"))
            urls = [f"http://127.0.0.1:{p}" for p in ports]
            for url, proc in zip(urls, (bare, now, ref), strict=True):
                harness.wait_http(url + "/healthz", proc)
            names = [f"cc{i:05d}" for i in range(args.users)]
            cookies, conversation_ids = asyncio.run(
                prepare_full(urls[1], names, PASSWORD, args.groups, False, 20))
            figures = asyncio.run(run({
                "bare": (urls[0], [None] * args.users, conversation_ids, harness.worker_pid(bare)),
                "now": (urls[1], cookies, conversation_ids, harness.worker_pid(now)),
                "ref": (urls[2], cookies, conversation_ids, harness.worker_pid(ref)),
            }, args))
    finally:
        procs.stop_all()
        harness.drop_redis_keys(prefix)
    for name in ("now", "ref"):
        print(f"{name}/bare: wall {figures[name][0] / figures['bare'][0]:.2f}, "
              f"CPU {figures[name][1] / figures['bare'][1]:.2f}")
    print(f"now/ref ({args.ref}): wall {figures['now'][0] / figures['ref'][0]:.3f}, "
          f"CPU {figures['now'][1] / figures['ref'][1]:.3f}; {harness.load_note()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
