"""The JSON API's refusals: numbers parsed strictly, and every /api/ answer JSON (unknown URLs,
wrong methods, CSRF, big bodies, exceptions, a database that is down); pages stay HTML."""

from __future__ import annotations

import io
import json
import re
from urllib.parse import quote

import pytest
from conftest import make_app
from flask import request
from sqlalchemy import select
from werkzeug.exceptions import TooManyRequests

from simplechat.extensions import db
from simplechat.messaging.send import send_message
from simplechat.models import GenericErrorLog, Message
from simplechat.observability.logging_setup import configure_logging
from simplechat.web.strict_numbers import MAX_ID, parse_int

WRONG_DATABASE = "postgresql+psycopg2://root@127.0.0.1:5499/nowhere"  # nothing listens there
INVALID = {"ok": False, "error": "invalid"}
ARABIC_INDIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")
FULLWIDTH = str.maketrans("0123456789", "０１２３４５６７８９")

NOT_NUMBERS = ["²", "٣", "３", "+1", "-1", " 1", "1 ", "1\n", "1_000", "1.0", "1e3", "0x1", "",
               "abc"]
HUGE = [str(MAX_ID + 1), "9" * 25, "1" + "0" * 5000]


@pytest.fixture
def chat(make_user, make_conversation):
    ada, bob = make_user("ada"), make_user("bob")
    return ada, bob, make_conversation(ada, bob)


@pytest.fixture
def api_probe(app):
    """Two extra /api/ routes, added before the app's first request: a JSON write and a
    throttled read."""

    def echo():
        return {"ok": True, "got": request.get_json()}

    def throttled():
        raise TooManyRequests(retry_after=3)

    app.add_url_rule("/api/test/echo", "test_echo", echo, methods=["POST"])
    app.add_url_rule("/api/test/throttled", "test_throttled", throttled)


@pytest.fixture
def log_lines(app):
    """The app's log records from now on, as JSON objects."""
    stream = io.StringIO()
    app.config.update(LOG_FORMAT="json", LOG_LEVEL="INFO")
    configure_logging(app, stream)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    app.config.update(LOG_FORMAT="plain")
    configure_logging(app)


def assert_json_error(response, status: int, code: str) -> None:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    assert response.get_json() == {"ok": False, "error": code}


def error_rows() -> list[GenericErrorLog]:
    db.session.rollback()  # a fresh read of what the eager task committed
    return list(db.session.scalars(select(GenericErrorLog)))


# --------------------------------------------------------------------------- strict numbers

def test_parse_int_takes_ascii_digits_within_bounds_only():
    assert parse_int("7", 1, 10) == 7 and parse_int("007", 1, 10) == 7
    assert parse_int(str(MAX_ID), 1, MAX_ID) == MAX_ID
    for raw in [*NOT_NUMBERS, *HUGE, None, "0", "11"]:
        assert parse_int(raw, 1, 10) is None, repr(raw)


@pytest.mark.parametrize("limit", [*NOT_NUMBERS, *HUGE, "0"])
def test_history_limit_that_is_not_plain_ascii_digits_is_invalid(client, auth, chat, limit):
    ada, _, conversation = chat
    auth.login(ada.username)
    response = client.get(f"/api/conversations/{conversation.id}/messages",
                          query_string={"limit": limit})
    assert_json_error(response, 400, "invalid")


def test_history_limit_in_ascii_digits_is_served_and_capped(app, client, auth, chat):
    ada, bob, conversation = chat
    app.config["CHAT_RATE_LIMIT"] = "off"
    from simplechat.infra.services import init_services

    init_services(app)
    for n in range(3):
        send_message(bob, conversation.id, f"message {n}")
    auth.login(ada.username)
    url = f"/api/conversations/{conversation.id}/messages"
    body = client.get(url, query_string={"limit": "2"}).get_json()
    assert [m["message"] for m in body["messages"]] == ["message 1", "message 2"]
    assert body["has_more"] is True
    app.config["CHAT_HISTORY_PAGE_MAX"] = 2
    body = client.get(url, query_string={"limit": str(MAX_ID)}).get_json()
    assert len(body["messages"]) == 2


@pytest.mark.parametrize("page", [*NOT_NUMBERS, *HUGE, "0", "1001"])
def test_search_page_that_is_not_plain_ascii_digits_in_range_is_invalid(client, auth, chat,
                                                                       page):
    auth.login(chat[0].username)
    response = client.get("/api/search", query_string={"q": "hello", "page": page})
    assert_json_error(response, 400, "invalid")


