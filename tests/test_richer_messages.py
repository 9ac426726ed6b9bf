"""Richer messages over the Socket.IO and Flask test clients, on the configured database and
Redis (or the embedded default): formatting, replies, mentions, reactions, attachments, system
lines, and every new field's bad input answered with its code and nothing stored."""

from __future__ import annotations

import io
import json
import os
import re

import pytest
import redis as redis_lib
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from sqlalchemy import String, cast, func, select

from simplechat.attachments.store import attachment_store
from simplechat.extensions import db
from simplechat.infra.ids import new_message_id
from simplechat.infra.services import services
from simplechat.infra.write_buffer import write_buffer
from simplechat.messaging.formatting import render_html
from simplechat.messaging.payload import message_payload
from simplechat.models import Attachment, Message, Participant, Reaction

NS = "/chat"


def emit(sio, name, payload):
    return sio.emit(name, payload, namespace=NS, callback=True)


def events(sio, name):
    return [e["args"] if name == "message" else e["args"][0]
            for e in sio.get_received(NS) if e["name"] == name]


def count(model) -> int:
    db.session.rollback()  # see what other connections committed
    return db.session.scalar(select(func.count()).select_from(model))


@pytest.fixture
def trio(app, make_user, make_conversation, socket_client):
    app.config["CHAT_RATE_LIMIT"] = "off"
    services().limiter.rate = None
    ada = make_user("ada", first_name="Ada", last_name="Lovelace")
    bob = make_user("bob", first_name="Bob", last_name="Babbage")
    cy = make_user("cy", first_name="Cy", last_name="Stranger")
    direct = make_conversation(ada, bob)
    a, b, c = socket_client(ada), socket_client(bob), socket_client(cy)
    for sio in (a, b):
        assert emit(sio, "join", {"conversation_id": direct.id})["ok"]
    for sio in (a, b, c):
        sio.get_received(NS)
    return ada, bob, cy, direct, a, b, c


def send(sio, conversation_id, text, **extra):
    return emit(sio, "send_message", {"conversation_id": conversation_id, "message": text,
                                      **extra})


# --------------------------------------------------------------------------- formatting


@pytest.mark.parametrize("text, html", [
    ("**bold** and _em_", "<p><strong>bold</strong> and <em>em</em></p>"),
    ("see https://example.com/a?b=1",
     '<p>see <a href="https://example.com/a?b=1" rel="noopener noreferrer nofollow">'
     "https://example.com/a?b=1</a></p>"),
    ("```\nprint(1)\n```", "<pre><code>print(1)\n</code></pre>"),
    ("<script>alert(1)</script>", "<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>"),
    ("[x](javascript:alert(1))", "<p>[x](javascript:alert(1))</p>"),
    ("[x](data:text/html,hi)", "<p>[x](data:text/html,hi)</p>"),
    ("![pic](http://elsewhere.example/p.png)",
     '<p>!<a href="http://elsewhere.example/p.png" rel="noopener noreferrer nofollow">pic</a>'
     "</p>"),
    ('<a href="http://x" onclick="x()">y</a>', None),
    ("> quoted\n\n- one\n- two", "<blockquote>\n<p>quoted</p>\n</blockquote>\n<ul>\n<li>one"
                                 "</li>\n<li>two</li>\n</ul>"),
    ("line one\nline two", "<p>line one<br>\nline two</p>"),
])
def test_rendering_is_commonmark_through_an_allow_list(text, html):
    rendered = render_html(text)
    if html is not None:
        assert rendered == html
    tags = re.findall(r"<[a-z][^>]*>", rendered)
    assert not any(t.startswith(("<script", "<img")) or " on" in t for t in tags), tags


# Words, and every character that means something to CommonMark, linkify or a mention.
_LINE = st.lists(st.sampled_from(list("ab zé漢🎉1.9-+=()'\":;,?%$/") + list(
    "`*_[]<>&#!~|\\\t\n@") + ["mailto:", "http://x.org", "www.x.org", "    ", "\u00a0",
                                  "\u200d"]), min_size=1, max_size=30).map("".join)


