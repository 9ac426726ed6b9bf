"""Slash commands against a command service started here (an HTTP server on 127.0.0.1 that
checks both signatures): typing a registered /name calls it instead of sending a message, and
its answer is shown to the caller alone (ephemeral) or posted as the command's bot (in_channel),
at once or later through response_url; a slow, failing or refused service is told to the
caller, never the room; response_url refuses after its validity, for another conversation, a
deleted command or a caller who left. Also ``flask commands``, the settings page's forms and
GET /api/conversations/<id>/commands."""

from __future__ import annotations

import re
import time
from urllib.parse import urlsplit

import pytest
from conftest import app_in_context
from sqlalchemy import select

from simplechat.conversations.groups import leave_conversation
from simplechat.extensions import db
from simplechat.models import GenericErrorLog, Message, Participant, SlashCommand, User
from simplechat.slash_commands import responses
from tests.e2e.command_service import CommandService
from tests.test_webhook_settings import logged_in

FIELDS = {"command", "text", "user_id", "user_name", "channel_id", "channel_name",
          "response_url"}


def wait_for(probe, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not (value := probe()):
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.02)
    return value


@pytest.fixture
def app(database_uri, redis_url, request):
    marker = request.node.get_closest_marker("settings")
    overrides = {"CHAT_RATE_LIMIT": "off", "WEBHOOK_ALLOW_PRIVATE": True,
                 "SLASH_COMMAND_TIMEOUT": 1.0, **(marker.kwargs if marker else {})}
    yield from app_in_context(database_uri, redis_url, **overrides)


@pytest.fixture
def service():
    made = CommandService()
    yield made
    made.close()


@pytest.fixture
def chat(make_user, make_conversation):
    ada, bob, cy, dee = (make_user(name) for name in ("ada", "bob", "cy", "dee"))
    return ada, bob, cy, make_conversation(ada, bob, dee, title="deploys")


def create(runner, *args) -> tuple[int, str]:
    result = runner.invoke(args=["commands", "create", *args])
    return result.exit_code, result.output


@pytest.fixture
def deploy(runner, chat, service) -> SlashCommand:
    """/deploy of the conversation, calling the service (which learns its secret)."""
    code, output = create(runner, "--conversation", str(chat[3].id), "--command", "/deploy",
                          "--url", service.url, "--description", "Deploy a branch")
    assert code == 0, output
    service.secret = output.strip().splitlines()[-1]
    return db.session.scalar(select(SlashCommand))


class Sockets:
    """ada's and bob's sockets in the conversation, their events read as they come."""

    def __init__(self, socket_client, ada, bob):
        self.ada, self.bob = socket_client(ada), socket_client(bob)
        self.seen = {"ada": [], "bob": []}
        for sio in (self.ada, self.bob):
            sio.get_received("/chat")

    def events(self, who: str, name: str) -> list[dict]:
        sio = self.ada if who == "ada" else self.bob
        self.seen[who] += sio.get_received("/chat")
        return [e["args"][0] if isinstance(e["args"], list) else e["args"]
                for e in self.seen[who] if e["name"] == name]

    def wait(self, who: str, name: str, count: int = 1) -> list[dict]:
        return wait_for(lambda: len(found := self.events(who, name)) >= count and found)

    def send(self, conversation_id: int, text: str, **extra) -> dict:
        return self.ada.emit("send_message", {"conversation_id": conversation_id,
                                              "message": text, **extra},
                             namespace="/chat", callback=True)


@pytest.fixture
def sockets(socket_client, chat):
    return Sockets(socket_client, chat[0], chat[1])


def stored() -> list[Message]:
    db.session.rollback()
    return list(db.session.scalars(select(Message).order_by(Message.id)))


# --------------------------------------------------------------------------- calling


