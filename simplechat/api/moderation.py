"""The JSON routes of moderation: reporting a message, deleting one (its sender, the
conversation's owners and admins, site admins anywhere) and a message's edit history (site
admins only). Each parses and calls the function the socket events call."""

from __future__ import annotations

from typing import Literal

from flask import jsonify
from flask_login import current_user
from pydantic import BaseModel, Field

from simplechat.api.channels import channel_answer
from simplechat.api.schemas import Message
from simplechat.api.spec import operation
from simplechat.conversations.moderation import delete_message
from simplechat.conversations.reports import MAX_REASON, report_message
from simplechat.conversations.roles import is_site_admin
from simplechat.infra.ids import parse_message_id
from simplechat.messaging.history import edit_history
from simplechat.web.errors import api_error
from simplechat.web.routing import ApiBlueprint

bp = ApiBlueprint("moderation", __name__)


class ReportBody(BaseModel):
    # Something besides blanks and control characters, which trimming takes away.
    reason: str = Field(min_length=1, max_length=MAX_REASON, pattern=r"[^\s\x00-\x1f\x7f]",
                        description=f"why: 1 to {MAX_REASON} characters, not only blanks")


class Done(BaseModel):
    ok: Literal[True]


class Deleted(BaseModel):
    ok: Literal[True]
    message: Message = Field(description="the tombstone (deleted, deleted_by)")


class EarlierText(BaseModel):
    text: str
    replaced_at: str = Field(description="when an edit replaced it (UTC)")


class EditHistory(BaseModel):
    id: str
    conversation_id: int
    sender: int
    current: str = Field(description="the text now (empty once deleted)")
    edited_at: str | None
    deleted_at: str | None
    deleted_by: int | None
    versions: list[EarlierText] = Field(description="the earlier texts, oldest first")


class HistoryAnswer(BaseModel):
    ok: Literal[True]
    history: EditHistory


@operation(bp, "/conversations/<id:conversation_id>/messages/<message_id>/report", "POST",
           answers={200: Done}, errors=(403, 404, 409), body=ReportBody, tag="moderation")
def report(conversation_id: int, message_id: str, body: ReportBody):
    """Report a message to the site admins (as the socket's report_message).

    Participants only (403). 404 for a message not there or deleted; 409 conflict while my
    earlier report of it waits; 400 for a reason empty after trimming or too long.
    """
    if parse_message_id(message_id) is None:
        return api_error("not_found", 404)
    return _answer(report_message(current_user, {
        "conversation_id": conversation_id, "message_id": message_id, "reason": body.reason}))


@operation(bp, "/conversations/<id:conversation_id>/messages/<message_id>", "DELETE",
           answers={200: Deleted}, errors=(403, 404, 409), tag="moderation")
def delete(conversation_id: int, message_id: str):
    """Delete a message (as the socket's delete_message): my own within the edit window,
    anyone's for an owner or admin of a group or channel, any message for a site admin.

    Participants see message_updated with the tombstone. 403 forbidden (not mine, not a
    participant) or not_allowed; 404 for a message not there; 409 archived.
    """
    if parse_message_id(message_id) is None:
        return api_error("not_found", 404)
    return _answer(delete_message(current_user._get_current_object(), {
        "conversation_id": conversation_id, "message_id": message_id}))


@operation(bp, "/messages/<message_id>/history", answers={200: HistoryAnswer}, errors=(404,),
           tag="moderation")
def history(message_id: str):
    """A message's edit history, for site admins: every earlier text, oldest first, and the
    current one. 404 for anyone else, and for a message id that names no stored message."""
    if not is_site_admin(current_user.id) or parse_message_id(message_id) is None:
        return api_error("not_found", 404)
    found = edit_history(parse_message_id(message_id))
    if found is None:
        return api_error("not_found", 404)
    return jsonify({"ok": True, "history": found})


def _answer(ack: dict):
    response = channel_answer(ack)
    if ack.get("error") == "edit_window_closed":
        response.status_code = 403
    return response
