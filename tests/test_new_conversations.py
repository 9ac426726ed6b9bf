"""Starting conversations against a hostile user: new ones are limited per user
(CHAT_CONVERSATION_RATE_LIMIT) on the page and the API, a reused direct one is not counted, and
the page takes user ids in ASCII digits only."""

from __future__ import annotations

import re

import pytest
from conftest import PASSWORD, app_in_context
from sqlalchemy import func, select

from simplechat.auth.tokens import create_token
from simplechat.conversations.records import start_conversation
from simplechat.extensions import db
from simplechat.models import Conversation

LIMIT = 3
ARABIC_INDIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")


@pytest.fixture
def app(database_uri, backend):
    yield from app_in_context(database_uri, backend,
                              CHAT_CONVERSATION_RATE_LIMIT=f"{LIMIT}/hour")


def conversation_count() -> int:
    db.session.expire_all()
    return db.session.scalar(select(func.count()).select_from(Conversation))


def logged_in(app, username: str):
    client = app.test_client()
    response = client.post("/auth/login", data={"username": username, "password": PASSWORD})
    assert response.status_code == 302
    return client


@pytest.fixture
def people(make_user):
    return make_user("ada"), [make_user(f"user{i}") for i in range(LIMIT + 2)]


def test_the_page_refuses_a_new_conversation_past_the_limit(app, people):
    ada, others = people
    client = logged_in(app, "ada")
    for person in others[:LIMIT]:
        assert client.post("/chat/new", data={"participants": [str(person.id)]}
                           ).status_code == 302
    response = client.post("/chat/new", data={"participants": [str(others[LIMIT].id)]})
    assert response.status_code == 429
    assert 0 < int(response.headers["Retry-After"]) <= 3600
    page = response.get_data(as_text=True)
    assert re.search(r'id="new-conversation-error">You have started many conversations '
                     r'lately\. Try again in \d+ seconds\.<', page)
    assert conversation_count() == LIMIT
    # Opening an existing direct conversation again costs nothing and still works.
    again = client.post("/chat/new", data={"participants": [str(others[0].id)]})
    assert again.status_code == 302
    assert conversation_count() == LIMIT


def test_the_api_refuses_a_new_conversation_past_the_limit(app, people):
    ada, others = people
    headers = {"Authorization": f"Bearer {create_token(ada, 'script').secret}"}
    http = app.test_client()
    for person in others[:LIMIT]:
        assert http.post("/api/conversations", headers=headers,
                         json={"participants": [person.id]}).status_code == 201
    response = http.post("/api/conversations", headers=headers,
                         json={"participants": [others[LIMIT].id, others[LIMIT + 1].id],
                               "title": "one too many"})
    assert response.status_code == 429
    body = response.get_json()
    assert body["ok"] is False and body["error"] == "rate_limited"
    assert 0 < body["retry_after"] <= 3600
    assert int(response.headers["Retry-After"]) >= 1
    assert conversation_count() == LIMIT
    reused = http.post("/api/conversations", headers=headers,
                       json={"participants": [others[0].id]})
    assert reused.status_code == 200 and reused.get_json()["created"] is False


def test_the_limit_is_the_users_own(app, people, make_user):
    ada, others = people
    bob = make_user("bob")
    client = logged_in(app, "ada")
    for person in others[:LIMIT]:
        assert client.post("/chat/new", data={"participants": [str(person.id)]}
                           ).status_code == 302
    # Not bob's: and the command line (start_conversation) is not limited at all.
    assert logged_in(app, "bob").post("/chat/new", data={"participants": [str(others[LIMIT].id)]}
                                      ).status_code == 302
    start_conversation(ada, [bob, others[LIMIT]], "by an administrator")
    assert conversation_count() == LIMIT + 2


# --- ids in ASCII digits only -----------------------------------------------------------------


@pytest.mark.parametrize("spell", [
    lambda n: str(n).translate(ARABIC_INDIC),  # "٣" meant 3
    lambda n: str(n).translate(str.maketrans("0123456789", "０１２３４５６７８９")),  # full width
    lambda n: f" {n}",
    lambda n: f"+{n}",
    lambda n: f"{n:_}" if n >= 1000 else f"0_{n}",
])
def test_the_page_takes_user_ids_in_ascii_digits_only(app, people, spell):
    ada, others = people
    client = logged_in(app, "ada")
    response = client.post("/chat/new", data={"participants": [spell(others[0].id)]})
    assert response.status_code == 200
    assert "Pick people from the list." in response.get_data(as_text=True)
    assert conversation_count() == 0
    assert client.post("/chat/new", data={"participants": [str(others[0].id)]}
                       ).status_code == 302
