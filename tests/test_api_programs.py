"""The JSON API for programs: tokens (page, CLI, bearer, socket), bots, every route for every
kind of caller (token, cookie with and without the CSRF header, anonymous, revoked token,
non-participant), and the OpenAPI document."""

from __future__ import annotations

import json
import re

import pytest
from conftest import PASSWORD, app_in_context
from sqlalchemy import select

from simplechat.auth.tokens import create_token, revoke_tokens
from simplechat.extensions import db, socketio
from simplechat.models import ApiToken, Message, User


@pytest.fixture
def app(database_uri, redis_url, request):
    marker = request.node.get_closest_marker("settings")
    overrides = {"CHAT_RATE_LIMIT": "off", **(marker.kwargs if marker else {})}
    yield from app_in_context(database_uri, redis_url, **overrides)


@pytest.fixture
def world(make_user, make_conversation):
    """ada and bob in a direct conversation, eve outside it; ada's live and revoked tokens."""
    ada, bob, eve = make_user("ada"), make_user("bob"), make_user("eve")
    conversation = make_conversation(ada, bob)
    token = create_token(ada, "laptop script").secret
    revoked = create_token(ada, "old").row
    revoked_secret = "sct_" + "x" * 43
    revoked.token_hash = __import__("hashlib").sha256(revoked_secret.encode()).hexdigest()
    db.session.commit()
    revoke_tokens([revoked])
    eve_token = create_token(eve, "eve's").secret
    return {"ada": ada, "bob": bob, "eve": eve, "conversation": conversation, "token": token,
            "revoked": revoked_secret, "eve_token": eve_token}


def bearer(secret: str) -> dict:
    return {"Authorization": f"Bearer {secret}"}


def page_csrf(client) -> str:
    page = client.get("/profile/").get_data(as_text=True)
    return re.search(r'<meta name="csrf-token" content="([^"]+)"', page).group(1)


def assert_error(response, status: int, code: str) -> None:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    assert response.get_json()["ok"] is False and response.get_json()["error"] == code


def routes(conversation_id: int) -> list[tuple[str, str, dict | None]]:
    """Every /api/ route a user calls (method, path, JSON body)."""
    return [
        ("get", "/api/me", None),
        ("get", "/api/conversations", None),
        ("post", "/api/conversations", {"participants": [1]}),
        ("get", f"/api/conversations/{conversation_id}", None),
        ("get", f"/api/conversations/{conversation_id}/messages", None),
        ("get", f"/api/conversations/{conversation_id}/members", None),
        ("post", f"/api/conversations/{conversation_id}/messages", {"message": "hi"}),
        ("post", f"/api/conversations/{conversation_id}/mute", {"muted": True}),
        ("get", "/api/users?q=b", None),
        ("get", "/api/search?q=hi", None),
    ]


# --------------------------------------------------------------------------- who may call


def test_anonymous_and_revoked_and_malformed_tokens_get_json_401_on_every_route(client, world):
    for method, path, body in routes(world["conversation"].id):
        assert_error(getattr(client, method)(path, json=body), 401, "unauthorized")
        for header in (bearer(world["revoked"]), bearer("sct_nonsense"),
                       {"Authorization": "Basic YWRhOnB3"}, {"Authorization": "Bearer"}):
            response = getattr(client, method)(path, json=body, headers=header)
            assert_error(response, 401, "unauthorized")
            assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_token_of_a_deactivated_user_is_refused(client, world):
    world["ada"].is_active = False
    db.session.commit()
    assert_error(client.get("/api/me", headers=bearer(world["token"])), 401, "unauthorized")


def test_me_for_a_token_and_for_a_cookie(client, auth, world):
    ada = world["ada"]
    answer = client.get("/api/me", headers=bearer(world["token"]))
    assert answer.status_code == 200
    assert answer.get_json() == {"id": ada.id, "username": "ada", "first_name": ada.first_name,
                                 "last_name": ada.last_name, "name": ada.full_name,
                                 "is_bot": False}
    auth.login("bob")
    assert client.get("/api/me").get_json()["username"] == "bob"
    # A token wins over the cookie sent beside it.
    assert client.get("/api/me", headers=bearer(world["token"])).get_json()["username"] == "ada"