def test_an_ephemeral_answer_reaches_the_caller_alone(chat, deploy, service, sockets):
    ada, bob, cy, conversation = chat
    service.answers({"text": "*Deploying* `main` to <https://staging.example|staging>"})
    ack = sockets.send(conversation.id, "/deploy main to staging")
    assert ack == {"ok": True, "command": {"name": "/deploy", "text": "main to staging"}}
    [shown] = sockets.wait("ada", "ephemeral")
    assert shown["conversation_id"] == conversation.id
    message = shown["message"]
    assert message["ephemeral"] is True and message["command"] == "/deploy"
    assert message["conversation_id"] == conversation.id
    assert message["sender"] == deploy.bot_user_id and message["sender_name"] == "deploy"
    assert message["html"] == ('<p><strong>Deploying</strong> <code>main</code> to '
                               '<a href="https://staging.example" rel="noopener noreferrer '
                               'nofollow">staging</a></p>')
    [call] = service.calls
    assert FIELDS <= set(call) and service.refused == 0
    assert call["_content_type"] == "application/x-www-form-urlencoded"
    assert (call["command"], call["text"], call["user_id"], call["user_name"],
            call["channel_id"], call["channel_name"]) == (
        "/deploy", "main to staging", str(ada.id), "ada", str(conversation.id), "deploys")
    assert call["response_url"].startswith("http://localhost/api/commands/responses/")
    time.sleep(0.2)
    assert sockets.events("bob", "ephemeral") == [] and sockets.events("bob", "message") == []
    assert sockets.events("ada", "message") == [] and stored() == []


def test_an_in_channel_answer_is_posted_as_the_bot(chat, deploy, service, sockets):
    ada, bob, cy, conversation = chat
    assert not db.session.scalar(select(Participant.id).where(
        Participant.conversation_id == conversation.id,
        Participant.user_id == deploy.bot_user_id))
    service.answers({"response_type": "in_channel", "text": "Deployed *v2*",
                     "attachments": [{"color": "good", "text": "all checks green"}]})
    assert sockets.send(conversation.id, "/deploy v2")["ok"] is True
    [message] = sockets.wait("bob", "message")
    assert message["sender"] == deploy.bot_user_id
    assert message["message"] == "Deployed **v2**\n\n> 🟢 all checks green"
    assert sockets.wait("ada", "message")[0]["id"] == message["id"]
    assert [(m.sender_id, m.id) for m in stored()] == [(deploy.bot_user_id, message["id"])]
    assert sockets.events("ada", "ephemeral") == []
    # Its bot joined the conversation to post there.
    db.session.rollback()
    assert db.session.scalar(select(Participant.id).where(
        Participant.conversation_id == conversation.id,
        Participant.user_id == deploy.bot_user_id))


def test_a_plain_text_answer_is_shown_to_the_caller(chat, deploy, service, sockets):
    service.answers("Usage: /deploy BRANCH <script>alert(1)</script>")
    assert sockets.send(chat[3].id, "/deploy")["ok"] is True
    [shown] = sockets.wait("ada", "ephemeral")
    assert "<script" not in shown["message"]["html"]
    assert "Usage: /deploy BRANCH &lt;script&gt;" in shown["message"]["html"]
    assert service.calls[0]["text"] == ""


def test_a_late_answer_through_response_url(client, chat, deploy, service, sockets):
    ada, bob, cy, conversation = chat
    assert sockets.send(conversation.id, "/DEPLOY later")["ok"] is True  # names in any case
    call = wait_for(lambda: service.calls)[0]
    path = urlsplit(call["response_url"]).path
    time.sleep(0.2)
    assert sockets.events("ada", "ephemeral") == []  # an empty 200 shows nothing
    answer = client.post(path, json={"text": "Step 1 of 2 done"})
    assert answer.status_code == 200 and answer.get_data(as_text=True) == "ok"
    assert answer.mimetype == "text/plain"
    [shown] = sockets.wait("ada", "ephemeral")
    assert shown["message"]["message"] == "Step 1 of 2 done"
    posted = client.post(path, json={"response_type": "in_channel", "text": "*Done*"})
    assert posted.status_code == 200
    [message] = sockets.wait("bob", "message")
    assert message["html"] == "<p><strong>Done</strong></p>"
    assert [m.text for m in stored()] == ["**Done**"]
    assert sockets.events("bob", "ephemeral") == []
    # What a response_url refuses.
    for body in (b"not json", b"[1]", b'{"text": ["x"]}'):
        refused = client.post(path, data=body, content_type="application/json")
        assert refused.status_code == 400 and refused.get_json()["error"] == "invalid"
    assert client.post(path, json={"text": ""}).get_json()["error"] == "empty"
    assert len(stored()) == 1


