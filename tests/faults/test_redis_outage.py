"""Redis down and back, on a redis-server of the test's own: sends are refused as
``unavailable`` (never a false ``ok``), pages and history come from SQL, and once Redis is back
sending, fan-out and the recent lists recover without restarting anything."""

from __future__ import annotations

import json
import time

import pytest
import requests

from .conftest import Stream, assert_stored_exactly_once, report, send_stream

pytestmark = pytest.mark.e2e


def test_redis_outage_refuses_sends_serves_history_from_sql_and_recovers(fault_stack,
                                                                          own_redis):
    stack = fault_stack
    web = stack.start_web()
    stack.start_worker(pool="solo")
    ada, bob = stack.register(web, "ada"), stack.register(web, "bob")
    conversation_id = ada.start_conversation(web, [bob.id])
    ada_sock, bob_sock = ada.socket(web), bob.socket(web)
    ada_sock.join(conversation_id)
    bob_sock.join(conversation_id)

    before = send_stream(ada_sock, conversation_id, 10, "before")
    assert len(before.acked) == 10, before.summary()
    stack.database.wait_for_messages(conversation_id, 10)

    own_redis.crash()
    down = time.monotonic()
    during = send_stream(ada_sock, conversation_id, 5, "during", timeout=15)
    assert during.acked == [] and during.refused == {"unavailable": 5}, during.summary()

    # Pages still load, and history comes from SQL.
    page = ada.session.get(f"{web.url}/chat/{conversation_id}", timeout=15)
    assert page.status_code == 200
    history = ada.session.get(f"{web.url}/api/conversations/{conversation_id}/messages",
                              timeout=15)
    assert history.status_code == 200
    assert [m["id"] for m in history.json()["messages"]] == before.acked_ids
    joined = bob_sock.join(conversation_id)
    assert [m["id"] for m in joined["messages"]] == before.acked_ids

    time.sleep(max(0.0, 3.0 - (time.monotonic() - down)))  # down for at least 3 s
    own_redis.start()  # empty: every recent list and limiter state is gone
    outage = time.monotonic() - down
    # Sending works again by itself (connections to Redis are re-made on use): retry until the
    # first acknowledgement, then every send is acknowledged.
    after = Stream()
    deadline = time.monotonic() + 30
    while not after.acked and time.monotonic() < deadline:
        send_stream(ada_sock, conversation_id, 1, f"after{len(after.refused)}", stream=after)
        time.sleep(0.5)
    recovered_s = round(time.monotonic() - down - outage, 1)
    assert after.acked and after.refused.keys() <= {"unavailable"}, after.summary()
    more = send_stream(ada_sock, conversation_id, 10, "after")
    assert len(more.acked) == 10, more.summary()
    after.acked += more.acked
    # Fan-out across the message queue recovered too: bob hears the new messages.
    assert bob_sock.wait_for(lambda s: {m["id"] for m in s.messages(conversation_id)}
                             >= set(after.acked_ids), 30), "fan-out did not recover"

    # The recent list is re-warmed from SQL on the next read: old and new, in order.
    expected = before.acked_ids + after.acked_ids
    stack.database.wait_for_messages(conversation_id, len(expected), timeout=60)
    joined = bob_sock.join(conversation_id)
    assert [m["id"] for m in joined["messages"]] == expected
    client = own_redis.client()
    cached = [json.loads(raw)["id"] for raw in client.lrange(
        f"{stack.prefix}conv:{conversation_id}:recent", 0, -1)]
    state = client.get(f"{stack.prefix}conv:{conversation_id}:state")
    client.close()
    assert cached == expected and state == b"all"
    assert_stored_exactly_once(stack.database, conversation_id,
                               Stream(acked=before.acked + after.acked))
    report("redis-outage", faults="redis-server SIGKILL + restart x1",
           outage_s=round(outage, 1), before=before.summary(), during=during.summary(),
           after=after.summary(), recovered_after_s=recovered_s, stored=len(expected))
    assert requests.get(f"{web.url}/healthz", timeout=10).status_code == 200