@settings(max_examples=1500, deadline=None)
@given(_LINE)
def test_the_plain_line_shortcut_gives_what_the_parser_gives(text):
    from simplechat.messaging.formatting import _parser, _plain_paragraph, sanitize

    shortcut = _plain_paragraph(text)
    if shortcut is not None:
        assert shortcut == sanitize(_parser().render(text, {"mentions": {}})).rstrip("\n")


def test_the_plain_line_shortcut_takes_plain_words_only():
    from simplechat.messaging.formatting import _plain_paragraph

    assert _plain_paragraph('fine, thanks: "see you" at 5 (or 6)?') is not None
    for text in ("1. first", "- item", "# title", "a *b*", "ping @ada", "see http://x.org",
                 "a\nb", "    code", "a &amp; b", "trailing "):
        assert _plain_paragraph(text) is None, text


def test_a_sent_message_carries_its_html_to_the_room_and_sql(app, trio):
    ada, bob, cy, direct, a, b, c = trio
    ack = send(a, direct.id, "hi **Bob** <b>raw</b>")
    assert ack["ok"], ack
    assert ack["message"]["html"] == "<p>hi <strong>Bob</strong> &lt;b&gt;raw&lt;/b&gt;</p>"
    assert ack["message"]["message"] == "hi **Bob** <b>raw</b>"
    assert events(b, "message") == [ack["message"]]
    row = db.session.get(Message, ack["message"]["id"])
    assert (row.html, row.kind) == (ack["message"]["html"], "text")


def test_an_edit_renders_again_and_resolves_mentions_again(app, trio):
    ada, bob, cy, direct, a, b, c = trio
    sent = send(a, direct.id, "plain")["message"]
    b.get_received(NS)
    edited = emit(a, "edit_message", {"conversation_id": direct.id, "message_id": sent["id"],
                                      "message": "now *for* @bob"})
    assert edited["ok"], edited
    assert edited["message"]["html"] == (
        f'<p>now <em>for</em> <span class="mention" data-user-id="{bob.id}">@bob</span></p>')
    assert edited["message"]["mentions"] == [bob.id]
    assert [m["message"]["id"] for m in events(b, "mention")] == [sent["id"]]
    db.session.rollback()
    row = db.session.get(Message, sent["id"])
    assert (row.html, row.mentions) == (edited["message"]["html"], [bob.id])


# --------------------------------------------------------------------------- replies


def test_a_reply_carries_the_quoted_summary(app, trio):
    ada, bob, cy, direct, a, b, c = trio
    original = send(a, direct.id, "x" * 300)["message"]
    reply = send(b, direct.id, "answer", reply_to=original["id"])
    assert reply["ok"], reply
    assert reply["message"]["reply_to"] == {"id": original["id"], "sender": ada.id,
                                            "sender_name": "Ada Lovelace",
                                            "preview": "x" * 120}
    assert db.session.get(Message, reply["message"]["id"]).reply_to_id == original["id"]


def test_a_reply_to_a_message_still_on_its_way_to_sql(app, trio):
    """The original is in the write buffer only: not in the recent list, not in SQL yet."""
    ada, bob, cy, direct, a, b, c = trio
    waiting = message_payload(new_message_id(), direct.id, None, "queued", sender_id=ada.id,
                              sender_name="Ada Lovelace", html="<p>queued</p>")
    buffer = write_buffer()
    app.extensions["celery"].conf.task_always_eager = False
    buffer.append(waiting)
    try:
        assert db.session.get(Message, waiting["id"]) is None
        reply = send(b, direct.id, "got it", reply_to=waiting["id"])
        assert reply["ok"], reply
        assert reply["message"]["reply_to"]["preview"] == "queued"
    finally:
        app.extensions["celery"].conf.task_always_eager = True
        buffer.take_back(waiting)


# A version-4 UUID, fixed: parameters are the same in every pytest-xdist worker.
@pytest.mark.parametrize("reply_to", [5, True, {}, [], "x", "12e42c05-a3df-482c-bf4f-f1e3ddd433a7",
                                      "0" * 36, "UNKNOWN", "OTHER", "\ud800" * 36])
