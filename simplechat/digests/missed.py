"""Noting, as messages are stored, the direct messages and mentions that may go into a digest:
one ``missed_messages`` row per recipient."""

from __future__ import annotations

import logging

from sqlalchemy import or_, select

from simplechat.extensions import db
from simplechat.infra.ids import message_id_time
from simplechat.mail.sending import mail_configured
from simplechat.messaging.storage import insert_ignoring_duplicates
from simplechat.models import DIRECT, Conversation, MissedMessage, Participant, User

log = logging.getLogger(__name__)

SYSTEM = "system"


def record_missed(payloads: list[dict]) -> None:
    """For messages a batch newly stores (in its transaction, not committing): a row for each
    participant, other than the sender, who takes mail and whom the message is to (a direct
    conversation) or mentions. One SELECT and one INSERT per batch, inside a savepoint: a
    failure here loses a digest, never the batch. Nothing without mail."""
    if not mail_configured():
        return
    try:
        with db.session.begin_nested():
            _record(payloads)
    except Exception:
        log.exception("messages not noted for digests")


def _record(payloads: list[dict]) -> None:
    wanted = [p for p in payloads if (p.get("kind") or "text") != SYSTEM]
    if not wanted:
        return
    conversations = {int(p["conversation_id"]) for p in wanted}
    mentioned = {int(uid) for p in wanted for uid in (p.get("mentions") or ())
                 if isinstance(uid, int)}
    takers = db.session.execute(
        select(Participant.conversation_id, Participant.user_id, Conversation.visibility)
        .join(Conversation, Conversation.id == Participant.conversation_id)
        .join(User, User.id == Participant.user_id)
        .where(Participant.conversation_id.in_(conversations),
               User.email_notifications.is_(True), User.is_active.is_(True),
               User.is_bot.is_(False),
               or_(Conversation.visibility == DIRECT, Participant.user_id.in_(mentioned)))
    ).all()
    if not takers:
        return
    rows = []
    for p in wanted:
        conversation_id, sender = int(p["conversation_id"]), int(p["sender"])
        mentions = set(p.get("mentions") or ())
        for cid, uid, visibility in takers:
            if cid != conversation_id or uid == sender:
                continue
            if visibility == DIRECT or uid in mentions:
                rows.append({"user_id": uid, "conversation_id": cid, "message_id": p["id"],
                             "created_at": message_id_time(p["id"]),
                             "mentioned": uid in mentions})
    if rows:
        db.session.execute(insert_ignoring_duplicates(
            rows, MissedMessage.__table__, conflict=("user_id", "message_id")))
