"""Chat pages and the user search: the conversation list, starting conversations, access."""

import pytest
from sqlalchemy import func, select

from simplechat.extensions import db
from simplechat.messaging.send import send_message
from simplechat.models import Conversation, GenericActivityLog, Participant


def conversation_count() -> int:
    return db.session.scalar(select(func.count(Conversation.id)))


def login(app, user):
    http = app.test_client()
    response = http.post("/auth/login",
                         data={"username": user.username, "password": "correct horse battery"})
    assert response.status_code == 302
    return http


@pytest.fixture
def people(make_user):
    return (make_user("ada", first_name="Ada", last_name="Lovelace"),
            make_user("bob", first_name="Bob", last_name="Babbage"),
            make_user("cyd", first_name="Cyd", last_name="Charisse", email="zed@example.com"))


def test_chat_pages_need_login(client):
    assert client.get("/").headers["Location"].endswith("/chat/")
    for path in ("/chat/", "/chat/new", "/chat/1"):
        response = client.get(path)
        assert response.status_code == 302
        assert "/auth/login" in response.headers["Location"]


def test_one_person_starts_a_direct_conversation_and_reuses_it(app, people):
    ada, bob, _ = people
    http = login(app, ada)
    first = http.post("/chat/new", data={"participants": [str(bob.id)]})
    assert first.status_code == 302
    conversation_id = int(first.headers["Location"].rsplit("/", 1)[1])
    again = login(app, bob).post("/chat/new", data={"participants": [str(ada.id)]})
    assert again.headers["Location"].endswith(f"/chat/{conversation_id}")
    conversation = db.session.get(Conversation, conversation_id)
    assert conversation.is_group is False and conversation.title is None
    assert conversation_count() == 1


def test_several_people_start_a_group_with_a_title(app, people):
    ada, bob, cyd = people
    response = login(app, ada).post(
        "/chat/new", data={"participants": [str(bob.id), str(cyd.id)], "title": "Engines"})
    conversation = db.session.get(Conversation, int(response.headers["Location"].rsplit("/", 1)[1]))
    assert conversation.is_group and conversation.title == "Engines"
    members = set(db.session.scalars(select(Participant.user_id).where(
        Participant.conversation_id == conversation.id)))
    assert members == {ada.id, bob.id, cyd.id}
    actions = db.session.scalars(select(GenericActivityLog.action).where(
        GenericActivityLog.user_id == ada.id)).all()
    assert "conversation_created" in actions


@pytest.mark.parametrize("data,message", [
    ({}, "Pick at least one person."),
    ({"participants": ["abc"]}, "Pick people from the list."),
    ({"participants": ["999999"]}, "Pick people from the list."),
    ({"participants": ["-1"]}, "Pick people from the list."),
    ({"participants": ["1" * 40]}, "Pick people from the list."),
    ({"participants": ["SELF"]}, "Pick"),
    ({"participants": ["BOB"], "title": "t" * 121}, "120 characters"),
    ({"participants": [str(i) for i in range(1000, 1060)]}, "at most 50 people"),
])
def test_new_conversation_bad_input_shows_an_error_and_creates_nothing(app, people, data,
                                                                        message):
    ada, bob, _ = people
    app.config["CHAT_MAX_MEMBERS"] = 50  # the 60 ids below are too many
    ids = {"SELF": str(ada.id), "BOB": str(bob.id)}
    data = {k: ([ids.get(v, v) for v in vals] if isinstance(vals, list) else vals)
            for k, vals in data.items()}
    response = login(app, ada).post("/chat/new", data=data)
    assert response.status_code == 200
    assert message in response.get_data(as_text=True)
    assert conversation_count() == 0


def test_new_conversation_without_csrf_token_is_refused(app, people):
    ada, bob, _ = people
    http = login(app, ada)
    app.config["WTF_CSRF_ENABLED"] = True
    response = http.post("/chat/new", data={"participants": [str(bob.id)]})
    assert response.status_code in (200, 400)
    assert conversation_count() == 0


