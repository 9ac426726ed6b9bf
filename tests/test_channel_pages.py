"""The channel pages: the directory (/chat/browse and the pages of it the script loads), making
a channel (/chat/channels/new), and what a channel's chat page shows of its description, the
viewer's role, its archived state and its members."""

from __future__ import annotations

import re
from html import unescape

import pytest
from sqlalchemy import func, select

from simplechat.conversations.channels import create_channel
from simplechat.conversations.moderation import archive_conversation
from simplechat.extensions import db
from simplechat.infra.membership import members_changed
from simplechat.infra.ratelimit import MemoryRateLimiter, RedisRateLimiter, parse_rate
from simplechat.infra.services import services
from simplechat.models import (
    ADMIN,
    MEMBER,
    OWNER,
    Conversation,
    GenericActivityLog,
    Participant,
    User,
)

PASSWORD = "correct horse battery"


def login(app, user):
    http = app.test_client()
    response = http.post("/auth/login", data={"username": user.username, "password": PASSWORD})
    assert response.status_code == 302
    return http


@pytest.fixture
def people(make_user):
    return [make_user(name, first_name=name.capitalize(), last_name="Test")
            for name in ("ada", "bob", "cyd")]


def channel(owner, *members, title="Engines", description="", visibility="public",
            admins=()):
    conversation, refusal = create_channel(owner, title, description, visibility,
                                           limited=False)
    assert refusal is None
    for member in members:
        db.session.add(Participant(conversation_id=conversation.id, user_id=member.id,
                                   role=ADMIN if member in admins else MEMBER))
    db.session.commit()
    members_changed([conversation.id], [m.id for m in members])
    return conversation


def items(html: str) -> list[dict]:
    """The directory's entries as the page shows them."""
    found = []
    for match in re.finditer(r'<li class="list-group-item channel-item"(.*?)</li>', html, re.S):
        block = match.group(1)
        found.append({
            "id": int(re.search(r'data-channel-id="(\d+)"', block).group(1)),
            "title": unescape(re.search(r'data-title="([^"]*)"', block).group(1)),
            "members": re.search(r'class="channel-members">([^<]*)<', block).group(1),
            "action": "open" if "channel-open" in block else "join",
        })
    return found


def next_before(html: str) -> str | None:
    found = re.search(r'class="btn btn-link w-100 channel-more" data-before="([^"]+)"', html)
    return unescape(found.group(1)) if found else None


def test_channel_pages_need_login(client):
    for path in ("/chat/browse", "/chat/browse/list", "/chat/channels/new"):
        response = client.get(path)
        assert response.status_code == 302
        assert "/auth/login" in response.headers["Location"]


def test_the_directory_page_lists_public_channels_with_counts_and_join_or_open(app, people):
    ada, bob, cyd = people
    big = channel(bob, cyd, title="Big room", description="Everyone is here")
    small = channel(bob, title="Small room")
    mine = channel(ada, title="Ada's room")
    channel(bob, ada, title="Secret", visibility="private")
    archived = channel(bob, title="Old room")
    archive_conversation(bob, {"conversation_id": archived.id, "archived": True})

    page = login(app, ada).get("/chat/browse")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    shown = items(html)
    # Most members first (ties: newest first); not the private group, not the archived room.
    assert [i["title"] for i in shown] == ["Big room", "Ada's room", "Small room"]
    assert [i["members"] for i in shown] == ["2 members", "1 member", "1 member"]
    assert {i["id"]: i["action"] for i in shown} == {big.id: "join", mine.id: "open",
                                                      small.id: "join"}
    assert "Everyone is here" in html
    assert f'href="/chat/{mine.id}"' in html
    assert next_before(html) is None


def test_the_directory_page_searches_and_sorts_without_a_script(app, people):
    ada, bob, _ = people
    channel(bob, title="Gardening", description="Compost and PLANTS")
    channel(bob, title="Apiary", description="bees")
    channel(bob, title="Zebra crossing", description="")
    http = login(app, ada)

    html = http.get("/chat/browse", query_string={"q": "  plants "}).get_data(as_text=True)
    assert [i["title"] for i in items(html)] == ["Gardening"]
    assert 'value="plants"' in html  # the search box keeps the search
    html = http.get("/chat/browse", query_string={"sort": "name"}).get_data(as_text=True)
    assert [i["title"] for i in items(html)] == ["Apiary", "Gardening", "Zebra crossing"]
    assert '<option value="name" selected>' in html
    html = http.get("/chat/browse", query_string={"q": "100%_"}).get_data(as_text=True)
    assert items(html) == []
    assert "No channels match “100%_”." in html
    # An unknown sort is the default one; a long search is cut, not refused.
    response = http.get("/chat/browse", query_string={"sort": "size", "q": "x" * 5000})
    assert response.status_code == 200
    assert '<option value="members" selected>' in response.get_data(as_text=True)


