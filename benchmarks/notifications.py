"""Notifications with the tab closed (issue 30's goals), in one run:

1. The send path with Web Push configured against the same server without it: two gunicorn
   servers on one database (each with its Celery workers), the same sender sending the same
   text in alternating blocks, to a recipient with a subscribed device (pushed as the server
   pushes: at once, then at most once per WEBPUSH_COALESCE_SECONDS with the newest of what
   came meanwhile; run with WEBPUSH_COALESCE_SECONDS=0 in the environment for a push of every
   message) and to one without (push configured, nothing to push), and a control arm equal to
   the baseline (the noise). After each block, until the pushes it caused are out. Reported:
   the ack's round trip (p50, mean) and the web worker's CPU per message, and their ratios
   (goal: within 5%).
2. 1,000 notifications to 1,000 subscribed users: one message to a group of 1,001 whose other
   members each have a device subscribed at a local push receiver (tests/push_receiver.py in
   a process of its own, which checks every VAPID signature and decrypts every payload); the
   time from the send's ack until all 1,000 arrived, and the rate (goal: within 10 s).
3. The same with 10 more members whose push service hangs (holds the request until the
   deadline, WEBPUSH_DEADLINE=5): the time until the 1,000 others arrived, against step 2.

    .venv/bin/python benchmarks/notifications.py [--sends 1000] [--block 50] [--fanout 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import harness  # noqa: E402
from benchmarks.threads import call, connect, login, show, summary, timed  # noqa: E402
from simplechat.notifications.push import generate_keys  # noqa: E402

# After each block: a moment for the workers to store and decide what that block sent.
SETTLE_SECONDS = float(os.environ.get("BENCH_SETTLE_SECONDS", "0.1"))

SEED = r"""
import hashlib, json, sys
from sqlalchemy import select
from simplechat import create_app
from simplechat.extensions import db
from simplechat.models import Conversation, Participant, PushSubscription, User
spec = json.load(sys.stdin)
app = create_app()
with app.app_context():
    sender = db.session.scalars(select(User).where(User.username == spec["sender"])).one()
    made = {}
    for name in spec["users"]:
        user = User(username=name, first_name="N", last_name=name, email=f"{name}@bench.example",
                    password_hash="!")
        db.session.add(user)
        made[name] = user
    db.session.flush()
    ids = {}
    for title, members in spec["conversations"].items():
        conversation = Conversation(title=title, is_group=True, visibility="private",
                                    created_by_id=sender.id)
        db.session.add(conversation)
        db.session.flush()
        ids[title] = conversation.id
        db.session.add(Participant(conversation_id=conversation.id, user_id=sender.id,
                                   role="owner"))
        for name in members:
            db.session.add(Participant(conversation_id=conversation.id, user_id=made[name].id))
    for name, sub in spec["subscriptions"].items():
        db.session.add(PushSubscription(
            user_id=made[name].id, endpoint=sub["endpoint"],
            endpoint_hash=hashlib.sha256(sub["endpoint"].encode()).hexdigest(),
            p256dh=sub["keys"]["p256dh"], auth=sub["keys"]["auth"]))
    db.session.commit()
    print(json.dumps(ids))
