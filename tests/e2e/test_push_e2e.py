"""Web Push through the deployed processes: gunicorn-eventlet stores nothing and decides
nothing; a Celery worker on the main queue stores the message and queues notify_messages,
which a worker on the outgoing queue decides and sends, encrypted and VAPID-signed, to a push
receiver on 127.0.0.1 (tests/push_receiver.py proves both). A socket in the conversation's room
counts as looking until it says focus null; reading on another login pushes clear."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from simplechat.notifications.push import generate_keys

from .harness import csrf_token, login

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from push_receiver import PushReceiver  # noqa: E402

pytestmark = pytest.mark.e2e

PUBLIC, PRIVATE = generate_keys()
SETTINGS = {"WEBHOOK_ALLOW_PRIVATE": "1", "CHAT_RATE_LIMIT": "off",
            "WEBPUSH_VAPID_PUBLIC_KEY": PUBLIC, "WEBPUSH_VAPID_PRIVATE_KEY": PRIVATE,
            "WEBPUSH_SUBJECT": "mailto:ops@example.com"}


@pytest.fixture
def receiver():
    started = PushReceiver(PUBLIC).start()
    yield started
    started.stop()


def subscribe(user, web, receiver, device: str) -> int:
    page = user.session.get(f"{web.url}/chat/settings/notifications", timeout=10)
    answer = user.session.post(f"{web.url}/api/push/subscriptions", timeout=10,
                               json=receiver.subscription(device),
                               headers={"X-CSRFToken": csrf_token(page.text)})
    assert answer.status_code == 201, answer.text
    return answer.json()["id"]


@pytest.mark.parametrize("database", ["postgresql", "mariadb"])
def test_pushes_leave_the_worker_after_the_message_is_stored(make_stack, receiver, database):
    stack = make_stack(database, **SETTINGS)
    web = stack.start_web()
    stack.start_worker(queues=[stack.queue])
    stack.start_worker(queues=[f"{stack.queue}-webhooks"], pool="threads", concurrency=2)
    ada, bob = stack.register(web), stack.register(web)
    conversation = ada.start_conversation(web, [bob.id])
    subscribe(bob, web, receiver, "bob-phone")

    # The laptop is another login of Bob's than the one that subscribed the phone.
    ada_socket, bob_laptop = ada.socket(web), login(web.url, bob.username).socket(web)
    assert bob_laptop.join(conversation)["ok"] is True
    assert ada_socket.send(conversation, "while you look")["ok"] is True
    stack.database.wait_for_messages(conversation, 1)
    assert bob_laptop.call("focus", {"conversation_id": None})["ok"] is True
    sent = ada_socket.send(conversation, "while you are away")
    assert sent["ok"] is True
    push = receiver.wait_for(1, timeout=60, name="bob-phone")[0]
    assert push.payload["type"] == "message" and push.payload["body"] == "while you are away"
    assert push.payload["tag"] == f"conversation-{conversation}"

    # Read on the laptop (another login): the phone's notification is cleared.
    assert bob_laptop.call("read", {"conversation_id": conversation,
                                    "message_id": sent["message"]["id"]})["ok"] is True
    pushes = receiver.wait_for(2, timeout=60, name="bob-phone")
    assert [p.payload["type"] for p in pushes] == ["message", "clear"]
    assert [p.payload["body"] for p in pushes] == ["while you are away", ""]
