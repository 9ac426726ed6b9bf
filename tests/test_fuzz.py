"""Property tests: arbitrary JSON at every socket event, arbitrary data at every form and API.

Whatever arrives, the server answers (a clean error code, a form error, a 4xx), never a 500,
a crash or a dropped connection, and a refused request changes nothing.
"""

from __future__ import annotations

from collections import Counter
from urllib.parse import quote

import pytest
from conftest import PASSWORD, app_in_context
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from werkzeug.datastructures import MultiDict

from simplechat.conversations.records import start_conversation
from simplechat.extensions import db, socketio
from simplechat.infra.services import services
from simplechat.models import (
    Conversation,
    GenericErrorLog,
    Message,
    Participant,
    User,
)

FUZZ = settings(max_examples=150, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])
ERROR_CODES = {"forbidden", "not_found", "invalid", "too_long", "empty", "rate_limited",
               "conflict", "unknown_event"}
tried: Counter[str] = Counter()


@pytest.fixture(scope="module", autouse=True)
def report_payloads(request):
    yield
    total = sum(tried.values())
    lines = ", ".join(f"{name}={n}" for name, n in sorted(tried.items()))
    with request.config.pluginmanager.get_plugin("capturemanager").global_and_fixture_disabled():
        print(f"\nfuzz: {total} payloads tried ({lines})")


@pytest.fixture
def fuzz_app(database_uri, redis_url):
    """The testing app with the send, login and registration limits off, so every payload
    reaches the checks."""
    yield from app_in_context(
        database_uri, redis_url, CHAT_RATE_LIMIT="off",
        LOGIN_RATE_LIMIT_ACCOUNT="off", LOGIN_RATE_LIMIT_IP="off", REGISTER_RATE_LIMIT="off",
        SQLALCHEMY_ENGINE_OPTIONS={"isolation_level": "READ COMMITTED"})


def _user(username: str) -> User:
    user = User(username=username, first_name=username.title(), last_name="Fuzz",
                email=f"{username}@example.com")
    user.set_password(PASSWORD)
    db.session.add(user)
    db.session.commit()
    return user


def _logged_in(app, user: User):
    http = app.test_client()
    response = http.post("/auth/login", data={"username": user.username, "password": PASSWORD})
    assert response.status_code == 302
    return http


COUNTED = (User, Conversation, Participant, Message, GenericErrorLog)


def _counts() -> dict[str, int]:
    """Rows per table, in one query."""
    db.session.expire_all()
    row = db.session.execute(select(*(
        select(func.count()).select_from(model).scalar_subquery() for model in COUNTED))).one()
    return {model.__name__: n for model, n in zip(COUNTED, row, strict=True)}


# --------------------------------------------------------------------------- strategies

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=50),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner,
                                                                 max_size=5),
    max_leaves=20,
)


def event_payloads(own_conversation: int, other_conversation: int):
    """Anything at all, and dicts with the protocol's keys holding anything (often almost right,
    so the checks behind the shape check are reached too)."""
    conversation_ids = (st.sampled_from([own_conversation, other_conversation, 0, -1, 2**63])
                        | st.integers() | json_values)
    texts = st.text(max_size=200) | st.text(min_size=3990, max_size=4010) | json_values
    message_ids = (st.uuids().map(str) | st.text(max_size=40) | json_values)
    shaped = st.fixed_dictionaries({}, optional={
        "conversation_id": conversation_ids,
        "message": texts,
        "client_id": st.none() | st.text(max_size=70) | json_values,
        "after": st.none() | message_ids,
        "extra": json_values,
    })
    near_valid = st.fixed_dictionaries(
        {"conversation_id": st.just(own_conversation), "message": st.text(max_size=200)},
        optional={"client_id": st.text(max_size=70), "after": message_ids})
    return shaped | near_valid | json_values


# --------------------------------------------------------------------------- socket events

def test_socket_events_answer_any_payload_cleanly_and_refusals_change_nothing(fuzz_app):
    alice, bob, eve = _user("alice"), _user("bob"), _user("eve")
    own, _ = start_conversation(alice, [bob], None)
    other, _ = start_conversation(bob, [eve], None)
    own_id, other_id = own.id, other.id
    sio = socketio.test_client(fuzz_app, namespace="/chat",
                               flask_test_client=_logged_in(fuzz_app, alice))
    listener = socketio.test_client(fuzz_app, namespace="/chat",
                                    flask_test_client=_logged_in(fuzz_app, eve))
    assert listener.emit("join", {"conversation_id": other_id}, namespace="/chat",
                         callback=True)["ok"]

    outcomes: Counter[tuple[str, bool]] = Counter()

    @settings(FUZZ, max_examples=300)
    @given(event=st.sampled_from(["join", "leave", "send_message", "no_such_event"]),
           payload=event_payloads(own_id, other_id),
           extra_args=st.lists(json_values, max_size=2))
    def check(event, payload, extra_args):
        tried[f"socket:{event}"] += 1
        before = _counts()
        cached_before = len(services().cache.recent(own_id)[0])
        ack = sio.emit(event, payload, *extra_args, namespace="/chat", callback=True)
        assert isinstance(ack, dict) and isinstance(ack.get("ok"), bool), ack
        outcomes[event, ack["ok"]] += 1
        assert sio.is_connected("/chat")
        after = _counts()
        assert after["GenericErrorLog"] == before["GenericErrorLog"], ack  # no unexpected error
        if ack["ok"]:
            if event == "send_message" and not ack.get("duplicate"):
                message = ack["message"]
                assert message["conversation_id"] == own_id and message["sender"] == alice.id
                assert after["Message"] == before["Message"] + 1
                assert len(services().cache.recent(own_id)[0]) >= min(
                    cached_before + 1, fuzz_app.config["CHAT_RECENT_MESSAGES"])
            else:
                assert after == before
        else:
            assert ack["error"] in ERROR_CODES, ack
            assert after == before
            assert len(services().cache.recent(own_id)[0]) == cached_before
        # Nothing ever reaches a conversation alice is not in.
        assert not [p for p in listener.get_received("/chat") if p["name"] == "message"]

    check()
    # The properties were checked on both sides of every event's checks, not only on refusals.
    for event in ("join", "send_message"):
        assert outcomes[event, True] and outcomes[event, False], outcomes
    assert listener.is_connected("/chat")
    # The connection still works for an ordinary send after everything above.
    ack = sio.emit("send_message", {"conversation_id": own_id, "message": "still fine"},
                   namespace="/chat", callback=True)
    assert ack["ok"] is True


