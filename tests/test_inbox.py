"""The conversation list (the chat page, its list fragment and GET /api/conversations): a fixed
number of SQL statements however many conversations a user is in, pages that neither skip nor
repeat a conversation, and a conversation's members paged with their roles."""

from __future__ import annotations

import contextlib
import re
from datetime import datetime, timedelta

import pytest
from conftest import PASSWORD, app_in_context
from sqlalchemy import event, func, select

from simplechat.auth.tokens import create_token
from simplechat.conversations.inbox import MAX_PAGE, inbox_page
from simplechat.extensions import db
from simplechat.infra.ids import new_message_id
from simplechat.messaging.storage import store_messages
from simplechat.models import MEMBER, OWNER, PRIVATE, Conversation, Participant, User

MAX_STATEMENTS = 10


@pytest.fixture
def app(database_uri, redis_url):
    yield from app_in_context(database_uri, redis_url, CHAT_RATE_LIMIT="off")


@contextlib.contextmanager
def statements(app):
    """Count the SQL statements run inside the block."""
    seen: list[str] = []
    with app.app_context():
        engine = db.engine

    def count(conn, cursor, statement, *rest):
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", count)


def people(n: int, prefix: str) -> list[User]:
    """n users in one commit (no password: they never log in)."""
    users = [User(username=f"{prefix}{i}", first_name=prefix.title(), last_name=f"No{i}",
                  email=f"{prefix}{i}@example.com", password_hash="!") for i in range(n)]
    db.session.add_all(users)
    db.session.commit()
    return users


def seed(user: User, n: int, others: list[User], same_time: datetime | None = None
         ) -> list[Conversation]:
    """n conversations of ``user`` in one commit: every third a group of three, the rest
    direct; every other one with a message from its other member (every fourth of those
    mentioning ``user``), the rest without any. ``same_time``: every conversation created at
    that instant (the list orders them by id then)."""
    conversations = []
    for i in range(n):
        peer = others[i % len(others)]
        group = i % 3 == 0
        members = [user, peer, others[(i + 1) % len(others)]] if group else [user, peer]
        conversation = Conversation(
            title=f"Group {i}" if group else None, is_group=group,
            visibility=PRIVATE if group else "direct", created_by_id=user.id,
            participants=[Participant(user=u, role=OWNER if group and u is user else MEMBER)
                          for u in members])
        if same_time is not None:
            conversation.created_at = same_time
        conversations.append(conversation)
    db.session.add_all(conversations)
    db.session.commit()
    store_messages([
        {"id": new_message_id(), "conversation_id": c.id, "sender": others[i % len(others)].id,
         "message": f"hello {i}", "mentions": [user.id] if i % 8 == 0 else None}
        for i, c in enumerate(conversations) if i % 2 == 0])
    return conversations


def login(app, user: User):
    http = app.test_client()
    response = http.post("/auth/login", data={"username": user.username, "password": PASSWORD})
    assert response.status_code == 302
    return http


def bearer(user: User) -> dict:
    return {"Authorization": f"Bearer {create_token(user, 'inbox test').secret}"}


def expected_order(user: User) -> list[int]:
    """The user's conversations as the list must give them: newest activity first, then the
    higher id."""
    activity = func.coalesce(Conversation.last_message_at, Conversation.created_at)
    return list(db.session.scalars(
        select(Conversation.id).join(Participant).where(Participant.user_id == user.id)
        .order_by(activity.desc(), Conversation.id.desc())))


def in_member_order(owner: User, others: list[User]) -> list[int]:
    """The ids of a conversation's members as every list gives them: its owner, then by name
    (all of these names are of one case, so every database's collation agrees)."""
    return [owner.id] + [u.id for u in sorted(
        others, key=lambda u: (u.first_name, u.last_name, u.id))]


def list_ids(html: str) -> list[int]:
    """The conversations of the list in an HTML page or fragment, in order."""
    return [int(i) for i in re.findall(
        r'conversation-item[^"]*"\s+data-conversation-id="(\d+)"', html)]


# --------------------------------------------------------------------------- statements


