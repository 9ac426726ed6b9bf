"""The embedded default (no broker, so no Celery beat) sends digests too: a real gunicorn-eventlet
process on SQLite with no Redis runs the sweep on its own timer and mails a real SMTP server."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from types import SimpleNamespace

import pytest

from tests.mailbox import SITE_URL, Mailbox, links, parts

from .harness import BIN, ROOT, Stack, base_env

pytestmark = pytest.mark.e2e

# Users, a direct conversation and one message from bob to ada through the real send path (tasks
# inline: stored, and noted for ada's digest, before send_message returns).
SEED = """
from simplechat import create_app
from simplechat.conversations.records import start_conversation
from simplechat.extensions import db
from simplechat.messaging.send import send_message
from simplechat.models import User

app = create_app()
with app.app_context():
    people = []
    for name in ("ada", "bob"):
        user = User(username=name, first_name=name.title(), last_name="Embedded",
                    email=f"{name}@example.com")
        user.set_password("correct horse battery")
        db.session.add(user)
        people.append(user)
    db.session.commit()
    ada, bob = people
    conversation, _ = start_conversation(bob, [ada], None)
    with app.test_request_context():
        assert send_message(bob, conversation.id, "sent while ada was away")["ok"]
    print(conversation.id)
"""


def test_the_embedded_default_sweeps_in_the_web_process(tmp_path):
    box = Mailbox().start()
    database = f"sqlite:///{tmp_path / 'embedded.sqlite3'}"
    env = {"DATABASE_URL": database, "REDIS_URL": "", "SIMPLECHAT_CONFIG": "production",
           "SECRET_KEY": "embedded-e2e", "MAIL_DIGEST_SWEEP_SECONDS": "1",
           **{k: str(v) for k, v in box.settings().items()}}
    stack = Stack(SimpleNamespace(url=database), tmp_path / "logs", redis_url="", label="mail",
                  **env)
    try:
        for args in ([str(BIN / "flask"), "--app", "wsgi", "db", "upgrade"],
                     [sys.executable, "-c", SEED]):
            done = subprocess.run(args, cwd=ROOT, env=base_env(stack.env), capture_output=True,
                                  text=True, timeout=120)
            assert done.returncode == 0, done.stderr[-3000:]
        conversation_id = int(done.stdout.split()[-1])
        with sqlite3.connect(tmp_path / "embedded.sqlite3") as db:  # 20 minutes pass
            changed = db.execute("UPDATE missed_messages SET created_at = "
                                 "datetime('now', '-20 minutes')").rowcount
        assert changed == 1  # noted when stored
        assert box.mails() == []  # the command line does not sweep; the web process does

        web = stack.start_web()  # its first request (the readiness check) starts the timer
        [digest] = box.wait_for(1, to="ada@example.com", timeout=30)
        text, _ = parts(digest)
        assert "sent while ada was away" in text
        assert f"{SITE_URL}/chat/{conversation_id}" in links(text)
        assert "digest sweep failed" not in web.log()
    finally:
        stack.stop_processes()
        box.stop()
