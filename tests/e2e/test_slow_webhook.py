"""A slow webhook receiver holds up no one else's messages: with the deployment of
docker-compose.yml (a worker storing messages, another on the webhook queue), other users'
messages reach SQL while a delivery to a receiver trickling one byte every two seconds still
hangs. And a worker started with no -Q consumes both queues."""

from __future__ import annotations

import re
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from .harness import csrf_token, wait_until
from .slow_receiver import TrickleReceiver

pytestmark = pytest.mark.e2e

# Longer than the test: the first delivery is still hanging when the messages are counted.
SETTINGS = {"WEBHOOK_ALLOW_PRIVATE": "1", "WEBHOOK_DELIVERY_DEADLINE": "300",
            "CHAT_RATE_LIMIT": "off"}


@pytest.fixture
def slow_receiver():
    receiver = TrickleReceiver(interval=2.0)
    yield receiver
    receiver.close()  # before the stack stops: its worker is not left waiting on it


def add_webhook(user, web, conversation_id: int, url: str) -> None:
    """Through the conversation's settings page, as a participant does."""
    page = user.session.get(f"{web.url}/chat/{conversation_id}/settings", timeout=10)
    answer = user.session.post(f"{web.url}/chat/{conversation_id}/settings", timeout=10,
                               data={"csrf_token": csrf_token(page.text), "url": url})
    assert answer.status_code == 200 and 'id="new-webhook-secret"' in answer.text, answer.text


def stored(database, ids: list[str]) -> set[str]:
    rows = database.rows("SELECT id FROM messages WHERE id = ANY(:ids)", ids=ids)
    return {r[0] for r in rows}


def test_a_slow_receiver_holds_up_no_message_on_its_way_to_sql(make_stack, slow_receiver):
    stack = make_stack(**SETTINGS)
    web = stack.start_web()
    stack.start_worker(queues=[stack.queue])  # stores messages
    stack.start_worker(queues=[f"{stack.queue}-webhooks"], pool="threads", concurrency=2)
    mallory, bob, carol = (stack.register(web) for _ in range(3))
    hooked = mallory.start_conversation(web, [bob.id, carol.id], title="hooked")
    elsewhere = bob.start_conversation(web, [carol.id])
    add_webhook(mallory, web, hooked, slow_receiver.url)

    # Mallory's messages: deliveries enough to hold every thread of the webhook worker.
    mallorys = mallory.socket(web)
    for n in range(3):
        assert mallorys.send(hooked, f"slow {n}")["ok"] is True
    wait_until(lambda: slow_receiver.connections >= 2, 30, 0.1, "two deliveries to hang")

    # Bob's and Carol's 15 messages, in the hooked conversation and another one.
    sockets = {bob.username: bob.socket(web), carol.username: carol.socket(web)}
    acked = []
    for n in range(15):
        user = (bob, carol)[n % 2]
        conversation = (hooked, elsewhere)[n // 2 % 2]
        ack = sockets[user.username].send(conversation, f"message {n}", uuid.uuid4().hex)
        assert ack["ok"] is True, ack
        acked.append(ack["message"]["id"])
    wait_until(lambda: stored(stack.database, acked) == set(acked), 60, 0.1,
               "the 15 messages in SQL")

    # All of them stored while the first deliveries were still hanging.
    assert slow_receiver.given_up == 0 and slow_receiver.open >= 2
    assert any(re.search(rb'"message":"slow 0"', r) for r in slow_receiver.requests)


class _Recorder(BaseHTTPRequestHandler):
    """A receiver that answers at once, recording each body."""

    bodies: list[bytes] = []

    def do_POST(self):  # noqa: N802
        type(self).bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_a_worker_without_q_consumes_both_queues(make_stack):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        stack = make_stack(**SETTINGS)
        web = stack.start_web()
        worker = stack.start_worker(pool="prefork", concurrency=2, queues=())
        assert "-Q" not in worker.args
        ada, bob = stack.register(web), stack.register(web)
        conversation = ada.start_conversation(web, [bob.id])
        add_webhook(ada, web, conversation, f"http://127.0.0.1:{server.server_address[1]}/h")
        ack = ada.socket(web).send(conversation, "to the hook", uuid.uuid4().hex)
        assert ack["ok"] is True
        stack.database.wait_for_messages(conversation, 1)
        wait_until(lambda: _Recorder.bodies, 30, 0.1, "the delivery")
        assert b'"to the hook"' in _Recorder.bodies[0]
        assert re.search(r"simplechat\.deliver_webhook\[[^\]]+\] succeeded", worker.log())
    finally:
        server.shutdown()
        server.server_close()
