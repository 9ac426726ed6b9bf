"""Drafts: what a user has typed in a conversation's composer (or a thread's) and not sent,
kept on the server for every page and device; sending there clears it."""

from __future__ import annotations

from datetime import datetime

from flask import Flask, current_app
from sqlalchemy import and_, delete, func, or_, select, update

from simplechat.answers import TIMESTAMP_FORMAT, error
from simplechat.extensions import db
from simplechat.infra.ids import message_id_time
from simplechat.infra.membership import membership
from simplechat.messaging.payload import SYSTEM
from simplechat.messaging.replies import find_message
from simplechat.messaging.send import clean_text
from simplechat.messaging.storage import STORED_LISTENERS
from simplechat.models import Draft, Participant, utcnow
from simplechat.realtime.emit import emit_to
from simplechat.realtime.rooms import user_room

MAX_DRAFTS = 1000  # per user: each conversation's and each thread's composer


def init_drafts(app: Flask) -> None:
    """A stored message deletes its sender's draft there (in the batch's transaction)."""
    app.extensions.setdefault(STORED_LISTENERS, []).append(clear_sent)


def draft_view(draft: Draft) -> dict:
    return {"conversation_id": draft.conversation_id, "thread_id": draft.thread_id or None,
            "message": draft.text, "updated_at": draft.updated_at.strftime(TIMESTAMP_FORMAT)}


def save_draft(user_id: int, conversation_id: int, text: str, thread_id: str | None,
               unknown: str = "not_found") -> dict:
    """Keep (or, empty after trimming, delete) the user's draft in a conversation or one of
    its threads; the user's other pages and devices hear ``draft`` with it (``message`` ""
    when deleted). Participants only (``forbidden``); ``unknown`` when ``thread_id`` names no
    thread of the conversation; ``too_long`` past CHAT_MAX_MESSAGE_LENGTH; ``too_many`` past
    MAX_DRAFTS."""
    if not membership().members_among(conversation_id, [user_id]):
        return error("forbidden")
    if thread_id is not None:
        root = find_message(conversation_id, thread_id)
        if root is None or root.get("thread_id") or root.get("kind") == "system":
            return error(unknown)
    limit = current_app.config["CHAT_MAX_MESSAGE_LENGTH"]
    # Kept as typed (a draft's blank lines and spaces are the user's); only what a message
    # could never hold goes.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return error("invalid")
    text = text.replace("\x00", "")
    if len(text) > limit:
        return error("too_long", max_length=limit)
    key = (Draft.user_id == user_id, Draft.conversation_id == conversation_id,
           Draft.thread_id == (thread_id or ""))
    now = utcnow()
    if not clean_text(text):
        db.session.execute(delete(Draft).where(*key))
        db.session.commit()
        draft = None
    else:
        if not db.session.execute(update(Draft).where(*key).values(
                text=text, updated_at=now)).rowcount:
            mine = db.session.scalar(select(func.count()).select_from(Draft)
                                     .where(Draft.user_id == user_id))
            if mine >= MAX_DRAFTS:
                db.session.rollback()
                return error("too_many", max_drafts=MAX_DRAFTS)
            db.session.add(Draft(user_id=user_id, conversation_id=conversation_id,
                                 thread_id=thread_id or "", text=text, updated_at=now))
        db.session.commit()
        draft = db.session.scalars(select(Draft).where(*key)).first()
    shown = draft_view(draft) if draft is not None else {
        "conversation_id": conversation_id, "thread_id": thread_id, "message": "",
        "updated_at": now.strftime(TIMESTAMP_FORMAT)}
    emit_to(user_room(user_id), "draft", shown)
    return {"ok": True, "draft": draft_view(draft) if draft is not None else None}


def drafts_of(user_id: int) -> list[dict]:
    """The user's drafts in conversations they still take part in, newest first (one
    statement)."""
    rows = db.session.scalars(
        select(Draft).join(Participant, and_(Participant.conversation_id == Draft.conversation_id,
                                             Participant.user_id == Draft.user_id))
        .where(Draft.user_id == user_id)
        .order_by(Draft.updated_at.desc(), Draft.id.desc()))
    return [draft_view(d) for d in rows]


def clear_sent(payloads: list[dict]) -> None:
    """For the messages a batch newly stores (in its transaction): each sender's draft in that
    conversation, or that thread, is gone, unless it was saved after the message was sent (the
    next message being typed). One statement."""
    sent: dict[tuple[int, int, str], datetime] = {}
    for p in payloads:
        if p.get("kind") == SYSTEM:  # a line about the group: not typed in the composer
            continue
        key = (int(p["sender"]), int(p["conversation_id"]), p.get("thread_id") or "")
        at = message_id_time(p["id"])
        sent[key] = max(sent.get(key, at), at)
    if sent:
        db.session.execute(delete(Draft).where(or_(*(
            and_(Draft.user_id == uid, Draft.conversation_id == cid, Draft.thread_id == thread,
                 Draft.updated_at <= at)
            for (uid, cid, thread), at in sent.items()))))
