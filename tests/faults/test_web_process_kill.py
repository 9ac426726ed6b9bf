"""A web process killed -9 mid-stream: its clients reconnect to another process and catch up
through ``join`` with ``after``, with no gap and no duplicate. And a user deactivated from the
command line loses the sockets held by a web process elsewhere."""

from __future__ import annotations

import subprocess
import threading
import time

import pytest
import socketio
from e2e.harness import BIN, wait_until

from .conftest import Stream, assert_stored_exactly_once, report, send_stream

pytestmark = pytest.mark.e2e

TOTAL, KILL_AT = 90, 30


def test_clients_of_a_killed_web_process_catch_up_on_another_with_no_gap_or_duplicate(fault_stack):
    stack = fault_stack
    web_a, web_b = stack.start_web(), stack.start_web()
    stack.start_worker(pool="solo")
    ada, bob, carol = (stack.register(web_b, name) for name in ("ada", "bob", "carol"))
    conversation_id = ada.start_conversation(web_b, [bob.id, carol.id], title="faults")
    sender = ada.socket(web_b)
    sender.join(conversation_id)
    old = bob.socket(web_a)
    old.join(conversation_id)

    killed = threading.Event()

    def kill_web_a(i: int) -> None:
        if i == KILL_AT:
            web_a.kill()
            killed.set()

    stream = Stream()
    sending = threading.Thread(target=send_stream, daemon=True, kwargs=dict(
        sock=sender, conversation_id=conversation_id, count=TOTAL, label="web",
        stream=stream, between=kill_web_a, pause=0.05))
    sending.start()

    # Bob's client sees its connection drop, reconnects to the other process and catches up
    # from the last message it has, while the stream goes on.
    assert killed.wait(30)
    assert old.wait_for(lambda s: not s.connected, 15), "the dead process's socket stayed open"
    seen_before = [m["id"] for m in old.messages(conversation_id)]
    assert seen_before, "nothing arrived before the kill"
    time.sleep(1.0)  # a browser's reconnect backoff: messages go on without bob meanwhile
    new = bob.socket(web_b)
    catch_up = [m["id"] for m in new.join(conversation_id, after=seen_before[-1])["messages"]]
    sending.join(60)
    assert len(stream.acked) == TOTAL, stream.summary()
    wanted = stream.acked_ids
    assert new.wait_for(lambda s: wanted[-1] in {m["id"] for m in s.messages(conversation_id)},
                        15), "live delivery on the new process did not resume"
    live = [m["id"] for m in new.messages(conversation_id)]

    # No duplicate on any one channel, and the catch-up starts exactly after what was seen.
    for ids in (seen_before, catch_up, live):
        assert len(ids) == len(set(ids)) and ids == sorted(ids)
    assert seen_before == wanted[:len(seen_before)]
    assert catch_up == wanted[len(seen_before):len(seen_before) + len(catch_up)]
    # Live delivery on the new socket picks up where the catch-up list ends; a message that
    # arrived both ways (sent while joining) is the same id, which the client keeps once.
    merged = sorted(set(seen_before) | set(catch_up) | set(live))
    assert merged == wanted, "gap in the messages bob ended up with"
    assert set(live) >= set(wanted[len(seen_before) + len(catch_up):])
    assert_stored_exactly_once(stack.database, conversation_id, stream)

    # Deactivating carol from the command line closes her socket on web B, a process the
    # command does not run in; her events there are refused from then on.
    carol_sock = carol.socket(web_b)
    carol_sock.join(conversation_id)
    result = subprocess.run([str(BIN / "flask"), "--app", "wsgi", "users", "deactivate", "carol"],
                            env=stack._env(None), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert carol_sock.wait_for(lambda s: not s.connected, 15), "carol's socket stayed open"
    assert carol_sock.events("session_ended") == [{"reason": "deactivated"}]
    with pytest.raises(Exception):  # noqa: B017  (refused at connect: a connection error)
        carol.socket(web_b)
    wait_until(lambda: new.connected and sender.connected, 5)

    # On the production stack (gunicorn-eventlet) too: an oversized packet drops only the
    # socket that sent it, and another site's page cannot open a socket with ada's cookie.
    greedy = ada.socket(web_b)
    greedy.sio.emit("send_message", {"conversation_id": conversation_id,
                                     "message": "x" * 70_000}, namespace="/chat")
    assert greedy.wait_for(lambda s: not s.connected, 15), "oversized packet was accepted"
    assert sender.send(conversation_id, "after the big one")["ok"] is True
    assert new.wait_for(lambda s: any(m["message"] == "after the big one"
                                      for m in s.messages(conversation_id)), 10)
    hijack = socketio.Client(reconnection=False,
                             websocket_extra_options={"origin": "http://evil.example"})
    with pytest.raises(socketio.exceptions.ConnectionError):
        hijack.connect(web_b.url, headers={"Cookie": ada.cookie_header}, namespaces=["/chat"],
                       transports=["websocket"], wait_timeout=10)

    report("web-kill", faults="SIGKILL web process x1", sent=TOTAL, acked=len(stream.acked),
           seen_before_kill=len(seen_before), caught_up=len(catch_up),
           live_after=len(live), overlap=len(set(catch_up) & set(live)),
           stored=len(stack.database.message_ids(conversation_id)))
