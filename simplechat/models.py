"""SQLAlchemy models: users and their sessions, conversations, messages (with their reactions
and attachments), the two log tables."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import current_app
from flask_login import UserMixin
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import Mapped, mapped_column, relationship
from werkzeug.security import check_password_hash, generate_password_hash

from simplechat.extensions import db

# The database's clock as a column default, in a form every supported database accepts.
NOW = text("CURRENT_TIMESTAMP")
# BIGINT on PostgreSQL and MySQL; plain INTEGER on SQLite so it stays an autoincrement rowid.
BigId = BigInteger().with_variant(Integer, "sqlite")
# MySQL's DATETIME drops fractions of a second unless asked to keep them.
PreciseDateTime = DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
# MariaDB's default utf8mb4 collations compare most emoji as equal: a reaction is compared
# byte for byte.
EmojiString = String(64).with_variant(mysql.VARCHAR(64, collation="utf8mb4_bin"),
                                      "mysql", "mariadb")


def utcnow() -> datetime:
    """The current UTC time as a naive datetime (the columns store UTC without a zone)."""
    return datetime.now(UTC).replace(tzinfo=None)


class User(UserMixin, db.Model):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(32), unique=True)
    first_name: Mapped[str] = mapped_column(String(64))
    last_name: Mapped[str] = mapped_column(String(64))
    # Stored lower-cased, so the unique constraint is case-insensitive on every database.
    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(String(256))
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    is_active: Mapped[bool] = mapped_column(Boolean, default=True, server_default="1")
    # A bot signs in with tokens only: its password hash matches no password.
    is_bot: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, server_default=NOW)

    # Both hash in the calling thread: for scripts and tests. The server's routes and commands
    # use auth/passwords.py, which hashes on the CPU pool, off the event loop.
    def set_password(self, password: str) -> None:
        method = current_app.config.get("PASSWORD_HASH_METHOD", "scrypt")
        self.password_hash = generate_password_hash(password, method=method)

    def check_password(self, password: str) -> bool:
        return check_password_hash(self.password_hash, password)

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip() or self.username

    def __repr__(self) -> str:
        return f"<User {self.username}>"


class UserSession(db.Model):
    """A login: the cookie carries only a random token whose hash is stored here."""

    __tablename__ = "user_sessions"
    __table_args__ = (Index("ix_user_sessions_user_ended", "user_id", "ended_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    # SHA-256 (hex) of the cookie's token and of the remember-me secret; never the secrets.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    remember_hash: Mapped[str | None] = mapped_column(String(64))
    remember_until: Mapped[datetime | None] = mapped_column(DateTime)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, server_default=NOW)
    last_seen_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, server_default=NOW)
    user_agent: Mapped[str | None] = mapped_column(String(256))
    ip: Mapped[str | None] = mapped_column(String(45))
    ended_at: Mapped[datetime | None] = mapped_column(DateTime)
    end_reason: Mapped[str | None] = mapped_column(String(32))

    user: Mapped[User] = relationship()

    @property
    def is_live(self) -> bool:
        return self.ended_at is None

    def __repr__(self) -> str:
        return f"<UserSession {self.id} of user {self.user_id}>"


class ApiToken(db.Model):
    """A personal access token: ``Authorization: Bearer <token>``; only its SHA-256 is kept."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # The first characters of the token, so its owner can tell tokens apart.
    hint: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, server_default=NOW)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime)

    user: Mapped[User] = relationship()


class Webhook(db.Model):
    """An outgoing webhook (every new message POSTed to ``url``, signed with ``secret``) or an
    incoming one (``POST /api/hooks/<secret>`` posts as ``bot_user_id``; only the hash kept)."""

    __tablename__ = "webhooks"

    id: Mapped[int] = mapped_column(primary_key=True)
    conversation_id: Mapped[int] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(16))  # "outgoing" or "incoming"
    url: Mapped[str | None] = mapped_column(String(2000))
    # Outgoing: the signing secret (HMAC needs it). Incoming: None, and secret_hash is set.
    secret: Mapped[str | None] = mapped_column(String(64))
    secret_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    bot_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    created_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, server_default=NOW)


