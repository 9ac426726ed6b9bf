"""History at scale: one conversation with 1M messages in a scratch PostgreSQL database, the
latency of an older-messages page read from SQL, and the query plan.

    .venv/bin/python benchmarks/bench_history.py [--messages 1000000] [--pages 300]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import harness  # noqa: E402

BASE_MS = 1_767_225_600_000  # 2026-01-01 00:00:00 UTC

# UUIDv7 ids in time order, one per millisecond, with created_at taken from the id like the app.
SEED = """
INSERT INTO messages (id, conversation_id, sender_id, text, created_at)
SELECT substr(h, 1, 8) || '-' || substr(h, 9, 4) || '-7' || lpad(to_hex(i % 4096), 3, '0')
       || '-8' || substr(r, 1, 3) || '-' || substr(r, 4, 12),
       :conversation, CASE WHEN i % 2 = 0 THEN :alice ELSE :bob END,
       'seeded message number ' || i,
       to_timestamp((:base + i) / 1000.0) AT TIME ZONE 'UTC'
FROM (SELECT i, lpad(to_hex(:base + i), 12, '0') AS h, md5(i::text) AS r
      FROM generate_series(:first, :last) AS i) AS s
"""


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--pages", type=int, default=100)
    parser.add_argument("--limit", type=int, default=50)
    args = parser.parse_args()
    print(harness.load_note())
    with harness.scratch_database("history") as url:
        from sqlalchemy import event, text

        from config import database_url
        from simplechat import create_app
        from simplechat.extensions import db
        from simplechat.messaging.history import messages_before

        # No Redis: the in-process recent list starts empty, so every page is read from SQL.
        app = create_app("development", {"SQLALCHEMY_DATABASE_URI": database_url(url),
                                         "REDIS_URL": None, "CELERY_TASK_ALWAYS_EAGER": True})
        with app.app_context():
            ids = {}
            for name in ("alice", "bob"):
                ids[name] = db.session.execute(text(
                    "INSERT INTO users (username, first_name, last_name, email, password_hash) "
                    "VALUES (:n, :n, 'Bench', :n || '@bench.invalid', 'x') RETURNING id"),
                    {"n": name}).scalar_one()
            conversation = db.session.execute(text(
                "INSERT INTO conversations (title, is_group) VALUES ('bench', false) "
                "RETURNING id")).scalar_one()
            for uid in ids.values():
                db.session.execute(text("INSERT INTO participants (conversation_id, user_id) "
                                        "VALUES (:c, :u)"), {"c": conversation, "u": uid})
            db.session.commit()
            began = time.monotonic()
            step = 250_000
            for first in range(1, args.messages + 1, step):
                db.session.execute(text(SEED), {
                    "conversation": conversation, "alice": ids["alice"], "bob": ids["bob"],
                    "base": BASE_MS, "first": first, "last": min(args.messages, first + step - 1)})
                db.session.commit()
            db.session.execute(text("ANALYZE messages"))
            db.session.commit()
            seeded = db.session.execute(text("SELECT count(*) FROM messages")).scalar_one()
            print(f"seeded {seeded} messages in {time.monotonic() - began:.1f} s")

            newest = db.session.execute(text(
                "SELECT id FROM messages ORDER BY created_at DESC, id DESC LIMIT 1")).scalar_one()
            sample = [r[0] for r in db.session.execute(text(
                "SELECT id FROM messages TABLESAMPLE SYSTEM (1) LIMIT :n"),
                {"n": args.pages})]
            random.shuffle(sample)
            captured: list[tuple[str, object]] = []

            def capture(conn, cursor, statement, parameters, context, executemany):
                if "FROM messages" in statement and "ORDER BY" in statement:
                    captured.append((statement, parameters))

            event.listen(db.engine, "before_cursor_execute", capture)
            page, has_more, source = messages_before(conversation, newest, args.limit)
            event.remove(db.engine, "before_cursor_execute", capture)
            assert source == "sql" and len(page) == args.limit and has_more, source
            for label, befores in (("newest page", [newest] * args.pages),
                                   ("random deep pages", sample)):
                timings = []
                for before in befores:
                    t0 = time.perf_counter()
                    messages_before(conversation, before, args.limit)
                    timings.append((time.perf_counter() - t0) * 1000)
                    db.session.rollback()
                print(f"{label:<18} {len(timings)} pages of {args.limit}: "
                      f"p50 {statistics.median(timings):.2f} ms  "
                      f"p95 {percentile(timings, 95):.2f} ms  max {max(timings):.2f} ms")
            statement, parameters = captured[0]
            raw = db.engine.raw_connection()
            try:
                cursor = raw.cursor()
                cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters)
                plan = "\n".join(row[0] for row in cursor.fetchall())
            finally:
                raw.close()
            print("\nEXPLAIN ANALYZE of the page query (before = the newest message):")
            print(plan)
            print("\nindex used:", "ix_messages_conversation_created_id" in plan)
            db.session.remove()
            db.engine.dispose()
    print(harness.load_note())
    return 0


if __name__ == "__main__":
    sys.exit(main())
