"""Two real gunicorn-eventlet processes and a real Celery worker on PostgreSQL and Redis."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.e2e


def test_message_sent_on_one_process_reaches_a_client_on_another_once_and_lands_in_sql(stack):
    web_a = stack.start_web()
    web_b = stack.start_web()
    stack.start_worker()
    ada = stack.register(web_a, "ada")
    bob = stack.register(web_b, "bob")
    conversation_id = ada.start_conversation(web_a, [bob.id])

    ada_socket = ada.socket(web_a)
    bob_socket = bob.socket(web_b)
    ada_socket.join(conversation_id)
    bob_socket.join(conversation_id)

    ack = ada_socket.send(conversation_id, "hello from process A", client_id="a-1")
    assert ack["ok"] is True, ack
    sent = ack["message"]
    assert sent["sender"] == ada.id and sent["conversation_id"] == conversation_id

    received = bob_socket.wait_messages(1, conversation_id)
    assert [m["id"] for m in received] == [sent["id"]]
    assert received[0]["message"] == "hello from process A"
    assert received[0]["sender_name"] == "Ada Tester"

    # The row reaches SQL through the worker; nothing arrives twice meanwhile.
    assert stack.database.wait_for_messages(conversation_id, 1) == [sent["id"]]
    row = stack.database.rows("SELECT sender_id, text FROM messages WHERE id = :i", i=sent["id"])
    assert row == [(ada.id, "hello from process A")]
    assert [m["id"] for m in bob_socket.messages(conversation_id)] == [sent["id"]]
    assert [m["id"] for m in ada_socket.messages(conversation_id)] == [sent["id"]]

    # A reply the other way round also crosses processes.
    reply = bob_socket.send(conversation_id, "hi from process B")
    assert reply["ok"] is True, reply
    assert ada_socket.wait_for(lambda s: len(s.messages(conversation_id)) == 2)
    assert ada_socket.messages(conversation_id)[1]["id"] == reply["message"]["id"]
    assert stack.database.wait_for_messages(conversation_id, 2) == sorted(
        [sent["id"], reply["message"]["id"]])
