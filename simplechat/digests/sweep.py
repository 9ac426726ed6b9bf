"""Finding who is owed a digest, and sending it. Celery beat runs ``sweep_digests`` every
MAIL_DIGEST_SWEEP_SECONDS; it queues one ``send_digest`` per user whose oldest waiting message
is older than their ``email_delay_minutes``. When tasks run inline (the embedded default, no
broker and so no beat) the web process runs the sweep itself on a timer.

A digest holds every waiting message of the user, in every conversation: the first one due
opens the window, so a user gets at most one mail per delay. Each message is mailed at most
once: its row is claimed (``mailed_at``) before the mail goes out, and given back only if the
SMTP server refused it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, time, timedelta

from celery import shared_task
from flask import Flask
from sqlalchemy import and_, delete, func, or_, select, update

from simplechat.digests.compose import Waiting, compose_digest
from simplechat.extensions import db, socketio
from simplechat.mail.sending import mail_configured, send_mail
from simplechat.models import (
    Conversation,
    Message,
    MissedMessage,
    Participant,
    ThreadFollow,
    User,
    utcnow,
)
from simplechat.notifications.rules import QuietHours, Recipient, should_notify
from simplechat.observability.activity import record_activity
from simplechat.realtime.presence import presence

log = logging.getLogger(__name__)

KEEP = timedelta(days=2)  # a waiting row older than this is dropped unmailed
SENT, ONLINE, WAITING, OFF, GONE, TAKEN = "sent", "online", "waiting", "off", "gone", "taken"


def _delay(user_delay: int | None) -> timedelta:
    return timedelta(minutes=min(1440, max(1, user_delay or 10)))


@shared_task(name="simplechat.sweep_digests")
def sweep_digests() -> int:
    """Queue a digest for each user whose oldest waiting message is past their delay; drop
    rows too old to mail. How many digests were queued."""
    if not mail_configured():
        return 0
    now = utcnow()
    db.session.execute(delete(MissedMessage).where(MissedMessage.created_at < now - KEEP))
    db.session.commit()
    oldest = db.session.execute(
        select(MissedMessage.user_id, func.min(MissedMessage.created_at),
               User.email_delay_minutes)
        .join(User, User.id == MissedMessage.user_id)
        .where(MissedMessage.mailed_at.is_(None))
        .group_by(MissedMessage.user_id, User.email_delay_minutes)).all()
    due = [uid for uid, first, delay in oldest if first <= now - _delay(delay)]
    for uid in due:
        send_digest.delay(uid)
    return len(due)


@dataclass
class _Row:
    missed: MissedMessage
    message: Message | None
    participant: Participant | None
    visibility: str | None


@shared_task(name="simplechat.send_digest")
def send_digest(user_id: int) -> str:
    """Mail ``user_id`` the digest of what waits for them, if it is due and they are offline.
    Rows that no longer qualify (read, deleted, muted, the conversation left, mail turned off)
    are dropped; rows held by do-not-disturb or quiet hours wait. What happened, as a word."""
    user = db.session.get(User, user_id)
    if user is None:
        return GONE
    waiting = MissedMessage.user_id == user_id, MissedMessage.mailed_at.is_(None)
    if not user.email_notifications or not user.is_active or user.is_bot:
        db.session.execute(delete(MissedMessage).where(*waiting))
        db.session.commit()
        return OFF
    if presence().status([user_id]).get(user_id, {}).get("online"):
        return ONLINE
    now = utcnow()
    mail, drop = _sort_out(user, _waiting_rows(user_id), now)
    if drop:
        db.session.execute(delete(MissedMessage).where(MissedMessage.id.in_(drop)))
    if not mail or min(w.row_time for w in mail) > now - _delay(user.email_delay_minutes):
        db.session.commit()
        return WAITING
    subject, text, html, headers = compose_digest(user, mail)
    ids = [w.row_id for w in mail]
    claimed = db.session.execute(update(MissedMessage)
                                 .where(MissedMessage.id.in_(ids), *waiting)
                                 .values(mailed_at=now)
                                 .execution_options(synchronize_session=False))
    if claimed.rowcount != len(ids):  # another run took some of them meanwhile
        db.session.rollback()
        return TAKEN
    db.session.commit()
    try:
        send_mail(user.email, subject, text, html, headers)
    except Exception:
        db.session.execute(update(MissedMessage).where(MissedMessage.id.in_(ids))
                           .values(mailed_at=None).execution_options(synchronize_session=False))
        db.session.commit()
        raise
    record_activity("digest_mailed", user_id,
                    {"messages": len(ids), "conversations": len({w.conversation_id
                                                                 for w in mail})})
    return SENT


def _waiting_rows(user_id: int) -> list[_Row]:
    found = db.session.execute(
        select(MissedMessage, Message, Participant, Conversation.visibility)
        .outerjoin(Message, Message.id == MissedMessage.message_id)
        .outerjoin(Participant, and_(Participant.conversation_id == MissedMessage.conversation_id,
                                     Participant.user_id == MissedMessage.user_id))
        .outerjoin(Conversation, Conversation.id == MissedMessage.conversation_id)
        .where(MissedMessage.user_id == user_id, MissedMessage.mailed_at.is_(None))
        .order_by(MissedMessage.created_at, MissedMessage.id)).all()
    return [_Row(*row) for row in found]


def _thread_markers(user_id: int, rows: list[_Row]) -> dict[tuple[int, str], str | None]:
    threads = {(r.message.conversation_id, r.message.thread_id) for r in rows
               if r.message is not None and r.message.thread_id}
    if not threads:
        return {}
    marks = db.session.execute(
        select(ThreadFollow.conversation_id, ThreadFollow.thread_id,
               ThreadFollow.last_read_message_id)
        .where(ThreadFollow.user_id == user_id,
               or_(*(and_(ThreadFollow.conversation_id == cid, ThreadFollow.thread_id == tid)
                     for cid, tid in threads)))).all()
    return {(cid, tid): mark for cid, tid, mark in marks}


def _is_read(message: Message, participant: Participant, thread_marks: dict) -> bool:
    main = participant.last_read_message_id
    if message.thread_id is None or message.also_to_conversation:
        if main is not None and message.id <= main:
            return True
    if message.thread_id is not None:
        mark = thread_marks.get((message.conversation_id, message.thread_id))
        return mark is not None and message.id <= mark
    return False


def _quiet_hours(user: User) -> QuietHours | None:
    if not (user.quiet_hours_start and user.quiet_hours_end and user.quiet_hours_timezone):
        return None
    try:
        return QuietHours(time.fromisoformat(user.quiet_hours_start),
                          time.fromisoformat(user.quiet_hours_end), user.quiet_hours_timezone)
    except ValueError:
        return None


def _sort_out(user: User, rows: list[_Row], now: datetime) -> tuple[list[Waiting], list[int]]:
    """The rows to mail now, and the ids of rows to drop; the rest wait (do-not-disturb or
    quiet hours). The notification rule decides, with nobody looking (they are offline)."""
    marks = _thread_markers(user.id, rows)
    quiet = _quiet_hours(user)
    mail, drop = [], []
    for row in rows:
        message, participant = row.message, row.participant
        if (message is None or participant is None or message.deleted_at is not None
                or _is_read(message, participant, marks)):
            drop.append(row.missed.id)
            continue
        standing = Recipient(user.id, participant.notification_level, participant.muted_until)
        asked = {"sender_id": message.sender_id, "mentioned": row.missed.mentioned,
                 "visibility": row.visibility, "now": now}
        if not should_notify(standing, **asked):
            drop.append(row.missed.id)  # the level or a mute says never
            continue
        now_too = Recipient(user.id, participant.notification_level, participant.muted_until,
                            user.dnd_until, quiet)
        if should_notify(now_too, **asked):
            mail.append(Waiting(row.missed.id, row.missed.created_at, message))
    return mail, drop


# --------------------------------------------------------------------------- scheduling

def schedule_sweeps(app: Flask) -> None:
    """Celery beat's entry for the sweep; with tasks inline (no broker, no beat), a timer in
    this web process once it serves its first request (not in commands or tests)."""
    celery = app.extensions["celery"]
    every = app.config["MAIL_DIGEST_SWEEP_SECONDS"]
    celery.conf.beat_schedule = {
        **(celery.conf.beat_schedule or {}),
        "simplechat.sweep_digests": {"task": "simplechat.sweep_digests", "schedule": every},
    }
    if not celery.conf.task_always_eager or app.testing:
        return
    started = []

    @app.before_request
    def start_sweeping() -> None:
        if started:
            return
        started.append(True)
        socketio.start_background_task(_sweep_forever, app, every)


def _sweep_forever(app: Flask, every: float) -> None:
    while True:
        socketio.sleep(every)
        with app.app_context():
            try:
                if mail_configured():
                    sweep_digests.run()
            except Exception:
                log.exception("digest sweep failed")
            finally:
                db.session.remove()


__all__ = ["schedule_sweeps", "send_digest", "sweep_digests"]