def test_a_used_token_records_when(client, world):
    client.get("/api/me", headers=bearer(world["token"]))
    db.session.expire_all()
    row = db.session.scalar(select(ApiToken).where(ApiToken.name == "laptop script"))
    assert row.last_used_at is not None


def test_cookie_writes_need_the_csrf_header_token_writes_do_not(app, client, auth, world):
    app.config["WTF_CSRF_ENABLED"] = True
    conversation_id = world["conversation"].id
    auth_page = client.get("/auth/login").get_data(as_text=True)
    form_token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', auth_page).group(1)
    client.post("/auth/login", data={"username": "ada", "password": PASSWORD,
                                     "csrf_token": form_token})
    path = f"/api/conversations/{conversation_id}/messages"
    assert_error(client.post(path, json={"message": "no header"}), 400, "csrf")
    assert_error(client.post("/api/conversations", json={"participants": [world["bob"].id]}),
                 400, "csrf")
    mute = f"/api/conversations/{conversation_id}/mute"
    assert_error(client.post(mute, json={"muted": True}), 400, "csrf")
    header = {"X-CSRFToken": page_csrf(client)}
    assert client.post(mute, json={"muted": True}, headers=header).get_json()["muted"] is True
    sent = client.post(path, json={"message": "with header"}, headers=header)
    assert sent.status_code == 201, sent.get_data(as_text=True)
    again = client.post("/api/conversations", json={"participants": [world["bob"].id]},
                        headers=header)
    assert again.status_code == 200 and again.get_json()["created"] is False
    # A token caller never needs it (a browser does not send tokens by itself).
    fresh = app.test_client()
    by_token = fresh.post(path, json={"message": "token"}, headers=bearer(world["token"]))
    assert by_token.status_code == 201
    assert [m["message"] for m in client.get(path).get_json()["messages"]] == [
        "with header", "token"]


def test_every_cookie_write_of_every_api_blueprint_needs_the_csrf_header(app, client, world):
    """Walks the URL map: each POST, PUT, PATCH and DELETE route of an API blueprint (but the
    few that authenticate by a secret in their URL) refuses a logged-in browser's request
    without the X-CSRFToken header, before it looks at anything else."""
    from simplechat.api.auth import SECRET_URL_ENDPOINTS
    from simplechat.web.routing import ApiBlueprint

    app.config["WTF_CSRF_ENABLED"] = True
    auth_page = client.get("/auth/login").get_data(as_text=True)
    form_token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', auth_page).group(1)
    client.post("/auth/login", data={"username": "ada", "password": PASSWORD,
                                     "csrf_token": form_token})
    checked = []
    for rule in app.url_map.iter_rules():
        blueprint = app.blueprints.get(rule.endpoint.rpartition(".")[0])
        if not isinstance(blueprint, ApiBlueprint) or rule.endpoint in SECRET_URL_ENDPOINTS:
            continue
        path = rule.rule
        for argument in rule.arguments:
            path = re.sub(rf"<[^>]*{argument}>", "1", path)
        for method in sorted(rule.methods - {"GET", "HEAD", "OPTIONS"}):
            answer = client.open(path, method=method, json={})
            assert (answer.status_code, answer.get_json()) == (
                400, {"ok": False, "error": "csrf"}), (method, path)
            checked.append((method, rule.endpoint))
    blueprints = {endpoint.partition(".")[0] for _method, endpoint in checked}
    assert {"rest", "channels", "threads", "notifications", "moderation", "exports"} <= blueprints


def test_a_non_participant_sees_nothing_of_a_conversation(client, world):
    conversation_id = world["conversation"].id
    eve = bearer(world["eve_token"])
    assert_error(client.get(f"/api/conversations/{conversation_id}", headers=eve),
                 404, "not_found")
    assert_error(client.get(f"/api/conversations/{conversation_id}/messages", headers=eve),
                 404, "not_found")
    assert_error(client.post(f"/api/conversations/{conversation_id}/messages", headers=eve,
                             json={"message": "let me in"}), 403, "forbidden")
    assert client.get("/api/conversations", headers=eve).get_json() == {
        "ok": True, "conversations": [], "next_before": None}
    assert db.session.scalars(select(Message)).all() == []


# --------------------------------------------------------------------------- the routes


