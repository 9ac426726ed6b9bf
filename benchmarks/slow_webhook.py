"""Slow webhook receiver: how long other users' messages take from their ack to their row in
SQL, without and with a hostile receiver (one byte every --trickle seconds), for the deployment
of docker-compose.yml (a worker storing messages, another on the webhook queue) and for one
worker consuming both queues. Goal: no message's storage delayed by more than 2 s.

    .venv/bin/python benchmarks/slow_webhook.py [--messages 30] [--interval 0.3]

Starts its own stack (a fresh PostgreSQL database, Redis key prefix and Celery queues, one
gunicorn-eventlet process) on ports 18950-18999 and removes it at the end. Four phases, in
this order, in the same run:

  split, no hook       `worker` (prefork, 2 processes, CELERY_QUEUE) and `webhooks` (threads,
                       16, the webhook queue), as in docker-compose.yml; no webhook at all
  split, slow hook     Mallory gives her group the most webhooks it may have (5), all to the
                       trickling receiver, and sends --hostile messages: 5 x that many
                       deliveries, each held to the deadline
  single, no hook      the hooks deleted, both workers stopped; one worker with no -Q (prefork,
                       2 processes), consuming both queues
  single, slow hook    the hooks made again, Mallory's messages again

In each phase Bob and Carol send --messages messages, one every --interval seconds, half to
the hooked group and half to a conversation of their own; a thread polls SQL every 20 ms for
the rows. Printed per phase: the storage delay (ack to row) median, 95th percentile and
largest, how many took over 2 s, the deliveries hanging at the receiver, and the load average.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from sqlalchemy import text

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from e2e import harness  # noqa: E402
from e2e.harness import Stack, TestDatabase, csrf_token, wait_until  # noqa: E402
from e2e.slow_receiver import TrickleReceiver  # noqa: E402

GOAL = 2.0  # seconds from ack to row


class StoragePoll:
    """Polls SQL for acknowledged message ids; remembers when each row was first seen."""

    def __init__(self, database: TestDatabase):
        self.database = database
        self.acked: dict[str, float] = {}
        self.seen: dict[str, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def acked_at(self, message_id: str, when: float) -> None:
        with self._lock:
            self.acked[message_id] = when

    def _poll(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                waiting = [m for m in self.acked if m not in self.seen]
            if waiting:
                found = self.database.rows("SELECT id FROM messages WHERE id = ANY(:ids)",
                                           ids=waiting)
                now = time.monotonic()
                with self._lock:
                    for (message_id,) in found:
                        self.seen.setdefault(message_id, now)
            self._stop.wait(0.02)

    def wait_all(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.seen) == len(self.acked):
                    return True
            time.sleep(0.05)
        return False

    def delays(self) -> tuple[list[float], int]:
        with self._lock:
            delays = [self.seen[m] - t for m, t in self.acked.items() if m in self.seen]
            return sorted(delays), len(self.acked) - len(delays)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)


def add_webhook(user, web, conversation_id: int, url: str) -> None:
    page = user.session.get(f"{web.url}/chat/{conversation_id}/settings", timeout=10)
    answer = user.session.post(f"{web.url}/chat/{conversation_id}/settings", timeout=10,
                               data={"csrf_token": csrf_token(page.text), "url": url})
    if 'id="new-webhook-secret"' not in answer.text:
        raise RuntimeError(f"the webhook was refused: {answer.status_code}")


def phase(name: str, stack: Stack, senders: list, conversations: list[int], messages: int,
          interval: float, receiver: TrickleReceiver, timeout: float) -> dict:
    poll = StoragePoll(stack.database)
    try:
        for n in range(messages):
            sock = senders[n % len(senders)]
            started = time.monotonic()
            ack = sock.send(conversations[n // 2 % len(conversations)], f"{name} {n}",
                            uuid.uuid4().hex)
            if not ack.get("ok"):
                raise RuntimeError(f"send refused: {ack}")
            poll.acked_at(ack["message"]["id"], time.monotonic())
            time.sleep(max(0.0, interval - (time.monotonic() - started)))
        poll.wait_all(timeout)
        delays, missing = poll.delays()
    finally:
        poll.close()
    one, five, _ = os.getloadavg()
    return {
        "phase": name, "sent": messages, "stored": len(delays), "not_stored": missing,
        "median_s": statistics.median(delays) if delays else float("nan"),
        "p95_s": delays[min(len(delays) - 1, int(len(delays) * 0.95))] if delays
        else float("nan"),
        "max_s": delays[-1] if delays else float("nan"),
        "over_goal": sum(1 for d in delays if d > GOAL) + missing,
        "hanging": receiver.open, "load1": one, "load5": five,
    }


def hostile(stack: Stack, mallory, web, group: int, mallory_sock, receiver: TrickleReceiver,
            hooks: int, sends: int) -> None:
    """Mallory's hooks to the trickling receiver and her messages: deliveries that hang."""
    for n in range(hooks):
        add_webhook(mallory, web, group, f"{receiver.url}?n={n}")
    before = receiver.connections
    for n in range(sends):
        ack = mallory_sock.send(group, f"slow {n}", uuid.uuid4().hex)
        if not ack.get("ok"):
            raise RuntimeError(f"send refused: {ack}")
    wait_until(lambda: receiver.connections > before, 30, 0.05, "a delivery to hang")
    time.sleep(1.0)  # the workers take up what they can of the deliveries