def test_a_bad_reply_to_is_invalid_and_stores_nothing(app, trio, make_conversation, reply_to):
    ada, bob, cy, direct, a, b, c = trio
    other = make_conversation(ada, cy)
    foreign = send(a, other.id, "elsewhere")["message"]
    before = count(Message)
    value = ({"UNKNOWN": new_message_id(), "OTHER": foreign["id"]}.get(reply_to, reply_to)
             if isinstance(reply_to, str) else reply_to)
    ack = send(a, direct.id, "reply", reply_to=value)
    assert ack == {"ok": False, "error": "invalid"}
    assert count(Message) == before


def test_a_stranger_cannot_probe_messages_by_replying(app, trio):
    ada, bob, cy, direct, a, b, c = trio
    original = send(a, direct.id, "secret")["message"]
    assert send(c, direct.id, "x", reply_to=original["id"]) == {"ok": False,
                                                                "error": "forbidden"}
    assert send(c, direct.id, "x", reply_to=new_message_id()) == {"ok": False,
                                                                  "error": "forbidden"}


# --------------------------------------------------------------------------- mentions


def test_mentions_resolve_participants_and_notify_them(app, trio):
    ada, bob, cy, direct, a, b, c = trio
    ack = send(a, direct.id, "hey @Bob and @cy, `@bob` @nobody")
    assert ack["ok"], ack
    message = ack["message"]
    assert message["mentions"] == [bob.id]  # cy takes no part; code is not a mention
    assert message["html"].count('class="mention"') == 1
    assert events(b, "mention") == [{"conversation_id": direct.id, "message": message}]
    assert events(c, "mention") == [] and events(a, "mention") == []
    assert db.session.get(Message, message["id"]).mentions == [bob.id]


def test_at_all_mentions_everyone_in_a_group_only(app, trio, make_user, make_conversation,
                                                  socket_client):
    ada, bob, cy, direct, a, b, c = trio
    group = make_conversation(ada, bob, cy, title="g")
    in_group = send(a, group.id, "@all look")["message"]
    assert sorted(in_group["mentions"]) == sorted([bob.id, cy.id])
    assert '<span class="mention">@all</span>' in in_group["html"]
    assert [m["message"]["id"] for m in events(c, "mention")] == [in_group["id"]]
    assert send(a, direct.id, "@all look")["message"]["mentions"] == []


def test_unread_mentions_are_counted_for_the_list_and_the_api(app, trio, make_conversation):
    """The list's "@" badge survives a reload: the server counts the unread messages that
    mention the reader (an @all included), not deleted ones, none past the read marker."""
    from simplechat.messaging.read_state import unread_mentions

    ada, bob, cy, direct, a, b, c = trio
    group = make_conversation(ada, bob, cy, title="g")
    plain = send(a, direct.id, "nothing for anyone")["message"]
    send(a, direct.id, "hey @bob")
    gone = send(a, direct.id, "@bob, this goes")["message"]
    send(a, group.id, "@all look")
    last = send(a, direct.id, "@bob once more")["message"]
    # Bob's id as text in a list that does not hold it (7 in [17]) is no mention of him.
    db.session.execute(Message.__table__.update().where(Message.id == plain["id"])
                       .values(mentions=[bob.id * 10 + bob.id % 10]))
    db.session.commit()
    assert emit(a, "delete_message", {"conversation_id": direct.id,
                                      "message_id": gone["id"]})["ok"]
    db.session.expire_all()
    assert unread_mentions(bob.id) == {direct.id: 2, group.id: 1}
    assert unread_mentions(cy.id) == {group.id: 1}
    assert unread_mentions(ada.id) == {}  # her own messages are not unread
    page = login(app, bob).get("/chat/").get_data(as_text=True)
    assert f'data-conversation-id="{direct.id}"' in page
    assert re.search(rf'data-conversation-id="{direct.id}"[^>]*data-mentions="2"', page)
    listed = {c["id"]: c for c in login(app, bob).get("/api/conversations").get_json()[
        "conversations"]}
    assert (listed[direct.id]["unread"], listed[direct.id]["unread_mentions"]) == (3, 2)
    assert emit(b, "read", {"conversation_id": direct.id, "message_id": last["id"]})["ok"]
    db.session.expire_all()
    assert unread_mentions(bob.id) == {group.id: 1}


