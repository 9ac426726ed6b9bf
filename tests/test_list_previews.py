"""The conversation list's previews and names: plain text from Markdown, "📎 name" for files
alone, the message before a deleted last one, thread replies left to their threads (unless also
sent to the conversation); untitled groups named by their members and never as a direct
conversation is. The page (after a reload) and GET /api/conversations; Redis and embedded."""

from __future__ import annotations

import io

import pytest
from conftest import PASSWORD, app_in_context

from simplechat.conversations.inbox import inbox_page
from simplechat.extensions import db
from simplechat.messaging.send import send_message

NS = "/chat"


@pytest.fixture
def app(database_uri, backend):
    yield from app_in_context(database_uri, backend, CHAT_RATE_LIMIT="off",
                              CHAT_CHANGE_RATE_LIMIT="off")


@pytest.fixture
def people(make_user):
    return [make_user(u, first_name=u.capitalize(), last_name="Smith")
            for u in ("ada", "bob", "cat", "dan", "eve", "fay")]


def login(app, user):
    http = app.test_client()
    assert http.post("/auth/login", data={"username": user.username,
                                          "password": PASSWORD}).status_code == 302
    return http


def api_entry(http, conversation_id: int) -> dict:
    return http.get(f"/api/conversations/{conversation_id}").get_json()["conversation"]


def page_preview(http, conversation_id: int) -> str:
    """The text of the list entry's preview on the chat page (a reload)."""
    page = http.get("/chat/").get_data(as_text=True)
    entry = page.split(f'data-conversation-id="{conversation_id}"', 1)[1]
    preview = entry.split('conversation-preview">', 1)[1].split("</div>", 1)[0]
    return " ".join(preview.split())


def test_previews_are_plain_text(app, people, make_conversation):
    ada, bob, *_ = people
    direct = make_conversation(ada, bob)
    send_message(bob, direct.id, "**Deploy** at `5pm`, see [the plan](https://example.com)\n"
                                 "```\nmake release\n```")
    http = login(app, ada)
    preview = api_entry(http, direct.id)["last_message"]["preview"]
    assert preview == "Deploy at 5pm, see the plan make release"
    assert page_preview(http, direct.id) == preview
    assert "**" not in http.get("/chat/").get_data(as_text=True).split(
        "conversation-preview", 1)[1].split("</div>", 1)[0]
    # The raw text is still the message's.
    assert api_entry(http, direct.id)["last_message"]["message"].startswith("**Deploy**")


def test_a_file_alone_previews_as_its_name(app, people, make_conversation):
    ada, bob, *_ = people
    direct = make_conversation(ada, bob)
    uploader = login(app, bob)
    ids = []
    for name in ("plan.pdf", "notes.txt"):
        response = uploader.post(f"/api/conversations/{direct.id}/attachments",
                                 data={"file": (io.BytesIO(b"%PDF-1.4 x"), name)},
                                 content_type="multipart/form-data")
        assert response.status_code == 201, response.get_json()
        ids.append(response.get_json()["attachment"]["id"])
    assert send_message(bob, direct.id, "", attachments=ids[:1])["ok"]
    http = login(app, ada)
    assert api_entry(http, direct.id)["last_message"]["preview"] == "📎 plan.pdf"
    assert page_preview(http, direct.id) == "📎 plan.pdf"
    assert send_message(bob, direct.id, " ", attachments=ids[1:])["ok"]
    assert page_preview(http, direct.id) == "📎 notes.txt"


def test_a_deleted_last_message_shows_the_one_before(app, people, make_conversation,
                                                     socket_client):
    ada, bob, *_ = people
    direct = make_conversation(ada, bob)
    send_message(bob, direct.id, "still here")
    last = send_message(bob, direct.id, "oops")["message"]
    b = socket_client(bob)
    assert b.emit("delete_message", {"conversation_id": direct.id, "message_id": last["id"]},
                  namespace=NS, callback=True)["ok"]
    http = login(app, ada)
    assert api_entry(http, direct.id)["last_message"]["preview"] == "still here"
    assert page_preview(http, direct.id) == "still here"


def test_thread_replies_are_not_the_preview_unless_sent_to_everyone(app, people,
                                                                    make_conversation):
    ada, bob, cat, *_ = people
    group = make_conversation(ada, bob, cat, title="Crew")
    root = send_message(bob, group.id, "the root")["message"]
    send_message(cat, group.id, "in the thread", thread_id=root["id"])
    http = login(app, ada)
    assert api_entry(http, group.id)["last_message"]["id"] == root["id"]
    assert page_preview(http, group.id) == "Bob Smith: the root"
    send_message(cat, group.id, "for everyone", thread_id=root["id"], also_to_conversation=True)
    assert page_preview(http, group.id) == "Cat Smith: for everyone"


def test_untitled_groups_are_named_by_their_members_and_never_as_a_direct_one(
        app, people, make_conversation, socket_client):
    ada, bob, cat, dan, eve, fay = people
    direct = make_conversation(ada, bob)
    trio = make_conversation(ada, bob, cat)
    big = make_conversation(ada, bob, cat, dan, eve, fay)
    titles = {s.id: s.title for s in inbox_page(ada).conversations}
    assert titles[direct.id] == "Bob Smith"
    assert titles[trio.id] == "Bob, Cat"
    assert titles[big.id] == "Bob, Cat, Dan and 2 others"
    # Cat leaves: the group of two is still not named as the direct conversation with Bob.
    c = socket_client(cat)
    assert c.emit("leave_conversation", {"conversation_id": trio.id}, namespace=NS,
                  callback=True)["ok"]
    db.session.expire_all()
    titles = {s.id: s.title for s in inbox_page(ada).conversations}
    assert titles[trio.id] == "Bob and you" != titles[direct.id]
    http = login(app, ada)
    assert "Bob and you" in http.get(f"/chat/{trio.id}").get_data(as_text=True)
    assert api_entry(http, trio.id)["title"] == "Bob and you"
