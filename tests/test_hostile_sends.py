"""Hostile sends cost the server little: a stranger's sends and sends past the rate limit are
refused before the Markdown is rendered or mentions are looked up, edits past the change limit
likewise, and rendering runs on the CPU pool (infra.offload), off the event loop."""

from __future__ import annotations

import contextlib
import threading
import time
from types import SimpleNamespace

import pytest
from conftest import app_in_context
from sqlalchemy import event

import simplechat.messaging.edits as edits_module
import simplechat.messaging.send as send_module
from simplechat.extensions import db
from simplechat.infra.offload import offload_pool
from simplechat.messaging.send import send_message

PATHOLOGICAL = "[" * 4000  # some 70 ms of markdown-it-py, the audit's flood


@pytest.fixture
def app(database_uri, backend):
    """One send and one change per 10 s, one CPU slot and no queue: the conftest helpers
    (make_user, socket_client) work on it."""
    yield from app_in_context(database_uri, backend, CHAT_RATE_LIMIT="1/10s",
                              CHAT_CHANGE_RATE_LIMIT="1/10s", CHAT_CPU_WORKERS=1,
                              CHAT_CPU_QUEUE=0)


@pytest.fixture
def renders(monkeypatch) -> list[str]:
    """The texts the send and edit paths hand to the Markdown renderer."""
    seen: list[str] = []
    for module in (send_module, edits_module):
        real = module.render_html

        def counted(text, mentions=None, real=real):
            seen.append(text)
            return real(text, mentions)

        monkeypatch.setattr(module, "render_html", counted)
    return seen


@pytest.fixture
def statements(app):
    """SQL statements run while the list is being filled (clear it to start counting)."""
    seen: list[str] = []
    listener = lambda conn, cursor, statement, *rest: seen.append(statement)  # noqa: E731
    event.listen(db.engine, "before_cursor_execute", listener)
    yield seen
    event.remove(db.engine, "before_cursor_execute", listener)


def emit(sio, name, payload):
    return sio.emit(name, payload, namespace="/chat", callback=True)


@contextlib.contextmanager
def held_pool():
    """The app's CPU pool with one job holding a slot until the block ends: with one worker
    and no queue (CHAT_CPU_WORKERS=1, CHAT_CPU_QUEUE=0), every other job is refused (Busy)."""
    pool = offload_pool()
    gate = threading.Event()
    holder = threading.Thread(target=pool.run, args=(gate.wait, 30))
    holder.start()
    try:
        deadline = time.monotonic() + 10
        while not pool.admitted and time.monotonic() < deadline:
            time.sleep(0.01)
        assert pool.admitted == 1
        yield pool
    finally:
        gate.set()
        holder.join(10)


def test_sends_past_the_rate_limit_are_refused_before_rendering(
    app, make_user, make_conversation, socket_client, renders
):
    ada, bob = make_user("ada"), make_user("bob")
    conversation = make_conversation(ada, bob)
    a = socket_client(ada)
    first = emit(a, "send_message", {"conversation_id": conversation.id, "message": PATHOLOGICAL})
    assert first["ok"] is True, first
    assert len(renders) == 1
    for i in range(5):
        ack = emit(a, "send_message", {"conversation_id": conversation.id,
                                       "message": PATHOLOGICAL, "client_id": f"flood-{i}"})
        assert ack["ok"] is False and ack["error"] == "rate_limited", ack
        assert 0 < ack["retry_after"] <= 10
    assert len(renders) == 1
    # The REST route is the same path.
    assert send_message(ada, conversation.id, "**again**")["error"] == "rate_limited"
    assert len(renders) == 1


