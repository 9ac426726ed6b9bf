"""Refusals that hold for a while are answered as the packet arrives (issue 27): once a user's
send is ``rate_limited`` until a known time, or ``forbidden`` in a conversation, or a cheap
event is past its budget, the user's next such events, from any of their sockets on the
process, get the same answer without running (no request context, no session check, no Redis
round trip), until the refusal ends; then the events run again.

What shows that an answer came from the held refusal and not from the handler: the
``simplechat_limit_refusals_total{limit="held_..."}`` counter, which only that path moves, and
for the send limit the Redis limiter's key, which a send that runs would read."""

from __future__ import annotations

import time

import pytest
from conftest import app_in_context
from prometheus_client import REGISTRY
from test_socket_limits import call, connect, cookie, serving

from simplechat.realtime.event_limits import Refusals


@pytest.fixture
def app(database_uri, backend, request):
    marker = request.node.get_closest_marker("settings")
    yield from app_in_context(database_uri, backend, **(marker.kwargs if marker else {}))


def held(code: str) -> float:
    return REGISTRY.get_sample_value("simplechat_limit_refusals_total",
                                     {"limit": f"held_{code}"}) or 0.0


def send(sio, cid: int, text: str) -> dict:
    return call(sio, "send_message", {"conversation_id": cid, "message": text})


# Two sends per 10 s: a loaded machine (two sends took over a second in a full run) does not
# refill the budget before the third.
@pytest.mark.settings(CHAT_RATE_LIMIT="2/10s")
def test_a_rate_limited_user_is_refused_on_every_socket_until_the_limit_ends(
        app, make_user, make_conversation):
    ada, bob = make_user(), make_user()
    cid = make_conversation(ada, bob).id
    with serving(app) as base:
        ada_cookie = cookie(base, ada)
        first, second = connect(base, ada_cookie), connect(base, ada_cookie)
        b = connect(base, cookie(base, bob))
        assert send(first, cid, "one")["ok"] and send(first, cid, "two")["ok"]
        refused = send(first, cid, "three")
        assert refused.get("error") == "rate_limited" and 0 < refused["retry_after"] <= 10
        before = held("rate_limited")

        again = [send(sock, cid, "more") for sock in (first, second, first)]
        assert held("rate_limited") == before + 3
        assert [a["error"] for a in again] == ["rate_limited"] * 3
        waits = [a["retry_after"] for a in again]
        assert set(again[0]) == {"ok", "error", "retry_after"}
        assert waits == sorted(waits, reverse=True) and waits[0] <= refused["retry_after"]
        assert send(b, cid, "bob is not limited")["ok"]  # nor held for another user

        time.sleep(refused["retry_after"] + 0.05)
        assert send(second, cid, "after the wait")["ok"]
        assert held("rate_limited") == before + 3


@pytest.mark.settings(CHAT_RATE_LIMIT="off")
def test_a_send_to_a_conversation_one_is_not_in_is_held_until_a_change_or_a_second(
        app, make_user, make_conversation, monkeypatch):
    # The hold lasts a second; here it lasts longer, so that a loaded machine (connecting the
    # second socket took over a second in a full run) cannot end it before the change does.
    monkeypatch.setattr(Refusals, "FORBIDDEN_MEMO", 30.0)
    ada, bob, dan, eve = make_user(), make_user(), make_user(), make_user()
    theirs = make_conversation(ada, bob, dan, title="a group")
    mine = make_conversation(eve, bob)
    with serving(app) as base:
        e = connect(base, cookie(base, eve))
        assert send(e, theirs.id, "hello?") == {"ok": False, "error": "forbidden"}
        before = held("forbidden")
        assert send(e, theirs.id, "hello??") == {"ok": False, "error": "forbidden"}
        assert held("forbidden") == before + 1
        assert send(e, mine.id, "a conversation of mine")["ok"]  # only that one is held
        assert held("forbidden") == before + 1

        a = connect(base, cookie(base, ada))
        assert send(e, theirs.id, "still held") == {"ok": False, "error": "forbidden"}
        assert held("forbidden") == before + 2
        # Added on this process within the second: the held refusal ends at once.
        added = call(a, "add_participants", {"conversation_id": theirs.id,
                                             "user_ids": [eve.id]})
        assert added["ok"], added
        assert send(e, theirs.id, "now I am in")["ok"]
        assert held("forbidden") == before + 2


@pytest.mark.settings(CHAT_SOCKET_EVENT_RATE="3/2s")
def test_a_cheap_event_past_its_budget_is_held_in_whole_seconds(app, make_user):
    ada, bob = make_user(), make_user()
    with serving(app) as base:
        a = connect(base, cookie(base, ada))
        b = connect(base, cookie(base, bob))
        beats = [call(a, "heartbeat", {}) for _ in range(4)]
        assert [x.get("error") for x in beats] == [None, None, None, "rate_limited"]
        before = held("rate_limited")
        again = call(a, "heartbeat", {})
        assert again == {"ok": False, "error": "rate_limited", "retry_after": 1.0}
        assert held("rate_limited") == before + 1
        assert call(b, "heartbeat", {}) == {"ok": True}
        time.sleep(0.75)  # one event every 2/3 s: the budget has room again
        assert call(a, "heartbeat", {}) == {"ok": True}