def test_conversations_list_and_one(client, world):
    ada, bob, conversation = world["ada"], world["bob"], world["conversation"]
    token = bearer(world["token"])
    client.post(f"/api/conversations/{conversation.id}/messages", headers=token,
                json={"message": "first"})
    listed = client.get("/api/conversations", headers=bearer(world["token"])).get_json()
    assert listed["ok"] is True and len(listed["conversations"]) == 1
    entry = listed["conversations"][0]
    assert entry["id"] == conversation.id and entry["is_group"] is False
    assert entry["title"] == bob.full_name
    assert [p["username"] for p in entry["participants"]] == ["ada", "bob"]
    assert entry["last_message"]["message"] == "first"
    assert entry["last_message"]["sender"] == ada.id and entry["unread"] == 0
    one = client.get(f"/api/conversations/{conversation.id}", headers=token).get_json()
    assert one == {"ok": True, "conversation": entry}
    assert_error(client.get("/api/conversations/99999", headers=token), 404, "not_found")
    assert_error(client.get("/api/conversations/٣", headers=token), 400, "invalid")


def test_bob_sees_the_message_as_unread(client, world):
    conversation = world["conversation"]
    client.post(f"/api/conversations/{conversation.id}/messages",
                headers=bearer(world["token"]), json={"message": "for bob"})
    bob_token = create_token(world["bob"], "bob's").secret
    entry = client.get("/api/conversations", headers=bearer(bob_token)).get_json()[
        "conversations"][0]
    assert entry["unread"] == 1


def muted_of(client, token) -> dict[int, bool]:
    listed = client.get("/api/conversations", headers=bearer(token)).get_json()["conversations"]
    return {c["id"]: c["muted"] for c in listed}


@pytest.mark.parametrize("body", [
    {}, {"muted": "true"}, {"muted": 1}, {"muted": None}, {"muted": True, "also": 1}, [True],
    "muted",
])
def test_mute_refuses_any_other_body_and_changes_nothing(client, world, body):
    conversation_id = world["conversation"].id
    path = f"/api/conversations/{conversation_id}/mute"
    assert_error(client.post(path, json=body, headers=bearer(world["token"])), 400, "invalid")
    assert muted_of(client, world["token"]) == {conversation_id: False}


def test_a_participant_mutes_and_unmutes_for_themselves_alone(client, socket_client, world):
    conversation_id = world["conversation"].id
    path = f"/api/conversations/{conversation_id}/mute"
    bob_token = create_token(world["bob"], "bob's").secret
    ada_socket = socket_client(world["ada"])
    ada_socket.get_received("/chat")
    answer = client.post(path, json={"muted": True}, headers=bearer(world["token"]))
    assert answer.status_code == 200
    assert answer.get_json() == {"ok": True, "conversation_id": conversation_id, "muted": True}
    assert muted_of(client, world["token"]) == {conversation_id: True}
    assert muted_of(client, bob_token) == {conversation_id: False}
    # Ada's other pages and devices follow: her personal room hears of it.
    told = [e["args"][0] for e in ada_socket.get_received("/chat")
            if e["name"] == "conversation_muted"]
    assert told == [{"conversation_id": conversation_id, "muted": True}]
    assert client.post(path, json={"muted": True}, headers=bearer(world["token"])).get_json()[
        "muted"] is True  # muting twice is still muted
    assert client.post(path, json={"muted": False}, headers=bearer(world["token"])
                       ).status_code == 200
    assert muted_of(client, world["token"]) == {conversation_id: False}
    # Someone outside the conversation cannot mute it, nor learn that it exists.
    assert_error(client.post(path, json={"muted": True}, headers=bearer(world["eve_token"])),
                 404, "not_found")
    assert_error(client.post("/api/conversations/99999/mute", json={"muted": True},
                             headers=bearer(world["token"])), 404, "not_found")
    assert muted_of(client, bob_token) == {conversation_id: False}


