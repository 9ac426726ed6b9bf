"""Reports of messages to the site admins: a participant reports a message with a reason; the
reports wait in /admin/reports, where an admin deletes the message (every open report of it
closes) or dismisses the report. The socket, the JSON API and the console share these."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from simplechat.answers import error
from simplechat.conversations.moderation import delete_message
from simplechat.extensions import db
from simplechat.infra.ids import parse_message_id
from simplechat.infra.membership import membership_refusal, valid_conversation_id
from simplechat.messaging.payload import SYSTEM
from simplechat.messaging.replies import find_message
from simplechat.messaging.send import clean_text
from simplechat.models import (
    REPORT_DELETED,
    REPORT_DISMISSED,
    REPORT_OPEN,
    Conversation,
    MessageReport,
    User,
    utcnow,
)
from simplechat.observability.activity import record_activity

MAX_REASON = 500


def report_message(user: User, data: dict) -> dict:
    """Report a message of a conversation one takes part in: ``{"ok": true}``; ``invalid``
    for a bad id or reason (text, 1 to 500 characters after trimming), ``forbidden`` for a
    stranger, ``not_found`` for a message not there (or deleted), ``conflict`` while the
    reporter's earlier report of it is still open."""
    conversation_id, reason = data.get("conversation_id"), data.get("reason")
    message_id = parse_message_id(data.get("message_id"))
    if (message_id is None or not valid_conversation_id(conversation_id)
            or not isinstance(reason, str)):
        return error("invalid")
    try:
        reason = clean_text(reason)
        reason.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate cannot be stored
        return error("invalid")
    if not reason or len(reason) > MAX_REASON:
        return error("invalid", max_length=MAX_REASON)
    refusal = membership_refusal(user.id, conversation_id)
    if refusal:
        return error(refusal)
    message = find_message(conversation_id, message_id)
    if message is None or message.get("deleted") or message.get("kind") == SYSTEM:
        return error("not_found")
    db.session.add(MessageReport(message_id=message_id, conversation_id=conversation_id,
                                 reporter_id=user.id, reason=reason))
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        return error("conflict")
    record_activity("message_reported", user.id, {"conversation_id": conversation_id,
                                                  "message_id": message_id})
    return {"ok": True}


@dataclass(frozen=True)
class ReportRow:
    report: MessageReport
    reporter: str
    conversation_title: str
    message: dict | None  # the message as participants see it now; None if gone


def reports_page(status: str = REPORT_OPEN, page: int = 1, per_page: int = 25
                 ) -> tuple[list[ReportRow], int]:
    """One page of reports in a state, oldest open first (newest first once closed), with the
    reported messages as they are now; and how many there are in all."""
    order = (MessageReport.created_at, MessageReport.id) if status == REPORT_OPEN else (
        MessageReport.id.desc(),)
    total = db.session.scalar(select(func.count()).select_from(MessageReport).where(
        MessageReport.status == status)) or 0
    rows = db.session.execute(
        select(MessageReport, User.username, Conversation.title)
        .join(User, User.id == MessageReport.reporter_id)
        .join(Conversation, Conversation.id == MessageReport.conversation_id)
        .where(MessageReport.status == status).order_by(*order)
        .offset((page - 1) * per_page).limit(per_page)).all()
    return [ReportRow(report, username, title or f"Conversation {report.conversation_id}",
                      find_message(report.conversation_id, report.message_id))
            for report, username, title in rows], total


def _open_report(report_id: int) -> MessageReport | None:
    report = db.session.get(MessageReport, report_id)
    return report if report is not None and report.status == REPORT_OPEN else None


def _close(message_id: str | None, report_id: int | None, status: str, admin: User) -> int:
    """Close the open reports of a message (or one report); returns how many closed."""
    where = (MessageReport.message_id == message_id if message_id is not None
             else MessageReport.id == report_id)
    closed = db.session.execute(
        update(MessageReport).where(where, MessageReport.status == REPORT_OPEN)
        .values(status=status, open_key=None, resolved_by_id=admin.id, resolved_at=utcnow()))
    db.session.commit()
    return closed.rowcount


def delete_reported(admin: User, report_id: int) -> dict:
    """Delete the reported message as a site admin (a tombstone with ``deleted_by``, its files
    removed, participants told); every open report of it closes. ``not_found`` for a report
    that is not open; a message deleted meanwhile just closes its reports."""
    report = _open_report(report_id)
    if report is None:
        return error("not_found")
    answer = delete_message(admin, {"conversation_id": report.conversation_id,
                                    "message_id": report.message_id})
    if not answer.get("ok") and answer.get("error") != "not_found":
        return answer
    closed = _close(report.message_id, None, REPORT_DELETED, admin)
    record_activity("report_message_deleted", admin.id,
                    {"report_id": report_id, "message_id": report.message_id,
                     "conversation_id": report.conversation_id, "reports_closed": closed})
    return {"ok": True}


def dismiss_report(admin: User, report_id: int) -> dict:
    """Close a report and leave the message as it is; ``not_found`` for one not open."""
    report = _open_report(report_id)
    if report is None or not _close(None, report_id, REPORT_DISMISSED, admin):
        return error("not_found")
    record_activity("report_dismissed", admin.id,
                    {"report_id": report_id, "message_id": report.message_id})
    return {"ok": True}
