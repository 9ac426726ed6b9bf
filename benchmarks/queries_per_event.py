"""Count the SQL statements and Redis commands one socket event costs, event by event.

    python benchmarks/queries_per_event.py [--database URL] [--redis URL] [--repeat N]

Counts are deterministic (no timing): each event is sent N times by a logged-in Flask-SocketIO
test client and the statements the server ran for it are averaged. It uses only the public
routes and events, so it runs the same on older commits (for before/after figures).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PASSWORD = "correct horse battery"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", default="sqlite://")
    parser.add_argument("--redis", default=os.environ.get("TEST_REDIS_URL"))
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()

    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from config import database_url

    database = database_url(args.database)
    scratch = None
    if not database.startswith("sqlite"):
        # A database of its own, dropped at the end: never the server's admin database.
        scratch = f"simplechat_queries_{os.getpid()}"
        url = make_url(database)
        admin = create_engine(url.set(database="postgres" if url.get_backend_name() ==
                                      "postgresql" else None), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {scratch}"))
        database = url.set(database=scratch).render_as_string(hide_password=False)
    try:
        run(args, database)
    finally:
        if scratch:
            with admin.connect() as conn:
                if admin.dialect.name == "postgresql":
                    conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                      f"WHERE datname = '{scratch}' AND pid <> pg_backend_pid()"))
                conn.execute(text(f"DROP DATABASE IF EXISTS {scratch}"))


def run(args, database: str) -> None:
    from sqlalchemy import event

    from simplechat import create_app
    from simplechat.extensions import db, socketio

    tag = uuid.uuid4().hex[:8]
    settings = {
        "SQLALCHEMY_DATABASE_URI": database, "REDIS_URL": args.redis,
        "REDIS_KEY_PREFIX": f"simplechat-bench:{tag}:",
        "SOCKETIO_MESSAGE_QUEUE": None, "CHAT_RATE_LIMIT": "off",
    }
    if args.redis:
        # As in production: the SQL write is queued for a worker, not run inline. No worker
        # runs here; the queue is deleted at the end.
        settings.update(CELERY_BROKER_URL=args.redis, CELERY_TASK_ALWAYS_EAGER=False,
                        CELERY_QUEUE=f"simplechat-queries-{tag}")
    app = create_app("testing", settings)
    # No app context is held around the requests and events: each gets its own, as in
    # production (a shared one would share Flask-Login's cached user between clients).
    with app.app_context():
        db.create_all()
        engine = db.engine
    clients = []
    for name in ("ada", "bob"):
        http = app.test_client()
        registered = http.post("/auth/register", data={
            "username": f"{name}{uuid.uuid4().hex[:6]}", "first_name": name.title(),
            "last_name": "Bench", "email": f"{name}-{uuid.uuid4().hex[:8]}@example.com",
            "password": PASSWORD, "confirm": PASSWORD})
        assert registered.status_code == 302, registered.get_data(as_text=True)[-3000:]
        clients.append(http)
    from simplechat.models import User

    with app.app_context():
        bob_id = db.session.scalars(db.select(User.id).order_by(User.id.desc()).limit(1)).one()
    response = clients[0].post("/chat/new", data={"participants": [str(bob_id)]})
    assert response.status_code == 302, response.get_data(as_text=True)[-4000:]
    conversation_id = int(response.location.rstrip("/").rsplit("/", 1)[-1])
    sio = socketio.test_client(app, namespace="/chat", flask_test_client=clients[0])
    assert sio.is_connected("/chat"), "login failed"

    statements: Counter[str] = Counter()
    redis_commands: Counter[str] = Counter()
    current = {"event": None}

    def seen(conn, cursor, statement, *rest):
        if current["event"]:
            statements[current["event"]] += 1

    redis_client = app.extensions["simplechat"].redis
    if redis_client is not None:
        pool = redis_client.connection_pool
        original = pool.get_connection

        def counting_connection(*a, **k):
            connection = original(*a, **k)
            if not getattr(connection, "_counted", False):
                send = connection.send_packed_command

                def counted(command, *x, **y):
                    if current["event"]:
                        redis_commands[current["event"]] += 1
                    return send(command, *x, **y)

                connection.send_packed_command = counted
                connection._counted = True
            return connection

        pool.get_connection = counting_connection

    event.listen(engine, "before_cursor_execute", seen)
    events = [
        ("join", {"conversation_id": conversation_id}),
        ("send_message", {"conversation_id": conversation_id, "message": "hello"}),
        ("typing", {"conversation_id": conversation_id, "typing": True}),
        ("heartbeat", {}),
    ]
    # One of each first: the first events after connect may fill caches.
    for name, payload in events:
        sio.emit(name, payload, namespace="/chat", callback=True)
    time.sleep(0.6)
    for name, payload in events:
        current["event"] = name
        for _ in range(args.repeat):
            ack = sio.emit(name, payload, namespace="/chat", callback=True)
            assert ack.get("ok"), (name, ack)
        current["event"] = None
    event.remove(engine, "before_cursor_execute", seen)
    print(f"database {engine.dialect.name}, redis {'yes' if redis_client else 'no'}, "
          f"{args.repeat} of each event (SQL statements as sent; pool pre-ping not included)")
    print(f"{'event':<14} {'SQL statements':>15} {'Redis round trips':>18}")
    for name, _ in events:
        print(f"{name:<14} {statements[name] / args.repeat:>15.2f} "
              f"{redis_commands[name] / args.repeat:>18.2f}")
    sio.disconnect("/chat")
    engine.dispose()
    if redis_client is not None:
        keys = list(redis_client.scan_iter(match=f"*{tag}*", count=1000))
        if keys:
            redis_client.delete(*keys)


if __name__ == "__main__":
    main()
