"""Migration 0011 on existing data: a muted participant becomes level "none" for good, the
others "default"; users get the notification settings' defaults; then back down, mutes kept."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, inspect, text
from test_channels_migration import _upgrade, fresh_database_uri  # noqa: F401  (a fixture)


def _seed(conn) -> None:
    for uid in (1, 2):
        conn.execute(text(
            "INSERT INTO users (id, username, first_name, last_name, email, password_hash) "
            "VALUES (:id, :u, 'F', 'L', :e, 'x')"), {"id": uid, "u": f"u{uid}", "e": f"u{uid}@x"})
    conn.execute(text("INSERT INTO conversations (id, title, is_group) VALUES (10, 't', :g)"),
                 {"g": True})
    for uid, muted in ((1, True), (2, False)):
        conn.execute(text("INSERT INTO participants (conversation_id, user_id, muted) "
                          "VALUES (10, :u, :m)"), {"u": uid, "m": muted})


@pytest.mark.filterwarnings("ignore:Skipped unsupported reflection")
def test_muted_participants_become_level_none_and_back(fresh_database_uri):  # noqa: F811
    _upgrade(fresh_database_uri, "0010")
    engine = create_engine(fresh_database_uri)
    with engine.begin() as conn:
        _seed(conn)
    _upgrade(fresh_database_uri, "0011")
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT user_id, notification_level, muted_until "
                                 "FROM participants ORDER BY user_id")).all()
        assert [tuple(r) for r in rows] == [(1, "none", None), (2, "default", None)]
        assert "muted" not in {c["name"] for c in inspect(conn).get_columns("participants")}
        user = conn.execute(text(
            "SELECT dnd_until, quiet_hours_start, quiet_hours_end, quiet_hours_timezone, "
            "email_notifications, email_delay_minutes FROM users WHERE id = 1")).one()
        assert (user[0], user[1], user[2], user[3], bool(user[4]), user[5]) == (
            None, None, None, None, True, 10)
        assert "push_subscriptions" in set(inspect(conn).get_table_names())
    _upgrade(fresh_database_uri, "-0010")
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT user_id, muted FROM participants ORDER BY user_id"))
        assert [(r[0], bool(r[1])) for r in rows] == [(1, True), (2, False)]
        assert "push_subscriptions" not in set(inspect(conn).get_table_names())
    engine.dispose()