def test_create_conversation_reuses_a_direct_one_and_makes_groups(client, world):
    token = bearer(world["token"])
    bob, eve = world["bob"], world["eve"]
    direct = client.post("/api/conversations", headers=token, json={"participants": [bob.id]})
    assert direct.status_code == 200
    assert direct.get_json()["conversation"]["id"] == world["conversation"].id
    group = client.post("/api/conversations", headers=token,
                        json={"participants": [bob.id, eve.id], "title": "Plans"})
    assert group.status_code == 201, group.get_data(as_text=True)
    body = group.get_json()
    assert body["created"] is True and body["conversation"]["is_group"] is True
    assert body["conversation"]["title"] == "Plans"
    assert {p["username"] for p in body["conversation"]["participants"]} == {"ada", "bob", "eve"}
    for bad in ({"participants": []}, {"participants": ["2"]}, {"participants": [bob.id], "x": 1},
                {"participants": [2.5]}, {"title": "no people"}, [bob.id],
                {"participants": [bob.id], "title": 5},
                {"participants": [bob.id, eve.id], "title": "nul \x00 inside"}):
        assert_error(client.post("/api/conversations", headers=token, json=bad), 400, "invalid")
    # Well formed, but naming no other active user: not found.
    for unknown in ({"participants": [99999]}, {"participants": [world["ada"].id]},
                    {"participants": [bob.id, 99999]}):
        assert_error(client.post("/api/conversations", headers=token, json=unknown),
                     404, "not_found")
    # JSON Schema's integer takes 7.0 for 7, and so does the API.
    again = client.post("/api/conversations", headers=token,
                        json={"participants": [float(bob.id)]})
    assert again.status_code == 200 and again.get_json()["created"] is False
    assert_error(client.post("/api/conversations", headers=token, data="participants=2",
                             content_type="application/x-www-form-urlencoded"), 400, "invalid")


def test_post_message_is_the_send_path(app, client, world):
    """Validation, de-duplication, fan-out to sockets and the stored row, as send_message."""
    conversation = world["conversation"]
    path = f"/api/conversations/{conversation.id}/messages"
    token = bearer(world["token"])
    bob_socket = socketio.test_client(app, namespace="/chat",
                                      auth={"token": create_token(world["bob"], "b").secret})
    assert bob_socket.is_connected("/chat")
    sent = client.post(path, headers=token, json={"message": "  hello\r\nbob ",
                                                  "client_id": "c-1"})
    assert sent.status_code == 201, sent.get_data(as_text=True)
    message = sent.get_json()["message"]
    assert message["message"] == "hello\nbob" and message["sender"] == world["ada"].id
    assert message["client_id"] == "c-1" and message["conversation_id"] == conversation.id
    # The test client hands the "message" event's payload over as is.
    pushed = [e["args"] for e in bob_socket.get_received("/chat") if e["name"] == "message"]
    assert [m["id"] for m in pushed] == [message["id"]]
    retry = client.post(path, headers=token, json={"message": "hello\nbob", "client_id": "c-1"})
    assert retry.status_code == 200
    assert retry.get_json()["duplicate"] is True and retry.get_json()["message"] == message
    assert_error(client.post(path, headers=token, json={"message": "other", "client_id": "c-1"}),
                 409, "conflict")
    assert_error(client.post(path, headers=token, json={"message": "   "}), 400, "empty")
    too_long = client.post(path, headers=token, json={"message": "x" * 4001})
    assert_error(too_long, 400, "too_long")
    assert too_long.get_json()["max_length"] == 4000
    for bad in ({"message": 5}, {}, {"message": "x", "client_id": ""},
                {"message": "x", "client_id": "x" * 65}, {"message": "x", "reply_to": "nope"},
                {"message": "x", "extra": True}):
        assert_error(client.post(path, headers=token, json=bad), 400, "invalid")
    huge = client.post(path, headers=token, json={"message": "x" * 70000})
    assert_error(huge, 413, "too_large")
    db.session.expire_all()
    assert [m.text for m in db.session.scalars(select(Message))] == ["hello\nbob"]
    bob_socket.disconnect("/chat")


@pytest.mark.settings(CHAT_RATE_LIMIT="1/10s")
def test_post_message_is_rate_limited_with_retry_after(client, world):
    path = f"/api/conversations/{world['conversation'].id}/messages"
    token = bearer(world["token"])
    assert client.post(path, headers=token, json={"message": "one"}).status_code == 201
    limited = client.post(path, headers=token, json={"message": "two"})
    assert_error(limited, 429, "rate_limited")
    assert 1 <= int(limited.headers["Retry-After"]) <= 10
    assert 0 < limited.get_json()["retry_after"] <= 10


