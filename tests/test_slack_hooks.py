"""POST /api/hooks/<secret>/slack: Slack's payload (JSON, or the form field ``payload``) posted
as the hook's bot through the send path, answered ``ok`` as plain text; every refusal (a bad
secret, a body that is not Slack's shape, one too large, a text past the limit, the rate limit)
posts nothing. And the settings page's incoming-webhook form, which shows both addresses."""

from __future__ import annotations

import json
import re
from urllib.parse import urlsplit

import pytest
from conftest import app_in_context
from sqlalchemy import select

from simplechat.extensions import db
from simplechat.models import Message, User, Webhook
from tests.test_slack_translation import ALERTMANAGER, BLOCKS, LEGACY_ATTACHMENT
from tests.test_webhook_settings import logged_in


@pytest.fixture
def app(database_uri, redis_url, request):
    marker = request.node.get_closest_marker("settings")
    overrides = {"CHAT_RATE_LIMIT": "off", **(marker.kwargs if marker else {})}
    yield from app_in_context(database_uri, redis_url, **overrides)


@pytest.fixture
def chat(make_user, make_conversation):
    ada, bob, cy = make_user("ada"), make_user("bob"), make_user("cy")
    return ada, bob, cy, make_conversation(ada, bob, cy, title="ops")


@pytest.fixture
def hook(runner, chat):
    """The /slack path of an incoming hook of the group, posting as the bot "Alerts"."""
    conversation = chat[3]
    made = runner.invoke(args=["webhooks", "create", "--conversation", str(conversation.id),
                               "--incoming", "--name", "Alerts"])
    assert made.exit_code == 0, made.output
    return made.output.strip().splitlines()[-1] + "/slack"


def stored() -> list[Message]:
    db.session.rollback()
    return list(db.session.scalars(select(Message).order_by(Message.id)))


def bot() -> User:
    return db.session.scalar(select(User).where(User.is_bot.is_(True)))


def assert_ok(answer) -> None:
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert answer.mimetype == "text/plain" and answer.get_data(as_text=True) == "ok"


def test_a_json_payload_is_posted_as_the_bot(client, chat, hook):
    assert_ok(client.post(hook, json={"text": "*Deploy* of <https://ci.example/7|build 7> done"}))
    [message] = stored()
    assert message.sender_id == bot().id and bot().first_name == "Alerts"
    assert message.text == "**Deploy** of [build 7](<https://ci.example/7>) done"
    assert message.html == ('<p><strong>Deploy</strong> of <a href="https://ci.example/7" '
                            'rel="noopener noreferrer nofollow">build 7</a> done</p>')


def test_the_form_variant(client, chat, hook):
    assert_ok(client.post(hook, data={"payload": json.dumps({"text": "from a form"})}))
    # curl -d '{"text": ...}' without a content type: the JSON is the form's one key.
    assert_ok(client.post(hook, data='{"text": "from curl -d"}',
                          content_type="application/x-www-form-urlencoded"))
    # multipart, as some HTTP clients send forms
    assert_ok(client.post(hook, data={"payload": '{"text": "multipart"}'},
                          content_type="multipart/form-data"))
    assert [m.text for m in stored()] == ["from a form", "from curl -d", "multipart"]


@pytest.mark.parametrize("payload, expected", [
    (LEGACY_ATTACHMENT, "<blockquote>"),
    (BLOCKS, "<h3>New review *1 star*</h3>"),
    (ALERTMANAGER, "[FIRING:1] InstanceDown"),
    ({"blocks": BLOCKS["blocks"], "attachments": LEGACY_ATTACHMENT["attachments"]},
     "<hr>"),
])
def test_attachments_blocks_and_both(client, chat, hook, payload, expected):
    assert_ok(client.post(hook, json=payload))
    [message] = stored()
    assert expected in message.html


def test_here_mentions_everyone_in_the_group(client, chat, socket_client, hook):
    ada, bob, cy, conversation = chat
    sio = socket_client(bob)
    sio.get_received("/chat")
    assert_ok(client.post(hook, json={"text": "<!here> disk full"}))
    [message] = stored()
    assert '<span class="mention">@all</span>' in message.html
    mentions = [e for e in sio.get_received("/chat") if e["name"] == "mention"]
    assert mentions and mentions[0]["args"][0]["message"]["id"] == message.id


@pytest.mark.parametrize("payload", [
    {"text": "<script>alert(1)</script> &lt;script&gt;alert(2)&lt;/script&gt;"},
    {"attachments": [{"title": "<script>x</script>", "title_link": "javascript:alert(1)",
                      "text": "&lt;img src=x onerror=alert(1)&gt;",
                      "fields": [{"title": "<b>", "value": "<script>y</script>"}]}]},
    {"blocks": [{"type": "header", "text": {"type": "plain_text", "text": "<script>h</script>"}},
                {"type": "section", "text": {"type": "mrkdwn", "text": "&lt;script&gt;"}},
                {"type": "image", "image_url": "javascript:alert(1)", "alt_text": "<script>"}]},
])
def test_everything_is_sanitized(client, chat, hook, payload):
    assert_ok(client.post(hook, json=payload))
    [message] = stored()
    assert "<script" not in message.html and "<img" not in message.html
    assert "<b>" not in message.html and "javascript" not in message.html
    assert "&lt;script&gt;" in message.html


