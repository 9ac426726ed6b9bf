"""What a batch of Redis steps costs an eventlet process's CPU, alone and when many green threads
run batches at once, with each batch its own round trip and with round trips shared
(infra/redis_client.py: SharedTrips, ``REDIS_BATCH_LANES``).

    .venv/bin/python benchmarks/round_trips.py [--redis redis://127.0.0.1:6379/15]
        [--batches 3200] [--lanes 0 1 2 4] [--concurrency 1 32]

Each batch is three commands (HGETALL, GET, PUBSUB NUMSUB: the shape of a connect's batch) on
the app's own client (``redis_from_url``). Figures: this process's CPU (user + system, from
getrusage) and wall time per batch, round trips sent, and the load average. The first line,
"one pipeline", sends ``--concurrency`` batches' steps as one pipeline from one green thread:
what the round trips cost, without the green threads. Last, for each lanes setting, how
often a batch's caller was handled before that of a batch Redis ran earlier.
"""

from __future__ import annotations

import warnings

warnings.filterwarnings("ignore")  # eventlet's notice that it is deprecated, and its imports'

import eventlet  # noqa: E402

eventlet.monkey_patch()

import argparse  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from simplechat.infra.redis_client import (  # noqa: E402
    SHARED,
    Batch,
    redis_from_url,
    share_round_trips,
)

STEPS = (("HGETALL", "bench:trips:a"), ("GET", "bench:trips:b"),
         ("PUBSUB", "NUMSUB", "bench:trips:c"))


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def batch(client) -> list:
    steps = Batch(client)
    for step in STEPS:
        steps.command(*step)
    return steps.run()


def measure(run_round, rounds: int, per_round: int) -> tuple[float, float]:
    """CPU and wall microseconds per batch."""
    started_cpu, started = cpu(), time.perf_counter()
    for _ in range(rounds):
        run_round()
    batches = rounds * per_round
    return ((cpu() - started_cpu) / batches * 1e6,
            (time.perf_counter() - started) / batches * 1e6)


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load {one:.2f}/{five:.2f} (1/5 min, {os.cpu_count()} CPUs)"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--redis", default=os.environ.get("BENCH_REDIS_URL",
                                                          "redis://127.0.0.1:6379/15"))
    parser.add_argument("--batches", type=int, default=3200)
    parser.add_argument("--lanes", type=int, nargs="+", default=[0, 1, 2, 4])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 32])
    args = parser.parse_args()
    print(load())
    pool = eventlet.GreenPool(max(args.concurrency))
    plain = redis_from_url(args.redis, max(args.concurrency) * 2)
    batch(plain)  # connect first
    for concurrency in args.concurrency:
        def one_pipeline(concurrency=concurrency):
            with plain.pipeline(transaction=False) as pipe:
                for _ in range(concurrency):
                    for step in STEPS:
                        pipe.execute_command(*step)
                pipe.execute(raise_on_error=False)

        rounds = args.batches // concurrency
        spent, wall = measure(one_pipeline, rounds, concurrency)
        print(f"one pipeline of {concurrency} batches: {spent:6.1f} us CPU, {wall:6.1f} us wall "
              f"per batch; {rounds} round trips")
    for lanes in args.lanes:
        client = share_round_trips(redis_from_url(args.redis, max(args.concurrency) * 2), lanes)
        batch(client)
        for concurrency in args.concurrency:
            shared = getattr(client, SHARED, None)
            trips_before = shared.trips if shared else 0

            def concurrent(client=client, concurrency=concurrency):
                list(pool.imap(lambda _: batch(client), range(concurrency)))

            rounds = args.batches // concurrency
            spent, wall = measure(concurrent, rounds, concurrency)
            trips = (shared.trips - trips_before) if shared else rounds * concurrency
            print(f"lanes {lanes}, {concurrency:3d} green threads at once: {spent:6.1f} us CPU, "
                  f"{wall:6.1f} us wall per batch; {trips} round trips for "
                  f"{rounds * concurrency} batches")
    for lanes in args.lanes:
        print(f"lanes {lanes}: {inversions(args.redis, lanes)} of 299 batches handled before "
              f"one that Redis ran earlier (60 green threads, 5 batches each)")
    print(load())
    return 0


def inversions(url: str, lanes: int) -> int:
    """Each batch is one INCR of a shared counter, so its reply is its place in Redis's
    order; each caller notes it as soon as it has its reply. Returns how many times a caller
    noted a place lower than the one noted just before it: batches handled out of Redis's
    order, which the presence announcements must not be."""
    client = share_round_trips(redis_from_url(url, 10), lanes)
    key = f"bench:trips:order:{os.getpid()}:{lanes}"
    noted: list[int] = []

    def caller() -> None:
        for _ in range(5):
            steps = Batch(client)
            steps.command("INCR", key)
            noted.append(steps.run()[0])
            eventlet.sleep(0)

    pool = eventlet.GreenPool(60)
    for _ in range(60):
        pool.spawn(caller)
    pool.waitall()
    client.delete(key)
    return sum(1 for before, after in zip(noted, noted[1:], strict=False) if after < before)


if __name__ == "__main__":
    sys.exit(main())