def test_history_before_after_and_limit(client, world):
    path = f"/api/conversations/{world['conversation'].id}/messages"
    token = bearer(world["token"])
    ids = [client.post(path, headers=token, json={"message": f"m{i}"}).get_json()["message"]["id"]
           for i in range(5)]
    page = client.get(f"{path}?limit=2", headers=token).get_json()
    assert [m["id"] for m in page["messages"]] == ids[3:] and page["has_more"] is True
    older = client.get(f"{path}?limit=2&before={ids[3]}", headers=token).get_json()
    assert [m["id"] for m in older["messages"]] == ids[1:3]
    newer = client.get(f"{path}?after={ids[1]}&limit=2", headers=token).get_json()
    assert [m["id"] for m in newer["messages"]] == ids[2:4] and newer["has_more"] is True
    for bad in ("limit=0", "limit=٣", "before=abc", f"before={ids[0]}&after={ids[1]}"):
        assert_error(client.get(f"{path}?{bad}", headers=token), 400, "invalid")


def test_users_and_search_take_tokens(client, world):
    token = bearer(world["token"])
    client.post(f"/api/conversations/{world['conversation'].id}/messages", headers=token,
                json={"message": "findable words"})
    people = client.get("/api/users?q=b", headers=token).get_json()["results"]
    assert [p["id"] for p in people] == [world["bob"].id]
    found = client.get("/api/search?q=findable", headers=token).get_json()
    assert [r["conversation_id"] for r in found["results"]] == [world["conversation"].id]
    assert_error(client.get("/api/search?page=0", headers=token), 400, "invalid")


def test_a_token_uploads_and_sends_a_reply_with_the_attachment(client, world):
    """The upload route takes bearer tokens without a CSRF header; the REST send takes
    reply_to and attachments as the socket event does."""
    import io

    cid = world["conversation"].id
    messages = f"/api/conversations/{cid}/messages"
    first = client.post(messages, headers=bearer(world["token"]), json={"message": "first"})
    assert first.status_code == 201, first.get_json()
    upload = client.post(f"/api/conversations/{cid}/attachments", headers=bearer(world["token"]),
                         data={"file": (io.BytesIO(b"%PDF-1.4 plan"), "plan.pdf")},
                         content_type="multipart/form-data")
    assert upload.status_code == 201, upload.get_json()
    attachment = upload.get_json()["attachment"]
    assert client.post(f"/api/conversations/{cid}/attachments",
                       headers=bearer(world["eve_token"]),
                       data={"file": (io.BytesIO(b"x"), "x.txt")},
                       content_type="multipart/form-data").status_code == 404
    assert_error(client.post(messages, headers=bearer(world["token"]),
                             json={"message": "x", "attachments": [attachment["id"]] * 11}),
                 400, "too_many")
    sent = client.post(messages, headers=bearer(world["token"]), json={
        "message": "see the plan", "reply_to": first.get_json()["message"]["id"],
        "attachments": [attachment["id"]]})
    assert sent.status_code == 201, sent.get_json()
    message = sent.get_json()["message"]
    assert message["reply_to"]["preview"] == "first"
    assert [a["id"] for a in message["attachments"]] == [attachment["id"]]
    download = client.get(attachment["url"], headers=bearer(world["token"]))
    assert download.status_code == 200 and download.data == b"%PDF-1.4 plan"
    assert download.headers["Content-Disposition"].startswith("attachment")
    assert client.get(attachment["url"], headers=bearer(world["eve_token"])).status_code == 404


def test_a_reply_or_attachment_naming_nothing_of_mine_is_not_found(client, world):
    """The body matched the document: what it names is missing (404), it is not malformed; the
    socket event answers invalid for the same, as the protocol says."""
    from simplechat.infra.ids import new_message_id

    cid = world["conversation"].id
    messages = f"/api/conversations/{cid}/messages"
    token = bearer(world["token"])
    for body in ({"message": "x", "reply_to": new_message_id()},
                 {"message": "x", "attachments": ["0" * 32]},
                 {"message": "", "attachments": ["f" * 32]}):
        assert_error(client.post(messages, headers=token, json=body), 404, "not_found")
    sio = socketio.test_client(client.application, namespace="/chat",
                               auth={"token": world["token"]})
    ack = sio.emit("send_message", {"conversation_id": cid, "message": "x",
                                    "reply_to": new_message_id()}, namespace="/chat",
                   callback=True)
    assert ack == {"ok": False, "error": "invalid"}
    sio.disconnect("/chat")


