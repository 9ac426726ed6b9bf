"""The Threads view's page (/chat/threads): signed-in only; it names, escaped, the conversations
where the user follows a thread (none they left, none they stopped following), and carries the
"Unread only" state; the chat page holds the thread panel and the list its badge."""

from __future__ import annotations

import json
import re
from html import unescape

from sqlalchemy import update

from simplechat.extensions import db
from simplechat.models import ThreadFollow, User


def page_titles(html: str) -> dict:
    found = re.search(r"data-titles='([^']*)'", html)
    assert found, html[:2000]
    return json.loads(unescape(found.group(1)))


def follow(user: User, conversation_id: int, root: str, on: bool = True) -> None:
    db.session.add(ThreadFollow(user_id=user.id, conversation_id=conversation_id,
                                thread_id=root, following=on))
    db.session.commit()


def test_the_threads_view_names_the_conversations_of_followed_threads(
        app, client, auth, make_user, make_conversation):
    ann = make_user("ann", first_name="Ann", last_name="Lee")
    bob = make_user("bob", first_name="<b>Bob</b>", last_name="O'Hara")
    cat = make_user("cat")
    direct = make_conversation(ann, bob)
    group = make_conversation(ann, bob, cat, title="Plans </script><script>alert(1)</script>")
    quiet = make_conversation(ann, cat, title="Stopped")
    left = make_conversation(cat, bob, title="Not mine")
    follow(ann, direct.id, "0193e0a0-0000-7000-8000-000000000001")
    follow(ann, group.id, "0193e0a0-0000-7000-8000-000000000002")
    follow(ann, group.id, "0193e0a0-0000-7000-8000-000000000003")
    follow(ann, quiet.id, "0193e0a0-0000-7000-8000-000000000004", on=False)
    follow(ann, left.id, "0193e0a0-0000-7000-8000-000000000005")  # a conversation she is not in

    assert client.get("/chat/threads").status_code == 302  # to the login page
    auth.login("ann")
    answer = client.get("/chat/threads")
    assert answer.status_code == 200
    html = answer.get_data(as_text=True)
    assert page_titles(html) == {str(direct.id): "<b>Bob</b> O'Hara",
                                 str(group.id): "Plans </script><script>alert(1)</script>"}
    assert "<script>alert(1)" not in html and "<b>Bob" not in html  # escaped in the attribute
    assert 'id="threads-unread" checked' not in html
    unread_only = client.get("/chat/threads?unread=1").get_data(as_text=True)
    assert 'id="threads-unread" checked' in unread_only

    db.session.execute(update(ThreadFollow).values(following=False))
    db.session.commit()
    assert page_titles(client.get("/chat/threads").get_data(as_text=True)) == {}


def test_the_chat_page_holds_the_thread_panel_and_the_list_its_badges(
        app, client, auth, make_user, make_conversation):
    dee = make_user("dee")
    eve = make_user("eve")
    conversation = make_conversation(dee, eve)
    auth.login("dee")
    html = client.get(f"/chat/{conversation.id}").get_data(as_text=True)
    assert 'id="thread-panel"' in html and 'aria-labelledby="thread-panel-title"' in html
    assert f'data-thread-url="/api/conversations/{conversation.id}/threads/ROOT/messages"' in html
    assert 'id="threads-link"' in html and 'href="/chat/threads"' in html
    assert 'class="badge rounded-pill thread-unread d-none"' in html
    listed = client.get("/chat/").get_data(as_text=True)
    assert 'data-threads-url="/api/threads"' in listed and 'id="threads-link"' in listed