def test_conversation_list_shows_names_previews_and_newest_activity_first(app, people,
                                                                         make_conversation):
    ada, bob, cyd = people
    app.config["CHAT_RATE_LIMIT"] = "off"
    from simplechat.infra.services import init_services

    init_services(app)
    with_bob = make_conversation(ada, bob)
    group = make_conversation(ada, bob, cyd, title="Three <b>of</b> us")
    send_message(bob, group.id, "older news")
    send_message(bob, with_bob.id, "latest <script>x</script>")
    html = login(app, ada).get("/chat/").get_data(as_text=True)
    assert html.index("Bob Babbage") < html.index("Three &lt;b&gt;of&lt;/b&gt; us")
    assert "latest &lt;script&gt;x&lt;/script&gt;" in html and "<script>x" not in html
    assert "older news" in html


def test_non_participant_gets_404_for_the_chat_page(app, people, make_conversation):
    ada, bob, cyd = people
    conversation = make_conversation(ada, bob)
    assert login(app, cyd).get(f"/chat/{conversation.id}").status_code == 404
    assert login(app, cyd).get("/chat/424242").status_code == 404
    page = login(app, bob).get(f"/chat/{conversation.id}")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    for hook in ('id="messages"', 'id="message-input"', 'id="send-button"', 'id="chat-status"'):
        assert hook in html
    assert "conversation_opened" in db.session.scalars(select(GenericActivityLog.action)).all()


def test_user_search_matches_prefixes_excludes_me_and_hides_emails(app, people):
    ada, bob, cyd = people
    http = login(app, ada)

    def search(q):
        body = http.get("/api/users", query_string={"q": q}).get_json()
        return [r["text"] for r in body["results"]]

    assert search("bo") == ["Bob Babbage (@bob)"]
    assert search("charisse") == ["Cyd Charisse (@cyd)"]
    assert search("zed@example.com") == ["Cyd Charisse (@cyd)"]  # a whole e-mail address
    assert search("zed@") == [] and search("zed") == []  # never a part of one
    assert search("ada") == []  # never myself
    assert search("%") == [] and search("_") == []  # LIKE wildcards are literal
    raw = http.get("/api/users?q=c").get_data(as_text=True)
    assert "@example.com" not in raw


def test_user_search_is_limited_and_needs_login(app, client, make_user, people):
    for i in range(30):
        make_user(f"many{i:02d}")
    body = login(app, people[0]).get("/api/users?q=many").get_json()
    assert len(body["results"]) == 20
    assert client.get("/api/users?q=a").status_code == 401
    assert login(app, people[0]).get("/api/users?q=" + "x" * 101).status_code == 400


def test_logout_then_socket_and_api_are_closed(app, people, make_conversation):
    ada, bob, _ = people
    conversation = make_conversation(ada, bob)
    http = login(app, ada)
    http.post("/auth/logout")
    assert http.get(f"/api/conversations/{conversation.id}/messages").status_code == 401


def test_group_previews_name_the_sender_as_the_live_list_does(app, people, make_conversation):
    ada, bob, cyd = people
    app.config["CHAT_RATE_LIMIT"] = "off"
    from simplechat.conversations.groups import leave_conversation
    from simplechat.infra.services import init_services

    init_services(app)
    direct = make_conversation(ada, bob)
    group = make_conversation(ada, bob, cyd, title="Trio")
    former = make_conversation(ada, bob, cyd, title="Former")
    send_message(bob, direct.id, "Hi there")
    send_message(bob, group.id, "Great")
    send_message(cyd, former.id, "Bye <all>")
    assert leave_conversation(cyd, {"conversation_id": former.id}) == {"ok": True}
    html = login(app, ada).get("/chat/").get_data(as_text=True)
    assert ">Bob Babbage: Great</div>" in html
    # A departure is the group's last line now: a system line, which names its people itself.
    assert ">Cyd Charisse left the group</div>" in html
    assert ">Hi there</div>" in html  # a direct conversation needs no name
    # Initials avatars: a direct conversation shows the peer's, a group one of its own.
    assert f'class="avatar avatar-c{bob.id % 12}" aria-hidden="true">BB</span>' in html
    group_avatar = f'class="avatar avatar-c{group.id % 12} avatar-group" aria-hidden="true">T<'
    assert group_avatar in html
    send_message(ada, group.id, "Mine")
    html = login(app, ada).get("/chat/").get_data(as_text=True)
    assert ">You: Mine</div>" in html
