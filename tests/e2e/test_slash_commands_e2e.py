"""A slash command on the real deployment: gunicorn takes the command, a Celery worker (on the
webhook queue) calls the service started here, and the worker's answer reaches the caller's
socket alone on the web process (ephemeral); a later answer to response_url is posted in the
conversation as the command's bot and stored."""

from __future__ import annotations

import re
import time
from urllib.parse import urlsplit

import pytest
import requests

from .command_service import CommandService
from .harness import csrf_token, wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture
def service():
    made = CommandService()
    yield made
    made.close()


def add_command(user, web, conversation_id: int, name: str, url: str) -> str:
    """Through the conversation's settings page; the signing secret it shows."""
    page = user.session.get(f"{web.url}/chat/{conversation_id}/settings", timeout=10)
    answer = user.session.post(f"{web.url}/chat/{conversation_id}/commands", timeout=10, data={
        "csrf_token": csrf_token(page.text), "command": name, "command_url": url,
        "command_description": "Deploy a branch"})
    found = re.search(r'id="new-command-secret">([^<]+)<', answer.text)
    assert answer.status_code == 200 and found, answer.text[:2000]
    return found.group(1)


def test_a_command_runs_on_the_worker_and_answers_the_caller_alone(make_stack, service):
    stack = make_stack(WEBHOOK_ALLOW_PRIVATE="1", CHAT_RATE_LIMIT="off")
    web = stack.start_web()
    stack.start_worker(queues=[stack.queue])  # stores messages
    calls = stack.start_worker(queues=[f"{stack.queue}-webhooks"])  # calls out
    ada, bob, carol = (stack.register(web) for _ in range(3))
    conversation = ada.start_conversation(web, [bob.id, carol.id], title="ops")
    service.secret = add_command(ada, web, conversation, "/deploy", service.url)
    listed = ada.session.get(f"{web.url}/api/conversations/{conversation}/commands", timeout=10)
    assert listed.json()["commands"][0]["name"] == "/deploy"
    ada_socket, bob_socket = ada.socket(web), bob.socket(web)

    service.answers({"text": "Deploying *main*…"})
    ack = ada_socket.send(conversation, "/deploy main")
    assert ack == {"ok": True, "command": {"name": "/deploy", "text": "main"}}
    wait_until(lambda: ada_socket.events("ephemeral"), 30, 0.1, "the ephemeral answer")
    [shown] = ada_socket.events("ephemeral")
    assert shown["conversation_id"] == conversation
    assert shown["message"]["html"] == "<p>Deploying <strong>main</strong>…</p>"
    assert re.search(r"simplechat\.run_slash_command\[[^\]]+\] succeeded", calls.log())
    [call] = service.calls
    assert call["user_name"] == ada.username and call["channel_name"] == "ops"
    assert call["response_url"].startswith(web.url + "/api/commands/responses/")

    # The service answers later: on response_url, in the channel.
    answer = requests.post(call["response_url"], timeout=10,
                           json={"response_type": "in_channel", "text": "Deployed *main*"})
    assert answer.status_code == 200 and answer.text == "ok"
    [posted] = bob_socket.wait_messages(1, conversation, timeout=30)
    assert posted["html"] == "<p>Deployed <strong>main</strong></p>"
    stored = stack.database.wait_for_messages(conversation, 1)
    assert stored == [posted["id"]]
    time.sleep(0.5)
    assert bob_socket.events("ephemeral") == []
    assert [m["id"] for m in ada_socket.messages(conversation)] == [posted["id"]]
    assert urlsplit(call["response_url"]).path.startswith("/api/commands/responses/")
