"""SQLAlchemy models: users and their sessions, conversations, messages (with their reactions,
attachments and threads), thread follows, drafts, the two log tables, push subscriptions."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import current_app
from flask_login import UserMixin
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    and_,
    or_,
    text,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.ext.hybrid import hybrid_property
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

    # Notification settings (GET/PUT /api/me/settings). Do not disturb until a UTC time; quiet
    # hours every day from start to end ("HH:MM", may wrap past midnight) in an IANA time zone.
    dnd_until: Mapped[datetime | None] = mapped_column(DateTime)
    quiet_hours_start: Mapped[str | None] = mapped_column(String(5))
    quiet_hours_end: Mapped[str | None] = mapped_column(String(5))
    quiet_hours_timezone: Mapped[str | None] = mapped_column(String(64))
    # The missed-message digest: on or off, and how long a message waits unread before it.
    email_notifications: Mapped[bool] = mapped_column(Boolean, default=True, server_default="1")
    email_delay_minutes: Mapped[int] = mapped_column(Integer, default=10, server_default="10")

    # Both hash in the calling thread: for scripts and tests. The server's routes and commands
    # use auth/passwords.py, which hashes on the CPU pool, off the event loop.
    def set_password(self, password: str) -> None:
        method = current_app.config.get("PASSWORD_HASH_METHOD", "scrypt")
        self.password_hash = generate_password_hash(password, method=method)

    def check_password(self, password: str) -> bool:
        return check_password_hash(self.password_hash, password)

    @property
    def full_name(self) -> str:
        return self.name_of(self.first_name, self.last_name, self.username)

    @staticmethod
    def name_of(first_name: str | None, last_name: str | None, username: str) -> str:
        """``full_name`` from the columns, for a query that reads them and no User."""
        return f"{first_name or ''} {last_name or ''}".strip() or username

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


class SlashCommand(db.Model):
    """``/name`` typed in a conversation's composer: POSTed, signed with ``secret``, to ``url``,
    whose answer is shown to the caller or posted as ``bot_user_id``. For one conversation, or
    for every one (``conversation_id`` NULL, made on the command line)."""

    __tablename__ = "slash_commands"
    __table_args__ = (UniqueConstraint("conversation_id", "name",
                                       name="uq_slash_commands_conversation_name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    conversation_id: Mapped[int | None] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(33))  # "/deploy": "/" and up to 32 characters
    description: Mapped[str] = mapped_column(String(200), default="", server_default="")
    url: Mapped[str] = mapped_column(String(2000))
    secret: Mapped[str] = mapped_column(String(64))
    bot_user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    created_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, server_default=NOW)


# A conversation's visibility: two people; a group one is added to; a channel anyone may find
# and join. ``is_group`` stays: true for both of the last two.
DIRECT, PRIVATE, PUBLIC = "direct", "private", "public"
VISIBILITIES = (DIRECT, PRIVATE, PUBLIC)
# A participant's role; owners and admins moderate, owners also set roles.
OWNER, ADMIN, MEMBER = "owner", "admin", "member"
ROLES = (OWNER, ADMIN, MEMBER)
MAX_DESCRIPTION = 500


class Conversation(db.Model):
    __tablename__ = "conversations"
    __table_args__ = (
        CheckConstraint("visibility IN ('direct', 'private', 'public')",
                        name="ck_conversations_visibility"),
        Index("ix_conversations_visibility_archived", "visibility", "archived"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str | None] = mapped_column(String(120))
    is_group: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    visibility: Mapped[str] = mapped_column(String(16), default=DIRECT, server_default=DIRECT)
    # Plain text, at most MAX_DESCRIPTION characters, may be empty.
    description: Mapped[str] = mapped_column(String(MAX_DESCRIPTION), default="",
                                             server_default="")
    # Read-only: nothing is sent, added or changed until it is unarchived.
    archived: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    created_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, server_default=NOW)
    # Newest activity, for ordering the conversation list; moved forward by each stored message.
    last_message_at: Mapped[datetime | None] = mapped_column(PreciseDateTime, index=True)

    participants: Mapped[list[Participant]] = relationship(
        back_populates="conversation", cascade="all, delete-orphan"
    )

    def __repr__(self) -> str:
        return f"<Conversation {self.id}>"


# A participant's notification level for a conversation; "default" follows the conversation's
# kind (direct and private: all, public channels: mentions).
LEVEL_DEFAULT, LEVEL_ALL, LEVEL_MENTIONS, LEVEL_NONE = "default", "all", "mentions", "none"
NOTIFICATION_LEVELS = (LEVEL_DEFAULT, LEVEL_ALL, LEVEL_MENTIONS, LEVEL_NONE)


class Participant(db.Model):
    __tablename__ = "participants"
    __table_args__ = (
        UniqueConstraint("conversation_id", "user_id", name="uq_participant"),
        CheckConstraint("role IN ('owner', 'admin', 'member')", name="ck_participants_role"),
        CheckConstraint("notification_level IN ('default', 'all', 'mentions', 'none')",
                        name="ck_participants_notification_level"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    conversation_id: Mapped[int] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    joined_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, server_default=NOW)

    # The newest message this participant has read (message ids sort in time order).
    last_read_message_id: Mapped[str | None] = mapped_column(String(36))
    # The standing level, and a mute for a time: until ``muted_until`` passes the level is
    # "none", then the standing level holds again. Level "none" without an end: muted for good.
    notification_level: Mapped[str] = mapped_column(
        String(8), default=LEVEL_DEFAULT, server_default=LEVEL_DEFAULT)
    muted_until: Mapped[datetime | None] = mapped_column(DateTime)
    role: Mapped[str] = mapped_column(String(16), default=MEMBER, server_default=MEMBER)

    conversation: Mapped[Conversation] = relationship(back_populates="participants")
    user: Mapped[User] = relationship()

    @hybrid_property
    def muted(self) -> bool:
        """Muted now: level "none" for good, or a mute whose end has not come (no title-bar
        count, no notifications)."""
        return self.notification_level == LEVEL_NONE or (
            self.muted_until is not None and self.muted_until > utcnow())

    @muted.inplace.expression
    @classmethod
    def _muted_expression(cls):
        return or_(cls.notification_level == LEVEL_NONE,
                   and_(cls.muted_until.is_not(None), cls.muted_until > utcnow()))


class Message(db.Model):
    __tablename__ = "messages"
    __table_args__ = (
        Index("ix_messages_conversation_created_id", "conversation_id", "created_at", "id"),
        # A thread's replies in order, and the replies of a batch's roots.
        Index("ix_messages_conversation_thread", "conversation_id", "thread_id", "created_at",
              "id"),
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
    # Who deleted it: its sender, or an owner or admin of the conversation.
    deleted_by: Mapped[int | None] = mapped_column(Integer)
    # "text", or "system" for a line about the group (a rename, people added, a departure).
    kind: Mapped[str] = mapped_column(String(16), default="text", server_default="text")
    # The sanitized HTML rendering of ``text``, made once when it was sent or edited.
    html: Mapped[str | None] = mapped_column(Text)
    # The message this one answers (no foreign key: it may reach SQL in a later batch).
    reply_to_id: Mapped[str | None] = mapped_column(String(36))
    mentions: Mapped[list | None] = mapped_column(JSON)  # user ids
    system: Mapped[dict | None] = mapped_column(JSON)  # what a system line is about
    # A thread reply: the id of its root, a main-flow message of the same conversation (no
    # foreign key: the root may reach SQL in the same batch). None in the main flow.
    thread_id: Mapped[str | None] = mapped_column(String(36))
    # A reply shown in the main flow as well as in its thread.
    also_to_conversation: Mapped[bool] = mapped_column(Boolean, default=False,
                                                       server_default="0")
    # A root's summary of its stored replies, recomputed from SQL by each batch that stores
    # replies (messaging.storage): their number, the newest one's time, and up to five
    # repliers in the order they first replied.
    reply_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_reply_at: Mapped[datetime | None] = mapped_column(PreciseDateTime)
    thread_participants: Mapped[list | None] = mapped_column(JSON)


class ThreadFollow(db.Model):
    """A user's following of one thread and their read marker in it (a row may only hold the
    marker: ``following`` false)."""

    __tablename__ = "thread_follows"
    __table_args__ = (
        UniqueConstraint("user_id", "thread_id", name="uq_thread_follow"),
        Index("ix_thread_follows_conversation_thread", "conversation_id", "thread_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    conversation_id: Mapped[int] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE"))
    thread_id: Mapped[str] = mapped_column(String(36))  # the root's id
    following: Mapped[bool] = mapped_column(Boolean, default=True, server_default="1")
    # The newest reply of the thread this user has read (ids sort in time order).
    last_read_message_id: Mapped[str | None] = mapped_column(String(36))
    updated_at: Mapped[datetime] = mapped_column(PreciseDateTime, default=utcnow,
                                                 server_default=NOW)


class Draft(db.Model):
    """What a user has typed and not sent, per conversation and per thread, for every device.
    ``thread_id`` is the root's id, or '' for the conversation's own composer (so the unique
    key holds on every database: NULLs would not be equal)."""

    __tablename__ = "drafts"
    __table_args__ = (
        UniqueConstraint("user_id", "conversation_id", "thread_id", name="uq_draft"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    conversation_id: Mapped[int] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE"), index=True)
    thread_id: Mapped[str] = mapped_column(String(36), default="", server_default="")
    text: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(PreciseDateTime, default=utcnow,
                                                 server_default=NOW)


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


class PushSubscription(db.Model):
    """A browser's Web Push subscription (one per device): where to POST and the keys that
    encrypt for it. Tied to the login that made it, so ending that session stops its pushes."""

    __tablename__ = "push_subscriptions"
    __table_args__ = (Index("ix_push_subscriptions_user", "user_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    session_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("user_sessions.id", ondelete="CASCADE"), index=True)
    endpoint: Mapped[str] = mapped_column(Text)
    # SHA-256 (hex) of the endpoint: unique on every database (an index on long text is not).
    endpoint_hash: Mapped[str] = mapped_column(String(64), unique=True)
    p256dh: Mapped[str] = mapped_column(String(128))
    auth: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, server_default=NOW)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime)
    failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    user: Mapped[User] = relationship()


class MessageEdit(db.Model):
    """A message's earlier text, kept when an edit replaced it (for site admins)."""

    __tablename__ = "message_edits"
    __table_args__ = (Index("ix_message_edits_message", "message_id", "replaced_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    message_id: Mapped[str] = mapped_column(String(36))
    text: Mapped[str] = mapped_column(Text)
    replaced_at: Mapped[datetime] = mapped_column(PreciseDateTime)


# A report's state: waiting in the admins' queue, or closed by deleting the message or not.
REPORT_OPEN, REPORT_DELETED, REPORT_DISMISSED = "open", "deleted", "dismissed"


class MessageReport(db.Model):
    """A participant's report of a message to the site admins. ``open_key`` is "open" while it
    waits and NULL once closed, so the unique key allows one open report per reporter and
    message on every database (NULLs are never equal)."""

    __tablename__ = "message_reports"
    __table_args__ = (
        UniqueConstraint("reporter_id", "message_id", "open_key", name="uq_message_report_open"),
        Index("ix_message_reports_status_created", "status", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    message_id: Mapped[str] = mapped_column(String(36), index=True)
    conversation_id: Mapped[int] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE"))
    reporter_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    reason: Mapped[str] = mapped_column(String(500))
    status: Mapped[str] = mapped_column(String(16), default=REPORT_OPEN,
                                        server_default=REPORT_OPEN)
    open_key: Mapped[str | None] = mapped_column(String(4), default=REPORT_OPEN)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, server_default=NOW)
    resolved_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"))
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime)

    reporter: Mapped[User] = relationship(foreign_keys=[reporter_id])


EXPORT_PENDING, EXPORT_READY, EXPORT_FAILED = "pending", "ready", "failed"


class DataExport(db.Model):
    """A user's export of their own data: a zip in the attachment store under ``file_key``.
    ``day`` (the UTC day it was asked for) is unique per user, so one export a day holds even
    for requests at the same moment; a failed export gives its day back (NULL)."""

    __tablename__ = "data_exports"
    __table_args__ = (UniqueConstraint("user_id", "day", name="uq_data_export_day"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    day: Mapped[str | None] = mapped_column(String(10))  # "YYYY-MM-DD", UTC
    status: Mapped[str] = mapped_column(String(16), default=EXPORT_PENDING,
                                        server_default=EXPORT_PENDING)
    file_key: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, server_default=NOW)
    expires_at: Mapped[datetime] = mapped_column(DateTime, index=True)


class ExternalIdentity(db.Model):
    """An account's sign-in at an outside provider: an OpenID Connect issuer and its ``sub``, or
    a directory (``ldap``) and the entry's id. One provider's subject belongs to one account."""

    __tablename__ = "external_identities"
    __table_args__ = (UniqueConstraint("issuer", "subject", name="uq_external_identity"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    issuer: Mapped[str] = mapped_column(String(255))
    subject: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, server_default=NOW)
    last_login_at: Mapped[datetime | None] = mapped_column(DateTime)


class MissedMessage(db.Model):
    """A direct message or a mention that may go into its recipient's missed-message digest:
    written when the message is stored (only while mail is configured, for users who take
    mail), mailed at most once (``mailed_at`` claims it before the mail goes out), dropped when
    it no longer qualifies (read, muted, left). Rows older than a couple of days are removed."""

    __tablename__ = "missed_messages"
    __table_args__ = (
        UniqueConstraint("user_id", "message_id", name="uq_missed_messages_user_message"),
        Index("ix_missed_messages_waiting", "mailed_at", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    conversation_id: Mapped[int] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE"), index=True)
    message_id: Mapped[str] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(PreciseDateTime)  # the message's time
    mentioned: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    mailed_at: Mapped[datetime | None] = mapped_column(DateTime)
