"""What one emit's publishing costs a web process when its rooms live on several Redis servers:
the servers' commands sent together and their answers read after (what ShardRouter.publish
does), against one server after the other (what it did before), in the same run.

Three redis-servers of its own (free ports, no persistence); the router of
``simplechat/realtime/fanout.py`` under eventlet, as in a web process. For a pair's emit
(3 channels: the conversation and two personal rooms) and a conversation of 50's (51 channels),
each set picked so that it names all three servers,
with 1 and with 64 emits in flight, it prints emits/s, the process's CPU per emit, Redis's CPU
per emit (all three servers, from INFO cpu) and the process's sleeps (voluntary context
switches) per emit. Nobody subscribes: this is the publishing side alone.

    .venv/bin/python benchmarks/publish_cost.py [--emits 3000] [--rounds 2]
"""

from __future__ import annotations

import eventlet

eventlet.monkey_patch()

import argparse  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import harness  # noqa: E402
from benchmarks.fanout_scaling import start_redis  # noqa: E402
from simplechat.realtime.fanout import ShardRouter  # noqa: E402

PAYLOAD = b"x" * 400  # about the size of a message event as published


def one_after_the_other(router: ShardRouter, channels: list[bytes], payload: bytes) -> None:
    """The router's publishing as it was: each server's round trip waits for the last."""
    groups: dict = {}
    for channel in channels:
        groups.setdefault(router.shard_of(channel), []).append(channel)
    for shard, named in groups.items():
        shard.publish(named, payload)


def channels_of(router: ShardRouter, size: int) -> list[bytes]:
    """A conversation's room and ``size`` - 1 members' personal rooms, the first such set
    whose channels name all three servers (a pair's three channels often name two)."""
    for k in range(1000):
        channels = [f"bench/chat#conversation:{k}".encode(),
                    *(f"bench/chat#user:{k * size + i}".encode() for i in range(size - 1))]
        if len({router.shard_of(c) for c in channels}) == 3:
            return channels
    raise RuntimeError("no set of channels names all three servers")


def redis_cpu(clients) -> float:
    total = 0.0
    for client in clients:
        cpu = client.info("cpu")
        total += float(cpu["used_cpu_sys"]) + float(cpu["used_cpu_user"])
    return total


def measure(publish, router, channels, clients, emits: int, in_flight: int) -> dict:
    for _ in range(50):  # connections opened, the script loaded on every server
        publish(router, channels, PAYLOAD)
    pool = eventlet.GreenPool(in_flight)
    redis_before, before, started = (redis_cpu(clients), resource.getrusage(resource.RUSAGE_SELF),
                                     time.monotonic())
    for _ in range(emits):
        pool.spawn_n(publish, router, channels, PAYLOAD)
    pool.waitall()
    elapsed = time.monotonic() - started
    after, redis_after = resource.getrusage(resource.RUSAGE_SELF), redis_cpu(clients)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return {"emits_per_s": emits / elapsed, "cpu_us": cpu / emits * 1e6,
            "redis_us": (redis_after - redis_before) / emits * 1e6,
            "sleeps": (after.ru_nvcsw - before.ru_nvcsw) / emits}


def median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--emits", type=int, default=3000, help="emits per measurement")
    parser.add_argument("--rounds", type=int, default=2,
                        help="rounds of every measurement, in turn; medians reported")
    args = parser.parse_args()
    procs = harness.Processes()
    workdir = tempfile.mkdtemp(prefix="simplechat-publish-")
    print(f"logs in {workdir}; {harness.load_note()}", flush=True)
    try:
        servers = [start_redis(procs, workdir) for _ in range(3)]
        urls, clients = [url for url, _, _ in servers], [client for _, _, client in servers]
        router = ShardRouter(urls)
        ways = {"together": lambda r, c, p: r.publish(c, p), "one after the other":
                one_after_the_other}
        cases = [(size, in_flight) for size in (3, 51) for in_flight in (1, 64)]
        results: dict = {}
        for _round in range(args.rounds):
            for size, in_flight in cases:
                channels = channels_of(router, size)
                servers_named = len({router.shard_of(c) for c in channels})
                for way, publish in ways.items():
                    figures = measure(publish, router, channels, clients, args.emits, in_flight)
                    results.setdefault((size, servers_named, in_flight, way), []).append(figures)
        router.close()
        print(f"\n{'channels (servers)':<20} {'in flight':>9} {'way':<20} {'emits/s':>9} "
              f"{'CPU/emit':>10} {'Redis/emit':>11} {'sleeps/emit':>12}")
        for (size, named, in_flight, way), runs in results.items():
            med = {k: median([r[k] for r in runs]) for k in runs[0]}
            print(f"{f'{size} ({named})':<20} {in_flight:>9} {way:<20} "
                  f"{med['emits_per_s']:>9.0f} {med['cpu_us']:>8.0f}µs {med['redis_us']:>9.0f}µs "
                  f"{med['sleeps']:>12.2f}")
    finally:
        procs.stop_all()
    print(f"\n{harness.load_note()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