"""


class ReceiverProcess:
    """tests/push_receiver.py in a process of its own; what it took, read on a thread."""

    def __init__(self, public_key: str, names: list[str]):
        self._proc = subprocess.Popen(
            [sys.executable, os.path.join(harness.ROOT, "tests", "push_receiver.py"),
             public_key], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self._proc.stdin.write(json.dumps(names) + "\n")
        self._proc.stdin.flush()
        self.subscriptions = json.loads(self._proc.stdout.readline())
        self.pushes: list[tuple[str, str]] = []
        self.refused: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self._proc.stdout:
            name, _, body = line.rstrip("\n").partition("\t")
            (self.refused if name == "!" else self.pushes).append(
                body if name == "!" else (name, body))

    def stop(self) -> None:
        self._proc.kill()
        self._proc.wait()


def seed(env: dict, spec: dict) -> dict:
    done = subprocess.run([sys.executable, "-c", SEED], cwd=harness.ROOT, env=env, check=True,
                          input=json.dumps(spec), capture_output=True, text=True, timeout=300)
    return json.loads(done.stdout.strip().splitlines()[-1])


def push_worker(procs: harness.Processes, env: dict, log: str) -> None:
    """The worker of the outgoing queue, as docker-compose.yml runs it (threads)."""
    queue = env["CELERY_QUEUE"] + "-webhooks"
    procs.start([f"{harness.BIN}/celery", "-A", "celery_worker.celery", "worker",
                 "--loglevel=warning", "-P", "threads", "-c", "4", "-Q", queue,
                 "-n", f"{queue}@%h", "--without-gossip", "--without-mingle",
                 "--without-heartbeat"], env, log)


def fan_out(sio, receiver: ReceiverProcess, conversation: int, wanted: set[str], text: str
            ) -> float:
    """Seconds from the send's ack until a push reached each of ``wanted`` devices."""
    before = len(receiver.pushes)
    call(sio, "send_message", {"conversation_id": conversation, "message": text})
    start = time.perf_counter()
    deadline = start + 120
    while True:
        arrived = {name for name, body in receiver.pushes[before:] if body == text}
        if wanted <= arrived:
            return time.perf_counter() - start
        if time.perf_counter() > deadline:
            raise RuntimeError(f"only {len(arrived & wanted)} of {len(wanted)} pushes in 120 s")
        time.sleep(0.01)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sends", type=int, default=1000, help="sends to each server")
    parser.add_argument("--block", type=int, default=50, help="sends per alternating block")
    parser.add_argument("--fanout", type=int, default=1000, help="subscribed recipients")
    args = parser.parse_args()
    public, private = generate_keys()
    fans = [f"fan{n:05d}" for n in range(args.fanout)]
    hangs = [f"hang{n:03d}" for n in range(10)]
    receiver = ReceiverProcess(public, [*fans, *hangs, "sendtarget"])
    procs = harness.Processes()
    prefixes = [harness.unique_prefix("notify-off"), harness.unique_prefix("notify-on")]
    workdir = tempfile.mkdtemp(prefix="simplechat-notifications-")
    print(f"logs in {workdir}; before: {harness.load_note()}")
    try:
        with harness.scratch_database("notifications") as database_url:
            off_env = harness.app_env(database_url, prefixes[0], CHAT_SOCKET_EVENT_RATE="off",
                                      CHAT_SOCKET_JOIN_RATE="off")
            on_env = harness.app_env(
                database_url, prefixes[1], CHAT_SOCKET_EVENT_RATE="off",
                CHAT_SOCKET_JOIN_RATE="off", WEBPUSH_VAPID_PUBLIC_KEY=public,
                WEBPUSH_VAPID_PRIVATE_KEY=private, WEBPUSH_SUBJECT="mailto:bench@example.com",
                WEBHOOK_ALLOW_PRIVATE="1", SECRET_KEY=off_env["SECRET_KEY"])
            subprocess.run([sys.executable, "-m", "simplechat.tools.loadtest", "--prefix", "nb",
                            "--seed-users", "1"], cwd=harness.ROOT, env=off_env, check=True,
                           timeout=120)
            subscriptions = receiver.subscriptions
            ids = seed(off_env, {"sender": "nb00000",
                                 "users": [*fans, *hangs, "sendtarget", "unsubscribed"],
                                 "conversations": {"send path": ["sendtarget"],
                                                   "nobody subscribed": ["unsubscribed"],
                                                   "fan": fans, "fan and hangs": [*fans, *hangs]},
                                 "subscriptions": subscriptions})
            servers = {}
            for label, env in (("push off", off_env), ("push on", on_env)):
                port = harness.free_port()
                server = harness.gunicorn(procs, "wsgi:app", port, env,
                                          os.path.join(workdir, f"{label}-server.log"))
                harness.celery_worker(procs, env, os.path.join(workdir, f"{label}-celery.log"))
                push_worker(procs, env, os.path.join(workdir, f"{label}-push.log"))
                base = f"http://127.0.0.1:{port}"
                harness.wait_http(base + "/auth/login", server)
                sio = connect(base, login(base, "nb00000"))
                for title in ("send path", "nobody subscribed"):
                    call(sio, "join", {"conversation_id": ids[title]})
                servers[label] = (sio, harness.worker_pid(server))
            text = "the same line of plain words, sent either way"
            for sio, _ in servers.values():  # warm up
                for _ in range(20):
                    timed(sio, "send_message", {"conversation_id": ids["send path"],
                                                "message": text})
            # Each arm's latency, and the CPU of the web worker of its own server.
            def sending(label: str, title: str):
                sio = servers[label][0]
                return lambda i: timed(sio, "send_message", {"conversation_id": ids[title],
                                                             "message": text})

            arms = {"push off": ("push off", "send path"),
                    "push on, pushed": ("push on", "send path"),
                    "push on, none subscribed": ("push on", "nobody subscribed"),
                    "push off, control": ("push off", "nobody subscribed")}
            def settle() -> None:
                """Until no push has reached the receiver for a moment (at most 10 s): the
                pushes a block caused are out before the next block starts; then a moment
                for the workers' storing."""
                until = time.monotonic() + 10
                seen, quiet_since = len(receiver.pushes), time.monotonic()
                while time.monotonic() < until and time.monotonic() - quiet_since < 0.3:
                    time.sleep(0.02)
                    if len(receiver.pushes) != seen:
                        seen, quiet_since = len(receiver.pushes), time.monotonic()
                time.sleep(SETTLE_SECONDS)

            runs = {arm: sending(*where) for arm, where in arms.items()}
            both = alternate_two({arm: servers[label] for arm, (label, _) in arms.items()},
                                 runs, args.sends, args.block, settle)
            for arm in ("push on, pushed", "push on, none subscribed", "push off, control"):
                show(f"Send path: {arm} against push off (alternating blocks)",
                     {k: both[k] for k in ("push off", arm)}, "push off", arm, 1.05)
            pushed = sum(1 for name, _ in receiver.pushes if name == "sendtarget")
            print(f"  pushes of those {args.sends} sends that reached the receiver so far: "
                  f"{pushed} (one per WEBPUSH_COALESCE_SECONDS="
                  f"{on_env.get('WEBPUSH_COALESCE_SECONDS', '5')} s at most, and the newest "
                  "of what came meanwhile)")

            sio = servers["push on"][0]
            fine = set(fans)
            alone = fan_out(sio, receiver, ids["fan"], fine, "to a thousand")
            print(f"\n{len(fine)} notifications to {len(fine)} subscribed users: "
                  f"{alone:.2f} s from the ack, {len(fine) / alone:.0f} pushes/s (goal ≤ 10 s)")
            hung = fan_out(sio, receiver, ids["fan and hangs"], fine, "with hanging services")
            print(f"the same with 10 push services hanging until the 5 s deadline: {hung:.2f} s "
                  f"for the {len(fine)} others, {len(fine) / hung:.0f} pushes/s; "
                  f"ratio to the above {hung / alone:.2f}")
            print(f"refused by the receiver (bad signature or payload): {len(receiver.refused)}")
            for sio, _ in servers.values():
                sio.disconnect()
            print(f"\nafter: {harness.load_note()}")
    finally:
        procs.stop_all()
        receiver.stop()
        for prefix in prefixes:
            harness.drop_redis_keys(prefix)
    return 0


def alternate_two(servers: dict, runs: dict, total: int, block: int, settle=None) -> dict:
    """threads.alternate with each arm's CPU read from its own server's web worker. The order
    of the arms turns by one each round (no arm always follows the same one), and
    ``settle()`` runs after each block: the pushes a block caused are sent before the next
    block starts, so what is measured is the send path, not the push worker's work in the
    background competing for the same two cores."""
    labels = list(runs)
    samples_by_arm = {label: [] for label in runs}
    cpu = dict.fromkeys(runs, 0.0)
    done = 0
    round_ = 0
    while done < total:
        turn = round_ % len(labels)
        for label in labels[turn:] + labels[:turn]:
            pid = servers[label][1]
            before = harness.cpu_seconds(pid)
            samples_by_arm[label] += [runs[label](done + i) for i in range(block)]
            cpu[label] += harness.cpu_seconds(pid) - before
            if settle is not None:
                settle()
        done += block
        round_ += 1
    return {label: summary(samples_by_arm[label], cpu[label]) for label in runs}


if __name__ == "__main__":
    sys.exit(main())
