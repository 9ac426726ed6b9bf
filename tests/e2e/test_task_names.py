"""Tasks queued by an earlier version still resolve: a real Celery worker takes every task
name the project has ever published (from a plain Celery client, as a web process of the
version before a deploy would queue them) and runs it to its effect in SQL."""

from __future__ import annotations

import re
from datetime import datetime

import pytest
from celery import Celery

from simplechat.infra.ids import new_message_id
from simplechat.messaging.payload import message_payload

from .harness import wait_until

pytestmark = pytest.mark.e2e

# Every name a web process or worker has published since the first release. Never rename one:
# tasks already waiting in the broker are found by these names after a deploy.
TASK_NAMES = (
    "simplechat.flush_writes",
    "simplechat.store_message",
    "simplechat.store_message_change",
    "simplechat.store_reaction",
    "simplechat.deliver_webhook",
    "simplechat.run_slash_command",
    "simplechat.log_activity",
    "simplechat.log_error",
    "simplechat.build_data_export",
    "simplechat.remove_expired_exports",
    "simplechat.send_password_reset",
    "simplechat.sweep_digests",
    "simplechat.send_digest",
)


def test_every_task_name_ever_published_runs_on_a_worker(stack):
    web = stack.start_web()
    ada, bob = stack.register(web), stack.register(web)
    ada_id, bob_id = (stack.database.user_id(u.username) for u in (ada, bob))
    conversation_id = ada.start_conversation(web, [bob_id])
    first = message_payload(new_message_id(), conversation_id, None, "queued before the deploy",
                            sender_id=ada_id, sender_name="Ada")
    second = message_payload(new_message_id(), conversation_id, None, "edited later",
                             sender_id=ada_id, sender_name="Ada")
    edited = {**second, "message": "edited by an old task", "html": None}
    client = Celery(broker=stack.redis_url)
    sent = {}
    try:
        for name, args in (
            ("simplechat.store_message", [first]),
            ("simplechat.store_message_change",
             [edited, datetime.utcnow().isoformat(sep=" ")]),
            ("simplechat.store_reaction", [first, bob_id, "👍", True]),
            ("simplechat.deliver_webhook", [987654321, first]),  # no such hook: "gone"
            # no such command: "gone"
            ("simplechat.run_slash_command", [987654321, conversation_id, ada_id, "x",
                                              "http://localhost/"]),
            ("simplechat.log_activity", ["old_task_name", ada_id, {"from": "test"}, None]),
            ("simplechat.log_error", ["old_task_name", "Check", "queued by name", None, ada_id]),
            ("simplechat.flush_writes", []),
            ("simplechat.build_data_export", [987654321]),  # no such export: "gone"
            ("simplechat.remove_expired_exports", []),
            ("simplechat.send_password_reset", ["nobody@example.com"]),  # no mail server
            ("simplechat.sweep_digests", []),
            ("simplechat.send_digest", [987654321]),  # no such user: "gone"
        ):
            sent[name] = client.send_task(name, args=args, queue=stack.queue).id
    finally:
        client.close()
    assert set(sent) == set(TASK_NAMES)
    worker = stack.start_worker()

    db = stack.database
    wait_until(lambda: all(f"Task {name}[{task_id}] succeeded" in worker.log()
                           for name, task_id in sent.items()),
               30, 0.2, "every task to succeed")
    assert "unregistered task" not in worker.log().lower()
    assert db.scalar("SELECT text FROM messages WHERE id = :i", i=first["id"]) == (
        "queued before the deploy")
    assert db.scalar("SELECT text FROM messages WHERE id = :i", i=second["id"]) == (
        "edited by an old task")
    assert db.rows("SELECT user_id, emoji FROM reactions WHERE message_id = :i",
                   i=first["id"]) == [(bob_id, "👍")]
    assert db.scalar("SELECT COUNT(*) FROM generic_activity_log WHERE action = 'old_task_name'"
                     " AND user_id = :u", u=ada_id) == 1
    assert db.scalar("SELECT COUNT(*) FROM generic_error_log WHERE error_type = 'Check'"
                     " AND message = 'queued by name'") == 1
    delivered = re.search(r"Task simplechat\.deliver_webhook\[[^\]]+\] succeeded in [^:]+: "
                          r"'(\w+)'", worker.log())
    assert delivered and delivered.group(1) == "gone"
    called = re.search(r"Task simplechat\.run_slash_command\[[^\]]+\] succeeded in [^:]+: "
                       r"'(\w+)'", worker.log())
    assert called and called.group(1) == "gone"
