"""What CHAT_ACK_REPLICAS costs a send: the send path (messaging/send.py:send_message, a plain
line: one Redis round trip) timed in process against a real redis-server and a real replica of
it on this host, with CHAT_ACK_REPLICAS 0 and 1 in alternating rounds of the same run.

    .venv/bin/python benchmarks/ack_replicas.py [--sends 2000] [--rounds 10]

The database is a temporary SQLite file and Celery's broker is in memory: neither is on the
path being timed (the write is queued, not stored, before the answer).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "tests"))

from e2e.harness import RedisServer, wait_until  # noqa: E402

from simplechat import create_app  # noqa: E402
from simplechat.conversations.records import start_conversation  # noqa: E402
from simplechat.extensions import db  # noqa: E402
from simplechat.infra.intake import intake  # noqa: E402
from simplechat.messaging.send import send_message  # noqa: E402
from simplechat.models import User  # noqa: E402

PORTS = range(18900, 18950)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sends", type=int, default=2000, help="sends per mode in all")
    parser.add_argument("--rounds", type=int, default=10, help="alternations of the modes")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="simplechat-ack-"))
    primary = RedisServer(folder, PORTS, name="primary")
    replica = RedisServer(folder, PORTS, name="replica")
    try:
        client = replica.client()
        client.replicaof("127.0.0.1", primary.port)
        watcher = primary.client()
        wait_until(lambda: watcher.set("probe", 1) and watcher.execute_command("WAIT", 1, 500),
                   15, 0.1, "the replica")
        app = create_app("testing", {
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{folder}/bench.sqlite3",
            "REDIS_URL": primary.url + "/0", "SOCKETIO_MESSAGE_QUEUE": None,
            "CHAT_RATE_LIMIT": "off", "CHAT_ACK_REPLICAS": 1,
            "CELERY_TASK_ALWAYS_EAGER": False, "CELERY_BROKER_URL": "memory://"})
        with app.app_context():
            db.create_all()
            users = []
            for name in ("ada", "bob"):
                user = User(username=name, first_name=name, last_name="X",
                            email=f"{name}@example.com")
                user.set_password("x" * 12)
                db.session.add(user)
                users.append(user)
            db.session.commit()
            conversation, _ = start_conversation(users[0], [users[1]], None)
            gate = intake()
            times: dict[int, list[float]] = {0: [], 1: []}
            per_round = max(1, args.sends // args.rounds)
            for _ in range(3):  # warm up: scripts loaded, members cached
                send_message(users[0], conversation.id, "warm up")
            for round_ in range(args.rounds * 2):
                mode = round_ % 2
                gate.ack_replicas = mode
                for i in range(per_round):
                    started = time.perf_counter()
                    ack = send_message(users[0], conversation.id, f"plain line {i}")
                    times[mode].append((time.perf_counter() - started) * 1000)
                    assert ack["ok"], ack
        for mode, values in times.items():
            print(f"CHAT_ACK_REPLICAS={mode}: {len(values)} sends, p50 "
                  f"{statistics.median(values):.3f} ms, p99 {percentile(values, 99):.3f} ms")
        print(f"p50 difference: {statistics.median(times[1]) - statistics.median(times[0]):.3f} ms")
    finally:
        replica.stop()
        primary.stop()


if __name__ == "__main__":
    main()
