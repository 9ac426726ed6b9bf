"""The admin console on a deployment of two gunicorn-eventlet web processes, a Celery worker,
PostgreSQL and Redis: a user deactivated from the console on one process has their socket on
the other told session_ended and closed, and cannot come back; a reported message deleted from
the console reaches a participant's socket on the other process as a tombstone."""

from __future__ import annotations

import pytest
import socketio
from sqlalchemy import text

from .harness import ChatUser, csrf_token, wait_until

pytestmark = pytest.mark.e2e


def admin_post(admin: ChatUser, base_url: str, page: str, action: str) -> int:
    """POST a console form as its page does (with the page's CSRF token)."""
    html = admin.session.get(base_url + page, timeout=10)
    html.raise_for_status()
    response = admin.session.post(base_url + action, timeout=10, allow_redirects=False,
                                  data={"csrf_token": csrf_token(html.text)})
    return response.status_code


def test_console_actions_reach_sockets_on_the_other_process(stack):
    web_a, web_b = stack.start_web(), stack.start_web()
    stack.start_worker()
    root = stack.register(web_a, "e2eroot")
    with stack.database.engine.begin() as conn:
        conn.execute(text("UPDATE users SET is_admin = :yes WHERE id = :id"),
                     {"yes": True, "id": root.id})
    ada = stack.register(web_a, "e2eada")
    mallory = stack.register(web_b, "e2emallory")
    conversation_id = ada.start_conversation(web_a, [mallory.id, root.id], title="Porch")

    ada_on_b = ada.socket(web_b)
    ada_on_b.join(conversation_id)
    mallory_on_b = mallory.socket(web_b)
    mallory_on_b.join(conversation_id)
    rude = mallory_on_b.send(conversation_id, "something rude")["message"]
    assert ada_on_b.wait_messages(1, conversation_id)

    # ada reports it on B; root deletes it from the console on A; ada's socket on B sees it.
    assert ada_on_b.call("report_message", {"conversation_id": conversation_id,
                                            "message_id": rude["id"],
                                            "reason": "rude"}) == {"ok": True}
    report_id = stack.database.scalar("SELECT id FROM message_reports")
    assert admin_post(root, web_a.url, "/admin/reports",
                      f"/admin/reports/{report_id}/delete") == 302
    assert ada_on_b.wait_for(lambda s: any(
        e["id"] == rude["id"] and e["deleted"] and e["deleted_by"] == root.id
        for e in s.events("message_updated")), 15)

    # root deactivates mallory on A: her socket on B is told and closed.
    assert admin_post(root, web_a.url, "/admin/users",
                      f"/admin/users/{mallory.id}/deactivate") == 302
    assert mallory_on_b.wait_for(
        lambda s: not s.connected and s.events("session_ended"), 15), \
        "mallory's socket on B stayed open after the deactivation on A"
    assert mallory_on_b.events("session_ended") == [{"reason": "deactivated"}]
    with pytest.raises(socketio.exceptions.ConnectionError):
        mallory.socket(web_b)
    assert ada_on_b.connected
    # The activity rows (written by the worker) name root.
    def rows():
        return sorted(stack.database.rows(
            "SELECT action, user_id FROM generic_activity_log WHERE action IN "
            "('account_deactivated', 'report_message_deleted')"))

    wait_until(lambda: len(rows()) == 2, 15, 0.2, "the activity rows")
    assert rows() == [("account_deactivated", root.id), ("report_message_deleted", root.id)]
