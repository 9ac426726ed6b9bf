"""The message payload, as every client sees it."""

from __future__ import annotations

from simplechat.answers import TIMESTAMP_FORMAT
from simplechat.infra.ids import message_id_time
from simplechat.models import Message, User

TEXT, SYSTEM = "text", "system"
PREVIEW_LENGTH = 120


def message_payload(
    message_id: str, conversation_id: int, sender: User | None, text: str,
    client_id: str | None = None, sender_id: int | None = None,
    sender_name: str | None = None, *, html: str | None = None, kind: str = TEXT,
    reply_to: dict | None = None, mentions: list[int] | None = None,
    attachments: list[dict] | None = None, system: dict | None = None,
    thread_id: str | None = None, also_to_conversation: bool = False,
) -> dict:
    """A new message's payload. ``thread`` (a root's summary of its replies) is null until a
    reply comes; a thread reply carries its root's id and ``also_to_conversation``."""
    payload = {
        "message": text,
        "sender": sender.id if sender is not None else sender_id,
        "timestamp": message_id_time(message_id).strftime(TIMESTAMP_FORMAT),
        "id": message_id,
        "conversation_id": conversation_id,
        "sender_name": sender.full_name if sender is not None else sender_name,
        "client_id": client_id,
        "kind": kind,
        "html": html,
        "reply_to": reply_to,
        "mentions": mentions or [],
        "reactions": {},
        "attachments": attachments or [],
        "thread_id": thread_id,
        "thread": None,
    }
    if thread_id is not None:
        payload["also_to_conversation"] = also_to_conversation
    if system is not None:
        payload["system"] = system
    return payload


def payload_from_row(message: Message, sender_names: dict[int, str], *,
                     reply_to: dict | None = None, reactions: dict | None = None,
                     attachments: list[dict] | None = None) -> dict:
    """The payload of a stored message (its client id is not stored, so it reads null)."""
    payload = {
        "message": message.text,
        "sender": message.sender_id,
        "timestamp": message.created_at.strftime(TIMESTAMP_FORMAT),
        "id": message.id,
        "conversation_id": message.conversation_id,
        "sender_name": sender_names.get(message.sender_id),
        "client_id": None,
        "kind": message.kind or TEXT,
        "html": message.html,
        "reply_to": reply_to,
        "mentions": list(message.mentions or []),
        "reactions": reactions or {},
        "attachments": attachments or [],
        "thread_id": message.thread_id,
        "thread": thread_summary(message),
    }
    if message.thread_id is not None:
        payload["also_to_conversation"] = bool(message.also_to_conversation)
    if message.system is not None:
        payload["system"] = message.system
    if message.deleted_at is not None:
        return tombstone(payload, message.deleted_by)
    if message.edited_at is not None:
        payload["edited_at"] = message.edited_at.strftime(TIMESTAMP_FORMAT)
    return payload


def thread_summary(message: Message) -> dict | None:
    """A stored root's summary of its replies, None while it has none."""
    if not message.reply_count:
        return None
    return {"reply_count": message.reply_count,
            "last_reply_at": message.last_reply_at.strftime(TIMESTAMP_FORMAT)
            if message.last_reply_at else None,
            "participants": list(message.thread_participants or [])}


def tombstone(payload: dict, deleted_by: int | None) -> dict:
    """What is left of a deleted message: its place in history, no text, no files, and who
    deleted it (the sender, or an owner or admin of the conversation; None if not known)."""
    kept = {k: v for k, v in payload.items() if k != "edited_at"}
    return {**kept, "message": "", "html": "", "mentions": [], "reactions": {},
            "attachments": [], "deleted": True, "deleted_by": deleted_by}


def reply_summary(target: dict) -> dict:
    """The quoted summary of the message a reply answers, from its payload."""
    return {"id": target["id"], "sender": target["sender"],
            "sender_name": target.get("sender_name"),
            "preview": "" if target.get("deleted") else target["message"][:PREVIEW_LENGTH]}