def test_a_mention_is_matched_exactly_wherever_it_stands_in_the_list(app, trio):
    """The SQL test for "mentions me" reads the JSON list as text: the id counts only as a
    whole element, first, last, alone or between others, with or without spaces."""
    from simplechat.messaging.read_state import mentioning

    ada, bob, cy, direct, a, b, c = trio
    message = send(a, direct.id, "lists")["message"]
    n = 7
    holding = ["[7]", "[7, 17]", "[17, 7]", "[1, 7, 71]", "[7,17]", "[17,7]", "[1,7,71]"]
    not_holding = ["[17]", "[71]", "[17, 77]", "[1, 70]", "[]", "null", "[177, 717]"]
    for text in holding + not_holding:
        db.session.execute(Message.__table__.update().where(Message.id == message["id"])
                           .values(mentions=json.loads(text)))
        db.session.commit()
        raw = db.session.scalar(select(cast(Message.mentions, String))
                                .where(Message.id == message["id"]))
        found = db.session.scalar(select(func.count(Message.id))
                                  .where(Message.id == message["id"], mentioning(n)))
        assert found == (text in holding), (text, raw)


# --------------------------------------------------------------------------- reactions


def react(sio, conversation_id, message_id, emoji, on=True):
    return emit(sio, "react", {"conversation_id": conversation_id, "message_id": message_id,
                               "emoji": emoji, "on": on})


def test_reactions_are_counted_once_per_user_and_reach_the_room(app, trio):
    ada, bob, cy, direct, a, b, c = trio
    message = send(a, direct.id, "react to me")["message"]
    b.get_received(NS)
    first = react(a, direct.id, message["id"], "👍")
    assert first["ok"] and first["message"]["reactions"] == {"👍": [ada.id]}
    assert react(a, direct.id, message["id"], "👍")["message"]["reactions"] == {"👍": [ada.id]}
    both = react(b, direct.id, message["id"], "👍")
    party = react(b, direct.id, message["id"], "🎉")
    assert party["message"]["reactions"] == {"👍": [ada.id, bob.id], "🎉": [bob.id]}
    assert both["ok"]
    assert [u["reactions"] for u in events(b, "message_updated")] == [
        {"👍": [ada.id]}, {"👍": [ada.id, bob.id]}, {"👍": [ada.id, bob.id], "🎉": [bob.id]}]
    off = react(a, direct.id, message["id"], "👍", on=False)
    assert off["message"]["reactions"] == {"👍": [bob.id], "🎉": [bob.id]}
    db.session.rollback()
    assert sorted(db.session.execute(select(Reaction.user_id, Reaction.emoji)).all()) == sorted(
        [(bob.id, "👍"), (bob.id, "🎉")])
    joined = emit(a, "join", {"conversation_id": direct.id})
    assert joined["messages"][-1]["reactions"] == off["message"]["reactions"]


def test_a_reaction_to_a_message_not_yet_in_sql_stores_it_first(app, trio):
    ada, bob, cy, direct, a, b, c = trio
    waiting = message_payload(new_message_id(), direct.id, None, "cached only",
                              sender_id=ada.id, sender_name="Ada Lovelace")
    services().cache.push(direct.id, waiting, None)
    assert db.session.get(Message, waiting["id"]) is None
    ack = react(b, direct.id, waiting["id"], "❤️")
    assert ack["ok"] and ack["message"]["reactions"] == {"❤️": [bob.id]}
    db.session.rollback()
    assert db.session.get(Message, waiting["id"]).text == "cached only"
    assert db.session.execute(select(Reaction.emoji, Reaction.user_id)).all() == [
        ("❤️", bob.id)]


@pytest.mark.parametrize("emoji", ["x" * 40, "👍" * 17, "a", "👍👍", "", None, 7, ["👍"],
                                   "\ud83d", ":)", "<b>"])
