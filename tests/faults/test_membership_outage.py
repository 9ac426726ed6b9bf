"""A change of who takes part, asked while Redis is away, is refused whole: answered
``unavailable`` with nothing committed, so no cache restored later can keep a leaver in; once
Redis is back the same request is done and the leaver is out at once."""

from __future__ import annotations

import pytest
from e2e.harness import wait_until

from .conftest import send_stream

pytestmark = pytest.mark.e2e


def test_leaving_while_redis_is_down_changes_nothing_and_works_once_it_is_back(fault_stack,
                                                                              own_redis):
    stack = fault_stack
    web = stack.start_web()
    stack.start_worker(pool="solo")
    ada, bob, cat = (stack.register(web, name) for name in ("ada", "bob", "cat"))
    group = ada.start_conversation(web, [bob.id, cat.id], "outage group")
    bob_sock = bob.socket(web)
    assert bob_sock.join(group)["ok"]
    assert len(send_stream(bob_sock, group, 2, "bob").acked) == 2  # the members are cached

    def member(user) -> bool:
        return bool(stack.database.scalar(
            "SELECT count(*) FROM participants WHERE conversation_id = :c AND user_id = :u",
            c=group, u=user.id))

    own_redis.crash()
    assert bob_sock.call("leave_conversation", {"conversation_id": group}, timeout=15) == {
        "ok": False, "error": "unavailable"}
    assert member(bob), "an unavailable leave must commit nothing"
    ada_sock = ada.socket(web)
    assert ada_sock.call("remove_participant", {"conversation_id": group, "user_id": cat.id},
                         timeout=15) == {"ok": False, "error": "unavailable"}
    assert member(cat)

    own_redis.start()
    wait_until(lambda: bob_sock.call("leave_conversation", {"conversation_id": group},
                                     timeout=15).get("ok") is True, 30, 0.5,
               "leaving to work again")
    assert not member(bob)
    refused = bob.socket(web).call("send_message", {"conversation_id": group, "message": "hi",
                                                    "client_id": "after-leaving"})
    assert refused == {"ok": False, "error": "forbidden"}
    assert bob.socket(web).call("join", {"conversation_id": group})["error"] == "forbidden"
