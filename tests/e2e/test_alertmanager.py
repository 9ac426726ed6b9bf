"""Prometheus Alertmanager (Debian's prometheus-alertmanager) posts to a Slack-compatible
incoming webhook of a real gunicorn server unchanged: an alert POSTed to Alertmanager's API
arrives in the conversation, and so does its resolution. The hook is made on the settings
page, as a participant makes it; the configuration is read from docs/INTEGRATIONS.md."""

from __future__ import annotations

import re
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from .harness import ROOT, Process, base_env, csrf_token, free_port, wait_until

pytestmark = pytest.mark.e2e

ALERTMANAGER = shutil.which("prometheus-alertmanager") or "/usr/bin/prometheus-alertmanager"


def documented_config(hook_url: str) -> str:
    """The configuration docs/INTEGRATIONS.md shows, with the hook's address in it."""
    text = (ROOT / "docs" / "INTEGRATIONS.md").read_text()
    config = re.search(r"<!-- alertmanager-config -->\n```yaml\n(.*?)```", text, re.S).group(1)
    documented = "https://chat.example.com/api/hooks/SECRET/slack"
    assert documented in config
    return config.replace(documented, hook_url)


def add_incoming_webhook(user, web, conversation_id: int, name: str) -> str:
    """Through the conversation's settings page; the Slack address it shows."""
    page = user.session.get(f"{web.url}/chat/{conversation_id}/settings", timeout=10)
    answer = user.session.post(f"{web.url}/chat/{conversation_id}/webhooks/incoming",
                               timeout=10, data={"csrf_token": csrf_token(page.text),
                                                 "bot_name": name})
    found = re.search(r'id="new-incoming-slack-url">([^<]+)<', answer.text)
    assert answer.status_code == 200 and found, answer.text[:2000]
    return found.group(1)


def start_alertmanager(log_dir: Path, hook_url: str) -> tuple[Process, str]:
    folder = log_dir / "alertmanager"
    folder.mkdir()
    (folder / "alertmanager.yml").write_text(documented_config(hook_url))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = Process("alertmanager", [
        ALERTMANAGER, f"--config.file={folder / 'alertmanager.yml'}",
        f"--storage.path={folder / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
        f"--web.external-url={url}", "--cluster.listen-address=", "--log.level=debug",
    ], base_env({}), folder / "alertmanager.log")

    def ready() -> bool:
        if not process.alive():
            raise AssertionError(f"alertmanager exited:\n{process.tail()}")
        try:
            return requests.get(f"{url}/-/ready", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    wait_until(ready, 30, 0.2, "alertmanager to be ready")
    return process, url


def post_alert(url: str, ends_at: datetime) -> None:
    now = datetime.now(UTC)
    alert = {"labels": {"alertname": "DiskFull", "instance": "db1", "severity": "critical"},
             "annotations": {"summary": "/var is 97% full <script>alert(1)</script>"},
             "startsAt": (now - timedelta(minutes=1)).isoformat(),
             "endsAt": ends_at.isoformat()}
    answer = requests.post(f"{url}/api/v2/alerts", json=[alert], timeout=10)
    assert answer.status_code == 200, answer.text


@pytest.mark.skipif(not Path(ALERTMANAGER).exists(),
                    reason="prometheus-alertmanager is not installed (.ci/run installs it)")
def test_an_alert_and_its_resolution_arrive_from_alertmanager(make_stack):
    stack = make_stack()
    web = stack.start_web()
    stack.start_worker()
    ada, bob = stack.register(web), stack.register(web)
    conversation = ada.start_conversation(web, [bob.id], title="on call")
    hook_url = add_incoming_webhook(ada, web, conversation, "Alertmanager")
    assert hook_url.startswith(web.url + "/api/hooks/") and hook_url.endswith("/slack")
    sock = bob.socket(web)
    alertmanager, url = start_alertmanager(stack.log_dir, hook_url)
    stack.processes.append(alertmanager)
    bot = wait_until(lambda: stack.database.scalar(
        "SELECT id FROM users WHERE is_bot AND first_name = 'Alertmanager'"), 10)

    post_alert(url, datetime.now(UTC) + timedelta(hours=1))
    firing = sock.wait_messages(1, conversation, timeout=60)
    assert firing, f"no message; alertmanager said:\n{alertmanager.tail()}"
    message = firing[0]
    assert message["sender"] == bot and message["sender_name"] == "Alertmanager"
    assert message["message"].startswith(f"> 🔴 **[\\[FIRING\\] DiskFull](<{url}>)**")
    assert "**db1** (critical): /var is 97% full" in message["message"]
    assert f'<a href="{url}"' in message["html"] and "<strong>db1</strong>" in message["html"]
    assert "<script" not in message["html"] and "&lt;script&gt;" in message["html"]

    post_alert(url, datetime.now(UTC) - timedelta(seconds=1))  # resolved
    resolved = sock.wait_messages(2, conversation, timeout=60)
    assert len(resolved) >= 2, f"no resolution; alertmanager said:\n{alertmanager.tail()}"
    assert resolved[1]["message"].startswith(f"> 🟢 **[\\[RESOLVED\\] DiskFull](<{url}>)**")
    stored = stack.database.wait_for_messages(conversation, 2)
    assert stored[:2] == [firing[0]["id"], resolved[1]["id"]]
    assert stack.database.scalar("SELECT COUNT(*) FROM messages WHERE conversation_id = :c "
                                 "AND sender_id = :b", c=conversation, b=bot) == 2