def test_a_burst_of_costly_sends_in_flight_together_renders_once(app, make_user,
                                                                   make_conversation, renders):
    """Eight sends at once, past a limit of one: the first takes the token and waits for the
    CPU pool (held); the other seven are refused at once, unrendered (a look at the limit that
    took nothing let them all through to the renderer)."""
    ada, bob = make_user("ada"), make_user("bob")
    conversation_id = make_conversation(ada, bob).id
    sender = SimpleNamespace(id=ada.id, full_name=ada.full_name)
    acks: list[dict] = []

    def send(i: int) -> None:
        with app.app_context():
            acks.append(send_message(sender, conversation_id, PATHOLOGICAL, f"burst-{i}"))

    with held_pool():
        pool = offload_pool()
        pool.queue = 8
        threads = [threading.Thread(target=send, args=(i,)) for i in range(8)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 10
        while len(acks) < 7 and time.monotonic() < deadline:
            time.sleep(0.01)
        refused = list(acks)
    for thread in threads:
        thread.join(30)
    assert [a.get("error") for a in refused] == ["rate_limited"] * 7, refused
    assert sorted(a["ok"] for a in acks) == [False] * 7 + [True]
    assert renders == [PATHOLOGICAL]


def test_a_retry_of_a_formatted_message_is_answered_without_rendering(
    app, make_user, make_conversation, renders
):
    ada, bob = make_user("ada"), make_user("bob")
    conversation = make_conversation(ada, bob)
    first = send_message(ada, conversation.id, "**once**", "retry-1")
    assert first["ok"] and len(renders) == 1
    again = send_message(ada, conversation.id, "**once**", "retry-1")
    assert again == {"ok": True, "message": first["message"], "duplicate": True}
    assert send_message(ada, conversation.id, "**other**", "retry-1") == {
        "ok": False, "error": "conflict"}
    assert len(renders) == 1


def test_a_strangers_sends_are_refused_before_rendering(
    app, make_user, make_conversation, socket_client, renders
):
    ada, bob, eve = make_user("ada"), make_user("bob"), make_user("eve")
    conversation = make_conversation(ada, bob)
    e = socket_client(eve)
    # The first finds the members uncached (read from SQL), the next ones cached.
    for i in range(3):
        ack = emit(e, "send_message", {"conversation_id": conversation.id,
                                       "message": PATHOLOGICAL, "client_id": f"in-{i}"})
        assert ack == {"ok": False, "error": "forbidden"}
    ack = emit(e, "send_message", {"conversation_id": 987654321, "message": PATHOLOGICAL})
    assert ack == {"ok": False, "error": "forbidden"}
    assert renders == []
    # A member's formatted message is rendered as before.
    sent = send_message(ada, conversation.id, "**hi** @bob")
    assert sent["ok"] and sent["message"]["html"] == (
        f'<p><strong>hi</strong> <span class="mention" data-user-id="{bob.id}">@bob</span></p>')
    assert sent["message"]["mentions"] == [bob.id]
    assert len(renders) == 1


def test_refused_sends_look_up_no_mentioned_names(
    app, make_user, make_conversation, statements
):
    ada, bob, eve = make_user("ada"), make_user("bob"), make_user("eve")
    conversation = make_conversation(ada, bob)
    assert send_message(eve, conversation.id, "warm")["error"] == "forbidden"  # members cached
    assert send_message(ada, conversation.id, "warm")["ok"]  # ada's one send in 10 s
    names = " ".join(f"@name{i}" for i in range(300))  # names no process has looked up yet
    statements.clear()
    assert send_message(eve, conversation.id, names)["error"] == "forbidden"
    assert send_message(ada, conversation.id, names)["error"] == "rate_limited"
    assert statements == []


def test_markdown_is_rendered_on_the_cpu_pool(app, make_user, make_conversation):
    ada, bob = make_user("ada"), make_user("bob")
    conversation = make_conversation(ada, bob)
    app.extensions["simplechat"].limiter.rate = None
    with held_pool():
        # The only slot is taken and nothing may wait: a text that needs the parser is
        # refused as the pool refuses it; a plain line needs no parser and goes through.
        assert send_message(ada, conversation.id, "**bold**") == {"ok": False,
                                                                  "error": "unavailable"}
        assert send_message(ada, conversation.id, "plain words")["ok"]
    sent = send_message(ada, conversation.id, "**bold**")
    assert sent["ok"] and sent["message"]["html"] == "<p><strong>bold</strong></p>"


def test_edits_past_the_change_limit_are_refused_before_rendering(
    app, make_user, make_conversation, socket_client, renders
):
    ada, bob = make_user("ada"), make_user("bob")
    conversation = make_conversation(ada, bob)
    a = socket_client(ada)
    sent = emit(a, "send_message", {"conversation_id": conversation.id, "message": "typo"})
    assert sent["ok"], sent
    change = {"conversation_id": conversation.id, "message_id": sent["message"]["id"],
              "message": PATHOLOGICAL}
    assert emit(a, "edit_message", change)["ok"] is True
    assert renders.count(PATHOLOGICAL) == 1
    for _ in range(5):
        ack = emit(a, "edit_message", change)
        assert ack["ok"] is False and ack["error"] == "rate_limited", ack
    assert renders.count(PATHOLOGICAL) == 1


def test_an_edit_is_rendered_on_the_cpu_pool(app, make_user, make_conversation, socket_client):
    ada, bob = make_user("ada"), make_user("bob")
    conversation = make_conversation(ada, bob)
    a = socket_client(ada)
    sent = emit(a, "send_message", {"conversation_id": conversation.id, "message": "typo"})
    with held_pool():
        ack = emit(a, "edit_message", {"conversation_id": conversation.id,
                                       "message_id": sent["message"]["id"], "message": "*fixed*"})
    assert ack == {"ok": False, "error": "unavailable"}
