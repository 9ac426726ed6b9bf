"""Running a slash command: a ``send_message`` whose text starts with a registered ``/name`` is
not stored; the caller's token of CHAT_RATE_LIMIT is taken, the ack is
``{"ok": true, "command": {"name", "text"}}``, and a Celery task on CELERY_WEBHOOK_QUEUE POSTs
Slack's form fields to the command's service, signed as outgoing webhooks are (and as Slack
signs, for services written for Slack), through the same address checks and deadline machinery
(webhooks.delivery), within SLASH_COMMAND_TIMEOUT seconds. Its answer goes to
slash_commands.responses; a service that fails, is refused or is slow is told to the caller
alone. An unregistered ``/word`` is an ordinary message.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import logging
import time
from urllib.parse import urlencode

from celery import shared_task
from flask import current_app, request

from simplechat.answers import error
from simplechat.extensions import db, end_transaction, socketio
from simplechat.infra.membership import valid_conversation_id, write_refusal
from simplechat.infra.services import services
from simplechat.models import Conversation, SlashCommand, User
from simplechat.observability.activity import write_error
from simplechat.slash_commands.registry import applies_to, command_for, parse_call
from simplechat.slash_commands.responses import Call, answer, response_url, tell
from simplechat.webhooks.delivery import ANSWER_MAX, exchange_signed
from simplechat.webhooks.hooks import UnsafeURL
from simplechat.webhooks.slack import SlackPayloadError, parse_payload

log = logging.getLogger(__name__)

FORM = "application/x-www-form-urlencoded"
# The parts of a send that make it a message, not a command: a reply, files, a thread.
_MESSAGE_ONLY = ("reply_to", "attachments", "thread_id")


def run_if_command(user, data: dict) -> dict | None:
    """The ack of the command ``data`` (a send_message payload) calls, or None when it is an
    ordinary message: no registered command's name first, or a reply, files or a thread."""
    conversation_id = data.get("conversation_id")
    called = parse_call(data.get("message"))
    if (called is None or not valid_conversation_id(conversation_id)
            or any(data.get(key) for key in _MESSAGE_ONLY)):
        return None
    name, text = called
    command = command_for(conversation_id, name)
    command_id = command.id if command is not None else None
    end_transaction()
    if command_id is None:
        return None
    refusal = write_refusal(user.id, conversation_id)  # invalid, forbidden, archived
    if refusal:
        return error(refusal)
    wait = services().limiter.hit(str(user.id))  # the same CHAT_RATE_LIMIT as a message's
    if wait:
        return error("rate_limited", retry_after=round(wait, 3))
    try:
        _queue(command_id, conversation_id, user.id, text, request.host_url)
    except Exception:
        log.warning("command %s not queued", name, exc_info=True)
        return error("unavailable")
    return {"ok": True, "command": {"name": name, "text": text}}


@shared_task(name="simplechat.run_slash_command")
def run_slash_command(command_id: int, conversation_id: int, user_id: int, text: str,
                      base_url: str) -> str:
    """Call a command's service and show its answer; what became of it (answered,
    acknowledged, gone, refused, failed, timeout)."""
    return call_service(command_id, conversation_id, user_id, text, base_url)


def call_service(command_id: int, conversation_id: int, user_id: int, text: str,
                 base_url: str) -> str:
    command = db.session.get(SlashCommand, command_id)
    user = db.session.get(User, user_id)
    conversation = db.session.get(Conversation, conversation_id)
    if (command is None or user is None or conversation is None
            or not applies_to(command, conversation_id)):
        return "gone"
    call = Call(command_id, conversation_id, user_id)
    name, url, secret = command.name, command.url, command.secret
    body = urlencode({
        "command": name, "text": text, "user_id": str(user.id), "user_name": user.username,
        "channel_id": str(conversation_id), "channel_name": channel_name(conversation),
        "response_url": response_url(call, base_url)}).encode()
    db.session.remove()  # no database connection held while the service is slow
    config = current_app.config
    timeout = config["SLASH_COMMAND_TIMEOUT"]
    try:
        reply = exchange_signed(url, secret, body, config["WEBHOOK_ALLOW_PRIVATE"], timeout,
                                content_type=FORM, event="command",
                                headers=slack_signature(secret, body))
    except UnsafeURL as exc:
        write_error("tasks.run_slash_command", "UnsafeURL", f"command {command_id}: {exc}",
                    None, user_id)
        tell(call, name, f"{name} could not be called: its address is not allowed.")
        return "refused"
    except TimeoutError:
        tell(call, name, f"{name} did not answer within {timeout:g} seconds.")
        return "timeout"
    except (OSError, http.client.HTTPException) as exc:
        log.info("command %s: %s", name, exc)
        tell(call, name, f"{name} could not be reached.")
        return "failed"
    if not 200 <= reply.status < 300:
        tell(call, name, f"{name} failed: its service answered HTTP {reply.status}.")
        return "failed"
    return show_reply(call, name, reply.content_type, reply.body)


def show_reply(call: Call, name: str, content_type: str, body: bytes) -> str:
    """A service's immediate answer: nothing (acknowledged: it may answer through
    response_url), Slack's JSON, or plain text shown to the caller."""
    if len(body) > ANSWER_MAX:
        tell(call, name, f"{name} failed: its answer was too long.")
        return "failed"
    if not body.strip():
        return "acknowledged"
    if content_type.split(";", 1)[0].strip().lower() == "application/json":
        try:
            reply = parse_payload(body)
        except SlackPayloadError:
            tell(call, name, f"{name} failed: its answer was not a JSON object.")
            return "failed"
    else:
        reply = {"text": body.decode("utf-8", "replace")}
    ack = answer(call, reply)
    if not ack["ok"] and ack["error"] in ("invalid", "rate_limited", "unavailable"):
        tell(call, name, f"{name} failed: its answer could not be shown ({ack['error']}).")
    return "answered" if ack["ok"] else ack["error"]


def slack_signature(secret: str, body: bytes) -> dict[str, str]:
    """Slack's request signature, for services written for Slack: ``v0=`` and the
    HMAC-SHA256 of ``v0:<timestamp>:<body>``, with the timestamp in a header of its own."""
    stamp = str(int(time.time()))
    digest = hmac.new(secret.encode(), f"v0:{stamp}:".encode() + body, hashlib.sha256)
    return {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": "v0=" + digest.hexdigest()}


def channel_name(conversation: Conversation) -> str:
    """Slack's channel_name: the title, or "directmessage" for a direct conversation."""
    if conversation.title:
        return conversation.title
    return f"conversation-{conversation.id}" if conversation.is_group else "directmessage"


def _queue(command_id: int, conversation_id: int, user_id: int, text: str,
           base_url: str) -> None:
    args = (command_id, conversation_id, user_id, text, base_url)
    celery = current_app.extensions["celery"]
    if not celery.conf.task_always_eager:
        run_slash_command.apply_async(args=args)
        return
    # Tasks run inline (embedded default, tests): call beside the caller, after the ack.
    app = current_app._get_current_object()

    def run() -> None:
        with app.app_context():
            try:
                call_service(*args)
            except Exception:
                log.exception("command %s failed", command_id)
            finally:
                db.session.remove()

    socketio.start_background_task(run)