def test_a_service_slower_than_the_window_is_told_to_the_caller(app, client, chat, deploy,
                                                                 service, sockets):
    app.config["SLASH_COMMAND_TIMEOUT"] = 0.5
    service.delay = 2.0
    service.answers({"response_type": "in_channel", "text": "too late to count"})
    assert sockets.send(chat[3].id, "/deploy slowly")["ok"] is True
    [shown] = sockets.wait("ada", "ephemeral")
    assert shown["message"]["message"] == "/deploy did not answer within 0.5 seconds."
    time.sleep(2.0)  # the service's answer comes, and is not shown
    assert sockets.events("bob", "ephemeral") == [] and sockets.events("bob", "message") == []
    assert stored() == []
    # It may still answer through response_url.
    path = urlsplit(service.calls[0]["response_url"]).path
    assert client.post(path, json={"text": "finished after all"}).status_code == 200
    assert sockets.wait("ada", "ephemeral", 2)[1]["message"]["message"] == "finished after all"


@pytest.mark.parametrize("status, body, says", [
    (500, b"boom", "/deploy failed: its service answered HTTP 500."),
    (404, b"", "/deploy failed: its service answered HTTP 404."),
    (302, b"", "/deploy failed: its service answered HTTP 302."),
    (200, b"{not json", "/deploy failed: its answer was not a JSON object."),
    (200, b'{"text": 7j}', "/deploy failed: its answer was not a JSON object."),
    (200, b'{"attachments": "x"}', "/deploy failed: its answer could not be shown (invalid)."),
    (200, b"x" * 70000, "/deploy failed: its answer was too long."),
])
def test_a_failing_service_is_told_to_the_caller_never_the_room(chat, deploy, service,
                                                                sockets, status, body, says):
    service.reply = lambda fields: (status, "application/json", body)
    assert sockets.send(chat[3].id, "/deploy now")["ok"] is True
    [shown] = sockets.wait("ada", "ephemeral")
    assert shown["message"]["message"] == says
    assert shown["message"]["sender_name"] == "Simple Chat"
    time.sleep(0.2)
    assert sockets.events("bob", "ephemeral") == [] and sockets.events("bob", "message") == []
    assert stored() == []


def test_a_service_that_is_down_is_told_to_the_caller(chat, deploy, service, sockets):
    service.close()
    assert sockets.send(chat[3].id, "/deploy")["ok"] is True
    [shown] = sockets.wait("ada", "ephemeral")
    assert shown["message"]["message"] == "/deploy could not be reached."


def test_a_private_address_refused_at_call_time(app, chat, deploy, service, sockets):
    app.config["WEBHOOK_ALLOW_PRIVATE"] = False
    assert sockets.send(chat[3].id, "/deploy")["ok"] is True
    [shown] = sockets.wait("ada", "ephemeral")
    assert shown["message"]["message"] == "/deploy could not be called: its address is not allowed."
    assert service.calls == []
    db.session.rollback()
    rows = db.session.scalars(select(GenericErrorLog)).all()
    assert [r.error_type for r in rows] == ["UnsafeURL"] and "private" in rows[0].message


def test_an_unknown_word_and_a_command_with_more_are_messages(chat, deploy, service, sockets):
    conversation = chat[3]
    for text in ("/shrug ok", "/deployment", "/ deploy", "deploy /deploy", "/deploy/x"):
        ack = sockets.send(conversation.id, text)
        assert ack["ok"] is True and ack["message"]["message"] == text
    first = stored()[0]
    replied = sockets.send(conversation.id, "/deploy x", reply_to=first.id)
    assert replied["ok"] is True and replied["message"]["message"] == "/deploy x"
    time.sleep(0.2)
    assert service.calls == [] and len(stored()) == 6


def test_a_stranger_cannot_call_a_command(chat, deploy, service, socket_client,
                                          make_conversation):
    ada, bob, cy, conversation = chat
    sio = socket_client(cy)
    ack = sio.emit("send_message", {"conversation_id": conversation.id, "message": "/deploy"},
                   namespace="/chat", callback=True)
    assert ack == {"ok": False, "error": "forbidden"}
    time.sleep(0.2)
    assert service.calls == []


@pytest.mark.settings(CHAT_RATE_LIMIT="2/minute")
def test_a_command_takes_the_callers_rate_limit(chat, deploy, service, sockets):
    conversation = chat[3]
    assert sockets.send(conversation.id, "/deploy 1")["ok"] is True
    assert sockets.send(conversation.id, "a message")["ok"] is True
    refused = sockets.send(conversation.id, "/deploy 2")
    assert refused["ok"] is False and refused["error"] == "rate_limited"
    time.sleep(0.2)
    assert len(service.calls) == 1