def test_search_pages_one_to_a_thousand_are_served(client, auth, chat):
    auth.login(chat[0].username)
    for page in ("1", "1000"):
        response = client.get("/api/search", query_string={"q": "hello", "page": page})
        assert response.status_code == 200
        assert response.get_json()["page"] == int(page)


@pytest.mark.parametrize("segment", [*NOT_NUMBERS[:-2], *HUGE, "0", "abc"])
def test_conversation_id_in_the_path_that_is_not_a_positive_64_bit_number_is_invalid(
        client, auth, chat, segment):
    auth.login(chat[0].username)
    response = client.get(f"/api/conversations/{quote(segment, safe='')}/messages")
    assert_json_error(response, 400, "invalid")


def test_unicode_digits_in_the_path_do_not_reach_the_conversation_they_spell(client, auth,
                                                                            chat):
    ada, _, conversation = chat
    auth.login(ada.username)
    plain = f"/api/conversations/{conversation.id}/messages"
    assert client.get(plain).status_code == 200
    for digits in (ARABIC_INDIC, FULLWIDTH):
        spelled = quote(str(conversation.id).translate(digits))
        response = client.get(f"/api/conversations/{spelled}/messages")
        assert_json_error(response, 400, "invalid")


def test_largest_64_bit_id_is_a_well_formed_unknown_conversation(client, auth, chat):
    auth.login(chat[0].username)
    assert_json_error(client.get(f"/api/conversations/{MAX_ID}/messages"), 404, "not_found")


def test_user_search_with_a_nul_character_is_invalid_not_a_crash(client, auth, chat):
    auth.login(chat[0].username)
    assert_json_error(client.get("/api/users", query_string={"q": "a\x00"}), 400, "invalid")
    assert error_rows() == []


# --------------------------------------------------------------------------- JSON, always

@pytest.mark.parametrize("path", ["/api/nope", "/api", "/api/", "/api/conversations/1/nope",
                                  "/api/users/7"])
def test_unknown_api_url_answers_json_404(client, auth, chat, path):
    assert_json_error(client.get(path), 404, "not_found")
    auth.login(chat[0].username)
    assert_json_error(client.get(path), 404, "not_found")


def test_doubled_slash_under_api_is_a_json_404_not_a_redirect(client, auth, chat):
    auth.login(chat[0].username)
    conversation_id = chat[2].id
    for path in ("/api//users", f"/api/conversations/{conversation_id}//messages",
                 f"/api/conversations/{conversation_id}%2F/messages",
                 "/api/conversations/a%2F/messages"):
        assert_json_error(client.get(path), 404, "not_found")
    assert client.get("/chat//new").status_code == 308  # pages keep Werkzeug's redirect


def test_wrong_method_answers_json_405_and_keeps_the_allow_header(client, auth, chat):
    ada, _, conversation = chat
    auth.login(ada.username)
    read_only = {"GET", "HEAD", "OPTIONS"}
    for method, path, allowed in [
        ("post", "/api/users", read_only), ("delete", "/api/search", read_only),
        ("put", f"/api/conversations/{conversation.id}/messages", read_only | {"POST"}),
        ("delete", "/api/me", read_only),
    ]:
        response = getattr(client, method)(path)
        assert_json_error(response, 405, "method_not_allowed")
        assert set(response.headers["Allow"].split(", ")) == allowed


def test_anonymous_api_request_answers_json_401(client, chat):
    for path in ("/api/users?q=a", "/api/search?q=a",
                 f"/api/conversations/{chat[2].id}/messages"):
        assert_json_error(client.get(path), 401, "unauthorized")


def test_csrf_failure_on_an_api_write_answers_json_400_csrf(app, client, auth, chat, api_probe):
    auth.login(chat[0].username)
    app.config["WTF_CSRF_ENABLED"] = True
    assert_json_error(client.post("/api/test/echo", json={"a": 1}), 400, "csrf")
    page = client.get("/chat/").get_data(as_text=True)
    token = re.search(r'<meta name="csrf-token" content="([^"]+)"', page).group(1)
    response = client.post("/api/test/echo", json={"a": 1}, headers={"X-CSRFToken": token})
    assert response.status_code == 200 and response.get_json() == {"ok": True, "got": {"a": 1}}


def test_csrf_failure_on_a_page_stays_an_html_400(app, client, auth, chat):
    auth.login(chat[0].username)
    app.config["WTF_CSRF_ENABLED"] = True
    response = client.post("/chat/new", data={"participants": [str(chat[1].id)]})
    assert response.status_code == 400 and response.mimetype == "text/html"
    assert b"CSRF" in response.data


