"""The conversation list of a user in 10 and of a user in 1,000 conversations, in one run: SQL
statements and median/p95 time of the chat page (GET /chat/) and of GET /api/conversations.

    .venv/bin/python benchmarks/inbox.py [--database-url URL] [--redis URL] [--requests 200]
                                         [--few 10] [--many 1000] [--big-rooms 3]

Default: the embedded database (SQLite in a scratch folder) and the embedded stand-ins for
Redis. With --database-url (PostgreSQL or MariaDB) a scratch database of its own is made on
that server and dropped at the end. Requests go through Flask's test client in this process,
alternating between the two users so that the machine's load falls on both alike. Every
conversation holds 20 messages (the last 5 unread, one in 8 mentioning the user); every
fourth is a group of 5; both users are also in --big-rooms groups of 2,000 members, the most
recently active, so on the first page (whose `participants` lists stop at 50). The goal
(issue 28): at most 10 statements, and the user in 1,000 conversations within 3x the time of
the one in 10.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import harness  # noqa: E402

PASSWORD = "correct horse battery"
MESSAGES = 20  # per conversation
UNREAD = 5  # of them, the newest, from the other side
BIG_ROOM = 2000  # members


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def message_id(ms: int) -> str:
    """A UUIDv7 for the instant ``ms`` (milliseconds since 1970), as the app makes them."""
    counter = secrets.randbits(12)
    value = (ms << 80) | (0x7 << 76) | (counter << 64) | (0b10 << 62) | secrets.randbits(62)
    return str(uuid.UUID(int=value))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=None,
                        help="PostgreSQL or MariaDB server (a scratch database is made on it)")
    parser.add_argument("--redis", default=None, help="Redis URL (default: embedded)")
    parser.add_argument("--requests", type=int, default=200, help="timed requests per case")
    parser.add_argument("--few", type=int, default=10)
    parser.add_argument("--many", type=int, default=1000)
    parser.add_argument("--big-rooms", type=int, default=3)
    parser.add_argument("--explain", action="store_true",
                        help="print the query plan of each statement of the 1,000's list")
    args = parser.parse_args()

    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from config import database_url

    print(harness.load_note())
    scratch = admin = None
    folder = tempfile.TemporaryDirectory(prefix="simplechat-inbox-bench-")
    if args.database_url:
        url = make_url(database_url(args.database_url))
        scratch = f"simplechat_inbox_{os.getpid()}"
        admin = create_engine(url.set(database="postgres" if url.get_backend_name() ==
                                      "postgresql" else None), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {scratch}"))
            conn.execute(text(f"CREATE DATABASE {scratch}"))
        database = url.set(database=scratch).render_as_string(hide_password=False)
    else:
        database = f"sqlite:///{folder.name}/simplechat.sqlite3"
    try:
        run(args, database)
    finally:
        if scratch:
            with admin.connect() as conn:
                if admin.dialect.name == "postgresql":
                    conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                      f"WHERE datname = '{scratch}' AND pid <> pg_backend_pid()"))
                conn.execute(text(f"DROP DATABASE IF EXISTS {scratch}"))
        folder.cleanup()
    print(harness.load_note())
    return 0


def seed(db, few: int, many: int, big_rooms: int) -> dict[str, int]:
    """Both users, their peers and conversations, in bulk; returns the two users' ids."""
    from sqlalchemy import insert, select, text, update

    from simplechat.infra.ids import message_id_time
    from simplechat.models import Conversation, Message, Participant, User

    began = time.monotonic()
    users = [{"username": f"peer{i}", "first_name": "Peer", "last_name": f"No{i}",
              "email": f"peer{i}@bench.invalid", "password_hash": "!"}
             for i in range(max(BIG_ROOM, 50))]
    db.session.execute(insert(User), users)
    ids = {}
    for name in ("few", "many"):
        user = User(username=name, first_name=name.title(), last_name="Bench",
                    email=f"{name}@bench.invalid")
        user.set_password(PASSWORD)
        db.session.add(user)
        db.session.flush()
        ids[name] = user.id
    peers = list(db.session.scalars(select(User.id).where(User.username.like("peer%"))
                                    .order_by(User.id)))
    now_ms = int(time.time() * 1000) - 10_000_000
    specs = []  # (owner, members, title), oldest activity first
    for name, count in (("few", few), ("many", many)):
        for i in range(count - big_rooms):
            peer = peers[i % len(peers)]
            if i % 4 == 0:
                members = [ids[name], *(peers[(i + k) % len(peers)] for k in range(4))]
                specs.append((ids[name], members, f"{name} group {i}"))
            else:
                specs.append((ids[name], [ids[name], peer], None))
    for i in range(big_rooms):  # the busiest: on both users' first page
        specs.append((None, [ids["few"], ids["many"], *peers[:BIG_ROOM - 2]], f"Big {i}"))
    conversations = [{"title": title, "is_group": title is not None,
                      "visibility": "private" if title else "direct",
                      "created_by_id": owner} for owner, _, title in specs]
    db.session.execute(insert(Conversation), conversations)
    conversation_ids = list(db.session.scalars(select(Conversation.id).order_by(Conversation.id)))
    participants, messages, marks = [], [], []
    step = 0
    for cid, (owner, members, title) in zip(conversation_ids, specs, strict=True):
        reader_ids = [m for m in members if m in ids.values()]
        other = next(m for m in members if m not in ids.values())
        thread = []
        for n in range(MESSAGES):
            step += 1
            mid = message_id(now_ms + step * 10)
            sender = other if n % 2 or n >= MESSAGES - UNREAD else reader_ids[0]
            mentions = [reader_ids[0]] if n == MESSAGES - 1 and cid % 8 == 0 else None
            thread.append(mid)
            messages.append({"id": mid, "conversation_id": cid, "sender_id": sender,
                             "text": f"message {n} of conversation {cid}", "kind": "text",
                             "created_at": message_id_time(mid), "mentions": mentions})
        read_upto = thread[MESSAGES - UNREAD - 1]
        for m in members:
            participants.append({"conversation_id": cid, "user_id": m,
                                 "role": "owner" if title and m == owner else "member",
                                 "last_read_message_id": read_upto if m in reader_ids else None})
        marks.append((cid, message_id_time(thread[-1])))
    for chunk in range(0, len(participants), 5000):
        db.session.execute(insert(Participant), participants[chunk:chunk + 5000])
    for chunk in range(0, len(messages), 5000):
        db.session.execute(insert(Message), messages[chunk:chunk + 5000])
    db.session.execute(update(Conversation), [{"id": cid, "last_message_at": at}
                                              for cid, at in marks])
    db.session.commit()
    if db.engine.dialect.name == "postgresql":
        db.session.execute(text("ANALYZE"))
        db.session.commit()
    print(f"seeded {len(conversation_ids)} conversations, {len(participants)} memberships, "
          f"{len(messages)} messages in {time.monotonic() - began:.1f} s")
    return ids


