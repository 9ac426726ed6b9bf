"""Messages/s written to PostgreSQL by one Celery worker (-c 1): one task, one insert (the
production shape) against the batching write buffer of write_buffer.py, in the same run.

Each design gets a backlog of N queued messages while the worker is stopped; then the worker
starts and the clock runs from the first stored row until every row is stored and the queue is
empty (the batching design's no-op flush tasks count too).

    .venv/bin/python benchmarks/bench_writes.py [--single 3000] [--batched 30000]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import harness  # noqa: E402


def wait_stored(db, text, target: int, queue_len, timeout: float) -> tuple[float, float]:
    """Seconds from the first new row to ``target`` rows, and to an empty queue."""
    deadline = time.monotonic() + timeout
    first = stored_at = None
    base = db.session.execute(text("SELECT count(*) FROM messages")).scalar_one()
    while time.monotonic() < deadline:
        count = db.session.execute(text("SELECT count(*) FROM messages")).scalar_one()
        db.session.rollback()
        now = time.monotonic()
        if first is None and count > base:
            first = now
        if stored_at is None and count >= target:
            stored_at = now
        if stored_at is not None and queue_len() == 0:
            return stored_at - first, now - first
        time.sleep(0.05)
    raise RuntimeError(f"timed out with {count} of {target} rows stored")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--single", type=int, default=3000, help="messages, one task each")
    parser.add_argument("--batched", type=int, default=30000, help="messages, batched")
    parser.add_argument("--timeout", type=float, default=180)
    args = parser.parse_args()
    prefix = harness.unique_prefix("writes")
    workdir = tempfile.mkdtemp(prefix="simplechat-writes-")
    print(harness.load_note())
    procs = harness.Processes()
    try:
        with harness.scratch_database("writes") as url:
            env = harness.app_env(url, prefix)
            os.environ.update(env)
            from sqlalchemy import text

            from benchmarks import write_buffer
            from simplechat.chat.ids import new_message_id
            from simplechat.extensions import db
            from simplechat.services import services

            app = write_buffer.app
            results = {}
            with app.app_context():
                users = [db.session.execute(text(
                    "INSERT INTO users (username, first_name, last_name, email, password_hash) "
                    "VALUES (:n, :n, 'Bench', :n || '@bench.invalid', 'x') RETURNING id"),
                    {"n": n}).scalar_one() for n in ("writer1", "writer2")]
                conversation = db.session.execute(text(
                    "INSERT INTO conversations (title, is_group) VALUES ('w', false) "
                    "RETURNING id")).scalar_one()
                db.session.commit()
                redis = services().redis
                queue = env["CELERY_QUEUE"]

                def payload(n: int) -> dict:
                    return {"id": new_message_id(), "conversation_id": conversation,
                            "sender": users[n % 2], "message": f"bench write {n}",
                            "timestamp": "", "sender_name": "w", "client_id": None}

                stored = 0
                for label, count, send in (
                    ("one task, one insert", args.single,
                     lambda p: write_buffer.store_one.apply_async(args=[p])),
                    ("batched, task/message", args.batched, write_buffer.buffer_write),
                    ("batched, coalesced", args.batched, write_buffer.buffer_write_coalesced),
                ):
                    began = time.monotonic()
                    for n in range(count):
                        send(payload(n))
                    enqueue_s = time.monotonic() - began
                    worker = procs.start(
                        [f"{harness.BIN}/celery", "-A", "benchmarks.write_buffer.celery",
                         "worker", "--loglevel=warning", "-c", "1", "-Q", queue, "--without-gossip",
                         "--without-mingle", "--without-heartbeat"], env,
                        os.path.join(workdir, f"worker-{len(results)}.log"))
                    stored += count
                    rows_s, drained_s = wait_stored(db, text, stored,
                                                    lambda: redis.llen(queue), args.timeout)
                    procs.stop_all()
                    worker.wait()
                    results[label] = count / drained_s
                    print(f"{label:<22} {count} messages: enqueued in {enqueue_s:.1f} s "
                          f"({count / enqueue_s:.0f}/s on the send side); rows stored in "
                          f"{rows_s:.2f} s, queue empty after {drained_s:.2f} s: "
                          f"{count / drained_s:.0f} msg/s written")
                total = db.session.execute(text("SELECT count(*) FROM messages")).scalar_one()
                distinct = db.session.execute(text(
                    "SELECT count(DISTINCT id) FROM messages")).scalar_one()
                print(f"rows {total}, distinct ids {distinct}, expected {stored}")
                for label, rate in results.items():
                    ratio = rate / results["one task, one insert"]
                    print(f"{label:<22} {rate:8.0f} msg/s  {ratio:5.1f}x one-task-one-insert")
                db.session.remove()
                db.engine.dispose()
    finally:
        procs.stop_all()
        harness.drop_redis_keys(prefix)
    print(harness.load_note())
    return 0


if __name__ == "__main__":
    sys.exit(main())
