"""Channels over HTTP: creating, the directory (search, sort, paging, joined, one statement
whatever the number of channels), joining and leaving, the owner/admin routes and their
refusals, a public channel's read-only preview, and CSRF on cookie writes."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from conftest import PASSWORD, app_in_context
from sqlalchemy import event, func, select

from simplechat.auth.tokens import create_token
from simplechat.conversations.channels import create_channel
from simplechat.conversations.records import start_conversation
from simplechat.extensions import db
from simplechat.infra.membership import members_changed
from simplechat.infra.ratelimit import MemoryRateLimiter, RedisRateLimiter, parse_rate
from simplechat.infra.services import services
from simplechat.messaging.send import send_message
from simplechat.models import ADMIN, MEMBER, Conversation, Message, Participant, utcnow


@pytest.fixture
def app(database_uri, backend):
    yield from app_in_context(database_uri, backend, CHAT_RATE_LIMIT="off",
                              CHAT_CONVERSATION_RATE_LIMIT="off")


def bearer(user) -> dict:
    return {"Authorization": f"Bearer {create_token(user, 'test').secret}"}


def error_of(response, status: int) -> str:
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert body["ok"] is False
    return body["error"]


@pytest.fixture
def people(make_user):
    users = [make_user(u, first_name=u.capitalize(), last_name="T")
             for u in ("ada", "bob", "cy", "dee")]
    return users, [bearer(u) for u in users]


def channel_of(owner, *members, title="Engines", description="", visibility="public",
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


def state(conversation_id: int) -> tuple:
    db.session.expire_all()
    c = db.session.get(Conversation, conversation_id)
    members = sorted(db.session.execute(select(Participant.user_id, Participant.role).where(
        Participant.conversation_id == conversation_id)).all())
    return c.title, c.description, c.archived, members


# --------------------------------------------------------------------------- creating


def test_creating_a_channel_makes_its_creator_the_owner(client, people):
    (ada, *_), (h, *_) = people
    response = client.post("/api/channels", json={
        "title": "  Rail   yard ", "description": "Trains.", "visibility": "public"}, headers=h)
    assert response.status_code == 201, response.get_data(as_text=True)
    conversation = response.get_json()["conversation"]
    assert {k: conversation[k] for k in ("title", "is_group", "visibility", "description",
                                         "archived", "role", "member_count")} == {
        "title": "Rail yard", "is_group": True, "visibility": "public",
        "description": "Trains.", "archived": False, "role": "owner", "member_count": 1}
    assert [p["id"] for p in conversation["participants"]] == [ada.id]
    private = client.post("/api/channels", json={"title": "Quiet", "visibility": "private"},
                          headers=h).get_json()["conversation"]
    assert private["visibility"] == "private" and private["description"] == ""
    listed = client.get("/api/conversations", headers=h).get_json()["conversations"]
    assert {c["id"]: c["visibility"] for c in listed} == {
        conversation["id"]: "public", private["id"]: "private"}


@pytest.mark.parametrize("body", [
    {}, {"title": ""}, {"title": "   "}, {"title": "\u00a0\t"}, {"title": "t" * 121},
    {"title": 5}, {"title": None}, {"title": ["x"]}, {"title": "x\x00y"},
    {"title": "x", "visibility": "direct"}, {"title": "x", "visibility": "secret"},
    {"title": "x", "visibility": None}, {"title": "x", "description": "d" * 501},
    {"title": "x", "description": None}, {"title": "x", "description": 1},
    {"title": "x", "extra": 1}, [], "x",
])
def test_a_malformed_new_channel_is_invalid_and_creates_nothing(client, people, body):
    _, (h, *_) = people
    assert error_of(client.post("/api/channels", json=body, headers=h), 400) == "invalid"
    assert db.session.scalar(select(func.count()).select_from(Conversation)) == 0


def test_new_channels_count_against_the_conversation_limit(app, client, people):
    _, (h, *_) = people
    svc = services()
    rate = parse_rate("1/hour")
    svc.conversation_limiter = (
        RedisRateLimiter(svc.redis, rate, app.config["REDIS_KEY_PREFIX"])
        if svc.redis is not None else MemoryRateLimiter(rate))
    assert client.post("/api/channels", json={"title": "one"}, headers=h).status_code == 201
    refused = client.post("/api/channels", json={"title": "two"}, headers=h)
    assert error_of(refused, 429) == "rate_limited"
    assert int(refused.headers["Retry-After"]) >= 1
    assert db.session.scalar(select(func.count()).select_from(Conversation)) == 1


# --------------------------------------------------------------------------- the directory


@pytest.fixture
def directory_world(people, make_user):
    """Five public channels (1 to 5 members, activity in another order), a private and an
    archived one that the directory never shows."""
    (ada, bob, cy, dee), headers = people
    others = [bob, cy, dee, make_user("eve")]
    made = {}
    # title, description, members besides ada, hours since the last message
    specs = [("Zeta", "", 3, 2), ("alpha", "Trains and 100% rails", 1, 5),
             ("Mid", "ENGINES", 4, 1), ("beta_x", "", 2, 3), ("Écluse", "canals", 0, 4)]
    for title, description, extra, age in specs:
        c = channel_of(ada, *others[:extra], title=title, description=description)
        c.last_message_at = utcnow() - timedelta(hours=age)
        made[title] = c
    channel_of(ada, bob, title="Hidden", visibility="private")
    archived = channel_of(ada, bob, cy, dee, title="Archived")
    archived.archived = True
    db.session.commit()
    return made, (ada, bob, cy, dee), headers


def walk(client, headers, **params) -> list[list[str]]:
    """Every page of the directory with these parameters, as lists of titles."""
    pages, before = [], None
    while True:
        query = {**params, **({"before": before} if before else {})}
        answer = client.get("/api/channels", query_string=query, headers=headers).get_json()
        assert answer["ok"], answer
        pages.append([c["title"] for c in answer["channels"]])
        before = answer["next_before"]
        if before is None:
            return pages
        assert len(pages) < 20


def test_the_directory_sorts_and_pages_without_loss_or_repeat(client, directory_world):
    made, (ada, bob, cy, dee), (h_ada, h_bob, h_cy, h_dee) = directory_world
    members = walk(client, h_dee, sort="members")
    assert members == [["Mid", "Zeta", "beta_x", "alpha", "Écluse"]]
    for limit in (1, 2, 3):
        pages = walk(client, h_dee, sort="members", limit=limit)
        assert [t for page in pages for t in page] == members[0]
        assert all(len(p) <= limit for p in pages)
    recent = [t for p in walk(client, h_dee, sort="recent", limit=2) for t in p]
    assert recent == ["Mid", "Zeta", "beta_x", "Écluse", "alpha"]
    # By name in the database's collation (where "É" goes differs); paging keeps its order.
    [by_name] = walk(client, h_dee, sort="name")
    assert [t for t in by_name if t != "Écluse"] == ["alpha", "beta_x", "Mid", "Zeta"]
    for limit in (1, 2):
        assert [t for p in walk(client, h_dee, sort="name", limit=limit) for t in p] == by_name
    assert walk(client, h_dee) == members  # members is the default sort


def test_the_directory_searches_titles_and_descriptions_in_any_case(client, directory_world):
    made, _, (h_ada, *_) = directory_world
    titles = lambda q: {c["title"] for c in client.get(  # noqa: E731
        "/api/channels", query_string={"q": q}, headers=h_ada).get_json()["channels"]}
    assert titles("ENGINE") == {"Mid"}
    assert titles("trains") == {"alpha"}
    assert titles("100%") == {"alpha"}  # LIKE's wildcards are plain characters
    assert titles("a_x") == {"beta_x"}
    assert titles("_") == {"beta_x"}
    assert titles("hidden") == set() and titles("archived") == set()
    assert titles("  ") == {"Zeta", "alpha", "Mid", "beta_x", "Écluse"}


def test_the_directory_says_which_channels_one_joined(client, directory_world):
    made, (ada, bob, cy, dee), (h_ada, h_bob, h_cy, h_dee) = directory_world
    entries = {c["title"]: c for c in client.get(
        "/api/channels", headers=h_cy).get_json()["channels"]}
    assert {t: (c["joined"], c["role"]) for t, c in entries.items()} == {
        "Zeta": (True, "member"), "alpha": (False, None), "Mid": (True, "member"),
        "beta_x": (True, "member"), "Écluse": (False, None)}
    assert entries["Mid"]["member_count"] == 5 and entries["alpha"]["description"] == (
        "Trains and 100% rails")
    assert {c["title"]: c["joined"] for c in client.get(
        "/api/channels", headers=h_ada).get_json()["channels"]} == dict.fromkeys(entries, True)


def test_the_directory_takes_the_same_statements_for_many_channels(app, client, people):
    (ada, bob, cy, dee), (h_ada, *_) = people

    def statements() -> int:
        seen = []
        listener = lambda *args: seen.append(args[2])  # noqa: E731
        event.listen(db.engine, "before_cursor_execute", listener)
        try:
            assert client.get("/api/channels", query_string={"limit": 100},
                              headers=h_ada).status_code == 200
        finally:
            event.remove(db.engine, "before_cursor_execute", listener)
        return len(seen)

    channel_of(ada, bob, title="one")
    client.get("/api/channels", headers=h_ada)  # the token's first use writes its time
    few = statements()
    for n in range(30):
        channel_of(ada, bob, cy, title=f"c{n}")
    assert statements() == few


@pytest.mark.parametrize("query", [
    {"sort": "size"}, {"limit": "0"}, {"limit": "101"}, {"limit": "x"}, {"before": "!"},
    {"before": "m1"}, {"before": "q1.1"}, {"before": "n0.1"}, {"q": "x" * 101},
])
def test_a_malformed_directory_query_is_invalid(client, people, query):
    _, (h, *_) = people
    assert error_of(client.get("/api/channels", query_string=query, headers=h),
                    400) == "invalid"


def test_a_cursor_of_another_sort_starts_from_the_top(client, directory_world):
    _, _, (h_ada, *_) = directory_world
    first = client.get("/api/channels", query_string={"sort": "name", "limit": 2},
                       headers=h_ada).get_json()
    top = client.get("/api/channels", query_string={"sort": "members", "limit": 2,
                                                    "before": first["next_before"]},
                     headers=h_ada).get_json()
    assert [c["title"] for c in top["channels"]] == ["Mid", "Zeta"]


# --------------------------------------------------------------------------- join, leave, preview


def test_join_and_leave_over_http(client, people):
    (ada, bob, cy, dee), (h_ada, h_bob, h_cy, h_dee) = people
    public = channel_of(ada, title="Open")
    private = channel_of(ada, title="Closed", visibility="private")
    joined = client.post(f"/api/channels/{public.id}/join", headers=h_bob)
    assert joined.status_code == 200
    assert joined.get_json()["conversation"]["role"] == "member"
    assert joined.get_json()["conversation"]["member_count"] == 2
    assert client.post(f"/api/channels/{public.id}/join", headers=h_bob).status_code == 200
    assert error_of(client.post(f"/api/channels/{private.id}/join", headers=h_bob),
                    403) == "forbidden"
    assert error_of(client.post("/api/channels/999999/join", headers=h_bob), 403) == "forbidden"
    assert client.post(f"/api/channels/{public.id}/leave", headers=h_bob).get_json() == {
        "ok": True}
    assert error_of(client.post(f"/api/channels/{public.id}/leave", headers=h_bob),
                    403) == "forbidden"
    direct, _ = start_conversation(ada, [bob])
    assert error_of(client.post(f"/api/channels/{direct.id}/leave", headers=h_bob),
                    409) == "not_group"
    system = [m.system for m in db.session.scalars(
        select(Message).where(Message.conversation_id == public.id).order_by(Message.id))]
    assert system == [{"event": "joined", "user_id": bob.id},
                      {"event": "left", "user_id": bob.id}]


def test_a_public_channel_can_be_read_before_joining_but_not_written(client, people):
    (ada, bob, cy, dee), (h_ada, h_bob, h_cy, h_dee) = people
    public = channel_of(ada, title="Open")
    private = channel_of(ada, bob, title="Closed", visibility="private")
    for conversation in (public, private):
        assert send_message(ada, conversation.id, f"hello {conversation.title}")["ok"]
    preview = client.get(f"/api/conversations/{public.id}/messages", headers=h_cy)
    assert preview.status_code == 200
    assert [m["message"] for m in preview.get_json()["messages"]] == ["hello Open"]
    assert error_of(client.get(f"/api/conversations/{private.id}/messages", headers=h_cy),
                    404) == "not_found"
    assert error_of(client.post(f"/api/conversations/{public.id}/messages",
                                json={"message": "let me in"}, headers=h_cy),
                    403) == "forbidden"
    # Reading changed nothing: cy is no member, and only ada's message is there.
    assert [uid for uid, _ in state(public.id)[3]] == [ada.id]
    assert error_of(client.get(f"/api/conversations/{public.id}", headers=h_cy),
                    404) == "not_found"


# --------------------------------------------------------------------------- moderation


def test_the_owner_and_admin_routes(client, people):
    (ada, bob, cy, dee), (h_ada, h_bob, h_cy, h_dee) = people
    c = channel_of(ada, bob, cy, admins=(bob,))
    base = f"/api/conversations/{c.id}"
    described = client.post(f"{base}/description", json={"description": "Rails"},
                            headers=h_bob)
    assert described.status_code == 200
    assert described.get_json()["conversation"]["description"] == "Rails"
    assert described.get_json()["conversation"]["role"] == "admin"
    role = client.post(f"{base}/roles", json={"user_id": cy.id, "role": "admin"}, headers=h_ada)
    assert role.status_code == 200 and role.get_json()["conversation"]["role"] == "owner"
    assert error_of(client.post(f"{base}/roles", json={"user_id": cy.id, "role": "member"},
                                headers=h_bob), 403) == "not_allowed"
    assert error_of(client.delete(f"{base}/participants/{cy.id}", headers=h_bob),
                    403) == "not_allowed"  # an admin removes members only
    assert error_of(client.delete(f"{base}/participants/{dee.id}", headers=h_ada),
                    404) == "not_found"
    assert error_of(client.delete(f"{base}/participants/{cy.id}", headers=h_dee),
                    403) == "forbidden"
    removed = client.delete(f"{base}/participants/{cy.id}", headers=h_ada)
    assert removed.status_code == 200
    assert removed.get_json()["conversation"]["member_count"] == 2
    archived = client.post(f"{base}/archive", json={"archived": True}, headers=h_bob)
    assert archived.get_json()["conversation"]["archived"] is True
    assert error_of(client.post(f"{base}/messages", json={"message": "x"}, headers=h_ada),
                    409) == "archived"
    assert error_of(client.post(f"{base}/description", json={"description": "x"},
                                headers=h_ada), 409) == "archived"
    assert client.post(f"{base}/archive", json={"archived": False},
                       headers=h_ada).status_code == 200
    assert client.post(f"{base}/messages", json={"message": "x"}, headers=h_ada).status_code \
        == 201
    assert state(c.id) == ("Engines", "Rails", False, [(ada.id, "owner"), (bob.id, "admin")])


@pytest.mark.parametrize("route, body", [
    ("roles", {}), ("roles", {"user_id": "2", "role": "admin"}),
    ("roles", {"user_id": 2, "role": "king"}), ("roles", {"user_id": 2}),
    ("roles", {"user_id": 0, "role": "admin"}), ("roles", {"user_id": 2, "role": None}),
    ("description", {}), ("description", {"description": None}),
    ("description", {"description": 1}), ("description", {"description": "d" * 501}),
    ("description", {"description": "x", "more": 1}),
    ("archive", {}), ("archive", {"archived": "true"}), ("archive", {"archived": 1}),
    ("archive", {"archived": None}), ("archive", []),
])
def test_malformed_bodies_of_the_owner_routes_are_invalid(client, people, route, body):
    (ada, bob, cy, dee), (h_ada, *_) = people
    c = channel_of(ada, bob)
    before = state(c.id)
    response = client.post(f"/api/conversations/{c.id}/{route}", json=body, headers=h_ada)
    assert error_of(response, 400) == "invalid"
    assert state(c.id) == before


def test_cookie_writes_to_channels_need_the_csrf_header(app, client, people):
    (ada, bob, cy, dee), _ = people
    c = channel_of(ada, bob)
    app.config["WTF_CSRF_ENABLED"] = True
    page = client.get("/auth/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
    client.post("/auth/login", data={"username": "ada", "password": PASSWORD,
                                     "csrf_token": token})
    writes = [("post", "/api/channels", {"title": "x"}),
              ("post", f"/api/channels/{c.id}/leave", None),
              ("delete", f"/api/conversations/{c.id}/participants/{bob.id}", None),
              ("post", f"/api/conversations/{c.id}/roles", {"user_id": bob.id, "role": "admin"}),
              ("post", f"/api/conversations/{c.id}/description", {"description": "x"}),
              ("post", f"/api/conversations/{c.id}/archive", {"archived": True})]
    before = state(c.id)
    for method, path, body in writes:
        response = getattr(client, method)(path, json=body)
        assert error_of(response, 400) == "csrf", path
    assert state(c.id) == before
    assert db.session.scalar(select(func.count()).select_from(Conversation)) == 1
    page = client.get("/profile/").get_data(as_text=True)
    header = {"X-CSRFToken": re.search(r'<meta name="csrf-token" content="([^"]+)"',
                                       page).group(1)}
    assert client.post(f"/api/conversations/{c.id}/description", json={"description": "ok"},
                       headers=header).status_code == 200
