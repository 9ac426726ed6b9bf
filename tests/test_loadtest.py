"""The load-test tool: how it counts deliveries, duplicates, senders and the connect time, and,
against a real gunicorn-eventlet server, that what it sends it sees delivered."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from simplechat.tools.loadtest import (
    Received,
    WorkerResult,
    record_delivery,
    split_clients,
    summarise,
)
from tests.e2e.harness import ROOT, Stack, TestDatabase, base_env, wait_until

CONFIG = {"url": "http://127.0.0.1:1", "baseline": True, "users": 2, "conversations": 1,
          "senders": 0, "rate": 1, "duration": 10, "inflight": 0, "size": 40, "processes": 1}


def _message(seq: int, sent_ns: int) -> dict:
    return {"conversation_id": 7, "message": "hi", "client_id": f"lt0-{seq}-{sent_ns}"}


def test_a_message_one_client_receives_twice_is_one_delivery_and_one_duplicate():
    result = WorkerResult()
    result.acks_ok[7] = 1
    result.connected[7] = 2
    alice, bob = set(), set()
    message = _message(0, 1_000_000_000)

    assert record_delivery(result, alice, message, 0, 1_005_000_000)
    assert not record_delivery(result, alice, dict(message), 0, 1_009_000_000)
    assert record_delivery(result, bob, message, 0, 1_007_000_000)  # another client: no repeat

    assert result.duplicates == 1
    assert list(result.latencies) == [5.0, 7.0]
    report = summarise(CONFIG, [result])
    assert report["deliveries"] == 2 and report["deliveries_expected"] == 2
    assert report["deliveries_missing"] == 0 and report["deliveries_duplicate"] == 1


def test_a_duplicate_does_not_hide_a_missing_delivery():
    result = WorkerResult()
    result.acks_ok[7] = 2
    result.connected[7] = 1
    seen: set[str] = set()
    record_delivery(result, seen, _message(0, 10), 0, 20)
    record_delivery(result, seen, _message(0, 10), 0, 30)

    report = summarise(CONFIG, [result])
    assert report["deliveries_missing"] == 1 and report["deliveries_duplicate"] == 1


def test_a_catch_up_and_the_room_may_both_bring_a_message_once_each():
    """A socket joins the room before its catch-up's answer is read, so a message sent then
    comes in the answer and live: the protocol's clients skip the second copy by id. A second
    live copy, or a live copy of a message that came live before, is a duplicate still."""
    result = WorkerResult()
    result.acks_ok[7] = 3
    result.connected[7] = 1
    client = Received()
    fetched, live, twice = _message(0, 10), _message(1, 20), _message(2, 30)

    assert client.record(result, fetched, True, 0, 100)  # in the catch-up's answer
    assert not client.record(result, dict(fetched), False, 0, 110)  # then live: skipped
    assert not client.record(result, dict(fetched), False, 0, 120)  # live again: a duplicate
    assert client.record(result, live, False, 0, 130)
    assert not client.record(result, dict(live), True, 0, 140)  # a catch-up asks from before
    assert client.record(result, twice, False, 0, 150)
    assert not client.record(result, dict(twice), False, 0, 160)  # live twice: a duplicate

    assert (result.caught_up, result.overlaps, result.duplicates) == (1, 1, 2)
    report = summarise(CONFIG, [result])
    assert report["deliveries_missing"] == 0 and report["deliveries_duplicate"] == 2
    assert report["deliveries_overlap"] == 1


def test_messages_the_load_test_did_not_send_are_not_counted():
    result = WorkerResult()
    seen: set[str] = set()
    for data in ({"client_id": "browser-1"}, {"client_id": "lt0-x"}, {"message": "hi"}, "lt0-1-5"):
        assert not record_delivery(result, seen, data, 0, 100)
    assert len(result.latencies) == 0 and result.duplicates == 0


def test_only_the_first_senders_of_each_conversation_send():
    users = 9  # user i is member i // 3 of conversation i mod 3
    shares = split_clients([f"cookie{i}" for i in range(users)], [i % 3 for i in range(users)],
                           conversations=3, senders=1, processes=2)

    assert [len(share) for share in shares] == [5, 4]  # user i runs in process i mod 2
    sending = sorted(cookie for share in shares for cookie, _, sends in share if sends)
    assert sending == ["cookie0", "cookie1", "cookie2"]  # one per conversation, its first member
    assert {conversation for share in shares for _, conversation, sends in share if sends} == {
        0, 1, 2}
    everyone = split_clients(["c"] * users, [0] * users, conversations=3, senders=0, processes=1)
    assert all(sends for _, _, sends in everyone[0])


def test_connect_and_join_time_runs_from_the_first_connect_to_the_last_join_of_any_process():
    early, late = WorkerResult(), WorkerResult()
    early.connect_started, early.last_joined = 100.0, 100.5
    late.connect_started, late.last_joined = 100.2, 101.0  # each process took under a second

    report = summarise(CONFIG, [early, late])
    assert report["connect_join_seconds"] == 1.0
    assert report["clock"] == {"connect_started": 100.0, "last_joined": 101.0}
    assert summarise(CONFIG, [WorkerResult()])["connect_join_seconds"] is None


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


@pytest.mark.e2e
def test_load_test_reports_every_message_it_sent_as_delivered_to_every_member(stack, tmp_path):
    web = stack.start_web()
    stack.start_worker()
    report_path = tmp_path / "report.json"
    env = base_env(stack.env)
    seeded = subprocess.run(
        [sys.executable, "-m", "simplechat.tools.loadtest", "--prefix", "lt", "--seed-users", "6"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert seeded.returncode == 0, seeded.stderr

    run = subprocess.run(
        [sys.executable, "-m", "simplechat.tools.loadtest", "--url", web.url, "--users", "6",
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
    assert report["deliveries_duplicate"] == 0
    assert report["latency_ms"]["p50"] is not None
    assert report["connect_join_seconds"] > 0
    assert "delivered    120 of 120 expected (0 missing, 0 duplicate)" in run.stdout
    # The sends were real: every acknowledged message reaches SQL through the worker.
    assert _wait_rows(stack.database, 40) == 40


@pytest.mark.e2e
def test_pairs_make_direct_conversations_where_only_the_first_member_sends(stack, tmp_path):
    web = stack.start_web()
    stack.start_worker()
    env = base_env(stack.env)
    seeded = subprocess.run(
        [sys.executable, "-m", "simplechat.tools.loadtest", "--prefix", "lt", "--seed-users", "4"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert seeded.returncode == 0, seeded.stderr

    reports = []
    for attempt in range(2):  # the second run finds the same direct conversations
        report_path = tmp_path / f"report{attempt}.json"
        # Three processes for four users: the third holds user 2, who only receives, so the
        # two senders' processes must send the whole rate between them.
        run = subprocess.run(
            [sys.executable, "-m", "simplechat.tools.loadtest", "--url", web.url, "--users", "4",
             "--conversations", "2", "--senders", "1", "--processes", "3", "--rate", "10",
             "--duration", "2", "--drain", "10", "--prefix", "lt", "--json", str(report_path),
             "--no-progress"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr
        reports.append(json.loads(report_path.read_text()))

    for report in reports:
        assert report["clients_connected"] == 4 and report["senders"] == 2
        assert report["messages_sent"] == 20 and report["acks_ok"] == 20
        assert report["errors"] == {} and report["refusals"] == {}
        assert report["deliveries_expected"] == 40  # two members each
        assert report["deliveries"] == 40 and report["deliveries_duplicate"] == 0
    assert stack.database.rows(
        "SELECT c.is_group, count(p.user_id) FROM conversations c "
        "JOIN participants p ON p.conversation_id = c.id GROUP BY c.id") == [(False, 2)] * 2
    _wait_rows(stack.database, 40)
    senders = stack.database.rows("SELECT DISTINCT u.username FROM messages m "
                                  "JOIN users u ON u.id = m.sender_id ORDER BY 1")
    assert senders == [("lt00000",), ("lt00001",)]  # the first member of each pair


@pytest.mark.e2e
def test_load_test_clients_follow_a_graceful_reload_and_miss_nothing(tmp_path):
    """A HUP reload of the server in the middle of a run: each client is told server_restart,
    waits, reconnects to the new worker and catches up with join + after."""
    database = TestDatabase.create_migrated("postgresql", log_dir=tmp_path)
    stack = Stack(database, tmp_path, CHAT_RATE_LIMIT="off", CHAT_RESTART_WINDOW_MS="2000")
    try:
        web = stack.start_web(graceful_timeout=15)
        stack.start_worker()
        env = base_env(stack.env)
        seeded = subprocess.run(
            [sys.executable, "-m", "simplechat.tools.loadtest", "--prefix", "lt",
             "--seed-users", "6"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
        assert seeded.returncode == 0, seeded.stderr
        report_path = tmp_path / "report.json"
        run = subprocess.Popen(
            [sys.executable, "-m", "simplechat.tools.loadtest", "--url", web.url, "--users", "6",
             "--conversations", "2", "--rate", "20", "--duration", "8", "--drain", "15",
             "--prefix", "lt", "--json", str(report_path), "--no-progress"],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_until(lambda: database.scalar("SELECT count(*) FROM messages") >= 20, 60, 0.2,
                   "the run to be sending")
        os.kill(web.pid, signal.SIGHUP)  # the master alone: gunicorn's graceful reload
        out, err = run.communicate(timeout=120)
        assert run.returncode == 0, err
        report = json.loads(report_path.read_text())
        assert report["restarts"] == 6, out
        assert report["acks_ok"] > 20 and report["refusals"] == {}
        assert report["deliveries_missing"] == 0 and report["deliveries_duplicate"] == 0, out
        # Sends made while a client was away are not sent (the tool counts them, nothing else).
        assert set(report["errors"]) <= {"send:BadNamespaceError", "reconnect:ConnectionError",
                                         "no_ack"}, report["errors"]
    finally:
        try:
            stack.close()
        finally:
            database.drop()


def _wait_rows(database, count: int) -> int:
    wait_until(lambda: database.scalar("SELECT count(*) FROM messages") >= count, 30, 0.2,
               "the worker to store every message")
    return database.scalar("SELECT count(*) FROM messages")