@pytest.mark.parametrize("body, content_type", [
    (b"not json", "application/json"),
    (b"[1, 2]", "application/json"),
    (b'"text"', "application/json"),
    (b"", "application/json"),
    (b'{"text": ["x"]}', "application/json"),
    (b'{"attachments": {"text": "x"}}', "application/json"),
    (b'{"blocks": [{"type": "section", "text": 5}]}', "application/json"),
    (b"[" * 30000 + b"]" * 30000, "application/json"),
    (b"payload=not+json", "application/x-www-form-urlencoded"),
    (b"payload=%7B%7D&payload=%7B%7D", "application/x-www-form-urlencoded"),
    (b"text=hello", "application/x-www-form-urlencoded"),
    (b"payload=%7B%22text%22%3A%22x%22%7D&extra=1", "application/x-www-form-urlencoded"),
    (b'{"text": "\\ud800"}', "application/json"),
])
def test_a_malformed_body_is_invalid_and_posts_nothing(client, chat, hook, body, content_type):
    answer = client.post(hook, data=body, content_type=content_type)
    assert answer.status_code == 400, answer.get_data(as_text=True)
    assert answer.get_json() == {"ok": False, "error": "invalid"}
    assert stored() == []


@pytest.mark.parametrize("payload", [{}, {"text": "   "}, {"blocks": [{"type": "actions"}]}])
def test_a_payload_showing_nothing_is_empty(client, chat, hook, payload):
    answer = client.post(hook, json=payload)
    assert answer.status_code == 400 and answer.get_json()["error"] == "empty"
    assert stored() == []


def test_sizes_are_the_hooks_limits(app, client, chat, hook):
    app.config["CHAT_MAX_MESSAGE_LENGTH"] = 300
    long = client.post(hook, json={"attachments": [{"text": "x" * 290, "title": "long"}]})
    assert long.status_code == 400
    assert long.get_json() == {"ok": False, "error": "too_long", "max_length": 300}
    big = client.post(hook, json={"text": "x" * (app.config["MAX_CONTENT_LENGTH"] + 1)})
    assert big.status_code == 413 and big.get_json()["error"] == "too_large"
    form = client.post(hook, data={"payload": json.dumps(
        {"text": "y" * app.config["MAX_CONTENT_LENGTH"]})})
    assert form.status_code == 413
    assert stored() == []
    assert_ok(client.post(hook, json={"text": "x" * 300}))


def test_a_bad_secret_is_not_found_whatever_the_body(client, chat, hook):
    for path in ("/api/hooks/not-a-secret/slack", hook.replace("/slack", "x/slack")):
        for kwargs in ({"json": {"text": "x"}}, {"data": b"garbage"}):
            answer = client.post(path, **kwargs)
            assert answer.status_code == 404, answer.get_data(as_text=True)
            assert answer.get_json() == {"ok": False, "error": "not_found"}
    assert client.get(hook).status_code == 405
    hook_id = db.session.scalar(select(Webhook.id))
    db.session.delete(db.session.get(Webhook, hook_id))
    db.session.commit()
    assert client.post(hook, json={"text": "after delete"}).status_code == 404
    assert stored() == []


def test_an_outgoing_hooks_secret_does_not_post(app, runner, client, chat):
    app.config["WEBHOOK_ALLOW_PRIVATE"] = True
    made = runner.invoke(args=["webhooks", "create", "--conversation", str(chat[3].id),
                               "--url", "http://127.0.0.1:9/x"])
    secret = made.output.strip().splitlines()[-1]
    assert client.post(f"/api/hooks/{secret}/slack", json={"text": "x"}).status_code == 404


@pytest.mark.settings(CHAT_RATE_LIMIT="2/minute")
def test_the_rate_limit_is_the_hooks(client, chat, hook):
    assert_ok(client.post(hook, json={"text": "one"}))
    plain = hook[:-len("/slack")]
    assert client.post(plain, json={"message": "two"}).status_code == 201  # the same bot's
    refused = client.post(hook, json={"text": "three"})
    assert refused.status_code == 429 and refused.get_json()["error"] == "rate_limited"
    assert int(refused.headers["Retry-After"]) >= 1
    assert [m.text for m in stored()] == ["one", "two"]


def test_the_route_is_in_the_document(client):
    document = client.get("/api/openapi.json").get_json()
    post = document["paths"]["/api/hooks/{secret}/slack"]["post"]
    assert post["security"] == [] and post["tags"] == ["webhooks"]
    assert post["responses"]["200"]["content"] == {
        "text/plain": {"schema": {"type": "string", "const": "ok"}}}
    assert set(post["responses"]) >= {"200", "400", "404", "409", "413", "429", "503"}
    body = post["requestBody"]["content"]
    assert body["application/json"]["schema"] == {"$ref": "#/components/schemas/SlackMessage"}
    assert body["application/x-www-form-urlencoded"]["schema"]["required"] == ["payload"]
    schema = document["components"]["schemas"]["SlackMessage"]
    assert {"text", "attachments", "blocks", "mrkdwn"} <= set(schema["properties"])