# The protocol's auth is an object; a bare number cannot be framed in a CONNECT packet at all
# (its digits read as a packet id), so the rest of JSON is used.
connect_auth = (st.none() | st.text(max_size=20) | st.booleans() | st.lists(json_values, max_size=3)
                | st.dictionaries(st.text(max_size=10), json_values, max_size=5))


@settings(FUZZ, max_examples=40)
@given(auth=connect_auth)
def test_connect_with_any_auth_payload_depends_only_on_the_session(fuzz_app, auth):
    tried["socket:connect"] += 1
    if not db.session.scalar(select(User).where(User.username == "carol")):
        _user("carol")
    anonymous = socketio.test_client(fuzz_app, namespace="/chat", auth=auth)
    assert not anonymous.is_connected("/chat")
    carol = db.session.scalar(select(User).where(User.username == "carol"))
    sio = socketio.test_client(fuzz_app, namespace="/chat", auth=auth,
                               flask_test_client=_logged_in(fuzz_app, carol))
    assert sio.is_connected("/chat")
    sio.disconnect("/chat")


# --------------------------------------------------------------------------- forms

FORM_FIELDS = {
    "/auth/register": ["username", "first_name", "last_name", "email", "password", "confirm"],
    "/auth/login": ["username", "password", "remember", "next"],
    "/profile/edit": ["first_name", "last_name", "email"],
    "/profile/password": ["current_password", "password", "confirm"],
    "/chat/new": ["participants", "title"],
}
field_text = (st.text(max_size=80) | st.sampled_from(["", " ", PASSWORD, "1", "2", "0", "-1",
                                                       "bob", "bob@example.com", "y", "/chat/",
                                                       "//evil.example", "999999999999999999999"])
              | st.integers().map(str))


def form_data(path: str):
    """Known field names (sometimes repeated, sometimes missing) and unknown ones."""
    names = st.sampled_from(FORM_FIELDS[path]) | st.text(max_size=12)
    return st.lists(st.tuples(names, field_text), max_size=10)


def _form_state(user: User) -> tuple:
    db.session.expire_all()
    fresh = db.session.get(User, user.id)
    return (_counts(), fresh.first_name, fresh.last_name, fresh.email, fresh.password_hash)


@pytest.mark.parametrize("path", list(FORM_FIELDS))
def test_forms_take_any_data_without_a_500_and_refusals_change_nothing(fuzz_app, path):
    alice = _user("alice")
    _user("bob")
    logged_in = path.startswith(("/profile", "/chat"))
    session = _logged_in(fuzz_app, alice) if logged_in else None

    @settings(FUZZ, max_examples=100)
    @given(pairs=form_data(path), raw=st.none() | st.binary(max_size=200))
    def check(pairs, raw):
        tried[f"form:{path}"] += 1
        http = session or fuzz_app.test_client()
        before = _form_state(alice)
        if raw is None:
            response = http.post(path, data=MultiDict(pairs))
        else:  # bytes in no particular encoding, as a urlencoded body
            response = http.post(path, data=raw,
                                 content_type="application/x-www-form-urlencoded")
        assert response.status_code in (200, 302, 400), response.status_code
        if response.status_code != 302:
            assert _form_state(alice) == before
            if not logged_in:
                assert http.get("/chat/").status_code == 302  # still not logged in
        after = _counts()
        assert after["GenericErrorLog"] == before[0]["GenericErrorLog"]

    check()


# --------------------------------------------------------------------------- JSON API

def test_api_answers_any_query_with_json_or_a_4xx(fuzz_app):
    alice, bob = _user("alice"), _user("bob")
    own, _ = start_conversation(alice, [bob], None)
    http = _logged_in(fuzz_app, alice)

    @settings(FUZZ, max_examples=100)
    @given(conversation=st.sampled_from([own.id]) | st.integers(min_value=-2, max_value=2**70)
           | st.text(max_size=10),
           query=st.lists(st.tuples(st.sampled_from(["before", "limit", "q", "x"]), field_text),
                          max_size=4))
    def check(conversation, query):
        tried["api"] += 1
        for path in (f"/api/conversations/{quote(str(conversation), safe='')}/messages",
                     "/api/users"):
            response = http.get(path, query_string=query)
            assert response.status_code in (200, 400, 404), (path, response.status_code)
            if response.status_code == 200:
                assert response.is_json

    check()