def test_an_archived_conversation_refuses_commands(runner, chat, deploy, service,
                                                   socket_client, make_user):
    ada, bob = chat[0], chat[1]
    made = runner.invoke(args=["conversations", "create", "--private", "--users", "ada,bob",
                               "--title", "old"])
    assert made.exit_code == 0, made.output
    group_id = int(re.search(r"(\d+)", made.output).group(1))
    code, output = create(runner, "--conversation", str(group_id), "--command", "/deploy",
                          "--url", service.url)
    assert code == 0, output
    assert runner.invoke(args=["channels", "archive", str(group_id)]).exit_code == 0
    ack = Sockets(socket_client, ada, bob).send(group_id, "/deploy")
    assert ack == {"ok": False, "error": "archived"}
    time.sleep(0.2)
    assert service.calls == []


def test_a_command_of_every_conversation(runner, client, chat, service, sockets,
                                         make_conversation):
    ada, bob, cy, conversation = chat
    code, output = create(runner, "--all", "--command", "/status", "--url", service.url,
                          "--name", "Status bot")
    assert code == 0, output
    service.secret = output.strip().splitlines()[-1]
    command = db.session.scalar(select(SlashCommand))
    assert command.conversation_id is None
    service.answers({"response_type": "in_channel", "text": "all systems go"})
    assert sockets.send(conversation.id, "/status")["ok"] is True
    [message] = sockets.wait("bob", "message")
    assert message["sender"] == command.bot_user_id and message["sender_name"] == "Status bot"
    # Its bot joined the conversation to post there.
    assert db.session.scalar(select(Participant.id).where(
        Participant.conversation_id == conversation.id,
        Participant.user_id == command.bot_user_id))
    # A conversation's own command of that name hides it there.
    own = CommandService()
    try:
        code, output = create(runner, "--conversation", str(conversation.id),
                              "--command", "/status", "--url", own.url)
        assert code == 0, output
        own.secret = output.strip().splitlines()[-1]
        assert sockets.send(conversation.id, "/status")["ok"] is True
        wait_for(lambda: own.calls)
        assert len(service.calls) == 1
        # ...and a response_url of the command it hides is refused there from now on.
        path = urlsplit(service.calls[0]["response_url"]).path
        assert client.post(path, json={"text": "x"}).status_code == 404
    finally:
        own.close()


# --------------------------------------------------------------------------- response_url


def test_a_response_url_expires_after_thirty_minutes(client, chat, deploy, service, sockets,
                                                     monkeypatch):
    assert sockets.send(chat[3].id, "/deploy")["ok"] is True
    path = urlsplit(wait_for(lambda: service.calls)[0]["response_url"]).path
    real = time.time
    monkeypatch.setattr(responses, "clock", lambda: real() + 29 * 60)
    assert client.post(path, json={"text": "at 29 minutes"}).status_code == 200
    monkeypatch.setattr(responses, "clock", lambda: real() + 30 * 60 + 1)
    late = client.post(path, json={"response_type": "in_channel", "text": "at 30 minutes"})
    assert late.status_code == 404 and late.get_json() == {"ok": False, "error": "not_found"}
    assert [e["message"]["message"] for e in sockets.wait("ada", "ephemeral")] == [
        "at 29 minutes"]
    assert stored() == []


def test_a_response_url_is_bound_to_its_conversation_command_and_caller(
        app, runner, client, chat, deploy, service, sockets, make_conversation):
    ada, bob, cy, conversation = chat
    assert sockets.send(conversation.id, "/deploy")["ok"] is True
    path = urlsplit(wait_for(lambda: service.calls)[0]["response_url"]).path
    token = path.rsplit("/", 1)[1]
    # Another conversation's: its id changed in the token, the signature no longer holds.
    other = make_conversation(ada, cy, title="elsewhere")
    payload, signature = token.rsplit(".", 1)
    from itsdangerous import URLSafeSerializer

    forged = URLSafeSerializer("wrong key", salt="x").dumps(
        [deploy.id, other.id, ada.id, int(time.time()) + 600])
    for bad in (forged, payload + ".AAAA", token[:-2], "x", token + "x"):
        answer = client.post(f"/api/commands/responses/{bad}", json={"text": "x"})
        assert answer.status_code == 404, bad
    # Made with the real key for a conversation where /deploy is not this command: refused.
    with app.test_request_context():
        elsewhere = responses.response_url(responses.Call(deploy.id, other.id, ada.id), "")
    assert client.post(urlsplit(elsewhere).path, json={"text": "x"}).status_code == 404
    # The caller left: refused.
    assert leave_conversation(ada, {"conversation_id": conversation.id})["ok"]
    assert client.post(path, json={"text": "after leaving"}).status_code == 404
    time.sleep(0.2)
    assert sockets.events("ada", "ephemeral") == []
    assert [m for m in stored() if m.sender_id == deploy.bot_user_id] == []


