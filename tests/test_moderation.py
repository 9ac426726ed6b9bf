"""Moderation: reporting a message (socket and REST), the reports queue in /admin/reports
(deleting the message, seen by the participants, or dismissing), site admins deleting any
message, and the edit history only site admins read; bad payloads change nothing. On Redis and
on the embedded default."""

from __future__ import annotations

import pytest
from conftest import app_in_context
from sqlalchemy import func, select

from simplechat.conversations.channels import create_channel
from simplechat.extensions import db
from simplechat.infra.membership import members_changed
from simplechat.models import (
    MEMBER,
    Attachment,
    GenericActivityLog,
    Message,
    MessageEdit,
    MessageReport,
    Participant,
)

NS = "/chat"
MISSING_ID = "0190f3a0-0000-7000-8000-000000000000"


@pytest.fixture
def app(database_uri, backend):
    yield from app_in_context(database_uri, backend, CHAT_RATE_LIMIT="off",
                              CHAT_CHANGE_RATE_LIMIT="off", CHAT_SOCKET_EVENT_RATE="off",
                              CHAT_EDIT_WINDOW=3600)


def ask(sio, event: str, payload) -> dict:
    return sio.emit(event, payload, namespace=NS, callback=True)


def received(sio, name: str) -> list:
    return [e["args"] if isinstance(e["args"], dict) else e["args"][0]
            for e in sio.get_received(NS) if e["name"] == name]


def login(app, user):
    http = app.test_client()
    assert http.post("/auth/login", data={"username": user.username,
                                          "password": "correct horse battery"}
                     ).status_code == 302
    return http


@pytest.fixture
def room(make_user, socket_client):
    """A channel of ada (owner) and bob; cy is a stranger, root a site admin in nothing. ada
    and bob have sockets in the channel's room; bob has said something."""
    ada, bob, cy = make_user("ada"), make_user("bob"), make_user("cy")
    root = make_user("root", is_admin=True)
    channel, refusal = create_channel(ada, "Yard", "", "private", limited=False)
    assert refusal is None
    db.session.add(Participant(conversation_id=channel.id, user_id=bob.id, role=MEMBER))
    db.session.commit()
    members_changed([channel.id], [bob.id])
    socks = {u.username: socket_client(u) for u in (ada, bob, cy, root)}
    for name in ("ada", "bob"):
        assert ask(socks[name], "join", {"conversation_id": channel.id})["ok"]
    said = ask(socks["bob"], "send_message", {"conversation_id": channel.id,
                                              "message": "something rude"})["message"]
    for sio in socks.values():
        sio.get_received(NS)
    return channel, (ada, bob, cy, root), socks, said


def reports() -> list[tuple]:
    db.session.expire_all()
    return db.session.execute(select(MessageReport.reporter_id, MessageReport.message_id,
                                     MessageReport.reason, MessageReport.status)
                              .order_by(MessageReport.id)).all()


def test_a_participant_reports_a_message_once_while_it_is_open(room):
    channel, (ada, bob, cy, root), socks, said = room
    payload = {"conversation_id": channel.id, "message_id": said["id"], "reason": "  rude  "}
    assert ask(socks["ada"], "report_message", payload) == {"ok": True}
    assert ask(socks["ada"], "report_message", payload) == {"ok": False, "error": "conflict"}
    assert reports() == [(ada.id, said["id"], "rude", "open")]
    assert db.session.scalar(select(func.count()).select_from(GenericActivityLog).where(
        GenericActivityLog.action == "message_reported")) == 1


