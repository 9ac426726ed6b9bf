"""Your own data: POST /api/me/export (202, one a day: 429 with Retry-After), the zip's content
(your messages with their conversations' titles, your files; nobody else's), GET
/api/me/exports, the download for its owner only until it expires, the removal of expired
exports, and the profile page's button. Tasks run inline here as on the embedded default (the
e2e suite runs the task names on a real worker)."""

from __future__ import annotations

import io
import json
import re
import zipfile
from datetime import timedelta

import pytest
from conftest import app_in_context
from sqlalchemy import select, update

from simplechat.attachments.store import attachment_store
from simplechat.extensions import db
from simplechat.models import DataExport, GenericErrorLog, User, utcnow
from simplechat.profile.export import remove_expired_exports

NS = "/chat"


@pytest.fixture
def app(database_uri, backend):
    yield from app_in_context(database_uri, backend, CHAT_RATE_LIMIT="off",
                              CHAT_CHANGE_RATE_LIMIT="off", CHAT_SOCKET_EVENT_RATE="off")


def login(app, user):
    http = app.test_client()
    assert http.post("/auth/login", data={"username": user.username,
                                          "password": "correct horse battery"}
                     ).status_code == 302
    return http


def ask(sio, event: str, payload) -> dict:
    return sio.emit(event, payload, namespace=NS, callback=True)


@pytest.fixture
def chatter(app, make_user, make_conversation, socket_client):
    """ada, bob and cy in a group "Garden" and ada with cy in a direct conversation; each says
    things, ada sends a file and deletes one message; bob sends a file too."""
    ada, bob, cy = make_user("ada"), make_user("bob"), make_user("cy")
    garden = make_conversation(ada, bob, cy, title="Garden")
    direct = make_conversation(ada, cy)
    socks = {u.username: socket_client(u) for u in (ada, bob, cy)}
    http = {u.username: login(app, u) for u in (ada, bob)}

    def send(who, conversation, text, files=()):
        ack = ask(socks[who], "send_message", {"conversation_id": conversation.id,
                                               "message": text, "attachments": list(files)})
        assert ack["ok"], ack
        return ack["message"]

    def upload(who, conversation, data, name):
        return http[who].post(f"/api/conversations/{conversation.id}/attachments",
                              data={"file": (io.BytesIO(data), name)},
                              content_type="multipart/form-data").get_json()["attachment"]

    ada_file = upload("ada", garden, b"ada's notes", "notes.txt")
    bob_file = upload("bob", garden, b"bob's secret", "secret.txt")
    said = [send("ada", garden, "tulips, «ünïcode»", [ada_file["id"]]),
            send("bob", garden, "bob's roses", [bob_file["id"]]),
            send("ada", direct, "hi cy"),
            send("cy", direct, "cy's answer")]
    gone = send("ada", garden, "regret this")
    assert ask(socks["ada"], "delete_message", {"conversation_id": garden.id,
                                                "message_id": gone["id"]})["ok"]
    return (ada, bob, cy), (garden, direct), http, said, ada_file


def test_an_export_holds_your_messages_and_files_and_nobody_elses(app, chatter):
    (ada, bob, cy), (garden, direct), http, said, ada_file = chatter
    response = http["ada"].post("/api/me/export")
    assert response.status_code == 202, response.get_json()
    started = response.get_json()["export"]
    assert started["status"] in ("pending", "ready")
    listed = http["ada"].get("/api/me/exports").get_json()
    assert listed["ok"] is True
    [entry] = listed["exports"]
    assert set(entry) == {"id", "status", "created_at", "expires_at", "url"}
    assert entry["status"] == "ready" and entry["id"] == started["id"]
    assert entry["url"] == f"/api/me/exports/{entry['id']}/download"
    download = http["ada"].get(entry["url"])
    assert download.status_code == 200 and download.mimetype == "application/zip"
    assert "no-store" in download.headers["Cache-Control"]
    archive = zipfile.ZipFile(io.BytesIO(download.data))
    lines = [json.loads(line) for line in archive.read("messages.jsonl").decode().splitlines()]
    assert [(m["text"], m["conversation_title"]) for m in lines] == [
        ("tulips, «ünïcode»", "Garden"), ("hi cy", None)]
    assert lines[0]["attachments"] == [{"id": ada_file["id"], "name": "notes.txt"}]
    assert lines[0]["id"] == said[0]["id"] and lines[0]["conversation_id"] == garden.id
    profile = json.loads(archive.read("profile.json"))
    assert (profile["username"], profile["email"]) == ("ada", "ada@example.com")
    files = [n for n in archive.namelist() if n.startswith("files/")]
    assert files == [f"files/{ada_file['id']}-notes.txt"]
    assert archive.read(files[0]) == b"ada's notes"
    everything = b"".join(archive.read(n) for n in archive.namelist())
    assert b"roses" not in everything and b"secret" not in everything
    assert b"answer" not in everything and b"regret" not in everything
    # bob sees none of ada's, and may not download hers.
    assert http["bob"].get("/api/me/exports").get_json() == {"ok": True, "exports": []}
    assert http["bob"].get(entry["url"]).status_code == 404
    assert app.test_client().get(entry["url"]).status_code == 401
    assert app.test_client().post("/api/me/export").status_code == 401