class Conversation(db.Model):
    __tablename__ = "conversations"

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str | None] = mapped_column(String(120))
    is_group: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, server_default=NOW)
    # Newest activity, for ordering the conversation list; moved forward by each stored message.
    last_message_at: Mapped[datetime | None] = mapped_column(PreciseDateTime, index=True)

    participants: Mapped[list[Participant]] = relationship(
        back_populates="conversation", cascade="all, delete-orphan"
    )

    def __repr__(self) -> str:
        return f"<Conversation {self.id}>"


class Participant(db.Model):
    __tablename__ = "participants"
    __table_args__ = (UniqueConstraint("conversation_id", "user_id", name="uq_participant"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    conversation_id: Mapped[int] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    joined_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, server_default=NOW)

    # The newest message this participant has read (message ids sort in time order).
    last_read_message_id: Mapped[str | None] = mapped_column(String(36))
    # Muted: no notifications and no title-bar count for its messages (mentions still notify).
    muted: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")

    conversation: Mapped[Conversation] = relationship(back_populates="participants")
    user: Mapped[User] = relationship()


class Message(db.Model):
    __tablename__ = "messages"
    __table_args__ = (
        Index("ix_messages_conversation_created_id", "conversation_id", "created_at", "id"),
    )

    # Server-assigned UUIDv7 (time-ordered), as text so it matches the wire format.
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    conversation_id: Mapped[int] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE")
    )
    sender_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    text: Mapped[str] = mapped_column(Text)
    # Millisecond precision, taken from the id, so (created_at, id) orders like the id.
    created_at: Mapped[datetime] = mapped_column(PreciseDateTime)
    edited_at: Mapped[datetime | None] = mapped_column(PreciseDateTime)
    # A deleted message stays as a tombstone (empty text) so history keeps its place.
    deleted_at: Mapped[datetime | None] = mapped_column(PreciseDateTime)
    # "text", or "system" for a line about the group (a rename, people added, a departure).
    kind: Mapped[str] = mapped_column(String(16), default="text", server_default="text")
    # The sanitized HTML rendering of ``text``, made once when it was sent or edited.
    html: Mapped[str | None] = mapped_column(Text)
    # The message this one answers (no foreign key: it may reach SQL in a later batch).
    reply_to_id: Mapped[str | None] = mapped_column(String(36))
    mentions: Mapped[list | None] = mapped_column(JSON)  # user ids
    system: Mapped[dict | None] = mapped_column(JSON)  # what a system line is about


class Reaction(db.Model):
    """One user's emoji on one message (no foreign key to the message: a reaction may be
    stored before the message's own batch)."""

    __tablename__ = "reactions"
    __table_args__ = (
        UniqueConstraint("message_id", "user_id", "emoji", name="uq_reaction"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    message_id: Mapped[str] = mapped_column(String(36), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    emoji: Mapped[str] = mapped_column(EmojiString)
    created_at: Mapped[datetime] = mapped_column(PreciseDateTime, default=utcnow,
                                                 server_default=NOW)


class Attachment(db.Model):
    """A file uploaded to a conversation; ``message_id`` is set once a message carries it."""

    __tablename__ = "attachments"

    # Random, unguessable, and the file's key in the attachment store (never the user's name).
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    conversation_id: Mapped[int] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE"), index=True)
    uploader_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"),
                                             index=True)
    message_id: Mapped[str | None] = mapped_column(String(36), index=True)
    name: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(127))
    size: Mapped[int] = mapped_column(BigInteger)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    has_thumbnail: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, server_default=NOW)
    # Set when its message is deleted: the file is no longer served (and is removed).
    deleted_at: Mapped[datetime | None] = mapped_column(PreciseDateTime)


class GenericActivityLog(db.Model):
    __tablename__ = "generic_activity_log"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    action: Mapped[str] = mapped_column(String(64), index=True)
    detail: Mapped[dict | None] = mapped_column(JSON)
    ip: Mapped[str | None] = mapped_column(String(45))
    created_at: Mapped[datetime] = mapped_column(
        DateTime, default=utcnow, server_default=NOW, index=True
    )


class GenericErrorLog(db.Model):
    __tablename__ = "generic_error_log"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    where: Mapped[str] = mapped_column(String(200))
    error_type: Mapped[str] = mapped_column(String(200))
    message: Mapped[str] = mapped_column(Text)
    traceback: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(
        DateTime, default=utcnow, server_default=NOW, index=True
    )