@pytest.mark.parametrize("sort", ["members", "recent", "name"])
def test_the_directory_pages_walk_every_channel_once(app, people, sort):
    ada, bob, cyd = people
    made = [channel(bob, *([cyd] if n % 3 == 0 else []), title=f"Room {n:02d}")
            for n in range(45)]
    http = login(app, ada)
    html = http.get("/chat/browse", query_string={"sort": sort}).get_data(as_text=True)
    seen = [i["id"] for i in items(html)]
    assert len(seen) == 20
    cursor = next_before(html)
    while cursor:
        page = http.get("/chat/browse/list", query_string={"sort": sort, "before": cursor})
        assert page.status_code == 200
        html = page.get_data(as_text=True)
        assert html.lstrip().startswith("<ul")  # the list alone, for the script
        seen += [i["id"] for i in items(html)]
        cursor = next_before(html)
    assert sorted(seen) == sorted(c.id for c in made)
    assert len(seen) == len(set(seen))


@pytest.mark.parametrize("before", ["", "garbage", "m5", "m1.2.3", "x" * 3000, "r1.1\x00"])
def test_a_malformed_cursor_of_the_directory_list_is_refused(app, people, before):
    http = login(app, people[0])
    response = http.get("/chat/browse/list", query_string={"sort": "recent", "before": before})
    assert response.status_code == 400


def test_new_channel_page_makes_a_channel_its_maker_owns(app, people):
    ada, *_ = people
    http = login(app, ada)
    form = http.get("/chat/channels/new").get_data(as_text=True)
    assert re.search(r'<input checked class="form-check-input" id="visibility-0" '
                     r'name="visibility" type="radio" value="public">', form)

    response = http.post("/chat/channels/new", data={
        "title": "  Night   trains ", "description": "  Sleepers across Europe.\nAll aboard ",
        "visibility": "public"})
    assert response.status_code == 302
    conversation_id = int(response.headers["Location"].rsplit("/", 1)[1])
    conversation = db.session.get(Conversation, conversation_id)
    assert (conversation.title, conversation.visibility, conversation.is_group) == (
        "Night trains", "public", True)
    assert conversation.description == "Sleepers across Europe.\nAll aboard"
    roles = dict(db.session.execute(select(Participant.user_id, Participant.role).where(
        Participant.conversation_id == conversation_id)).tuples().all())
    assert roles == {ada.id: OWNER}
    assert db.session.scalar(select(func.count()).select_from(GenericActivityLog).where(
        GenericActivityLog.action == "conversation_created")) == 1

    private = http.post("/chat/channels/new", data={"title": "Quiet", "visibility": "private"})
    quiet = db.session.get(Conversation, int(private.headers["Location"].rsplit("/", 1)[1]))
    assert (quiet.visibility, quiet.description) == ("private", "")
    page = http.get(f"/chat/{quiet.id}").get_data(as_text=True)
    assert "Private group" in page


@pytest.mark.parametrize("data,message", [
    ({"title": "", "visibility": "public"}, "Give the channel a name."),
    ({"title": "   ", "visibility": "public"}, "Give the channel a name."),
    ({"visibility": "public"}, "Give the channel a name."),
    ({"title": "t" * 121, "visibility": "public"}, "120 characters"),
    ({"title": "Bell\x07", "visibility": "public"}, "not allowed"),
    ({"title": "ok", "description": "d" * 501, "visibility": "public"}, "500 characters"),
    ({"title": "ok", "visibility": "secret"}, "Not a valid choice"),
    ({"title": ["one", "two"], "visibility": "public"}, "only once"),
])
def test_a_refused_new_channel_says_why_and_makes_nothing(app, people, data, message):
    response = login(app, people[0]).post("/chat/channels/new", data=data)
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert message in unescape(html)
    assert 'id="form-errors"' in html
    assert db.session.scalar(select(func.count()).select_from(Conversation)) == 0


def test_a_new_channel_needs_the_forms_csrf_token(app, people):
    http = login(app, people[0])
    app.config["WTF_CSRF_ENABLED"] = True
    try:
        response = http.post("/chat/channels/new", data={"title": "Sneaky",
                                                         "visibility": "public"})
    finally:
        app.config["WTF_CSRF_ENABLED"] = False
    assert response.status_code == 400  # refused by the app-wide CSRF check
    assert db.session.scalar(select(func.count()).select_from(Conversation)) == 0


def test_new_channels_count_against_the_conversation_limit(app, people):
    svc = services()
    rate = parse_rate("1/hour")
    svc.conversation_limiter = (
        RedisRateLimiter(svc.redis, rate, app.config["REDIS_KEY_PREFIX"])
        if svc.redis is not None else MemoryRateLimiter(rate))
    http = login(app, people[0])
    assert http.post("/chat/channels/new", data={"title": "one"}).status_code == 302
    refused = http.post("/chat/channels/new", data={"title": "two"})
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) >= 1
    assert "You have started many conversations lately" in refused.get_data(as_text=True)
    assert db.session.scalar(select(func.count()).select_from(Conversation)) == 1