def test_body_over_max_content_length_on_the_api_answers_json_413(app, client, auth, chat,
                                                                  api_probe):
    auth.login(chat[0].username)
    big = {"text": "x" * app.config["MAX_CONTENT_LENGTH"]}
    assert_json_error(client.post("/api/test/echo", json=big), 413, "too_large")


def test_rate_limited_api_answer_carries_retry_after(client, api_probe):
    response = client.get("/api/test/throttled")
    assert response.status_code == 429 and response.mimetype == "application/json"
    assert response.get_json() == {"ok": False, "error": "rate_limited", "retry_after": 3}
    assert response.headers["Retry-After"] == "3"


def test_exception_in_an_api_route_answers_json_500_and_is_recorded_once(
        client, auth, chat, monkeypatch, log_lines):
    ada = chat[0]

    def broken(*_args):
        raise RuntimeError("search exploded")

    monkeypatch.setattr("simplechat.api.lookups.search_messages", broken)
    auth.login(ada.username)
    assert_json_error(client.get("/api/search?q=hello"), 500, "internal")
    [row] = error_rows()
    assert (row.where, row.error_type, row.message, row.user_id) == (
        "http:GET /api/search", "RuntimeError", "search exploded", ada.id)
    assert "broken" in row.traceback
    errors = [line for line in log_lines() if line["level"] == "ERROR"]
    assert len(errors) == 1, errors  # not a second time by Flask
    assert errors[0]["message"] == "unexpected error in http:GET /api/search"
    assert errors[0]["user_id"] == ada.id and "search exploded" in errors[0]["exc"]


def test_exception_in_a_page_answers_the_html_500_page_and_is_recorded(
        client, auth, chat, monkeypatch):
    ada, _, conversation = chat

    def broken(*_args):
        raise LookupError("members vanished")

    monkeypatch.setattr("simplechat.chat.views.listed_members", broken)
    auth.login(ada.username)
    response = client.get(f"/chat/{conversation.id}")
    assert response.status_code == 500 and response.mimetype == "text/html"
    assert b"Internal Server Error" in response.data
    [row] = error_rows()
    assert (row.where, row.error_type, row.user_id) == (
        "http:GET /chat/<id:conversation_id>", "LookupError", ada.id)


def test_unknown_page_stays_the_html_404_page(client, auth, chat):
    auth.login(chat[0].username)
    for path in ("/chat/999999", "/nowhere", "/apis"):
        response = client.get(path)
        assert response.status_code == 404 and response.mimetype == "text/html", path
        assert b"Not found." in response.data


@pytest.fixture
def down_app(app, redis_url):
    """The same app with its database on a port nothing listens on."""
    down = make_app(WRONG_DATABASE, redis_url)
    # A new app's Celery becomes the current one; tasks (the error log) go to the test's app.
    app.extensions["celery"].set_current()
    app.extensions["celery"].set_default()
    yield down
    with down.app_context():
        db.engine.dispose()


def test_database_down_answers_json_503_unavailable(client, auth, chat, down_app):
    ada, _, conversation = chat
    auth.login(ada.username)
    http = down_app.test_client()
    http.set_cookie("session", client.get_cookie("session").value)
    for path in ("/api/search?q=hello", "/api/users?q=a",
                 f"/api/conversations/{conversation.id}/messages"):
        response = http.get(path)
        assert_json_error(response, 503, "unavailable")
        assert response.headers["Retry-After"] == "5"
    rows = error_rows()  # the user could not be loaded: no user id
    assert [(r.error_type, r.user_id) for r in rows] == [("OperationalError", None)] * 3
    # Without a session nothing needs the database: still the plain 401.
    assert_json_error(down_app.test_client().get("/api/users"), 401, "unauthorized")


def test_database_down_mid_route_answers_json_503_unavailable(client, auth, chat, monkeypatch,
                                                              down_app):
    ada, _, conversation = chat

    def read_from_the_down_database(*_args):
        with down_app.app_context():
            db.session.execute(select(Message)).all()

    # The user loads from the working database; the history read meets the one that is down.
    monkeypatch.setattr("simplechat.api.lookups.messages_before", read_from_the_down_database)
    auth.login(ada.username)
    response = client.get(f"/api/conversations/{conversation.id}/messages")
    assert_json_error(response, 503, "unavailable")
    [row] = error_rows()
    assert row.error_type == "OperationalError" and row.user_id == ada.id
