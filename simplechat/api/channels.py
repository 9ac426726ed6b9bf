"""The JSON routes of channels and of what owners and admins do: the directory, creating,
joining and leaving a channel, removing a member, setting a role, describing and archiving.
Each parses, calls the conversations feature (the socket events call the same functions) and
answers."""

from __future__ import annotations

from flask import Response, jsonify
from flask_login import current_user

from simplechat.api.schemas import (
    ArchiveChange,
    ChannelDirectory,
    ChannelDirectoryQuery,
    ConversationOne,
    DescriptionChange,
    Left,
    NewChannel,
    RoleChange,
)
from simplechat.api.spec import operation
from simplechat.api.views import conversation_views, send_answer
from simplechat.conversations.channels import (
    create_channel,
    directory,
    join_channel,
    parse_directory_cursor,
)
from simplechat.conversations.groups import leave_conversation
from simplechat.conversations.moderation import (
    archive_conversation,
    describe_conversation,
    remove_participant,
    set_role,
)
from simplechat.observability.activity import record_activity
from simplechat.web.routing import ApiBlueprint

bp = ApiBlueprint("channels", __name__)

# What a well-formed request is refused for the state it finds (the document cannot say):
# the conversation is direct, or full.
STATE_CONFLICTS = {"not_group": 409, "too_many": 409}


def channel_answer(ack: dict) -> Response:
    """An ack as the send path's (an error's status, Retry-After), but 200 for a done action
    (the send path's 201 is for a message made) and 409 for the conflicts above."""
    response = send_answer(ack)
    if ack.get("ok"):
        response.status_code = 200
    elif ack.get("error") in STATE_CONFLICTS:
        response.status_code = STATE_CONFLICTS[ack["error"]]
    return response


def conversation_answer(ack: dict, status: int = 200) -> Response:
    """An action's answer: the conversation as GET /api/conversations/<id> shows it to the
    caller, or the error with its status (as a send's)."""
    if not ack.get("ok"):
        return channel_answer(ack)
    conversation_id = ack["conversation"]["conversation_id"]
    found = conversation_views(current_user._get_current_object(), conversation_id)
    if not found:  # the caller is no longer in it (an operator's action): the state is theirs
        return send_answer({"ok": False, "error": "not_found"})
    response = jsonify({"ok": True, "conversation": found[0]})
    response.status_code = status
    return response


@operation(bp, "/channels", answers={200: ChannelDirectory}, query=ChannelDirectoryQuery,
           tag="channels")
def channel_directory(query: ChannelDirectoryQuery):
    """The directory: public channels that are not archived, a page at a time.

    Those whose title or description holds `q` (any case), by `sort`: `members` (most
    first), `recent` (newest activity first) or `name` (A to Z); each says whether you
    joined it. Pass `next_before` back as `before`, with the same `sort`, for the next page.
    """
    before = parse_directory_cursor(query.sort, query.before)
    page = directory(current_user, query.q, query.sort, query.limit, before)
    return jsonify({"ok": True, "channels": page.channels, "next_before": page.next_before})


@operation(bp, "/channels", "POST", answers={201: ConversationOne}, errors=(429,),
           body=NewChannel, tag="channels")
def new_channel(body: NewChannel):
    """Make a channel: public (in the directory, anyone may join) or private.

    You are its owner and, at first, its only member. Counts against
    CHAT_CONVERSATION_RATE_LIMIT (429 with Retry-After), as any new conversation.
    """
    me = current_user._get_current_object()
    conversation, refusal = create_channel(me, body.title, body.description, body.visibility)
    if refusal:
        return send_answer(refusal)
    record_activity("conversation_created", me.id,
                    {"conversation_id": conversation.id, "by": "api",
                     "visibility": conversation.visibility})
    return conversation_answer({"ok": True, "conversation": {
        "conversation_id": conversation.id}}, 201)


@operation(bp, "/channels/<id:conversation_id>/join", "POST", answers={200: ConversationOne},
           errors=(403, 409), tag="channels")
def join(conversation_id: int):
    """Join a public channel (not archived; anything else is 403 forbidden).

    Joining one you are in answers the same; past CHAT_MAX_MEMBERS, 409 too_many.
    """
    return conversation_answer(join_channel(current_user, {"conversation_id": conversation_id}))


@operation(bp, "/channels/<id:conversation_id>/leave", "POST", answers={200: Left},
           errors=(403, 409), tag="channels")
def leave(conversation_id: int):
    """Leave a channel or group (403 for one you are not in, 409 not_group for a direct one).

    If you were its last owner, its earliest admin (else its earliest member) becomes owner.
    """
    return channel_answer(leave_conversation(current_user, {"conversation_id": conversation_id}))


@operation(bp, "/conversations/<id:conversation_id>/participants/<id:user_id>", "DELETE",
           answers={200: ConversationOne}, errors=(403, 404, 409), tag="channels")
def remove(conversation_id: int, user_id: int):
    """Remove a member (owners and admins; admins remove members only).

    Their sockets leave the conversation at once. 403 forbidden if you are not in it,
    not_allowed without the role or for yourself (leave instead); 404 if they are not in it;
    409 archived, or not_group for a direct conversation.
    """
    return conversation_answer(remove_participant(
        current_user, {"conversation_id": conversation_id, "user_id": user_id}))


@operation(bp, "/conversations/<id:conversation_id>/roles", "POST",
           answers={200: ConversationOne}, errors=(403, 404, 409), body=RoleChange,
           tag="channels")
def change_role(conversation_id: int, body: RoleChange):
    """Set a member's role: owner, admin or member (owners only).

    The last owner cannot step down (403 not_allowed: make someone else owner first).
    """
    return conversation_answer(set_role(current_user, {
        "conversation_id": conversation_id, "user_id": body.user_id, "role": body.role}))


@operation(bp, "/conversations/<id:conversation_id>/description", "POST",
           answers={200: ConversationOne}, errors=(403, 409), body=DescriptionChange,
           tag="channels")
def describe(conversation_id: int, body: DescriptionChange):
    """Set the description (owners and admins): plain text, empty removes it."""
    return conversation_answer(describe_conversation(current_user, {
        "conversation_id": conversation_id, "description": body.description}))


@operation(bp, "/conversations/<id:conversation_id>/archive", "POST",
           answers={200: ConversationOne}, errors=(403, 409), body=ArchiveChange, tag="channels")
def archive(conversation_id: int, body: ArchiveChange):
    """Archive or unarchive a group or channel (owners and admins).

    Archived, it is read-only: sends answer 409 archived, and nothing is added, renamed,
    described or removed until it is unarchived.
    """
    return conversation_answer(archive_conversation(current_user, {
        "conversation_id": conversation_id, "archived": body.archived}))
