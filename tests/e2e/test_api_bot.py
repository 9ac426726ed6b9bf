"""The example bot of docs/API.md, run as written against real gunicorn and Celery: it
connects with a token, hears a message over Socket.IO and answers through the REST API; and an
outgoing webhook is delivered by the real worker."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from .harness import BIN, ROOT, base_env, wait_until

pytestmark = pytest.mark.e2e


def example_bot() -> str:
    text = (ROOT / "docs" / "API.md").read_text()
    return re.search(r"<!-- example-bot -->\n```python\n(.*?)```", text, re.S).group(1)


def flask(stack, *args: str) -> str:
    result = subprocess.run([str(BIN / "flask"), "--app", "wsgi", *args], cwd=ROOT,
                            env=base_env(stack.env), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.strip().splitlines()[-1]


def test_the_example_bot_answers_through_the_api(stack, tmp_path):
    web = stack.start_web()
    stack.start_worker()
    ada = stack.register(web)
    flask(stack, "users", "create", "echo-bot", "--bot")
    bot_id = stack.database.user_id("echo-bot")
    conversation_id = ada.start_conversation(web, [bot_id])
    token = flask(stack, "tokens", "create", "echo-bot", "--name", "example")
    assert len(example_bot().splitlines()) <= 45
    script = tmp_path / "bot.py"
    script.write_text(example_bot())
    log_path = tmp_path / "bot.log"
    with open(log_path, "w") as log:
        bot = subprocess.Popen([sys.executable, str(script)], stdout=log, stderr=subprocess.STDOUT,
                               env=base_env({"SIMPLECHAT_URL": web.url,
                                             "SIMPLECHAT_TOKEN": token}))
    try:
        wait_until(lambda: "ready as echo-bot" in log_path.read_text() or bot.poll() is not None,
                   30, 0.2, "the bot to connect")
        assert bot.poll() is None, log_path.read_text()
        sock = ada.socket(web)
        ack = sock.call("send_message", {"conversation_id": conversation_id,
                                         "message": "!echo hello bot"})
        assert ack["ok"] is True
        reply = wait_until(lambda: [m for m in sock.messages() if m["sender"] == bot_id],
                           30, 0.2, "the bot's answer")
        assert reply[0]["message"] == "hello bot"
        assert reply[0]["client_id"] == f"echo-{ack['message']['id']}"
        # The reply fans out before the bot's POST returns, so its log line may come later.
        wait_until(lambda: "201" in log_path.read_text(), 30, 0.2, "the bot to log its 201")
    finally:
        bot.terminate()
        bot.wait(10)


class _Receiver(BaseHTTPRequestHandler):
    got: list[tuple[str, bytes]] = []
    fail_first = 1

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).got.append((self.headers["X-SimpleChat-Signature"], body))
        self.send_response(500 if len(type(self).got) <= type(self).fail_first else 200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def test_an_outgoing_webhook_is_delivered_by_the_worker_after_a_retry(make_stack):
    stack = make_stack(WEBHOOK_ALLOW_PRIVATE="1")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        web = stack.start_web()
        stack.start_worker()
        ada, bob = stack.register(web), stack.register(web)
        conversation_id = ada.start_conversation(web, [bob.id])
        url = f"http://127.0.0.1:{server.server_address[1]}/hook"
        secret = flask(stack, "webhooks", "create", "--conversation", str(conversation_id),
                       "--url", url)
        token = flask(stack, "tokens", "create", ada.username, "--name", "e2e")
        sent = requests.post(f"{web.url}/api/conversations/{conversation_id}/messages",
                             json={"message": "to the hook"}, timeout=10,
                             headers={"Authorization": f"Bearer {token}"})
        assert sent.status_code == 201, sent.text
        wait_until(lambda: len(_Receiver.got) >= 2, 60, 0.2, "the retried delivery")
        for signature, body in _Receiver.got:
            assert signature == "sha256=" + hmac.new(secret.encode(), body,
                                                      hashlib.sha256).hexdigest()
        assert json.loads(_Receiver.got[-1][1])["message"]["id"] == sent.json()["message"]["id"]
    finally:
        server.shutdown()
        server.server_close()
