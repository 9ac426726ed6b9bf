"""The room-scoped fan-out (SOCKETIO_FANOUT=rooms) in each of its Redis layouts: one server,
three servers (channels spread by hash) and a three-primary Redis Cluster with sharded pub/sub,
each started by the test, under three web processes (eventlet, gevent, eventlet)."""

from __future__ import annotations

import time
from collections import Counter

import pytest
import redis as redis_lib

from .harness import wait_until

pytestmark = pytest.mark.e2e


def subscribers(servers, channel: str, cluster: bool) -> int:
    """How many connections subscribe to ``channel``, over every server of the layout."""
    command = ("PUBSUB", "SHARDNUMSUB" if cluster else "NUMSUB", channel)
    total = 0
    for server in servers:
        client = server.client()
        try:
            total += int(client.execute_command(*command)[1])
        except redis_lib.RedisError:
            pass  # a node not up yet
        finally:
            client.close()
    return total


def cluster_ok(server) -> bool:
    client = server.client()
    try:
        return client.cluster("info").get("cluster_state") == "ok"
    except redis_lib.RedisError:
        return False
    finally:
        client.close()


def ids(messages) -> list[str]:
    return [m["id"] for m in messages]


@pytest.mark.parametrize("mode", ["one", "three", "cluster"])
def test_rooms_fanout_across_processes_with_restarts_removal_and_a_dead_process(
        make_stack, mode):
    stack = make_stack(CHAT_RATE_LIMIT="off")
    cluster = mode == "cluster"
    servers = stack.start_redis(1 if mode == "one" else 3, cluster=cluster)
    stack.env["SOCKETIO_FANOUT"] = "rooms"
    stack.env["SOCKETIO_MESSAGE_QUEUE"] = ",".join(
        s.url for s in (servers if mode == "three" else servers[:1]))
    if cluster:
        stack.env["SOCKETIO_REDIS_CLUSTER"] = "1"
    web_a, web_b, web_c = (stack.start_web(), stack.start_web(worker_class="gevent"),
                           stack.start_web())
    ada, bob, cyd = (stack.register(web_a, "ada"), stack.register(web_b, "bob"),
                     stack.register(web_c, "cyd"))
    group = ada.start_conversation(web_a, [bob.id, cyd.id], title=f"Fan-out {mode}")
    channel = f"{stack.prefix}socketio/chat#conversation:{group}"

    # Presence and delivery across processes; each socket gets each message once, though
    # it is in two of the rooms named (the conversation's and its user's).
    ada_sock = ada.socket(web_a)
    ada_sock.join(group)
    assert subscribers(servers, channel, cluster) == 1
    bob_sock = bob.socket(web_b)
    bob_sock.join(group)
    assert ada_sock.wait_for(lambda s: {"user_id": bob.id, "online": True, "last_seen": None}
                             in s.events("presence"))
    cyd_sock = cyd.socket(web_c)
    cyd_sock.join(group)
    assert subscribers(servers, channel, cluster) == 3  # the join answered once subscribed
    sent = [ada_sock.send(group, "from A")["message"], bob_sock.send(group, "from B")["message"],
            cyd_sock.send(group, "from C")["message"]]
    for sock in (ada_sock, bob_sock, cyd_sock):
        assert sock.wait_for(lambda s: len(s.messages(group)) >= 3), sock.name
    marker = ada_sock.send(group, "marker")["message"]
    for sock in (ada_sock, bob_sock, cyd_sock):
        assert sock.wait_for(lambda s: marker["id"] in ids(s.messages(group))), sock.name
        counts = Counter(ids(sock.messages(group)))
        assert counts == Counter(ids([*sent, marker])), (sock.name, counts)

    # Group removal: Bob leaves on process B; his other socket, on process C, stops getting
    # the group's messages, and B (no socket left in the room) unsubscribes.
    bob_other = bob.socket(web_c)
    bob_other.join(group)
    assert bob_sock.call("leave_conversation", {"conversation_id": group}) == {"ok": True}
    assert bob_other.wait_for(lambda s: {"conversation_id": group} in s.events(
        "conversation_left"))
    wait_until(lambda: subscribers(servers, channel, cluster) == 2, message="B to unsubscribe")
    after = ada_sock.send(group, "after bob left")["message"]
    assert cyd_sock.wait_for(lambda s: after["id"] in ids(s.messages(group)))
    time.sleep(0.5)  # anything wrongly fanned out would have arrived by now
    assert after["id"] not in ids(bob_other.messages(group) + bob_sock.messages(group))

    # The fan-out's Redis goes down: a message sent meanwhile reaches only its own process's
    # sockets; once the listeners have resubscribed, `join` + `after` catches Cyd up and live
    # delivery resumes.
    seen = ids(cyd_sock.messages(group))[-1]
    for server in servers:
        server.stop()
    missed = ada_sock.send(group, "while the queue was down")
    assert missed["ok"] is True, missed
    for server in servers:
        server.start()
    if cluster:  # the nodes keep their slots in their node files
        wait_until(lambda: all(cluster_ok(s) for s in servers), 30, message="the cluster")
    wait_until(lambda: subscribers(servers, channel, cluster) == 2, 30,
               message="the listeners to resubscribe")
    caught = cyd_sock.join(group, after=seen)
    assert missed["message"]["id"] in ids(caught["messages"])
    live = ada_sock.send(group, "after the restart")["message"]
    assert cyd_sock.wait_for(lambda s: live["id"] in ids(s.messages(group)))

    # Process C is killed: its subscriptions go with its connections; the others carry on,
    # and Cyd, reconnecting elsewhere, catches up.
    web_c.kill()
    assert cyd_sock.wait_for(lambda s: not s.connected)
    wait_until(lambda: subscribers(servers, channel, cluster) == 1, message="C's subscriptions")
    gone = ada_sock.send(group, "after C died")["message"]
    cyd_again = cyd.socket(web_a)
    assert gone["id"] in ids(cyd_again.join(group, after=live["id"])["messages"])
    later = bob.socket(web_a)  # bob is no member any more: refused, on any process
    assert later.call("join", {"conversation_id": group}) == {"ok": False, "error": "forbidden"}