def test_a_response_url_of_a_deleted_command_is_refused(runner, client, chat, deploy, service,
                                                        sockets):
    assert sockets.send(chat[3].id, "/deploy")["ok"] is True
    path = urlsplit(wait_for(lambda: service.calls)[0]["response_url"]).path
    assert runner.invoke(args=["commands", "delete", str(deploy.id)]).exit_code == 0
    assert client.post(path, json={"text": "x"}).status_code == 404
    # And typing it is a message again.
    ack = sockets.send(chat[3].id, "/deploy again")
    assert ack["ok"] is True and ack["message"]["message"] == "/deploy again"


@pytest.mark.settings(CHAT_RATE_LIMIT="2/minute")
def test_a_response_url_takes_the_bots_rate_limit(client, chat, deploy, service, sockets):
    assert sockets.send(chat[3].id, "/deploy")["ok"] is True
    path = urlsplit(wait_for(lambda: service.calls)[0]["response_url"]).path
    assert client.post(path, json={"text": "1"}).status_code == 200
    assert client.post(path, json={"response_type": "in_channel", "text": "2"}).status_code == 200
    limited = client.post(path, json={"text": "3"})
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1


# --------------------------------------------------------------------------- the composer's list


def test_the_composer_lists_a_conversations_commands(app, runner, client, chat, deploy, service):
    ada, bob, cy, conversation = chat
    code, output = create(runner, "--all", "--command", "/status", "--url", service.url)
    assert code == 0, output
    http = logged_in(app, ada)
    answer = http.get(f"/api/conversations/{conversation.id}/commands")
    assert answer.status_code == 200
    assert answer.get_json() == {"ok": True, "commands": [
        {"name": "/deploy", "description": "Deploy a branch", "everywhere": False},
        {"name": "/status", "description": "", "everywhere": True}]}
    assert logged_in(app, cy).get(f"/api/conversations/{conversation.id}/commands"
                                  ).status_code == 404
    assert client.get(f"/api/conversations/{conversation.id}/commands").status_code == 401
    page = http.get(f"/chat/{conversation.id}").get_data(as_text=True)
    assert 'id="command-suggestions"' in page
    assert re.search(r'src="/static/js/commands\.[0-9a-f]+\.js"', page)


# --------------------------------------------------------------------------- flask commands


def test_cli_create_list_delete(runner, chat, service):
    conversation = chat[3]
    code, output = create(runner, "--conversation", str(conversation.id), "--command", "Ship",
                          "--url", service.url)
    assert code == 0, output
    lines = output.strip().splitlines()
    assert re.fullmatch(r"[0-9a-f]{64}", lines[-1])
    command = db.session.scalar(select(SlashCommand))
    assert (command.name, command.secret, command.conversation_id) == (
        "/ship", lines[-1], conversation.id)
    bot = db.session.get(User, command.bot_user_id)
    assert bot.is_bot and bot.first_name == "ship"
    # Its bot joins the conversation only when it first posts there (in_channel).
    assert not db.session.scalar(select(Participant.id).where(
        Participant.conversation_id == conversation.id, Participant.user_id == bot.id))
    listed = runner.invoke(args=["commands", "list"]).output
    assert "/ship" in listed and service.url in listed and bot.username in listed
    assert "no slash commands" in runner.invoke(
        args=["commands", "list", "--conversation", str(conversation.id + 100)]).output
    assert runner.invoke(args=["commands", "delete", str(command.id)]).exit_code == 0
    gone = runner.invoke(args=["commands", "delete", str(command.id)])
    assert gone.exit_code == 1 and f"no slash command {command.id}" in gone.output