def list_costs(app, user: User, headers: dict) -> dict[str, int]:
    """The statements of each way of getting the list: the page, its fragment, the API."""
    http = login(app, user)
    api = app.test_client()
    costs = {}
    for name, call in (("page", lambda: http.get("/chat/")),
                       ("fragment", lambda: http.get("/chat/list")),
                       ("api", lambda: api.get("/api/conversations", headers=headers))):
        call()  # a first call fills what is cached per login (session, token)
        with statements(app) as seen:
            response = call()
        assert response.status_code == 200
        costs[name] = len(seen)
    with statements(app) as seen:
        inbox_page(user)
    costs["inbox_page"] = len(seen)
    return costs


def test_the_list_takes_as_many_statements_for_200_conversations_as_for_10(
        app, make_user):
    few, many = make_user("few"), make_user("many")
    others = people(20, "peer")
    seed(few, 10, others)
    seed(many, 200, others)
    few_costs = list_costs(app, few, bearer(few))
    many_costs = list_costs(app, many, bearer(many))
    assert many_costs == few_costs, (few_costs, many_costs)
    assert max(many_costs.values()) <= MAX_STATEMENTS, many_costs
    # The page shows the first page of the list, not all 200.
    first = inbox_page(many)
    assert len(first.conversations) == 50 and first.next_before is not None


def test_the_list_is_right_in_one_statement_count(app, make_user):
    """What the bounded statements give is what the list showed before: previews, senders,
    unread counts and mentions, peers, member counts, roles."""
    ada = make_user("ada")
    others = people(4, "peer")
    conversations = seed(ada, 12, others)
    page = inbox_page(ada)
    by_id = {s.id: s for s in page.conversations}
    assert set(by_id) == {c.id for c in conversations} and page.next_before is None
    for i, c in enumerate(conversations):
        s = by_id[c.id]
        peer = others[i % 4]
        if i % 2 == 0:
            assert s.last_text == f"hello {i}" and s.last_sender_id == peer.id
            assert s.last_sender_name == peer.full_name and s.unread == 1
            assert s.mentions == (1 if i % 8 == 0 else 0)
        else:
            assert s.last_id is None and s.unread == 0 and s.mentions == 0
        if i % 3 == 0:
            assert s.is_group and s.title == f"Group {i}" and s.member_count == 3
            assert s.role == OWNER and s.visibility == PRIVATE and s.peer_id is None
        else:
            assert s.member_count == 2 and s.role == MEMBER and s.visibility == "direct"
            assert s.peer_id == peer.id and s.title == peer.full_name
        listed = [m.user for m in s.members]
        if i % 3 == 0:  # ada owns the groups: she comes first, then by name
            assert [u.id for u in listed] == in_member_order(ada, listed[1:])
        else:  # everyone a member: by name
            assert listed == sorted(listed, key=lambda u: (u.first_name, u.last_name, u.id))


def test_a_big_conversation_lists_50_participants_and_counts_them_all(
        app, client, make_user, make_conversation):
    ada = make_user("ada")
    crowd = people(70, "crowd")
    big = make_conversation(ada, *crowd[:59], title="Big")  # 60 members
    other = make_conversation(ada, *crowd[10:], title="Other big")  # 61 members
    small = make_conversation(ada, crowd[60], crowd[61], title="Small")
    listed = {c["id"]: c for c in client.get(
        "/api/conversations", headers=bearer(ada)).get_json()["conversations"]}
    assert listed[big.id]["member_count"] == 60
    ids = [p["id"] for p in listed[big.id]["participants"]]
    assert ids == in_member_order(ada, crowd[:59])[:50]
    assert listed[big.id]["participants"][0]["role"] == OWNER
    assert {p["role"] for p in listed[big.id]["participants"][1:]} == {MEMBER}
    assert listed[other.id]["member_count"] == 61
    ids = [p["id"] for p in listed[other.id]["participants"]]
    assert ids == in_member_order(ada, crowd[10:])[:50]
    assert listed[small.id]["member_count"] == 3 and len(listed[small.id]["participants"]) == 3
    assert listed[big.id]["role"] == OWNER and listed[big.id]["visibility"] == PRIVATE
    assert listed[big.id]["description"] == "" and listed[big.id]["archived"] is False


# --------------------------------------------------------------------------- paging


def walk_api(client, headers: dict, limit: int) -> list[int]:
    seen, before, pages = [], None, 0
    while True:
        query = {"limit": limit, **({"before": before} if before else {})}
        answer = client.get("/api/conversations", query_string=query, headers=headers)
        assert answer.status_code == 200, answer.get_data(as_text=True)
        body = answer.get_json()
        assert len(body["conversations"]) <= limit
        seen += [c["id"] for c in body["conversations"]]
        pages += 1
        before = body["next_before"]
        if before is None:
            return seen
        assert len(body["conversations"]) == limit and pages < 1000


