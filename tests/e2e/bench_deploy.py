"""Deployment figures, printed (nothing asserted): how fast one Celery worker drains queued
message writes into SQL, and how long a message takes from a send on one web process to a client
on another.

    .venv/bin/python -m tests.e2e.bench_deploy [--messages 2000] [--sends 100]
        [--database postgresql|mariadb] [--pool solo|prefork] [--concurrency 1]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from celery import Celery

from simplechat.infra.ids import new_message_id
from simplechat.messaging.payload import message_payload

from .harness import Stack, TestDatabase, wait_until


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def fan_out_latency(stack: Stack, sends: int):
    """Seconds from each send on process A to its arrival at a client on process B, the sender
    and the conversation."""
    web_a, web_b = stack.start_web(), stack.start_web()
    ada, bob = stack.register(web_a), stack.register(web_b)
    conversation_id = ada.start_conversation(web_a, [bob.id])
    sender, receiver = ada.socket(web_a), bob.socket(web_b)
    sender.join(conversation_id)
    receiver.join(conversation_id)
    latencies = []
    for n in range(sends):
        start = time.perf_counter()
        ack = sender.send(conversation_id, f"latency {n}")
        assert ack["ok"], ack
        receiver.wait_for(lambda s, n=n: len(s.messages(conversation_id)) > n, timeout=10)
        latencies.append(time.perf_counter() - start)
    return latencies, ada, conversation_id


def drain_rate(stack: Stack, messages: int, sender_id: int, conversation_id: int, pool: str,
               concurrency: int) -> tuple[float, float]:
    """Queue ``messages`` writes with no worker running, start one, time until SQL has them."""
    client = Celery(broker=stack.redis_url)
    client.conf.task_default_queue = stack.queue
    already = len(stack.database.message_ids(conversation_id))
    for n in range(messages):
        payload = message_payload(new_message_id(), conversation_id, None, f"bulk {n}",
                                  sender_id=sender_id)
        client.send_task("simplechat.store_message", args=[payload], queue=stack.queue)
    client.close()
    started = time.perf_counter()
    stack.start_worker(pool=pool, concurrency=concurrency)
    ready = time.perf_counter()
    at_ready = len(stack.database.message_ids(conversation_id)) - already
    wait_until(lambda: stack.database.scalar(
        "SELECT COUNT(*) FROM messages WHERE conversation_id = :c", c=conversation_id)
        >= already + messages, timeout=600, interval=0.05, message="the queue to drain")
    done = time.perf_counter()
    return (messages - at_ready) / (done - ready), done - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--sends", type=int, default=100)
    parser.add_argument("--database", default="postgresql", choices=["postgresql", "mariadb"])
    parser.add_argument("--pool", default="solo", choices=["solo", "prefork"])
    parser.add_argument("--concurrency", type=int, default=1)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="simplechat-bench-") as tmp:
        database = TestDatabase.create_migrated(args.database, log_dir=Path(tmp))
        stack = Stack(database, Path(tmp), CHAT_RATE_LIMIT="off")
        try:
            latencies, ada, conversation_id = fan_out_latency(stack, args.sends)
            rate, total = drain_rate(stack, args.messages, ada.id, conversation_id, args.pool,
                                     args.concurrency)
        finally:
            stack.close()
            database.drop()
    ms = [x * 1000 for x in latencies]
    print(f"database: {args.database}")
    print(f"fan-out, send on process A -> client on process B, {len(ms)} messages: "
          f"median {statistics.median(ms):.1f} ms, p95 {percentile(ms, 0.95):.1f} ms, "
          f"max {max(ms):.1f} ms")
    print(f"Celery worker ({args.pool}, concurrency {args.concurrency}) draining "
          f"{args.messages} queued writes: {rate:.0f} messages/s into SQL "
          f"({total:.1f} s including worker start)")


if __name__ == "__main__":
    main()
