"""Presence and group removal across real web processes sharing Redis."""

from __future__ import annotations

import time

import pytest

pytestmark = pytest.mark.e2e

TTL = 3  # seconds a socket counts as online without a heartbeat


def statuses(sock, conversation_id: int) -> dict[str, dict]:
    ack = sock.call("presence", {"conversation_id": conversation_id})
    assert ack["ok"], ack
    return ack["presence"]


def test_presence_and_removal_hold_across_processes_and_a_dead_one(make_stack):
    stack = make_stack(CHAT_PRESENCE_TTL=str(TTL), CHAT_RATE_LIMIT="off")
    web_a, web_b, web_c = stack.start_web(), stack.start_web(), stack.start_web()
    stack.start_worker()
    ada = stack.register(web_a, "ada")
    bob = stack.register(web_b, "bob")
    cyd = stack.register(web_c, "cyd")
    group = ada.start_conversation(web_a, [bob.id, cyd.id], title="Across")

    ada_sock = ada.socket(web_a)
    joined = ada_sock.join(group)
    assert joined["presence"][str(ada.id)]["online"] is True
    assert joined["presence"][str(bob.id)]["online"] is False

    # Bob comes online on another process: Ada's process hears of it through Redis.
    bob_sock = bob.socket(web_b)
    bob_sock.join(group)
    assert ada_sock.wait_for(lambda s: {"user_id": bob.id, "online": True, "last_seen": None}
                             in s.events("presence"))
    cyd_sock = cyd.socket(web_c)
    cyd_sock.join(group)
    assert statuses(ada_sock, group)[str(cyd.id)]["online"] is True

    # Cyd's process dies without a word: Cyd goes offline once the heartbeat lapses.
    web_c.kill()
    deadline = time.monotonic() + TTL + 10
    while time.monotonic() < deadline:
        for sock in (ada_sock, bob_sock):  # the living keep their heartbeat
            assert sock.call("heartbeat", {}) == {"ok": True}
        current = statuses(ada_sock, group)
        if not current[str(cyd.id)]["online"]:
            break
        time.sleep(0.5)
    assert current[str(cyd.id)]["online"] is False and current[str(cyd.id)]["last_seen"]
    assert current[str(bob.id)]["online"] is True and current[str(ada.id)]["online"] is True

    # Bob leaves from his socket on process B; his second socket, on process A, leaves the
    # room at once and hears nothing more of the group.
    bob_other = bob.socket(web_a)
    bob_other.join(group)
    assert bob_sock.call("leave_conversation", {"conversation_id": group}) == {"ok": True}
    assert bob_other.wait_for(lambda s: {"conversation_id": group} in s.events(
        "conversation_left"))
    after = ada_sock.send(group, "after bob left")
    assert after["ok"], after
    assert ada_sock.wait_for(lambda s: any(m["id"] == after["message"]["id"]
                                           for m in s.messages(group)))
    time.sleep(0.5)  # anything wrongly fanned out would have arrived by now
    assert all(m["message"] != "after bob left" for m in bob_other.messages(group))
    assert all(m["message"] != "after bob left" for m in bob_sock.messages(group))
    assert bob_other.call("join", {"conversation_id": group}) == {
        "ok": False, "error": "forbidden"}
    history = bob.session.get(f"{web_a.url}/api/conversations/{group}/messages", timeout=10)
    assert history.status_code == 404