# --------------------------------------------------------------------------- the settings page


def add_incoming(http, conversation_id, name, **extra):
    return http.post(f"/chat/{conversation_id}/webhooks/incoming",
                     data={"bot_name": name, **extra})


def shown_urls(page: str) -> tuple[str, str] | None:
    plain = re.search(r'id="new-incoming-url">([^<]*)<', page)
    slack = re.search(r'id="new-incoming-slack-url">([^<]*)<', page)
    return (plain.group(1), slack.group(1)) if plain and slack else None


def test_a_participant_adds_an_incoming_webhook_and_sees_both_urls(app, client, chat):
    ada, bob, cy, conversation = chat
    answer = add_incoming(logged_in(app, ada), conversation.id, "  Deploy bot ")
    assert answer.status_code == 200
    page = answer.get_data(as_text=True)
    plain, slack = shown_urls(page)
    assert plain.startswith("http://localhost/api/hooks/") and slack == plain + "/slack"
    [hook] = db.session.scalars(select(Webhook)).all()
    assert (hook.kind, hook.created_by_id) == ("incoming", ada.id)
    assert bot().first_name == "Deploy bot"
    assert "Incoming (posts as Deploy bot)" in page
    # Both addresses post; the secret is never shown again.
    assert client.post(urlsplit(plain).path, json={"message": "plain"}).status_code == 201
    assert_ok(client.post(urlsplit(slack).path, json={"text": "*slack*"}))
    assert [m.text for m in stored()] == ["plain", "**slack**"]
    again = logged_in(app, bob).get(f"/chat/{conversation.id}/settings").get_data(as_text=True)
    assert shown_urls(again) is None and urlsplit(plain).path.split("/")[-1] not in again
    assert "Incoming (posts as Deploy bot)" in again


def test_the_urls_are_built_on_site_url(app, chat):
    app.config["SITE_URL"] = "https://chat.example.com/"
    page = add_incoming(logged_in(app, chat[0]), chat[3].id, "Bot").get_data(as_text=True)
    plain, slack = shown_urls(page)
    assert plain.startswith("https://chat.example.com/api/hooks/")
    assert slack.startswith("https://chat.example.com/api/hooks/") and slack.endswith("/slack")


@pytest.mark.parametrize("name, says", [
    ("", "Name the bot its messages come from."),
    ("   ", "Name the bot its messages come from."),
    ("x" * 65, "64 characters"),
    ("bad\x00name", "not allowed"),
])
def test_a_bad_bot_name_is_a_form_error_and_makes_nothing(app, chat, name, says):
    answer = add_incoming(logged_in(app, chat[0]), chat[3].id, name)
    assert answer.status_code == 200
    page = answer.get_data(as_text=True)
    errors = re.search(r'id="bot_name-errors">([^<]*)<', page)
    assert errors and says in errors.group(1), page
    assert 'id="form-errors"' in page and shown_urls(page) is None
    assert db.session.scalars(select(Webhook)).all() == [] and bot() is None


def test_an_incoming_webhook_past_the_most_is_a_form_error(app, chat):
    app.config["WEBHOOK_MAX_PER_CONVERSATION"] = 2
    http = logged_in(app, chat[0])
    for n in range(2):
        assert shown_urls(add_incoming(http, chat[3].id, f"bot {n}").get_data(as_text=True))
    page = add_incoming(http, chat[3].id, "one too many").get_data(as_text=True)
    assert "the most it may have (2)" in page and shown_urls(page) is None
    db.session.rollback()
    assert len(db.session.scalars(select(Webhook)).all()) == 2
    assert len(db.session.scalars(select(User).where(User.is_bot.is_(True))).all()) == 2


def test_strangers_cannot_add_and_the_form_needs_csrf(app, client, chat):
    ada, bob, cy, conversation = chat
    cy_http = logged_in(app, cy)
    from simplechat.conversations.groups import leave_conversation

    assert leave_conversation(cy, {"conversation_id": conversation.id})["ok"]
    assert add_incoming(cy_http, conversation.id, "mine").status_code == 404
    anonymous = client.post(f"/chat/{conversation.id}/webhooks/incoming",
                            data={"bot_name": "x"})
    assert anonymous.status_code == 302 and "/auth/login" in anonymous.headers["Location"]
    http = logged_in(app, ada)
    app.config["WTF_CSRF_ENABLED"] = True
    page = http.get(f"/chat/{conversation.id}/settings").get_data(as_text=True)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
    assert add_incoming(http, conversation.id, "no token").status_code == 400
    assert db.session.scalars(select(Webhook)).all() == []
    made = add_incoming(http, conversation.id, "with token", csrf_token=token)
    assert shown_urls(made.get_data(as_text=True))
