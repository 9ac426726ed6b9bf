"""Two real gunicorn-eventlet processes and a real Celery worker on one database and Redis."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("database", ["postgresql", "mariadb"])
def test_message_sent_on_one_process_reaches_a_client_on_another_once_and_lands_in_sql(
        make_stack, database):
    stack = make_stack(database)
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
    ids = [sent["id"], reply["message"]["id"]]
    assert stack.database.wait_for_messages(conversation_id, 2) == sorted(ids)

    # With Redis's copy gone, history comes from SQL: keyset pages with no gap or duplicate.
    assert stack.flush_cache() > 0
    url = f"{web_b.url}/api/conversations/{conversation_id}/messages"
    page = bob.session.get(url, params={"limit": 50}, timeout=10).json()
    assert [m["id"] for m in page["messages"]] == ids and page["has_more"] is False
    older = bob.session.get(url, params={"before": ids[1], "limit": 1}, timeout=10).json()
    assert [m["id"] for m in older["messages"]] == ids[:1] and older["has_more"] is False
    first = older["messages"][0]
    assert (first["message"], first["sender"], first["timestamp"]) == (
        sent["message"], sent["sender"], sent["timestamp"])
    rejoined = ada.socket(web_b).join(conversation_id)
    assert [m["id"] for m in rejoined["messages"]] == ids and rejoined["has_more"] is False