def visible(html: str, element_id: str) -> bool:
    tag = re.search(rf'<[a-z]+ [^>]*id="{element_id}"[^>]*>', html, re.S)
    assert tag, element_id
    return "d-none" not in re.search(r'class="([^"]*)"', tag.group(0)).group(1)


def test_the_channel_page_shows_the_description_and_what_the_role_allows(app, people):
    ada, bob, cyd = people
    c = channel(ada, bob, cyd, description="Steam & diesel", admins=(cyd,))
    owner = login(app, ada).get(f"/chat/{c.id}").get_data(as_text=True)
    member = login(app, bob).get(f"/chat/{c.id}").get_data(as_text=True)
    admin = login(app, cyd).get(f"/chat/{c.id}").get_data(as_text=True)
    for html in (owner, member, admin):
        assert re.search(r'id="chat-description"\s+title="Steam &amp; diesel">Steam &amp; '
                         r'diesel</div>', html)
        assert 'data-visibility="public"' in html and 'data-archived="false"' in html
        assert '<span id="members-button-count">3</span>' in html
        assert 'id="members-panel"' in html and "About this channel" in html
        assert visible(html, "describe-form") is (html is not member)
        assert visible(html, "rename-form") is (html is not member)
        assert visible(html, "archive-section") is (html is not member)
        assert not visible(html, "archived-notice")
        assert re.search(r'<textarea id="message-input"[^>]*placeholder="Write a message…"'
                         r'(?! disabled)', html)
    assert 'data-role="owner"' in owner and 'data-role="member"' in member
    assert 'data-role="admin"' in admin
    assert "As an owner you can" in owner and "As an admin you can" in admin
    assert "Leave this channel?" in member


def test_an_archived_channel_page_is_read_only(app, people):
    ada, bob, _ = people
    c = channel(ada, bob)
    archive_conversation(ada, {"conversation_id": c.id, "archived": True})
    for user, moderator in ((ada, True), (bob, False)):
        html = login(app, user).get(f"/chat/{c.id}").get_data(as_text=True)
        assert 'data-archived="true"' in html
        assert visible(html, "archived-notice")
        assert "This channel is archived: it is read-only." in html
        assert visible(html, "unarchive-inline") is moderator
        assert re.search(r'<textarea id="message-input"[^>]*placeholder="Archived: read-only"'
                         r' disabled', html)
        assert re.search(r'<button type="submit" id="send-button" class="btn btn-primary"'
                         r' disabled>', html)
        assert "Unarchive channel" in html


def test_a_big_channel_page_lists_its_first_members_only(app, people):
    ada, *_ = people
    template = db.session.get(User, ada.id).password_hash
    crowd = [User(username=f"member{n:03d}", first_name="Member", last_name=f"{n:03d}",
                  email=f"member{n:03d}@example.com", password_hash=template)
             for n in range(70)]
    db.session.add_all(crowd)
    db.session.commit()
    c = channel(ada, *crowd)
    html = login(app, ada).get(f"/chat/{c.id}").get_data(as_text=True)
    header = re.search(r'id="chat-members".*?</div>', html, re.S).group(0)
    assert header.count('class="member"') == 50
    assert f'data-user-id="{ada.id}"' in header  # owners first
    assert '<span id="members-button-count">71</span>' in html
    assert 'id="members-count">71<' in html


def test_the_conversation_list_links_to_the_directory_and_marks_channels(app, people):
    ada, bob, _ = people
    public = channel(ada, bob, title="Open room")
    private = channel(ada, bob, title="Closed room", visibility="private")
    html = login(app, ada).get("/chat/").get_data(as_text=True)
    assert 'href="/chat/browse" id="browse-channels"' in html
    assert 'href="/chat/channels/new" id="new-channel"' in html
    for conversation, badge in ((public, "channel"), (private, "group")):
        item = re.search(rf'data-conversation-id="{conversation.id}".*?</a>', html, re.S)
        assert f'<span class="badge text-bg-secondary me-1">{badge}</span>' in item.group(0)


def test_a_link_to_a_public_channel_one_is_not_in_leads_to_the_directory(app, people):
    ada, bob, _ = people
    public = channel(bob, title="Open & friendly")
    private = channel(bob, title="Closed", visibility="private")
    archived = channel(bob, title="Gone")
    archive_conversation(bob, {"conversation_id": archived.id, "archived": True})
    http = login(app, ada)
    response = http.get(f"/chat/{public.id}")
    assert response.status_code == 302
    assert response.headers["Location"] == "/chat/browse?q=Open+%26+friendly"
    page = http.get(response.headers["Location"]).get_data(as_text=True)
    assert "You are not in “Open &amp; friendly”: preview it or join it here." in page
    assert [i["id"] for i in items(page)] == [public.id]
    for hidden in (private, archived):
        assert http.get(f"/chat/{hidden.id}").status_code == 404
    assert http.get("/chat/999999").status_code == 404