def test_a_bad_emoji_is_invalid_and_stores_nothing(app, trio, emoji):
    ada, bob, cy, direct, a, b, c = trio
    message = send(a, direct.id, "m")["message"]
    assert react(a, direct.id, message["id"], emoji) == {"ok": False, "error": "invalid"}
    assert count(Reaction) == 0


@pytest.mark.parametrize("payload, code", [
    ({"on": "yes"}, "invalid"),
    ({"message_id": "nope"}, "invalid"),
    ({"message_id": "NEW"}, "not_found"),
    ({"conversation_id": "x"}, "invalid"),
])
def test_bad_react_payloads(app, trio, payload, code):
    ada, bob, cy, direct, a, b, c = trio
    message = send(a, direct.id, "m")["message"]
    body = {"conversation_id": direct.id, "message_id": message["id"], "emoji": "👍",
            **payload}
    if body["message_id"] == "NEW":
        body["message_id"] = new_message_id()
    assert emit(a, "react", body) == {"ok": False, "error": code}
    assert count(Reaction) == 0


def test_a_stranger_cannot_react_nor_react_to_a_deleted_message(app, trio):
    ada, bob, cy, direct, a, b, c = trio
    message = send(a, direct.id, "m")["message"]
    assert react(c, direct.id, message["id"], "👍") == {"ok": False, "error": "forbidden"}
    assert emit(a, "delete_message", {"conversation_id": direct.id,
                                      "message_id": message["id"]})["ok"]
    assert react(b, direct.id, message["id"], "👍") == {"ok": False, "error": "not_found"}
    assert count(Reaction) == 0


# --------------------------------------------------------------------------- attachments


def png_bytes(size=(40, 30), mode="RGB") -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, "white").save(out, format="PNG")
    return out.getvalue()


def login(app, user):
    http = app.test_client()
    assert http.post("/auth/login", data={"username": user.username,
                                          "password": "correct horse battery"}).status_code == 302
    return http


def upload(http, conversation_id, data: bytes, name="f.bin", content_type=None, **kw):
    return http.post(f"/api/conversations/{conversation_id}/attachments",
                     data={"file": (io.BytesIO(data), name, content_type)},
                     content_type="multipart/form-data", **kw)


def test_an_image_upload_gets_a_thumbnail_and_is_served_inline(app, trio):
    ada, bob, cy, direct, a, b, c = trio
    http = login(app, ada)
    response = upload(http, direct.id, png_bytes((800, 600)), "../../photo.png", "image/png")
    assert response.status_code == 201, response.get_json()
    attachment = response.get_json()["attachment"]
    assert (attachment["name"], attachment["content_type"], attachment["width"],
            attachment["height"]) == ("photo.png", "image/png", 800, 600)
    assert attachment["url"] == f"/api/attachments/{attachment['id']}"
    # Sent, so bob may fetch it.
    assert send(a, direct.id, "", attachments=[attachment["id"]])["ok"]
    got = login(app, bob).get(attachment["url"])
    assert got.status_code == 200 and got.mimetype == "image/png"
    assert got.headers["X-Content-Type-Options"] == "nosniff"
    assert got.headers["Content-Disposition"].startswith("inline")
    assert got.data == png_bytes((800, 600))
    thumb = login(app, bob).get(attachment["thumbnail_url"])
    assert thumb.status_code == 200 and thumb.mimetype == "image/webp"
    assert max(Image.open(io.BytesIO(thumb.data)).size) == 320