def run(messages: int, interval: float, hostile_sends: int, trickle: float,
        deadline: float, timeout: float) -> list[dict]:
    harness.PORTS = range(18950, 19000)
    log_dir = Path(tempfile.mkdtemp(prefix="slow-webhook-"))
    database = TestDatabase.create_migrated("postgresql", log_dir=log_dir)
    stack = Stack(database, log_dir, ports=harness.PORTS, label="slowhook",
                  WEBHOOK_ALLOW_PRIVATE="1", WEBHOOK_DELIVERY_DEADLINE=str(deadline),
                  CHAT_RATE_LIMIT="off")
    receiver = TrickleReceiver(interval=trickle)
    results = []
    try:
        web = stack.start_web()
        split = [stack.start_worker(pool="prefork", concurrency=2, queues=[stack.queue]),
                 stack.start_worker(pool="threads", concurrency=16,
                                    queues=[f"{stack.queue}-webhooks"])]
        mallory, bob, carol = (stack.register(web) for _ in range(3))
        group = mallory.start_conversation(web, [bob.id, carol.id], title="hooked")
        theirs = bob.start_conversation(web, [carol.id])
        senders = [bob.socket(web), carol.socket(web)]
        mallory_sock = mallory.socket(web)
        args = (senders, [group, theirs], messages, interval, receiver, timeout)

        results.append(phase("split, no hook", stack, *args))
        hostile(stack, mallory, web, group, mallory_sock, receiver, 5, hostile_sends)
        results.append(phase("split, slow hook", stack, *args))

        with database.engine.begin() as conn:  # the deliveries still queued: "gone"
            conn.execute(text("DELETE FROM webhooks"))
        for worker in split:
            worker.stop(timeout=2)
        receiver.close()
        receiver = TrickleReceiver(interval=trickle)  # no connection of the split phases left
        args = (senders, [group, theirs], messages, interval, receiver, timeout)
        stack.start_worker(pool="prefork", concurrency=2, queues=())
        time.sleep(2.0)  # the queued "gone" deliveries and flushes run out
        results.append(phase("single, no hook", stack, *args))
        hostile(stack, mallory, web, group, mallory_sock, receiver, 5, hostile_sends)
        results.append(phase("single, slow hook", stack, *args))
        return results
    finally:
        receiver.close()
        stack.close()
        database.drop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=30, help="Bob's and Carol's, per phase")
    parser.add_argument("--interval", type=float, default=0.3, help="seconds between sends")
    parser.add_argument("--hostile", type=int, default=4,
                        help="Mallory's messages per slow phase (each to 5 hooks)")
    parser.add_argument("--trickle", type=float, default=2.0,
                        help="seconds between two bytes of the receiver's answer")
    parser.add_argument("--deadline", type=float, default=10.0,
                        help="WEBHOOK_DELIVERY_DEADLINE, seconds")
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="seconds to wait for a phase's rows")
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs; {args.messages} messages per phase, one every "
          f"{args.interval} s; slow phases: 5 hooks x {args.hostile} messages, a byte every "
          f"{args.trickle} s, deadline {args.deadline} s", flush=True)
    results = run(args.messages, args.interval, args.hostile, args.trickle, args.deadline,
                  args.timeout)
    print(f"{'phase':<18} {'stored':>7} {'median':>8} {'p95':>8} {'max':>8} "
          f"{'>2 s':>5} {'hanging':>8} {'load 1/5 min':>13}")
    for r in results:
        print(f"{r['phase']:<18} {r['stored']:>3}/{r['sent']:<3} {r['median_s']:>7.3f}s "
              f"{r['p95_s']:>7.3f}s {r['max_s']:>7.3f}s {r['over_goal']:>5} {r['hanging']:>8} "
              f"{r['load1']:>6.2f}/{r['load5']:<6.2f}")
    split_ok = all(r["over_goal"] == 0 for r in results if r["phase"].startswith("split"))
    print(f"goal (no message's storage delayed past {GOAL:.0f} s by a slow receiver), "
          f"docker-compose deployment: {'met' if split_ok else 'NOT met'}")
    return 0 if split_ok else 1


if __name__ == "__main__":
    sys.exit(main())