def test_one_export_a_day(app, chatter):
    (ada, bob, cy), _, http, _, _ = chatter
    assert http["ada"].post("/api/me/export").status_code == 202
    second = http["ada"].post("/api/me/export")
    assert second.status_code == 429 and second.get_json()["error"] == "rate_limited"
    wait = int(second.headers["Retry-After"])
    assert 1 <= wait <= 86401
    assert len(http["ada"].get("/api/me/exports").get_json()["exports"]) == 1
    # Another user's day is their own.
    assert http["bob"].post("/api/me/export").status_code == 202
    # Yesterday's export does not count against today.
    db.session.execute(update(DataExport).where(DataExport.user_id == ada.id).values(
        day=(utcnow() - timedelta(days=1)).strftime("%Y-%m-%d")))
    db.session.commit()
    assert http["ada"].post("/api/me/export").status_code == 202


def test_expired_exports_go_with_their_files(app, chatter):
    (ada, bob, cy), _, http, _, _ = chatter
    http["ada"].post("/api/me/export")
    [entry] = http["ada"].get("/api/me/exports").get_json()["exports"]
    export = db.session.get(DataExport, entry["id"])
    key = export.file_key
    export.expires_at = utcnow() - timedelta(seconds=1)
    db.session.commit()
    assert http["ada"].get(entry["url"]).status_code == 404  # expired: the link is dead
    assert http["ada"].get("/api/me/exports").get_json()["exports"] == []
    assert remove_expired_exports() == 1
    assert db.session.scalars(select(DataExport)).all() == []
    with pytest.raises(FileNotFoundError):
        attachment_store().open(key)
    assert remove_expired_exports() == 0


def test_the_profile_page_asks_for_an_export_and_links_it(app, chatter):
    (ada, bob, cy), _, http, _, _ = chatter
    page = http["ada"].get("/profile/").get_data(as_text=True)
    assert 'id="export-button"' in page and "export-row" not in page
    response = http["ada"].post("/profile/export", follow_redirects=True)
    page = response.get_data(as_text=True)
    assert "being prepared" in page
    link = re.search(r'href="(/api/me/exports/\d+/download)"', page).group(1)
    assert http["ada"].get(link).status_code == 200
    again = http["ada"].post("/profile/export", follow_redirects=True).get_data(as_text=True)
    assert "one a day" in again
    # The form needs its CSRF token like every other.
    app.config["WTF_CSRF_ENABLED"] = True
    assert http["ada"].post("/profile/export").status_code == 400
    assert app.test_client().post("/profile/export").status_code == 400


@pytest.fixture
def unwritable_app(database_uri, backend):
    """An attachment store under a path that cannot be a folder (/dev/null is a file)."""
    yield from app_in_context(database_uri, backend, ATTACHMENT_DIR="/dev/null/attachments")


def test_a_failed_export_says_so_and_gives_the_day_back(unwritable_app):
    ada = User(username="ada", first_name="Ada", last_name="L", email="ada@example.com")
    ada.set_password("correct horse battery")
    db.session.add(ada)
    db.session.commit()
    http = login(unwritable_app, ada)
    assert http.post("/api/me/export").status_code == 202
    [entry] = http.get("/api/me/exports").get_json()["exports"]
    assert (entry["status"], entry["url"]) == ("failed", None)
    assert db.session.scalar(select(GenericErrorLog.where)) == "profile.export.build_data_export"
    # The day was given back: asking again is allowed (and fails again here).
    assert http.post("/api/me/export").status_code == 202
    assert [e["status"] for e in http.get("/api/me/exports").get_json()["exports"]] == [
        "failed", "failed"]
