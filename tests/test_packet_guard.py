"""Binary Socket.IO packets are refused: the socket is closed before a handler runs or anything
is buffered, with one warning per socket; JSON events work as before."""

from __future__ import annotations

import io

import pytest
from sqlalchemy import func, select

from simplechat.extensions import db, socketio
from simplechat.models import Message
from simplechat.observability.logging_setup import configure_logging
from simplechat.realtime.packet_guard import is_binary_frame


@pytest.fixture
def log_lines(app):
    """The app's log lines (plain format) written during the test."""
    stream = io.StringIO()
    configure_logging(app, stream)
    yield lambda: stream.getvalue().splitlines()
    configure_logging(app)


@pytest.fixture
def pair(make_user, make_conversation):
    ada, bob = make_user("ada"), make_user("bob")
    return ada, bob, make_conversation(ada, bob)


def joined(sio, conversation_id: int):
    ack = sio.emit("join", {"conversation_id": conversation_id}, namespace="/chat",
                   callback=True)
    assert ack["ok"] is True, ack
    sio.get_received("/chat")
    return sio


@pytest.mark.parametrize("frame, binary", [
    ('51-/chat,["send_message",{"_placeholder":true,"num":0}]', True),
    ('699999-/chat,3[{"_placeholder":true,"num":0}]', True),
    (b"\x00" * 16, True),
    (b"", True),
    ('42/chat,["send_message",{"conversation_id":1}]', False),
    ("40/chat,", False),
    ("", False),
])
def test_binary_frames_and_binary_packet_headers_are_recognised(frame, binary):
    assert is_binary_frame(frame) is binary


def test_event_with_bytes_closes_the_socket_and_never_reaches_the_handler(
        pair, socket_client, log_lines):
    ada, bob, conversation = pair
    a, b = joined(socket_client(ada), conversation.id), joined(socket_client(bob), conversation.id)
    eio_sid = a.eio_sid

    ack = a.emit("send_message", {"conversation_id": conversation.id, "message": "hi",
                                  "attachment": b"\x00" * 1000}, namespace="/chat", callback=True)

    assert ack is None  # no handler answered
    assert not a.is_connected("/chat")
    assert eio_sid not in socketio.server._binary_packet
    assert eio_sid not in socketio.server.environ
    assert db.session.scalar(select(func.count()).select_from(Message)) == 0
    fanned_out = [e for e in b.get_received("/chat")
                  if e["name"] in ("message", "conversation_activity")]
    assert fanned_out == []
    warnings = [line for line in log_lines() if "sent a binary packet" in line]
    assert len(warnings) == 1 and " WARNING " in warnings[0], log_lines()
    assert b.is_connected("/chat")


def test_frames_after_the_refusal_are_dropped_without_another_warning(
        pair, socket_client, log_lines):
    ada, _bob, conversation = pair
    a = joined(socket_client(ada), conversation.id)
    a.emit("typing", {"conversation_id": conversation.id, "blob": b"x"}, namespace="/chat")
    socketio.server._handle_eio_message(a.eio_sid, b"\x01" * 60_000)
    socketio.server._handle_eio_message(a.eio_sid, '51-/chat,["typing",{"_placeholder":true}]')
    assert len([line for line in log_lines() if "sent a binary packet" in line]) == 1


@pytest.mark.parametrize("first_frame", [
    '51-/chat,["send_message",{"_placeholder":true,"num":0}]',
    '42/chat,["send_message",{"conversation_id":1,"message":"hi"}]',
    "49",
    '42/chat,["send_message",{bad',
])
def test_socket_whose_connect_was_refused_is_closed_at_its_first_frame(
        app, log_lines, first_frame):
    sio = socketio.test_client(app, namespace="/chat")
    assert not sio.is_connected("/chat")  # refused: not logged in
    # The test client only emits when connected: these are the frames a raw client sends.
    # Unguarded, python-socketio raises for most ("Unexpected binary packet", "Unknown packet
    # type", bad JSON, undecodable bytes), and engine.io logs a traceback for each.
    dispatch = socketio.server._handle_eio_message
    for frame in (first_frame, b"\x00" * 100, "49", '42/chat,["join",{}]'):
        dispatch(sio.eio_sid, frame)
    assert sio.eio_sid not in socketio.server.environ
    [warning] = [line for line in log_lines() if "connection closed" in line]
    assert sio.eio_sid in warning


def test_refused_socket_may_still_try_to_connect_again(app, log_lines):
    sio = socketio.test_client(app, namespace="/chat")
    sio.connect("/chat")
    assert not sio.is_connected("/chat")
    assert [line for line in log_lines() if "connection closed" in line] == []


def test_json_event_still_works(pair, socket_client):
    ada, bob, conversation = pair
    a, b = joined(socket_client(ada), conversation.id), joined(socket_client(bob), conversation.id)
    ack = a.emit("send_message", {"conversation_id": conversation.id, "message": "plain json"},
                 namespace="/chat", callback=True)
    assert ack["ok"] is True, ack
    assert ack["message"]["message"] == "plain json"
    received = [e["args"] for e in b.get_received("/chat") if e["name"] == "message"]
    assert [m["id"] for m in received] == [ack["message"]["id"]]
    assert a.is_connected("/chat")