def test_the_document_states_the_limits_the_server_enforces(app, client):
    app.config["CHAT_MAX_MESSAGE_LENGTH"] = 500
    app.extensions.pop("simplechat.openapi", None)  # the document is built once per app
    schemas = client.get("/api/openapi.json").get_json()["components"]["schemas"]
    body = schemas["NewMessage"]
    assert body["properties"]["message"]["maxLength"] == 500
    assert schemas["IncomingHookMessage"]["properties"]["message"]["maxLength"] == 500
    assert "x-setting" not in json.dumps(schemas)
    visible = schemas["IncomingHookMessage"]["properties"]["message"]["pattern"]
    for text, allowed in (("hi", True), (" \t\n\x1f\x7f\x85\u3000", False)):
        assert bool(re.search(visible, text)) is allowed, text
    # Visible text, unless the message carries files.
    assert {"properties": {"message": {"pattern": visible}}} in body["anyOf"]
    files = body["properties"]["attachments"]["anyOf"][0]
    assert files["maxItems"] == 10 and files["uniqueItems"] is True
    assert files["items"]["pattern"] == "^[0-9a-f]{32}$"
    reply = body["properties"]["reply_to"]["anyOf"][0]["pattern"]
    assert re.fullmatch(reply, "0193b8d2-5d6e-7c4a-9f00-0123456789ab")
    assert not re.fullmatch(reply, "0193b8d2-5d6e-7c4a-6f00-0123456789ab")  # another variant


# --------------------------------------------------------------------------- the document


def test_openapi_document_describes_every_api_route(app, client):
    document = client.get("/api/openapi.json").get_json()
    assert document["openapi"] == "3.1.0"
    described = {(method.upper(), path) for path, ops in document["paths"].items()
                 for method in ops}
    served = set()
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/api/") and not rule.endpoint.startswith("test_"):
            path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
            served |= {(m, path) for m in rule.methods - {"HEAD", "OPTIONS"}}
    assert served == described
    post = document["paths"]["/api/conversations/{conversation_id}/messages"]["post"]
    assert set(post["responses"]) >= {"201", "400", "401", "403", "409", "413", "429", "503"}
    assert "Retry-After" in post["responses"]["429"]["headers"]
    body = document["components"]["schemas"]["NewMessage"]
    assert set(body["properties"]) == {"message", "client_id", "reply_to", "attachments",
                                       "thread_id", "also_to_conversation"}


def test_api_docs_page_is_generated_from_the_document(client):
    page = client.get("/docs/api")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    for route in ("GET /api/me", "POST /api/conversations/{conversation_id}/messages",
                  "GET /api/openapi.json", "POST /api/hooks/{secret}"):
        assert route in html
    assert "<script>" not in html and "cdn" not in html.lower()


# --------------------------------------------------------------------------- sockets


def test_a_socket_connects_with_a_token_and_is_closed_when_it_is_revoked(app, world):
    sio = socketio.test_client(app, namespace="/chat", auth={"token": world["token"]})
    assert sio.is_connected("/chat")
    joined = sio.emit("join", {"conversation_id": world["conversation"].id}, namespace="/chat",
                      callback=True)
    assert joined["ok"] is True
    row = db.session.scalar(select(ApiToken).where(ApiToken.name == "laptop script"))
    assert revoke_tokens([row]) == 1
    ended = [p["args"][0] for p in sio.queue if p["name"] == "session_ended"]
    assert ended == [{"reason": "token_revoked"}]
    assert not sio.is_connected("/chat")
    again = socketio.test_client(app, namespace="/chat", auth={"token": world["token"]})
    assert not again.is_connected("/chat")


def test_bad_socket_tokens_are_refused(app, world):
    for auth in ({"token": world["revoked"]}, {"token": "sct_nope"}, {"token": 5}, {"token": ""}):
        assert not socketio.test_client(app, namespace="/chat", auth=auth).is_connected("/chat")