def test_api_pages_give_every_conversation_once_in_order(app, client, make_user):
    ada = make_user("ada")
    others = people(7, "peer")
    # Ties everywhere: 60 conversations created at the same instant, half without messages.
    seed(ada, 60, others, same_time=datetime(2024, 5, 1, 12, 0, 0))
    seed(ada, 23, others)
    expected = expected_order(ada)
    assert len(expected) == 83
    headers = bearer(ada)
    for limit in (1, 7, 50, 83, MAX_PAGE):
        assert walk_api(client, headers, limit) == expected, limit
    # Without a limit: pages of 50.
    first = client.get("/api/conversations", headers=headers).get_json()
    assert [c["id"] for c in first["conversations"]] == expected[:50]


def test_the_list_fragment_pages_like_the_api(app, make_user):
    ada = make_user("ada")
    seed(ada, 120, people(5, "peer"), same_time=datetime(2024, 5, 1, 12, 0, 0))
    http = login(app, ada)
    seen, url = [], "/chat/list"
    while url:
        html = http.get(url).get_data(as_text=True)
        seen += list_ids(html)
        more = re.search(r'class="[^"]*conversation-more"\s+data-before="([^"]+)"', html)
        url = f"/chat/list?before={more.group(1)}" if more else None
    assert seen == expected_order(ada)
    page = http.get("/chat/").get_data(as_text=True)
    assert list_ids(page) == seen[:50] and "Show more conversations" in page


def test_a_conversation_past_the_first_page_is_still_found(app, client, make_user):
    ada = make_user("ada")
    oldest = seed(ada, 2, people(3, "old"), same_time=datetime(2020, 1, 1))[1]  # no message
    seed(ada, 60, people(3, "peer"))
    headers = bearer(ada)
    one = client.get(f"/api/conversations/{oldest.id}", headers=headers).get_json()
    assert one["ok"] and one["conversation"]["id"] == oldest.id
    client.post(f"/api/conversations/{oldest.id}/mute", json={"muted": True}, headers=headers)
    page = login(app, ada).get(f"/chat/{oldest.id}").get_data(as_text=True)
    assert oldest.id not in list_ids(page)
    assert re.search(r'id="mute-button"\s+aria-pressed="true"', page)


@pytest.mark.parametrize("query", [
    {"limit": "0"}, {"limit": str(MAX_PAGE + 1)}, {"limit": "-1"}, {"limit": "abc"},
    {"limit": "1.5"}, {"limit": "٣"}, {"limit": ""}, {"before": ""}, {"before": "abc"},
    {"before": "12-"}, {"before": "-12"}, {"before": "1-2-3"}, {"before": "12345678901234567-1"},
    {"before": "1-2\n"}, {"before": "１-2"}, {"before": "1 -2"},
])
def test_a_bad_limit_or_cursor_is_invalid(app, client, make_user, query):
    ada = make_user("ada")
    seed(ada, 3, people(2, "peer"))
    answer = client.get("/api/conversations", query_string=query, headers=bearer(ada))
    assert answer.status_code == 400 and answer.get_json() == {"ok": False, "error": "invalid"}
    if "before" in query:
        http = login(app, ada)
        assert http.get("/chat/list", query_string=query).status_code == 400


def test_a_cursor_past_every_conversation_gives_an_empty_last_page(app, client, make_user):
    ada = make_user("ada")
    seed(ada, 3, people(2, "peer"))
    headers = bearer(ada)
    empty = client.get("/api/conversations", query_string={"before": "0-0"}, headers=headers)
    assert empty.get_json() == {"ok": True, "conversations": [], "next_before": None}
    # The largest cursor there is starts from the top.
    top = client.get("/api/conversations", headers=headers,
                     query_string={"before": "9999999999999999-9999999999999999999"})
    assert [c["id"] for c in top.get_json()["conversations"]] == expected_order(ada)


# --------------------------------------------------------------------------- members


