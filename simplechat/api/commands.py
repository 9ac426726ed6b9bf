"""The JSON routes of slash commands: the commands a conversation's composer offers, and a
command's response_url, where its service answers later."""

from __future__ import annotations

from flask import Response, jsonify, request
from flask_login import current_user

from simplechat.api.schemas import CommandAnswer, SlashCommandList
from simplechat.api.spec import SECRET_URL, TEXT, operation
from simplechat.api.views import send_answer
from simplechat.infra.membership import is_participant
from simplechat.slash_commands.registry import commands_of
from simplechat.slash_commands.responses import answer, call_of
from simplechat.web.routing import ApiBlueprint
from simplechat.webhooks.slack import SlackPayloadError, parse_payload

bp = ApiBlueprint("commands", __name__)


@operation(bp, "/conversations/<id:conversation_id>/commands", answers={200: SlashCommandList},
           errors=(404,), tag="commands")
def conversation_commands(conversation_id: int):
    """The slash commands one may type in a conversation, by name.

    Its own and those of every conversation (a conversation's own hides one of every
    conversation of the same name). Participants only; anyone else gets 404.
    """
    if not is_participant(current_user.id, conversation_id):
        return send_answer({"ok": False, "error": "not_found"})
    return jsonify({"ok": True, "commands": [
        {"name": c.name, "description": c.description, "everywhere": c.conversation_id is None}
        for c in commands_of(conversation_id)]})


@operation(bp, "/commands/responses/<token>", "POST", answers={200: TEXT},
           errors=(404, 409, 429), raw_body=CommandAnswer, auth=SECRET_URL, tag="commands")
def command_response(token: str):
    """A slash command's later answer, to the response_url its service was given.

    Slack's message payload with `response_type`: `ephemeral` (the default) is shown to the
    caller alone, `in_channel` is posted as the command's bot through the send path
    (CHAT_RATE_LIMIT, the bot's; 409 archived). Taken for SLASH_COMMAND_RESPONSE_TTL seconds
    (30 minutes) after the command was typed, for that command, conversation and caller only:
    404 after that, or when the command was deleted or the caller left. Answers `ok` as plain
    text; 400 invalid for a body that is not Slack's shape, empty when it shows nothing.
    """
    call = call_of(token)
    if call is None:
        return send_answer({"ok": False, "error": "not_found"})
    try:
        reply = parse_payload(request.get_data())
    except SlackPayloadError:
        return send_answer({"ok": False, "error": "invalid"})
    ack = answer(call, reply)
    if not ack["ok"]:
        return send_answer(ack)
    return Response("ok", 200, mimetype="text/plain")