def test_strangers_and_bad_payloads_report_nothing(room):
    channel, (ada, bob, cy, root), socks, said = room
    good = {"conversation_id": channel.id, "message_id": said["id"], "reason": "rude"}
    assert ask(socks["cy"], "report_message", good) == {"ok": False, "error": "forbidden"}
    # A site admin reports nothing where he takes no part: he deletes.
    assert ask(socks["root"], "report_message", good)["error"] == "forbidden"
    for bad in (None, [], "x", 5, {}, {**good, "reason": ""}, {**good, "reason": " \n "},
                {**good, "reason": "x" * 501}, {**good, "reason": 7},
                {**good, "reason": "\ud800"}, {**good, "message_id": "nope"},
                {**good, "message_id": None}, {**good, "conversation_id": "1"},
                {**good, "conversation_id": -1}, {**good, "conversation_id": True},
                {**good, "conversation_id": 2**70}):
        answer = ask(socks["ada"], "report_message", bad)
        assert answer["ok"] is False and answer["error"] == "invalid", bad
    missing = {**good, "message_id": MISSING_ID}
    assert ask(socks["ada"], "report_message", missing)["error"] == "not_found"
    assert reports() == []


def test_reporting_over_rest(app, room):
    channel, (ada, bob, cy, root), socks, said = room
    url = f"/api/conversations/{channel.id}/messages/{said['id']}/report"
    http = login(app, ada)
    response = http.post(url, json={"reason": "spam"})
    assert (response.status_code, response.get_json()) == (200, {"ok": True})
    assert http.post(url, json={"reason": "spam"}).status_code == 409
    for body in (None, [], {"reason": ""}, {"reason": 5}, {}, {"reason": " "},
                 {"reason": "\x01\n"}, {"reason": "x" * 501}):
        response = http.post(url, json=body)
        assert response.status_code == 400, body
        assert response.get_json()["error"] == "invalid"
    assert http.post(f"/api/conversations/{channel.id}/messages/nope/report",
                     json={"reason": "x"}).status_code == 404
    assert http.post(f"/api/conversations/{channel.id}/messages/{MISSING_ID}/report",
                     json={"reason": "x"}).status_code == 404
    assert login(app, cy).post(url, json={"reason": "x"}).status_code == 403
    assert app.test_client().post(url, json={"reason": "x"}).status_code == 401
    assert reports() == [(ada.id, said["id"], "spam", "open")]


def test_an_admin_deletes_a_reported_message_and_participants_see_it(app, room, tmp_path):
    channel, (ada, bob, cy, root), socks, said = room
    # bob's message with a file, reported by ada; his plain message reported too.
    upload = login(app, bob).post(
        f"/api/conversations/{channel.id}/attachments",
        data={"file": (__import__("io").BytesIO(b"evidence"), "f.txt")},
        content_type="multipart/form-data").get_json()["attachment"]
    with_file = ask(socks["bob"], "send_message", {
        "conversation_id": channel.id, "message": "", "attachments": [upload["id"]]})["message"]
    for m in (said, with_file):
        assert ask(socks["ada"], "report_message", {"conversation_id": channel.id,
                                                   "message_id": m["id"], "reason": "bad"})["ok"]
    assert ask(socks["bob"], "report_message", {"conversation_id": channel.id,
                                               "message_id": with_file["id"],
                                               "reason": "mine, oops"}) == {"ok": True}
    for sio in socks.values():
        sio.get_received(NS)
    admin = login(app, root)
    page = admin.get("/admin/reports").get_data(as_text=True)
    assert "something rude" in page and page.count('class="list-group-item report-row"') == 3
    first, second, third = db.session.scalars(select(MessageReport.id).order_by(
        MessageReport.id)).all()
    assert admin.post(f"/admin/reports/{second}/delete").status_code == 302
    # Both reports of that message closed, the message a tombstone by root, its file gone.
    assert [r[3] for r in reports()] == ["open", "deleted", "deleted"]
    row = db.session.get(Message, with_file["id"])
    assert row.deleted_at is not None and row.deleted_by == root.id
    assert db.session.get(Attachment, upload["id"]).deleted_at is not None
    assert login(app, ada).get(upload["url"]).status_code == 404
    for name in ("ada", "bob"):
        [live] = received(socks[name], "message_updated")
        assert live["id"] == with_file["id"] and live["deleted"] and live["deleted_by"] == root.id
    # Dismissed: the message stays.
    assert admin.post(f"/admin/reports/{first}/dismiss").status_code == 302
    assert [r[3] for r in reports()] == ["dismissed", "deleted", "deleted"]
    assert db.session.get(Message, said["id"]).deleted_at is None
    # Closed reports are not acted on again; the message can be reported again.
    assert b"Not dismissed" in admin.post(f"/admin/reports/{first}/dismiss",
                                          follow_redirects=True).data
    assert b"Not deleted" in admin.post(f"/admin/reports/{first}/delete",
                                        follow_redirects=True).data
    assert ask(socks["ada"], "report_message", {"conversation_id": channel.id,
                                               "message_id": said["id"], "reason": "again"})["ok"]
    assert "Dismissed" in admin.get("/admin/reports?status=dismissed").get_data(as_text=True)
    actions = db.session.scalars(select(GenericActivityLog.action).where(
        GenericActivityLog.user_id == root.id)).all()
    assert {"report_message_deleted", "report_dismissed",
            "message_deleted_by_moderator"} <= set(actions)


