"""The digest mail: one section per conversation (its name, how many messages wait, the
newest few with their senders, a link to it), as plain text and HTML, with the one-click
unsubscribe headers of RFC 8058."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from flask import render_template
from sqlalchemy import select

from simplechat.conversations.records import display_title
from simplechat.digests.unsubscribe import unsubscribe_link
from simplechat.extensions import db
from simplechat.mail.sending import site_link
from simplechat.models import Conversation, Message, Participant, User

SHOWN_PER_CONVERSATION = 5  # the newest messages quoted in a section; the rest are counted
PREVIEW_MAX = 200
NAMED_MEMBERS = 4  # members loaded to name an untitled group


@dataclass(frozen=True)
class Waiting:
    """A message going into the digest, with the id and time of its ``missed_messages`` row."""

    row_id: int
    row_time: datetime
    message: Message

    @property
    def conversation_id(self) -> int:
        return self.message.conversation_id


@dataclass(frozen=True)
class Quoted:
    sender: str
    time: str
    text: str


@dataclass(frozen=True)
class Section:
    title: str
    link: str
    count: int
    quoted: list[Quoted]

    @property
    def more(self) -> int:
        return self.count - len(self.quoted)


def _preview(message: Message) -> str:
    text = " ".join((message.text or "").split())
    if not text:
        return "(sent a file)"
    return text if len(text) <= PREVIEW_MAX else text[:PREVIEW_MAX - 1] + "…"


def _titles(user: User, conversation_ids: set[int]) -> dict[int, str]:
    conversations = db.session.scalars(
        select(Conversation).where(Conversation.id.in_(conversation_ids))).all()
    titles = {}
    for conversation in conversations:
        members = [] if conversation.title else list(db.session.scalars(
            select(User).join(Participant, Participant.user_id == User.id)
            .where(Participant.conversation_id == conversation.id)
            .order_by(Participant.id).limit(NAMED_MEMBERS + 1)))
        titles[conversation.id] = display_title(conversation, user.id, members)
    return titles


def sections(user: User, waiting: list[Waiting]) -> list[Section]:
    """The digest's sections, the conversation with the newest message first."""
    by_conversation: dict[int, list[Message]] = {}
    for w in waiting:
        by_conversation.setdefault(w.conversation_id, []).append(w.message)
    senders = {u.id: u.full_name for u in db.session.scalars(
        select(User).where(User.id.in_({w.message.sender_id for w in waiting})))}
    titles = _titles(user, set(by_conversation))
    result = []
    for cid, messages in by_conversation.items():
        messages.sort(key=lambda m: m.id)
        shown = messages[-SHOWN_PER_CONVERSATION:]
        quoted = [Quoted(senders.get(m.sender_id, "Someone"),
                         m.created_at.strftime("%Y-%m-%d %H:%M UTC"), _preview(m))
                  for m in shown]
        result.append((messages[-1].id, Section(titles.get(cid, "A conversation"),
                                                site_link(f"/chat/{cid}"), len(messages),
                                                quoted)))
    return [section for _, section in sorted(result, key=lambda pair: pair[0], reverse=True)]


def subject_of(parts: list[Section]) -> str:
    total = sum(s.count for s in parts)
    messages = f"{total} unread message{'s' if total != 1 else ''}"
    if len(parts) == 1:
        return f"{messages} in {parts[0].title}"
    return f"{messages} in {len(parts)} conversations"


def compose_digest(user: User, waiting: list[Waiting]) -> tuple[str, str, str, dict]:
    """Subject, plain text, HTML and headers of ``user``'s digest of ``waiting``."""
    parts = sections(user, waiting)
    unsubscribe = unsubscribe_link(user)
    values = {"user": user, "sections": parts, "unsubscribe": unsubscribe,
              "settings": site_link("/chat/settings/notifications"), "site": site_link("/")}
    headers = {"List-Unsubscribe": f"<{unsubscribe}>",
               "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
               "Auto-Submitted": "auto-generated"}
    return (" ".join(f"Simple Chat: {subject_of(parts)}".split()),
            render_template("mail/digest.txt", **values),
            render_template("mail/digest.html", **values), headers)
