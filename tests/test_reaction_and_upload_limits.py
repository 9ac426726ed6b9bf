"""Reactions and uploads have rate limits of their own (CHAT_REACT_RATE_LIMIT,
CHAT_UPLOAD_RATE_LIMIT), shared through Redis or kept in process (embedded); a refusal stores
nothing."""

from __future__ import annotations

import os
import re

import pytest
from flask import request, request_finished
from prometheus_client import REGISTRY

from simplechat.attachments.store import attachment_store
from simplechat.models import Attachment, Reaction
from tests.conftest import app_in_context
from tests.test_richer_messages import count, emit, login, react, send, upload

REACTS, UPLOADS = 3, 2


@pytest.fixture(params=["redis", "embedded"])
def limiter_backend(request, redis_url) -> str | None:
    if request.param == "embedded":
        return None
    if not redis_url:
        pytest.skip("TEST_REDIS_URL not set")
    return redis_url


@pytest.fixture
def app(database_uri, limiter_backend):
    yield from app_in_context(database_uri, limiter_backend, CHAT_RATE_LIMIT="off",
                              CHAT_REACT_RATE_LIMIT=f"{REACTS}/minute",
                              CHAT_UPLOAD_RATE_LIMIT=f"{UPLOADS}/minute")


@pytest.fixture
def pair(app, make_user, make_conversation, socket_client):
    ada, bob = make_user("ada"), make_user("bob")
    direct = make_conversation(ada, bob)
    a, b = socket_client(ada), socket_client(bob)
    for sio in (a, b):
        assert emit(sio, "join", {"conversation_id": direct.id})["ok"]
    return ada, bob, direct, a, b


def test_reactions_past_the_limit_are_rate_limited_and_store_nothing(app, pair):
    ada, bob, direct, a, b = pair
    message = send(a, direct.id, "react to me")["message"]
    emoji = ["👍", "🎉", "👀", "❤️"]
    answers = [react(a, direct.id, message["id"], e) for e in emoji]
    assert [x["ok"] for x in answers] == [True] * REACTS + [False]
    refused = answers[-1]
    assert refused["error"] == "rate_limited" and 0 < refused["retry_after"] <= 60
    assert set(answers[-2]["message"]["reactions"]) == set(emoji[:REACTS])
    assert count(Reaction) == REACTS
    joined = emit(b, "join", {"conversation_id": direct.id})
    assert "❤️" not in joined["messages"][-1]["reactions"]
    # The limit is per user: the other participant still reacts.
    assert react(b, direct.id, message["id"], "❤️")["ok"]


def test_a_refused_react_does_not_use_up_the_send_or_change_limits(app, pair):
    ada, bob, direct, a, b = pair
    message = send(a, direct.id, "m")["message"]
    for e in ["👍", "🎉", "👀", "❤️"]:
        react(a, direct.id, message["id"], e)
    assert send(a, direct.id, "still sending")["ok"]
    assert emit(a, "edit_message", {"conversation_id": direct.id, "message_id": message["id"],
                                    "message": "still editing"})["ok"]


def refusals_counted(limit: str) -> float:
    return REGISTRY.get_sample_value("simplechat_limit_refusals_total", {"limit": limit}) or 0.0


def test_uploads_past_the_limit_are_429_with_retry_after_and_store_nothing(app, pair):
    ada, bob, direct, a, b = pair
    http = login(app, ada)
    counted = refusals_counted("upload_rate_limited")
    answers = [upload(http, direct.id, f"file {n}".encode(), f"{n}.txt")
               for n in range(UPLOADS + 1)]
    assert refusals_counted("upload_rate_limited") == counted + 1  # the limit's own metric
    assert [r.status_code for r in answers] == [201] * UPLOADS + [429]
    refused = answers[-1]
    body = refused.get_json()
    assert body["ok"] is False and body["error"] == "rate_limited"
    assert 0 < body["retry_after"] <= 60
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert count(Attachment) == UPLOADS
    stored = [f for _, _, files in os.walk(attachment_store().root) for f in files]
    assert len(stored) == UPLOADS
    # Per user: another participant still uploads; a stranger is 404 before any limit.
    assert upload(login(app, bob), direct.id, b"bob's", "b.txt").status_code == 201


def test_a_non_participant_does_not_use_up_the_upload_limit(app, pair, make_user,
                                                            make_conversation):
    ada, bob, direct, a, b = pair
    cy = make_user("cy")
    theirs = make_conversation(bob, cy)
    http = login(app, ada)
    for _ in range(UPLOADS + 1):
        assert upload(http, theirs.id, b"x", "x.txt").status_code == 404
    assert upload(http, direct.id, b"mine", "m.txt").status_code == 201



def test_an_upload_past_the_limit_is_refused_before_its_body_is_parsed(app, pair):
    """The CSRF token comes from the X-CSRFToken header before the form: an upload refused by
    the rate limit costs no multipart parsing of its (up to 25 MiB) body; without a token
    anywhere it is still a 400 csrf."""
    ada, bob, direct, a, b = pair
    http = login(app, ada)
    token = re.search(r'name="csrf-token" content="([^"]+)"',
                      http.get("/chat/").get_data(as_text=True)).group(1)
    parsed: list[bool] = []

    def record(sender, response, **extra):
        parsed.append("form" in request.__dict__ or "files" in request.__dict__)

    app.config["WTF_CSRF_ENABLED"] = True
    request_finished.connect(record, app)
    try:
        assert upload(http, direct.id, b"no token", "n.txt").status_code == 400
        parsed.clear()
        answers = [upload(http, direct.id, b"x" * 100_000, f"{n}.txt",
                          headers={"X-CSRFToken": token}) for n in range(UPLOADS + 1)]
    finally:
        app.config["WTF_CSRF_ENABLED"] = False
        request_finished.disconnect(record, app)
    assert [r.status_code for r in answers] == [201] * UPLOADS + [429]
    assert parsed == [True] * UPLOADS + [False]  # the refused one was never parsed