def test_a_token_socket_sends_and_its_events_see_a_revocation_made_elsewhere(app, world):
    sio = socketio.test_client(app, namespace="/chat", auth={"token": world["token"]})
    ack = sio.emit("send_message", {"conversation_id": world["conversation"].id,
                                    "message": "from a bot socket"}, namespace="/chat",
                   callback=True)
    assert ack["ok"] is True and ack["message"]["sender"] == world["ada"].id
    # Revoked by another process: its push does not reach this registry, the cache check does.
    row = db.session.scalar(select(ApiToken).where(ApiToken.name == "laptop script"))
    from simplechat.auth.tokens import token_store

    row.revoked_at = row.created_at
    db.session.commit()
    token_store().forget([row.id])
    app.config["SESSION_CHECK_INTERVAL"] = 0
    ack = sio.emit("send_message", {"conversation_id": world["conversation"].id,
                                    "message": "after"}, namespace="/chat", callback=True)
    assert ack == {"ok": False, "error": "unauthorized"}


# --------------------------------------------------------------------------- the tokens page


def test_tokens_page_makes_shows_once_and_revokes(app, client, auth, world):
    app.config["WTF_CSRF_ENABLED"] = True
    login_page = client.get("/auth/login").get_data(as_text=True)
    form_token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', login_page).group(1)
    client.post("/auth/login", data={"username": "bob", "password": PASSWORD,
                                     "csrf_token": form_token})
    page = client.get("/profile/tokens")
    assert page.status_code == 200 and b"You have no tokens" in page.data
    csrf = page_csrf(client)
    assert client.post("/profile/tokens", data={"name": "phone"}).status_code == 400
    made = client.post("/profile/tokens", data={"name": "phone", "csrf_token": csrf})
    html = made.get_data(as_text=True)
    secret = re.search(r'id="new-token">(sct_[^<]+)<', html).group(1)
    assert client.get("/api/me", headers=bearer(secret)).get_json()["username"] == "bob"
    listing = client.get("/profile/tokens").get_data(as_text=True)
    assert "phone" in listing and secret not in listing
    row = db.session.scalar(select(ApiToken).where(ApiToken.name == "phone"))
    assert row.token_hash != secret and secret not in row.token_hash
    ada_row = db.session.scalar(select(ApiToken).where(ApiToken.name == "laptop script"))
    assert client.post(f"/profile/tokens/{ada_row.id}/revoke",
                       data={"csrf_token": csrf}).status_code == 404
    revoked = client.post(f"/profile/tokens/{row.id}/revoke", data={"csrf_token": csrf})
    assert revoked.status_code == 302
    assert_error(client.get("/api/me", headers=bearer(secret)), 401, "unauthorized")


# --------------------------------------------------------------------------- the commands


def test_tokens_commands_create_list_revoke(runner, client, world):
    made = runner.invoke(args=["tokens", "create", "bob", "--name", "ci job"])
    assert made.exit_code == 0, made.output
    secret = made.output.strip().splitlines()[-1]
    assert secret.startswith("sct_")
    assert client.get("/api/me", headers=bearer(secret)).get_json()["username"] == "bob"
    listed = runner.invoke(args=["tokens", "list", "bob"])
    assert "ci job" in listed.output and secret not in listed.output
    token_id = db.session.scalar(select(ApiToken.id).where(ApiToken.name == "ci job"))
    revoked = runner.invoke(args=["tokens", "revoke", str(token_id)])
    assert revoked.exit_code == 0, revoked.output
    assert_error(client.get("/api/me", headers=bearer(secret)), 401, "unauthorized")
    assert runner.invoke(args=["tokens", "revoke", str(token_id)]).exit_code == 1
    assert runner.invoke(args=["tokens", "create", "bob", "--name", " "]).exit_code == 1


def test_a_bot_user_has_no_password_login_and_works_by_token(runner, client):
    made = runner.invoke(args=["users", "create", "helper-bot", "--bot"])
    assert made.exit_code == 0, made.output
    bot = db.session.scalar(select(User).where(User.username == "helper-bot"))
    assert bot.is_bot and not bot.check_password("")
    response = client.post("/auth/login", data={"username": "helper-bot", "password": "!"})
    assert response.status_code != 302
    assert runner.invoke(args=["users", "set-password", "helper-bot", "--password",
                               "long enough pw"]).exit_code == 1
    secret = runner.invoke(args=["tokens", "create", "helper-bot", "--name", "run"]
                           ).output.strip().splitlines()[-1]
    me = client.get("/api/me", headers=bearer(secret)).get_json()
    assert me["is_bot"] is True and me["username"] == "helper-bot"
    assert "bot" in runner.invoke(args=["users", "list"]).output
