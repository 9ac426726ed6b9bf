"""Migration 0008 on existing data: groups become private with an owner (their creator from
the activity log, else the earliest member), direct conversations stay direct; then back down."""

from __future__ import annotations

import json
import os
import tempfile
import uuid

import pytest
from sqlalchemy import create_engine, text

from simplechat import create_app
from tests.conftest import _admin_and_test_url

MIGRATIONS = os.path.join(os.path.dirname(__file__), "..", "migrations")


@pytest.fixture
def fresh_database_uri():
    """An empty database of its own (the session's one is already at the newest revision)."""
    raw = os.environ.get("TEST_DATABASE_URL")
    if not raw:
        with tempfile.TemporaryDirectory(prefix="simplechat-migration-") as folder:
            yield f"sqlite:///{folder}/migration.sqlite3"
        return
    name = f"simplechat_mig_{uuid.uuid4().hex[:8]}"
    admin_url, test_url = _admin_and_test_url(raw, name)
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    yield test_url
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {name}"))
    admin.dispose()


def _upgrade(uri: str, revision: str) -> None:
    from flask_migrate import downgrade, upgrade

    app = create_app("testing", {"SQLALCHEMY_DATABASE_URI": uri, "REDIS_URL": None})
    with app.app_context():
        if revision.startswith("-"):
            downgrade(directory=MIGRATIONS, revision=revision[1:])
        else:
            upgrade(directory=MIGRATIONS, revision=revision)
        from simplechat.extensions import db
        db.engine.dispose()


def _seed(conn) -> None:
    for uid in (1, 2, 3, 4):
        conn.execute(text(
            "INSERT INTO users (id, username, first_name, last_name, email, password_hash) "
            "VALUES (:id, :u, 'F', 'L', :e, 'x')"), {"id": uid, "u": f"u{uid}", "e": f"u{uid}@x"})
    # 10: direct; 11: a group created by user 2 (joined last); 12: a group with no record;
    # 13: a group whose recorded creator has left.
    for cid, group in ((10, False), (11, True), (12, True), (13, True)):
        conn.execute(text("INSERT INTO conversations (id, title, is_group) VALUES (:id, 't', :g)"),
                     {"id": cid, "g": group})
    rows = [(10, 1, "2024-01-01 00:00:00"), (10, 2, "2024-01-01 00:00:00"),
            (11, 1, "2024-01-01 00:00:00"), (11, 3, "2024-01-01 00:00:00"),
            (11, 2, "2024-01-02 00:00:00"),
            (12, 3, "2024-01-02 00:00:00"), (12, 4, "2024-01-01 00:00:00"),
            (12, 1, "2024-01-03 00:00:00"),
            (13, 2, "2024-01-02 00:00:00"), (13, 3, "2024-01-01 00:00:00")]
    for cid, uid, joined in rows:
        conn.execute(text("INSERT INTO participants (conversation_id, user_id, joined_at) "
                          "VALUES (:c, :u, :j)"), {"c": cid, "u": uid, "j": joined})
    for uid, detail in ((2, {"conversation_id": 11, "by": "api"}), (1, {"conversation_id": 10}),
                        (4, {"conversation_id": 13}), (1, "not an object")):
        conn.execute(text("INSERT INTO generic_activity_log (user_id, action, detail) "
                          "VALUES (:u, 'conversation_created', :d)"),
                     {"u": uid, "d": json.dumps(detail)})


# SQLite's batch mode reflects the users table, whose lower-cased username index it cannot read.
@pytest.mark.filterwarnings("ignore:Skipped unsupported reflection")
def test_existing_groups_become_private_with_an_owner(fresh_database_uri):
    _upgrade(fresh_database_uri, "0007")
    engine = create_engine(fresh_database_uri)
    with engine.begin() as conn:
        _seed(conn)
    _upgrade(fresh_database_uri, "0008")
    with engine.connect() as conn:
        visibility = dict(conn.execute(text("SELECT id, visibility FROM conversations")).all())
        creators = dict(conn.execute(text("SELECT id, created_by_id FROM conversations")).all())
        roles = {(c, u): r for c, u, r in conn.execute(text(
            "SELECT conversation_id, user_id, role FROM participants")).all()}
        described = conn.execute(text(
            "SELECT description, archived FROM conversations WHERE id = 11")).one()
        conn.execute(text("INSERT INTO messages (id, conversation_id, sender_id, text, "
                          "created_at, deleted_by) VALUES ('m1', 11, 1, '', "
                          "'2024-01-01 00:00:00', 2)"))
    assert visibility == {10: "direct", 11: "private", 12: "private", 13: "private"}
    assert creators == {10: 1, 11: 2, 12: None, 13: 4}
    owners = {c: u for (c, u), r in roles.items() if r == "owner"}
    # 11: its recorded creator; 12: no record, earliest member; 13: creator gone, earliest.
    assert owners == {11: 2, 12: 4, 13: 3}
    assert {r for (c, _), r in roles.items() if c == 10} == {"member"}
    assert (described[0], bool(described[1])) == ("", False)
    engine.dispose()
    _upgrade(fresh_database_uri, "-0007")
    engine = create_engine(fresh_database_uri)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM participants")).scalar() == 10
    engine.dispose()
