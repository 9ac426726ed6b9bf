"""A member removed from a channel on one web process stops hearing it at once on another:
their socket there leaves the room before the next message, across real gunicorn processes
sharing Redis."""

from __future__ import annotations

import re
import time

import pytest

pytestmark = pytest.mark.e2e


def csrf_header(user, web) -> dict:
    page = user.session.get(web.url + "/profile/", timeout=10)
    page.raise_for_status()
    return {"X-CSRFToken": re.search(r'<meta name="csrf-token" content="([^"]+)"',
                                     page.text).group(1)}


@pytest.mark.parametrize("database", ["postgresql", "mariadb"])
def test_a_removed_member_stops_receiving_at_once_on_another_process(make_stack, database):
    stack = make_stack(database, CHAT_RATE_LIMIT="off")
    web_a, web_b = stack.start_web(), stack.start_web()
    stack.start_worker()
    ada = stack.register(web_a, "ada")
    bob = stack.register(web_b, "bob")
    made = ada.session.post(f"{web_a.url}/api/channels", json={"title": "Yard"},
                            headers=csrf_header(ada, web_a), timeout=10)
    assert made.status_code == 201, made.text
    channel = made.json()["conversation"]["id"]
    joined = bob.session.post(f"{web_b.url}/api/channels/{channel}/join",
                              headers=csrf_header(bob, web_b), timeout=10)
    assert joined.status_code == 200, joined.text
    bob.id = joined.json()["conversation"]["participants"][-1]["id"]

    bob_sock = bob.socket(web_b)  # process B
    bob_sock.join(channel)
    ada_sock = ada.socket(web_a)  # process A
    ada_sock.join(channel)
    before = ada_sock.send(channel, "before")
    assert before["ok"], before
    assert bob_sock.wait_for(lambda s: any(m["message"] == "before"
                                           for m in s.messages(channel)))

    # Removed on process A; the very next message from A must not reach B's socket.
    removed = ada_sock.call("remove_participant", {"conversation_id": channel,
                                                   "user_id": bob.id})
    assert removed["ok"], removed
    after = ada_sock.send(channel, "after")
    assert after["ok"], after
    ada_id = removed["conversation"]["participants"][0]["id"]  # the owner, listed first
    assert bob_sock.wait_for(lambda s: {"conversation_id": channel, "removed_by": ada_id}
                             in s.events("conversation_left"))
    assert ada_sock.wait_for(lambda s: any(m["id"] == after["message"]["id"]
                                           for m in s.messages(channel)))
    time.sleep(0.5)  # anything wrongly fanned out would have arrived by now
    assert [m["message"] for m in bob_sock.messages(channel)] == ["before"]
    assert bob_sock.send(channel, "still here?") == {"ok": False, "error": "forbidden"}
    assert bob_sock.call("join", {"conversation_id": channel}) == {
        "ok": False, "error": "forbidden"}
    # A public channel stays readable (the preview), not writable.
    page = bob.session.get(f"{web_b.url}/api/conversations/{channel}/messages", timeout=10)
    assert page.status_code == 200
    assert [m["system"]["event"] for m in page.json()["messages"] if m["kind"] == "system"] == [
        "joined", "removed"]