def test_a_site_admin_deletes_any_message_over_the_socket_and_rest(app, room, make_conversation):
    channel, (ada, bob, cy, root), socks, said = room
    # Not a member, another's message: deleted; the participants hear it.
    ack = ask(socks["root"], "delete_message", {"conversation_id": channel.id,
                                                "message_id": said["id"]})
    assert ack["ok"] and ack["message"]["deleted_by"] == root.id
    [live] = received(socks["bob"], "message_updated")
    assert live["deleted"] and live["deleted_by"] == root.id
    # A direct conversation, over REST; once deleted it is not found.
    direct = make_conversation(ada, cy)
    theirs = ask(socks["cy"], "send_message", {"conversation_id": direct.id,
                                               "message": "hello"})["message"]
    url = f"/api/conversations/{direct.id}/messages/{theirs['id']}"
    assert login(app, ada).delete(url).status_code == 403  # the other one: not hers
    response = login(app, root).delete(url)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["message"]["deleted_by"] == root.id
    assert login(app, root).delete(url).status_code == 404
    # Others still may not; strangers neither; bad ids are refused.
    other = ask(socks["ada"], "send_message", {"conversation_id": channel.id,
                                               "message": "mine"})["message"]
    assert ask(socks["cy"], "delete_message", {"conversation_id": channel.id,
                                               "message_id": other["id"]})["error"] == "forbidden"
    assert login(app, bob).delete(f"/api/conversations/{channel.id}/messages/{other['id']}"
                                  ).status_code == 403
    assert login(app, root).delete(f"/api/conversations/{channel.id}/messages/nope"
                                   ).status_code == 404
    assert login(app, root).delete(f"/api/conversations/999999/messages/{other['id']}"
                                   ).status_code == 404
    assert db.session.get(Message, other["id"]).deleted_at is None
    # A user who is no longer an admin cannot.
    root.is_admin = False
    db.session.commit()
    assert ask(socks["root"], "delete_message", {"conversation_id": channel.id,
                                                 "message_id": other["id"]})["error"] == "forbidden"


def test_edits_keep_their_earlier_texts_for_site_admins(app, room):
    channel, (ada, bob, cy, root), socks, said = room
    for text in ("something polite", "something nice"):
        assert ask(socks["bob"], "edit_message", {"conversation_id": channel.id,
                                                  "message_id": said["id"], "message": text})["ok"]
    db.session.expire_all()
    assert [e.text for e in db.session.scalars(select(MessageEdit).order_by(
        MessageEdit.replaced_at))] == ["something rude", "something polite"]
    url = f"/api/messages/{said['id']}/history"
    response = login(app, root).get(url)
    assert response.status_code == 200
    history = response.get_json()["history"]
    assert history["current"] == "something nice" and history["sender"] == bob.id
    assert [v["text"] for v in history["versions"]] == ["something rude", "something polite"]
    assert history["edited_at"] and all(v["replaced_at"] for v in history["versions"])
    # Anyone else, the sender and the owner included: 404, as for a message that is not.
    for user in (ada, bob, cy):
        response = login(app, user).get(url)
        assert response.status_code == 404 and response.get_json()["error"] == "not_found"
    assert app.test_client().get(url).status_code == 401
    for bad in ("nope", MISSING_ID, "x" * 300):
        assert login(app, root).get(f"/api/messages/{bad}/history").status_code == 404
