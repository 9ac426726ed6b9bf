"""Messages/s written to PostgreSQL by one Celery worker (-c 1), in one run:

- one task, one insert: ``simplechat.store_message``, the write path before the write buffer
  (still registered for tasks queued by an older version);
- write buffer, one ``flush_writes`` task queued per message (what coalescing avoids);
- the production path: the send path's intake (one Lua script: the recent list and the write
  buffer) and ``_queue_flush``, which buffers the payload and queues
  a flush only when none is pending.

Each design gets a backlog of N messages while the worker is stopped; then the worker starts
(celery_worker.celery, the production worker) and the clock runs from the first stored row until
every row is stored, the buffer is empty and the queue is empty (no-op flush tasks count too).

    .venv/bin/python benchmarks/bench_writes.py [--single 1000] [--batched 5000] [--per-message N]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import harness  # noqa: E402


def wait_stored(db, text, target: int, backlog, timeout: float) -> tuple[float, float]:
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
        if stored_at is not None and backlog() == 0:
            return stored_at - first, now - first
        time.sleep(0.05)
    raise RuntimeError(f"timed out with {count} of {target} rows stored")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--single", type=int, default=1000, help="messages, one task each")
    parser.add_argument("--batched", type=int, default=5000,
                        help="messages through the production write path")
    parser.add_argument("--per-message", type=int, default=None,
                        help="messages through the buffer with one flush task each "
                             "(default: as --single; 0 skips it)")
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

            from simplechat import create_app
            from simplechat.extensions import db
            from simplechat.infra.ids import new_message_id
            from simplechat.infra.intake import OK, intake
            from simplechat.infra.services import services
            from simplechat.infra.write_buffer import write_buffer
            from simplechat.messaging.send import _queue_flush
            from simplechat.messaging.tasks import flush_writes, store_message

            app = create_app()
            per_message = args.single if args.per_message is None else args.per_message
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

                buffer = write_buffer()

                def flush_per_message(p: dict) -> None:
                    buffer.append(p)
                    flush_writes.apply_async()

                def backlog() -> int:
                    return redis.llen(queue) + buffer.pending()

                def production(p: dict) -> None:
                    taken = intake().take(conversation, p["sender"], p, None, members=users)
                    assert taken.status == OK, taken
                    _queue_flush(p, None, taken.flush)

                stored = 0
                designs = [
                    ("one task, one insert", args.single,
                     lambda p: store_message.apply_async(args=[p])),
                    ("buffer, task/message", per_message, flush_per_message),
                    ("production (coalesced)", args.batched, production),
                ]
                for label, count, send in designs:
                    if not count:
                        continue
                    began = time.monotonic()
                    for n in range(count):
                        send(payload(n))
                    enqueue_s = time.monotonic() - began
                    worker = procs.start(
                        [f"{harness.BIN}/celery", "-A", "celery_worker.celery",
                         "worker", "--loglevel=warning", "-c", "1", "-Q", queue, "--without-gossip",
                         "--without-mingle", "--without-heartbeat"], env,
                        os.path.join(workdir, f"worker-{len(results)}.log"))
                    stored += count
                    rows_s, drained_s = wait_stored(db, text, stored, backlog, args.timeout)
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
                baseline = results.get("one task, one insert")
                for label, rate in results.items():
                    ratio = f"{rate / baseline:6.1f}x one-task-one-insert" if baseline else ""
                    print(f"{label:<22} {rate:8.0f} msg/s  {ratio}")
                db.session.remove()
                db.engine.dispose()
    finally:
        procs.stop_all()
        harness.drop_redis_keys(prefix)
    print(harness.load_note())
    return 0


if __name__ == "__main__":
    sys.exit(main())
