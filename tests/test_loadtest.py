"""The load-test tool against a real gunicorn-eventlet server: what it sends, it sees delivered."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.e2e.harness import ROOT, Stack, TestDatabase, base_env, wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture
def stack(tmp_path):
    database = TestDatabase.create_migrated("postgresql", log_dir=tmp_path)
    deployment = Stack(database, tmp_path, CHAT_RATE_LIMIT="off")
    try:
        yield deployment
    finally:
        try:
            deployment.close()
        finally:
            database.drop()


def test_load_test_reports_every_message_it_sent_as_delivered_to_every_member(stack, tmp_path):
    web = stack.start_web()
    stack.start_worker()
    report_path = tmp_path / "report.json"
    env = base_env(stack.env)
    seeded = subprocess.run(
        [sys.executable, "-m", "simplechat.loadtest", "--prefix", "lt", "--seed-users", "6"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert seeded.returncode == 0, seeded.stderr

    run = subprocess.run(
        [sys.executable, "-m", "simplechat.loadtest", "--url", web.url, "--users", "6",
         "--conversations", "2", "--rate", "20", "--duration", "2", "--drain", "10",
         "--prefix", "lt", "--json", str(report_path), "--no-progress"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    report = json.loads(report_path.read_text())

    assert report["clients_connected"] == 6
    assert report["messages_sent"] == 40
    assert report["acks_ok"] == 40
    assert report["refusals"] == {} and report["errors"] == {}
    # Three members per conversation, each sees every message of its conversation once.
    assert report["deliveries_expected"] == 120
    assert report["deliveries"] == 120 and report["deliveries_missing"] == 0
    assert report["latency_ms"]["p50"] is not None
    assert "delivered    120 of 120 expected (0 missing)" in run.stdout
    # The sends were real: every acknowledged message reaches SQL through the worker.
    assert _wait_rows(stack.database, 40) == 40


def _wait_rows(database, count: int) -> int:
    wait_until(lambda: database.scalar("SELECT count(*) FROM messages") >= count, 30, 0.2,
               "the worker to store every message")
    return database.scalar("SELECT count(*) FROM messages")