@pytest.mark.parametrize("name, content_type, data", [
    ("plan.pdf", "application/pdf", b"%PDF-1.4\n%fake but fine\n"),
    ("drawing.svg", "image/svg+xml", b'<svg xmlns="http://www.w3.org/2000/svg"><script>'
                                     b"alert(1)</script></svg>"),
    ("page.html", "text/html", b"<script>alert(1)</script>"),
    ("../../etc/passwd", "text/plain", b"root:x:0:0"),
])
def test_anything_but_a_raster_image_is_a_download(app, trio, name, content_type, data):
    ada, bob, cy, direct, a, b, c = trio
    http = login(app, ada)
    response = upload(http, direct.id, data, name, content_type)
    assert response.status_code == 201, response.get_json()
    attachment = response.get_json()["attachment"]
    assert "/" not in attachment["name"] and not attachment["name"].startswith(".")
    assert attachment["thumbnail_url"] is None and attachment["width"] is None
    got = http.get(attachment["url"])
    assert got.status_code == 200 and got.data == data
    assert got.headers["Content-Disposition"].startswith("attachment")
    assert got.headers["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in got.headers["Content-Security-Policy"]
    if name == "../../etc/passwd":
        assert attachment["name"] == "passwd"
        assert os.listdir(attachment_store().root)  # kept under its own key, in the store


def truncated_png() -> bytes:
    return png_bytes((200, 200), "RGB")[:-40]


def bomb_png() -> bytes:
    out = io.BytesIO()
    Image.new("1", (10_000, 5_000)).save(out, format="PNG")  # 50 million pixels, 6 KB
    return out.getvalue()


@pytest.mark.parametrize("name, content_type, data, status, code", [
    ("empty.png", "image/png", b"", 400, "empty"),
    ("empty.txt", "text/plain", b"", 400, "empty"),
    ("cut.png", "image/png", "TRUNCATED", 400, "invalid_image"),
    ("bomb.png", "image/png", "BOMB", 400, "invalid_image"),
    ("fake.jpg", "application/octet-stream", b"not a picture at all", 400, "invalid_image"),
])
def test_bad_uploads_are_refused_and_store_nothing(app, trio, name, content_type, data, status,
                                                    code):
    ada, bob, cy, direct, a, b, c = trio
    data = {"TRUNCATED": truncated_png, "BOMB": bomb_png}.get(data, lambda: data)()
    response = upload(login(app, ada), direct.id, data, name, content_type)
    assert (response.status_code, response.get_json()) == (status, {"ok": False, "error": code})
    assert count(Attachment) == 0
    assert not any(files for _, _, files in os.walk(attachment_store().root))


def test_an_upload_over_the_limit_is_413_before_the_body_is_read(app, trio):
    ada, bob, cy, direct, a, b, c = trio
    app.config["CHAT_MAX_ATTACHMENT_BYTES"] = 1000
    http = login(app, ada)
    # A little over the limit: read, counted, refused.
    response = upload(http, direct.id, b"x" * 1001, "big.txt", "text/plain")
    assert (response.status_code, response.get_json()) == (413, {"ok": False,
                                                                 "error": "too_large"})
    # Far over it, by its Content-Length: refused without reading (the stream is never read).
    class Unreadable(io.BytesIO):
        def read(self, *args):
            raise AssertionError("the body was read")

        readinto = readline = read1 = read

    response = http.post(f"/api/conversations/{direct.id}/attachments",
                         input_stream=Unreadable(),
                         content_type="multipart/form-data; boundary=x",
                         environ_overrides={"CONTENT_LENGTH": str(200 * 1024 * 1024)})
    assert (response.status_code, response.get_json()) == (413, {"ok": False,
                                                                 "error": "too_large"})
    assert count(Attachment) == 0


def test_uploads_and_files_are_for_participants_only(app, trio, client):
    ada, bob, cy, direct, a, b, c = trio
    assert upload(client, direct.id, b"x", "a.txt").status_code == 401
    stranger = login(app, cy)
    assert upload(stranger, direct.id, b"x", "a.txt").get_json() == {"ok": False,
                                                                      "error": "not_found"}
    attachment = upload(login(app, ada), direct.id, b"hello", "a.txt").get_json()["attachment"]
    # Not sent yet: only its uploader sees it.
    assert login(app, bob).get(attachment["url"]).status_code == 404
    assert send(a, direct.id, "file", attachments=[attachment["id"]])["ok"]
    assert login(app, bob).get(attachment["url"]).status_code == 200
    for who in (stranger, client):
        assert who.get(attachment["url"]).status_code in (401, 404)
    assert stranger.get(attachment["url"]).get_json() == {"ok": False, "error": "not_found"}
    assert stranger.get("/api/attachments/..%2F..%2Fetc%2Fpasswd").status_code == 404


def test_an_upload_with_a_session_cookie_needs_the_csrf_header(app, trio):
    ada, bob, cy, direct, a, b, c = trio
    http = login(app, ada)
    app.config["WTF_CSRF_ENABLED"] = True
    refused = upload(http, direct.id, b"x", "a.txt")
    assert (refused.status_code, refused.get_json()) == (400, {"ok": False, "error": "csrf"})
    page = http.get("/chat/").get_data(as_text=True)
    token = re.search(r'<meta name="csrf-token" content="([^"]+)"', page).group(1)
    assert upload(http, direct.id, b"x", "a.txt",
                  headers={"X-CSRFToken": token}).status_code == 201


def test_files_of_a_deleted_message_are_no_longer_served(app, trio):
    ada, bob, cy, direct, a, b, c = trio
    http = login(app, ada)
    attachment = upload(http, direct.id, png_bytes(), "p.png", "image/png").get_json()[
        "attachment"]
    sent = send(a, direct.id, "pic", attachments=[attachment["id"]])["message"]
    assert sent["attachments"] == [attachment]
    assert emit(a, "delete_message", {"conversation_id": direct.id, "message_id": sent["id"]})[
        "ok"]
    assert http.get(attachment["url"]).status_code == 404
    assert http.get(attachment["thumbnail_url"]).status_code == 404
    assert not any(files for _, _, files in os.walk(attachment_store().root))


@pytest.mark.parametrize("attachments, code", [
    ("NOT A LIST", "invalid"),
    ([1], "invalid"),
    ([None], "invalid"),
    (["../../etc/passwd"], "invalid"),
    (["\ud800" * 32], "invalid"),
    (["MINE", "MINE"], "invalid"),
    (["0" * 32], "invalid"),  # unknown
    (["BOBS"], "invalid"),  # another sender's upload
    (["OTHER"], "invalid"),  # uploaded to another conversation
    (["SENT"], "already_sent"),
    (["0" * 32] * 11, "too_many"),
])
def test_bad_attachment_lists_are_refused_and_store_nothing(app, trio, make_conversation,
                                                            attachments, code):
    ada, bob, cy, direct, a, b, c = trio
    http = login(app, ada)
    other = make_conversation(ada, cy)
    ids = {
        "MINE": upload(http, direct.id, b"mine", "m.txt").get_json()["attachment"]["id"],
        "BOBS": upload(login(app, bob), direct.id, b"b", "b.txt").get_json()["attachment"]["id"],
        "OTHER": upload(http, other.id, b"o", "o.txt").get_json()["attachment"]["id"],
        "SENT": upload(http, direct.id, b"s", "s.txt").get_json()["attachment"]["id"],
    }
    assert send(a, direct.id, "first", attachments=[ids["SENT"]])["ok"]
    before = count(Message)
    value = ([ids.get(i, i) for i in attachments] if isinstance(attachments, list)
             else attachments)
    ack = send(a, direct.id, "with files", attachments=value)
    assert ack["ok"] is False and ack["error"] == code, ack
    assert count(Message) == before
    db.session.rollback()
    assert db.session.get(Attachment, ids["MINE"]).message_id is None
    assert db.session.get(Attachment, ids["BOBS"]).message_id is None


def test_a_refused_send_gives_its_attachments_back(app, trio):
    ada, bob, cy, direct, a, b, c = trio
    attachment = upload(login(app, ada), direct.id, b"x", "x.txt").get_json()["attachment"]
    services().limiter.rate = None
    first = send(a, direct.id, "one", client_id="same")
    assert first["ok"]
    # The same client id with other content: conflict, and the upload is free again.
    assert send(a, direct.id, "two", client_id="same", attachments=[attachment["id"]]) == {
        "ok": False, "error": "conflict"}
    db.session.rollback()
    assert db.session.get(Attachment, attachment["id"]).message_id is None
    again = send(a, direct.id, "three", client_id="other", attachments=[attachment["id"]])
    assert again["ok"] and again["message"]["attachments"][0]["id"] == attachment["id"]
    # A retry of that send is answered with the original, not "already_sent".
    retry = send(a, direct.id, "three", client_id="other", attachments=[attachment["id"]])
    assert retry["ok"] and retry.get("duplicate") and retry["message"] == again["message"]


# --------------------------------------------------------------------------- system lines


def test_group_changes_are_system_lines_live_and_in_history(app, trio, make_conversation):
    ada, bob, cy, direct, a, b, c = trio
    group = make_conversation(ada, bob, title="g")
    group.is_group, group.visibility = True, "private"
    # Only owners and admins rename: ada made it, so she owns it.
    db.session.execute(db.update(Participant).where(Participant.conversation_id == group.id,
                                                    Participant.user_id == ada.id)
                       .values(role="owner"))
    db.session.commit()
    assert emit(b, "join", {"conversation_id": group.id})["ok"]
    b.get_received(NS)
    assert emit(a, "rename_conversation", {"conversation_id": group.id, "title": "Engines"})[
        "ok"]
    assert emit(a, "add_participants", {"conversation_id": group.id, "user_ids": [cy.id]})["ok"]
    assert emit(c, "leave_conversation", {"conversation_id": group.id})["ok"]
    live = [m for m in events(b, "message") if m["conversation_id"] == group.id]
    assert [(m["kind"], m["message"], m["system"]) for m in live] == [
        ("system", "Ada Lovelace renamed the group to \u201cEngines\u201d",
         {"event": "renamed", "title": "Engines"}),
        ("system", "Ada Lovelace added Cy Stranger", {"event": "added", "user_ids": [cy.id]}),
        ("system", "Cy Stranger left the group", {"event": "left", "user_id": cy.id}),
    ]
    history = login(app, bob).get(f"/api/conversations/{group.id}/messages").get_json()
    assert [(m["kind"], m["message"]) for m in history["messages"]] == [
        (m["kind"], m["message"]) for m in live]
    # A system line is nobody's to edit.
    assert emit(a, "edit_message", {"conversation_id": group.id, "message_id": live[0]["id"],
                                    "message": "x"}) == {"ok": False, "error": "forbidden"}
    # Nor are system lines unread messages: bob has read nothing and has none unread.
    from simplechat.messaging.read_state import unread_counts

    assert unread_counts(bob.id).get(group.id, 0) == 0
    send(a, group.id, "a real one")
    assert unread_counts(bob.id)[group.id] == 1


# --------------------------------------------------------------------------- Redis flush


def test_history_after_a_redis_flush_keeps_html_replies_reactions_and_attachments(app, trio):
    ada, bob, cy, direct, a, b, c = trio
    attachment = upload(login(app, ada), direct.id, png_bytes(), "p.png", "image/png").get_json()[
        "attachment"]
    original = send(a, direct.id, "**first** @bob", attachments=[attachment["id"]])["message"]
    reply = send(b, direct.id, "> quoted\n\nyes", reply_to=original["id"])["message"]
    react(b, direct.id, original["id"], "🎉")
    before = emit(a, "join", {"conversation_id": direct.id})["messages"]
    assert before[0]["reactions"] == {"🎉": [bob.id]} and before[0]["attachments"]
    svc = services()
    if svc.redis is not None:
        prefix = app.config["REDIS_KEY_PREFIX"]
        client = redis_lib.Redis.from_url(app.config["REDIS_URL"])
        keys = list(client.scan_iter(match=prefix + "conv:*"))
        assert keys
        client.delete(*keys)
    else:
        svc.cache.__init__(svc.cache.size, 600)  # the in-process list, emptied
    after = emit(a, "join", {"conversation_id": direct.id})["messages"]
    strip = [{k: v for k, v in m.items() if k != "client_id"} for m in before]
    assert [{k: v for k, v in m.items() if k != "client_id"} for m in after] == strip
    assert after[1]["reply_to"]["id"] == original["id"] and reply["html"] == after[1]["html"]
