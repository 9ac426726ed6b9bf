"""Migration 0009 on existing data: messages keep their place in the main flow (no thread,
no replies), the thread and draft tables come and go; then back down."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, inspect, text
from test_channels_migration import _upgrade, fresh_database_uri  # noqa: F401  (a fixture)


def _seed(conn) -> None:
    conn.execute(text("INSERT INTO users (id, username, first_name, last_name, email, "
                      "password_hash) VALUES (1, 'u1', 'F', 'L', 'u1@x', 'x')"))
    conn.execute(text("INSERT INTO conversations (id, title, is_group) VALUES (10, 't', :g)"),
                 {"g": False})
    conn.execute(text("INSERT INTO messages (id, conversation_id, sender_id, text, created_at) "
                      "VALUES ('0192f4c5-0000-7000-8000-000000000001', 10, 1, 'old', "
                      "'2024-01-01 00:00:00')"))


@pytest.mark.filterwarnings("ignore:Skipped unsupported reflection")
def test_existing_messages_stay_in_the_main_flow(fresh_database_uri):  # noqa: F811
    _upgrade(fresh_database_uri, "0008")
    engine = create_engine(fresh_database_uri)
    with engine.begin() as conn:
        _seed(conn)
    _upgrade(fresh_database_uri, "0009")
    with engine.connect() as conn:
        row = conn.execute(text(
            "SELECT thread_id, also_to_conversation, reply_count, last_reply_at, "
            "thread_participants FROM messages")).one()
        assert (row[0], bool(row[1]), row[2], row[3], row[4]) == (None, False, 0, None, None)
        tables = set(inspect(conn).get_table_names())
        assert {"thread_follows", "drafts"} <= tables
        indexes = {i["name"] for i in inspect(conn).get_indexes("messages")}
        assert "ix_messages_conversation_thread" in indexes
        conn.execute(text("INSERT INTO drafts (user_id, conversation_id, text) "
                          "VALUES (1, 10, 'half')"))
        assert conn.execute(text("SELECT thread_id FROM drafts")).scalar_one() == ""
        conn.rollback()
    _upgrade(fresh_database_uri, "-0008")
    with engine.connect() as conn:
        assert "thread_follows" not in set(inspect(conn).get_table_names())
        columns = {c["name"] for c in inspect(conn).get_columns("messages")}
        assert "thread_id" not in columns and "reply_count" not in columns
        assert conn.execute(text("SELECT text FROM messages")).scalar_one() == "old"
    engine.dispose()