def test_cli_reuses_a_bot(runner, chat, service, make_user):
    bot = make_user("deploybot", is_bot=True)
    code, output = create(runner, "--conversation", str(chat[3].id), "--command", "/a",
                          "--url", service.url, "--bot", "deploybot")
    assert code == 0, output
    assert db.session.scalar(select(SlashCommand.bot_user_id)) == bot.id


@pytest.mark.parametrize("args, says", [
    (["--command", "/x", "--url", "{url}"], "say where"),
    (["--conversation", "{cid}", "--all", "--command", "/x", "--url", "{url}"], "say where"),
    (["--conversation", "999999", "--command", "/x", "--url", "{url}"], "no conversation"),
    (["--conversation", "{cid}", "--command", "/", "--url", "{url}"], "up to 32"),
    (["--conversation", "{cid}", "--command", "/a b", "--url", "{url}"], "up to 32"),
    (["--conversation", "{cid}", "--command", "/" + "x" * 33, "--url", "{url}"], "up to 32"),
    (["--conversation", "{cid}", "--command", "/émoji", "--url", "{url}"], "up to 32"),
    (["--conversation", "{cid}", "--command", "/-x", "--url", "{url}"], "up to 32"),
    (["--conversation", "{cid}", "--command", "/x", "--url", "ftp://example.com/"],
     "http:// or https://"),
    (["--conversation", "{cid}", "--command", "/x", "--url", "http://host.invalid/"],
     "does not resolve"),
    (["--conversation", "{cid}", "--command", "/x", "--url", "{url}", "--bot", "ada"],
     "not a bot user"),
    (["--conversation", "{cid}", "--command", "/x", "--url", "{url}", "--bot", "nobody"],
     "no user"),
    (["--conversation", "{cid}", "--command", "/x", "--url", "{url}",
      "--description", "d" * 201], "at most 200"),
    (["--conversation", "{cid}"], "Missing option"),
])
def test_cli_refusals_make_nothing(runner, chat, service, args, says):
    filled = [a.format(url=service.url, cid=chat[3].id) for a in args]
    code, output = create(runner, *filled)
    assert code != 0 and says in output, output
    assert db.session.scalars(select(SlashCommand)).all() == []
    assert db.session.scalars(select(User).where(User.is_bot.is_(True))).all() == []


def test_cli_refuses_private_addresses_unless_allowed(app, runner, chat):
    app.config["WEBHOOK_ALLOW_PRIVATE"] = False
    code, output = create(runner, "--conversation", str(chat[3].id), "--command", "/x",
                          "--url", "http://127.0.0.1:9/x")
    assert code == 1 and "private or local address" in output


def test_cli_refuses_a_taken_name_and_too_many(app, runner, chat, service):
    cid = str(chat[3].id)
    app.config["SLASH_COMMANDS_MAX_PER_CONVERSATION"] = 2
    assert create(runner, "--conversation", cid, "--command", "/a", "--url", service.url)[0] == 0
    code, output = create(runner, "--conversation", cid, "--command", "/A", "--url", service.url)
    assert code == 1 and "/a is taken here already" in output
    assert create(runner, "--all", "--command", "/a", "--url", service.url)[0] == 0
    code, output = create(runner, "--all", "--command", "/a", "--url", service.url)
    assert code == 1 and "taken for every conversation" in output
    assert create(runner, "--conversation", cid, "--command", "/b", "--url", service.url)[0] == 0
    code, output = create(runner, "--conversation", cid, "--command", "/c", "--url", service.url)
    assert code == 1 and "the most it may have (2)" in output
    db.session.rollback()
    assert sorted(c.name for c in db.session.scalars(select(SlashCommand))) == ["/a", "/a", "/b"]
    assert len(db.session.scalars(select(User).where(User.is_bot.is_(True))).all()) == 3


# --------------------------------------------------------------------------- the settings page


def add(http, conversation_id, command, url, description="", **extra):
    return http.post(f"/chat/{conversation_id}/commands",
                     data={"command": command, "command_url": url,
                           "command_description": description, **extra})


def shown_secret(page: str) -> str | None:
    found = re.search(r'id="new-command-secret">([^<]*)<', page)
    return found.group(1) if found else None