def test_members_page_through_a_conversation_with_their_roles(
        app, client, make_user, make_conversation):
    ada, eve = make_user("ada"), make_user("eve")
    crowd = people(60, "crowd")
    big = make_conversation(ada, *crowd[:59], title="Big")
    headers = bearer(ada)
    path = f"/api/conversations/{big.id}/members"
    seen, before = [], None
    while True:
        body = client.get(path, headers=headers, query_string={
            "limit": 25, **({"before": before} if before else {})}).get_json()
        assert body["ok"] is True and len(body["members"]) <= 25
        seen += body["members"]
        before = body["next_before"]
        if before is None:
            break
    assert [m["id"] for m in seen] == in_member_order(ada, crowd[:59])
    roles = {m["id"]: m["role"] for m in seen}
    assert roles.pop(ada.id) == OWNER and set(roles.values()) == {MEMBER}
    first = next(m for m in seen if m["id"] == crowd[0].id)
    assert first == {"id": crowd[0].id, "username": "crowd0", "name": crowd[0].full_name,
                     "is_bot": False, "role": MEMBER}
    # The default page is 50, like the participants a conversation lists.
    default = client.get(path, headers=headers).get_json()
    listed = client.get(f"/api/conversations/{big.id}", headers=headers).get_json()
    assert [m["id"] for m in default["members"]] == [
        p["id"] for p in listed["conversation"]["participants"]]
    # Strangers learn nothing; bad paging is invalid.
    answer = client.get(path, headers=bearer(eve))
    assert answer.status_code == 404 and answer.get_json()["error"] == "not_found"
    assert client.get("/api/conversations/999999/members", headers=headers).status_code == 404
    for query in ({"limit": "0"}, {"limit": "201"}, {"before": "x"}, {"before": "-1"},
                  {"before": "1" * 20}, {"before": "3...1"}, {"before": "0.0.0.1"},
                  {"before": "0.zz..1"}, {"before": "0...1\n"}, {"before": "0..."}):
        answer = client.get(path, headers=headers, query_string=query)
        assert answer.status_code == 400 and answer.get_json()["error"] == "invalid", query
    # A forged cursor of the right form is a bound like any other, NUL or bad UTF-8 in it.
    for forged in ("0.00.00.1", "1.ff.fe.5", "2..." + "9" * 19, "0...0"):
        answer = client.get(path, headers=headers, query_string={"before": forged})
        assert answer.status_code == 200, forged
    assert client.get(path, headers=headers, query_string={"before": "0...0"}).get_json()[
        "members"][0]["id"] == ada.id


def test_a_public_channels_members_are_seen_by_anyone_signed_in(
        app, client, make_user, make_conversation):
    ada, bob, eve = make_user("ada"), make_user("bob"), make_user("eve")
    channel = make_conversation(ada, bob, eve, title="Open")
    private = make_conversation(ada, bob, make_user("cyd"), title="Closed")
    channel.visibility = "public"
    db.session.commit()
    outsider = bearer(make_user("zed"))
    seen = client.get(f"/api/conversations/{channel.id}/members", headers=outsider).get_json()
    assert [m["id"] for m in seen["members"]] == in_member_order(ada, [bob, eve])
    assert client.get(f"/api/conversations/{private.id}/members",
                      headers=outsider).status_code == 404


def test_the_members_of_a_page_cost_one_statement_whatever_the_size(
        app, client, make_user, make_conversation):
    ada = make_user("ada")
    crowd = people(120, "crowd")
    small = make_conversation(ada, crowd[0], crowd[1], title="Small")
    big = make_conversation(ada, *crowd, title="Big")
    api = app.test_client()
    headers = bearer(ada)
    costs = []
    for conversation in (small, big):
        path = f"/api/conversations/{conversation.id}/members"
        api.get(path, headers=headers)
        with statements(app) as seen:
            assert api.get(path, headers=headers).status_code == 200
        costs.append(len(seen))
    assert costs[0] == costs[1] <= MAX_STATEMENTS


def test_conversations_a_microsecond_apart_page_apart(app, client, make_user):
    """Cursors carry microseconds: conversations a microsecond apart page apart."""
    ada = make_user("ada")
    conversations = seed(ada, 4, people(2, "peer"))
    start = datetime(2024, 5, 1, 12, 0, 0, 123456)
    for i, c in enumerate(conversations):
        c.last_message_at = start + timedelta(microseconds=i)
    db.session.commit()
    assert walk_api(client, bearer(ada), 1) == expected_order(ada)
