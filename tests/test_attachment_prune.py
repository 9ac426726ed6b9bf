"""``flask attachments prune``: uploads never sent, older than CHAT_ATTACHMENT_ORPHAN_AGE, and
whatever is left of deleted messages' attachments go, rows and stored files both; everything
that can still be fetched or sent stays."""

from __future__ import annotations

import io
import os
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from simplechat.attachments.prune import prune_attachments
from simplechat.attachments.store import attachment_store
from simplechat.extensions import db
from simplechat.infra.services import services
from simplechat.models import Attachment, utcnow
from tests.test_richer_messages import emit, login, png_bytes, send, upload


@pytest.fixture
def pair(app, make_user, make_conversation, socket_client):
    services().limiter.rate = None  # several sends in a row
    ada, bob = make_user("ada"), make_user("bob")
    direct = make_conversation(ada, bob)
    a, b = socket_client(ada), socket_client(bob)
    for sio in (a, b):
        assert emit(sio, "join", {"conversation_id": direct.id})["ok"]
    return ada, bob, direct, a, b


def stored_keys() -> set[str]:
    return {f for _, _, files in os.walk(attachment_store().root) for f in files}


def age(attachment_id: str, hours: float) -> None:
    db.session.execute(update(Attachment).where(Attachment.id == attachment_id)
                       .values(created_at=utcnow() - timedelta(hours=hours)))
    db.session.commit()


def row_ids() -> set[str]:
    db.session.rollback()
    return set(db.session.scalars(select(Attachment.id)))


def uploaded(http, conversation_id, data=b"some bytes", name="a.txt", content_type=None):
    response = upload(http, conversation_id, data, name, content_type)
    assert response.status_code == 201, response.get_json()
    return response.get_json()["attachment"]


def test_old_unsent_uploads_are_removed_and_the_rest_kept(app, pair):
    ada, bob, direct, a, b = pair
    http = login(app, ada)
    old_image = uploaded(http, direct.id, png_bytes(), "old.png", "image/png")
    old_file = uploaded(http, direct.id, b"old", "old.txt")
    fresh = uploaded(http, direct.id, b"fresh", "fresh.txt")
    sent = uploaded(http, direct.id, b"sent", "sent.txt")
    assert send(a, direct.id, "with a file", attachments=[sent["id"]])["ok"]
    for attachment in (old_image, old_file, sent):
        age(attachment["id"], 25)
    assert {old_image["id"] + ".thumb", old_file["id"]} <= stored_keys()

    pruned = prune_attachments()

    assert (pruned.unsent, pruned.of_deleted) == (2, 0)
    assert row_ids() == {fresh["id"], sent["id"]}
    assert stored_keys() == {fresh["id"], sent["id"]}
    assert http.get(old_image["url"]).status_code == 404
    assert http.get(fresh["url"]).get_data() == b"fresh"
    assert login(app, bob).get(sent["url"]).get_data() == b"sent"
    # A pruned upload can no longer be sent; a fresh one still can.
    assert send(a, direct.id, "late", attachments=[old_file["id"]]) == {
        "ok": False, "error": "invalid"}
    assert send(a, direct.id, "in time", attachments=[fresh["id"]])["ok"]


def test_the_age_is_configurable(app, pair):
    ada, bob, direct, a, b = pair
    upload_ = uploaded(login(app, ada), direct.id)
    age(upload_["id"], 2)
    app.config["CHAT_ATTACHMENT_ORPHAN_AGE"] = 3 * 3600
    assert prune_attachments().unsent == 0
    assert prune_attachments(timedelta(hours=1)).unsent == 1
    assert row_ids() == set() and stored_keys() == set()


def test_what_is_left_of_a_deleted_messages_files_is_removed(app, pair):
    ada, bob, direct, a, b = pair
    http = login(app, ada)
    attachment = uploaded(http, direct.id, png_bytes(), "p.png", "image/png")
    message = send(a, direct.id, "pic", attachments=[attachment["id"]])["message"]
    assert emit(a, "delete_message", {"conversation_id": direct.id,
                                      "message_id": message["id"]})["ok"]
    assert stored_keys() == set()  # the deletion removed the bytes at once
    # A removal that failed (a store briefly unwritable) leaves a file behind; so does a
    # deletion from before files were removed: the prune takes them and their rows.
    attachment_store().save(attachment["id"], io.BytesIO(b"left behind"))
    assert attachment["id"] in row_ids()

    pruned = prune_attachments()

    assert (pruned.unsent, pruned.of_deleted) == (0, 1)
    assert row_ids() == set() and stored_keys() == set()
    joined = emit(b, "join", {"conversation_id": direct.id})
    assert joined["messages"][-1]["deleted"] is True


def test_the_cli_prunes_and_says_how_many(app, pair, runner):
    ada, bob, direct, a, b = pair
    upload_ = uploaded(login(app, ada), direct.id)
    age(upload_["id"], 25)
    result = runner.invoke(args=["attachments", "prune"])
    assert result.exit_code == 0, result.output
    assert "removed 1 unsent upload(s) and 0 attachment(s) of deleted messages" in result.output
    assert row_ids() == set() and stored_keys() == set()


def test_the_cli_refuses_a_bad_age_and_removes_nothing(app, pair, runner):
    ada, bob, direct, a, b = pair
    upload_ = uploaded(login(app, ada), direct.id)
    age(upload_["id"], 25)
    for bad in ("soon", "-1h", "0h", ""):
        result = runner.invoke(args=["attachments", "prune", "--older-than", bad])
        assert result.exit_code != 0, (bad, result.output)
    assert row_ids() == {upload_["id"]} and stored_keys() == {upload_["id"]}