def run(args, database: str) -> None:
    from sqlalchemy import event, func, select

    from simplechat import create_app
    from simplechat.auth.tokens import create_token
    from simplechat.extensions import db
    from simplechat.models import Participant, User

    tag = uuid.uuid4().hex[:8]
    app = create_app("testing", {
        "SQLALCHEMY_DATABASE_URI": database, "REDIS_URL": args.redis,
        "REDIS_KEY_PREFIX": f"simplechat-bench:{tag}:", "SOCKETIO_MESSAGE_QUEUE": None,
        "CHAT_RATE_LIMIT": "off"})
    with app.app_context():
        db.create_all()
        ids = seed(db, args.few, args.many, args.big_rooms)
        counts = dict(db.session.execute(
            select(Participant.user_id, func.count()).where(Participant.user_id.in_(ids.values()))
            .group_by(Participant.user_id)).all())
        tokens = {name: create_token(db.session.get(User, uid), "bench").secret
                  for name, uid in ids.items()}
        engine = db.engine
    clients = {}
    for name in ids:
        http = app.test_client()
        response = http.post("/auth/login", data={"username": name, "password": PASSWORD})
        assert response.status_code == 302, response.status_code
        clients[name] = http
    api = app.test_client()
    routes = {
        "page": lambda name: clients[name].get("/chat/"),
        "api": lambda name: api.get("/api/conversations",
                                    headers={"Authorization": f"Bearer {tokens[name]}"}),
    }
    statements = {"n": 0}

    def seen(*_):
        statements["n"] += 1

    event.listen(engine, "before_cursor_execute", seen)
    results: dict[tuple[str, str], dict] = {}
    for route, call in routes.items():
        for name in ids:  # warm up: caches per login, the first pages of each
            for _ in range(5):
                assert call(name).status_code == 200
        timings = {name: [] for name in ids}
        sql = {name: set() for name in ids}
        for _ in range(args.requests):
            for name in ids:
                statements["n"] = 0
                began = time.perf_counter()
                response = call(name)
                timings[name].append((time.perf_counter() - began) * 1000)
                assert response.status_code == 200
                sql[name].add(statements["n"])
        for name in ids:
            results[(route, name)] = {"sql": sql[name], "p50": statistics.median(timings[name]),
                                      "p95": percentile(timings[name], 95)}
    event.remove(engine, "before_cursor_execute", seen)
    print(f"database {engine.dialect.name}, redis {'yes' if args.redis else 'embedded'}, "
          f"{args.requests} requests per case, alternating users")
    print(f"{'list':<6} {'conversations':>13} {'SQL statements':>15} {'p50 ms':>8} "
          f"{'p95 ms':>8}")
    for route in routes:
        for name in ids:
            r = results[(route, name)]
            sql = "/".join(str(n) for n in sorted(r["sql"]))
            print(f"{route:<6} {counts[ids[name]]:>13} {sql:>15} {r['p50']:>8.2f} "
                  f"{r['p95']:>8.2f}")
        few, many = results[(route, "few")], results[(route, "many")]
        print(f"{route:<6} ratio {counts[ids['many']]}/{counts[ids['few']]}: "
              f"p50 {many['p50'] / few['p50']:.2f}x  p95 {many['p95'] / few['p95']:.2f}x  "
              f"(goal: <= 3x, <= 10 statements)")
    if args.explain:
        explain(engine, lambda: routes["api"]("many"))
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def explain(engine, call) -> None:
    """The plan of every statement one list request runs, as the database would run it."""
    from sqlalchemy import event

    captured = []

    def capture(conn, cursor, statement, parameters, *_):
        captured.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", capture)
    call()
    event.remove(engine, "before_cursor_execute", capture)
    prefix = {"postgresql": "EXPLAIN ANALYZE ", "sqlite": "EXPLAIN QUERY PLAN "}.get(
        engine.dialect.name, "EXPLAIN ")
    raw = engine.raw_connection()
    try:
        for statement, parameters in captured:
            cursor = raw.cursor()
            cursor.execute(prefix + statement, parameters)
            print("\n" + " ".join(statement.split())[:300])
            for row in cursor.fetchall():
                print("   ", " | ".join(str(v) for v in row))
    finally:
        raw.close()


if __name__ == "__main__":
    sys.exit(main())
