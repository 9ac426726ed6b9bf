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


def test_a_member_of_big_rooms_only_is_announced_to_followers_alone(make_stack):
    """In a big room presence is asked for (join's presence_of) or followed; a user whom no
    socket on any process follows is announced to nobody: nothing is published for them at all
    (a reconnect storm in a big channel publishes nothing). One who is followed from another
    process is announced there."""
    import redis as redis_lib

    stack = make_stack(CHAT_PRESENCE_PUSH_MAX_MEMBERS="2", CHAT_RATE_LIMIT="off")
    web_a, web_b = stack.start_web(), stack.start_web()
    ada = stack.register(web_a, "ada")
    bob = stack.register(web_b, "bob")
    cyd = stack.register(web_a, "cyd")
    crowd = ada.start_conversation(web_a, [bob.id, cyd.id], title="Crowd")  # 3 > 2: big
    # Each worker opened its first sockets' connections before it accepted (web/warm.py).
    for web in (web_a, web_b):
        assert "connections opened before the first socket: 40 to Redis, 1 for the fan-out, " \
               "4 to the database" in web.log(), web.tail()

    observer = redis_lib.Redis.from_url(stack.redis_url).pubsub()
    # A pattern subscription: PUBSUB NUMSUB does not count it, so it sees without following.
    observer.psubscribe(f"{stack.prefix}socketio/chat#presence:*")
    assert observer.get_message(timeout=5)["type"] == "psubscribe"

    def published(timeout: float = 1.0) -> list[bytes]:
        seen, deadline = [], time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            message = observer.get_message(timeout=left)
            if message and message["type"] == "pmessage":
                seen.append(message["channel"])
        return seen

    bob_sock = bob.socket(web_b)
    joined = bob_sock.join(crowd, presence_of=[ada.id, cyd.id])
    assert joined["presence_pushed"] is False
    assert set(joined["presence"]) == {str(bob.id), str(ada.id), str(cyd.id)}
    assert joined["presence"][str(ada.id)]["online"] is False
    assert bob_sock.call("presence_subscribe", {"conversation_id": crowd,
                                                "user_ids": [cyd.id]})["ok"]
    # Cyd is followed by Bob's socket on the other process: announced, and heard there.
    cyd_sock = cyd.socket(web_a)
    assert published() == [f"{stack.prefix}socketio/chat#presence:{cyd.id}".encode()]
    assert bob_sock.wait_for(lambda s: {"user_id": cyd.id, "online": True, "last_seen": None}
                             in s.events("presence"))
    # Ada is followed by no one: her coming and going publishes nothing.
    ada_sock = ada.socket(web_a)
    assert ada_sock.join(crowd)["ok"]
    assert published() == []
    ada_sock.close()
    assert published() == []
    assert all(p["user_id"] != ada.id for p in bob_sock.events("presence"))
    # Her status is right when asked all the same.
    answer = bob_sock.call("presence", {"conversation_id": crowd, "user_ids": [ada.id]})
    assert answer["presence"][str(ada.id)]["online"] is False
    assert answer["presence"][str(ada.id)]["last_seen"]
    cyd_sock.close()
    assert published() == [f"{stack.prefix}socketio/chat#presence:{cyd.id}".encode()]
    observer.close()