def test_a_participant_adds_a_command_and_sees_its_secret_once(app, chat, service, sockets):
    ada, bob, cy, conversation = chat
    answer = add(logged_in(app, bob), conversation.id, "/deploy", service.url, "Ship it")
    assert answer.status_code == 200
    page = answer.get_data(as_text=True)
    secret = shown_secret(page)
    command = db.session.scalar(select(SlashCommand))
    assert secret == command.secret and command.created_by_id == bob.id
    assert command.description == "Ship it" and f'data-command-id="{command.id}"' in page
    again = logged_in(app, ada).get(f"/chat/{conversation.id}/settings").get_data(as_text=True)
    assert shown_secret(again) is None and secret not in again and "/deploy" in again
    service.secret = secret
    service.answers({"text": "from the form's command"})
    assert sockets.send(conversation.id, "/deploy")["ok"] is True
    assert sockets.wait("ada", "ephemeral")[0]["message"]["message"] == "from the form's command"


@pytest.mark.parametrize("command, url, field, says", [
    ("", "{url}", "command", "Name the command"),
    ("/a b", "{url}", "command", "up to 32"),
    ("/x", "", "command_url", "This field is required."),
    ("/x", "javascript:alert(1)", "command_url", "http:// or https://"),
    ("/x", "http://127.0.0.1:9/x", "command_url", "private or local address"),
    ("/x", "{url}\x00", "command_url", "not allowed"),
])
def test_a_bad_command_is_a_form_error_and_makes_nothing(app, chat, service, command, url,
                                                         field, says):
    app.config["WEBHOOK_ALLOW_PRIVATE"] = "127.0.0.1:9" not in url
    answer = add(logged_in(app, chat[0]), chat[3].id, command, url.format(url=service.url))
    assert answer.status_code == 200
    page = answer.get_data(as_text=True)
    errors = re.search(rf'id="{field}-errors">([^<]*)<', page)
    assert errors and says in errors.group(1), page
    assert shown_secret(page) is None and db.session.scalars(select(SlashCommand)).all() == []


def test_a_taken_name_and_too_many_are_form_errors(app, chat, service):
    app.config["SLASH_COMMANDS_MAX_PER_CONVERSATION"] = 1
    http = logged_in(app, chat[0])
    assert shown_secret(add(http, chat[3].id, "/a", service.url).get_data(as_text=True))
    taken = add(http, chat[3].id, "/a", service.url).get_data(as_text=True)
    assert "/a is taken here already" in taken and shown_secret(taken) is None
    full = add(http, chat[3].id, "/b", service.url).get_data(as_text=True)
    assert "the most it may have (1)" in full
    db.session.rollback()
    assert len(db.session.scalars(select(SlashCommand)).all()) == 1


def test_deleting_strangers_and_csrf(app, runner, client, chat, service):
    ada, bob, cy, conversation = chat
    http = logged_in(app, ada)
    add(http, conversation.id, "/a", service.url)
    command = db.session.scalar(select(SlashCommand))
    code, output = create(runner, "--all", "--command", "/everywhere", "--url", service.url)
    assert code == 0, output
    everywhere = db.session.scalar(select(SlashCommand).where(
        SlashCommand.conversation_id.is_(None)))
    page = http.get(f"/chat/{conversation.id}/settings").get_data(as_text=True)
    assert "For every conversation, set by an administrator" in page
    # Strangers see nothing and change nothing; a command of every conversation is not the
    # page's to delete.
    stranger = logged_in(app, cy)
    assert add(stranger, conversation.id, "/mine", service.url).status_code == 404
    assert stranger.post(f"/chat/{conversation.id}/commands/{command.id}/delete"
                         ).status_code == 404
    assert http.post(f"/chat/{conversation.id}/commands/{everywhere.id}/delete"
                     ).status_code == 404
    anonymous = client.post(f"/chat/{conversation.id}/commands",
                            data={"command": "/x", "command_url": service.url})
    assert anonymous.status_code == 302
    # CSRF.
    app.config["WTF_CSRF_ENABLED"] = True
    page = http.get(f"/chat/{conversation.id}/settings").get_data(as_text=True)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
    assert add(http, conversation.id, "/b", service.url).status_code == 400
    assert http.post(f"/chat/{conversation.id}/commands/{command.id}/delete").status_code == 400
    db.session.rollback()
    assert len(db.session.scalars(select(SlashCommand)).all()) == 2
    deleted = http.post(f"/chat/{conversation.id}/commands/{command.id}/delete",
                        data={"csrf_token": token})
    assert deleted.status_code == 302
    db.session.rollback()
    assert [c.id for c in db.session.scalars(select(SlashCommand))] == [everywhere.id]
