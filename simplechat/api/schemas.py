"""The JSON API's bodies, query strings and answers as pydantic models: requests are
validated with them, and the OpenAPI document is generated from them.

The document states every limit the server enforces on a request, also those the send path
checks itself (a message's length and visible text, attachment ids): a request the document
allows is answered 2xx, or 403/404/409/429 for what no schema can know (who takes part, what
exists), never 400. ``x-setting`` names a configuration value the document fills in
(api.spec)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

from simplechat.conversations import channels, inbox, roster
from simplechat.infra.ids import parse_message_id
from simplechat.models import MAX_DESCRIPTION
from simplechat.threads import following
from simplechat.web.strict_numbers import MAX_ID, parse_int

TITLE_MAX = 120


def _ascii_int(low: int, high: int):
    """A query-string integer in ASCII digits only (no sign, blank or ``_``), in bounds."""

    def parse(value: object) -> object:
        if isinstance(value, str):
            parsed = parse_int(value, low, high)
            if parsed is None:
                raise ValueError(f"an integer from {low} to {high} in ASCII digits")
            return parsed
        return value

    return BeforeValidator(parse)


def _message_id(value: object) -> object:
    parsed = parse_message_id(value)
    if parsed is None:
        raise ValueError("a message id (UUIDv7)")
    return parsed


# Version 7 and the RFC 4122 variant (10xx): uuid.UUID gives any other variant no version.
UUID_PATTERN = ("^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-7[0-9a-fA-F]{3}-[89abAB][0-9a-fA-F]{3}-"
                "[0-9a-fA-F]{12}$")
MessageId = Annotated[str, BeforeValidator(_message_id),
                      WithJsonSchema({"type": "string", "format": "uuid",
                                      "pattern": UUID_PATTERN,
                                      "description": "a message id (UUIDv7)"})]
def _whole_number(value: object) -> object:
    """JSON Schema's integer takes 7.0 as well as 7: so does the API (strict bodies refuse
    floats otherwise)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


UserId = Annotated[int, Field(ge=1, le=MAX_ID), BeforeValidator(_whole_number)]
# What a message must hold besides blanks and control characters (trimmed away, the rest then
# empty), and how long it may be: CHAT_MAX_MESSAGE_LENGTH, filled in by the document.
VISIBLE_PATTERN = r"[^\s\x00-\x1f\x7f-\x9f]"
MessageText = Annotated[str, Field(json_schema_extra={
    "x-setting": {"maxLength": "CHAT_MAX_MESSAGE_LENGTH"}})]
# The same with visible text required (stated, not checked here: the send path answers empty).
VisibleMessageText = Annotated[str, Field(json_schema_extra={
    "x-setting": {"maxLength": "CHAT_MAX_MESSAGE_LENGTH"}, "pattern": VISIBLE_PATTERN})]
ATTACHMENT_ID_PATTERN = "^[0-9a-f]{32}$"
MAX_ATTACHMENTS = 10
NO_NUL = r"^[^\x00]*$"  # PostgreSQL stores no NUL character in text


class Query(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Body(BaseModel):
    """A JSON body: exact types (no "1" for 1), no unknown fields."""

    model_config = ConfigDict(extra="forbid", strict=True)


# --------------------------------------------------------------------------- requests


class UserSearchQuery(Query):
    q: Annotated[str, Field(max_length=100, pattern=r"^[^\x00]*$",
                            description="start of a username or name, or a whole e-mail")] = ""


class HistoryQuery(Query):
    before: MessageId | None = Field(None, description="messages older than this id (not "
                                                       "with after: 400)")
    after: MessageId | None = Field(None, description="messages newer than this id (not with "
                                                      "before: 400)")
    limit: Annotated[int, _ascii_int(1, MAX_ID)] = Field(
        50, ge=1, le=MAX_ID,
        description="page size, capped by CHAT_HISTORY_PAGE_MAX (default 100); with `after` "
                    "the catch-up size is CHAT_RECENT_MESSAGES")


class ConversationListQuery(Query):
    limit: Annotated[int, _ascii_int(1, inbox.MAX_PAGE)] = Field(
        inbox.DEFAULT_PAGE, ge=1, le=inbox.MAX_PAGE,
        description=f"page size, at most {inbox.MAX_PAGE}")
    before: Annotated[str, Field(pattern=inbox.CURSOR_PATTERN)] | None = Field(
        None, description="the next_before of the previous page (an opaque cursor): the page "
                          "of conversations after it")


class MembersQuery(Query):
    limit: Annotated[int, _ascii_int(1, roster.MAX_PAGE)] = Field(
        roster.DEFAULT_PAGE, ge=1, le=roster.MAX_PAGE,
        description=f"page size, at most {roster.MAX_PAGE}")
    before: Annotated[str, Field(pattern=roster.CURSOR_PATTERN)] | None = Field(
        None, description="the next_before of the previous page (an opaque cursor): the page "
                          "of members after it")


class ChannelDirectoryQuery(Query):
    q: Annotated[str, Field(max_length=100, pattern=NO_NUL,
                            description="words the title or description holds (any case)")] = ""
    sort: Literal["members", "recent", "name"] = Field(
        "members", description="members: most first; recent: newest activity first; name: A "
                               "to Z")
    limit: Annotated[int, _ascii_int(1, channels.MAX_PAGE)] = Field(
        50, ge=1, le=channels.MAX_PAGE, description=f"page size, at most {channels.MAX_PAGE}")
    before: Annotated[str, Field(pattern=channels.CURSOR_PATTERN)] | None = Field(
        None, description="the next_before of the previous page, with the same sort (an "
                          "opaque cursor; another sort's starts from the top)")


class SearchQuery(Query):
    q: Annotated[str, Field(max_length=200)] = ""
    page: Annotated[int, _ascii_int(1, 1000)] = Field(1, ge=1, le=1000)


class NewConversation(Body):
    participants: Annotated[list[UserId], Field(min_length=1, json_schema_extra={
        "x-setting": {"maxItems": "CHAT_MAX_MEMBERS"}})] = Field(
        description="ids of the other participants (yours is added; with you at most "
                    "CHAT_MAX_MEMBERS people, else 400 too_many); an id of no other active "
                    "user answers 404 not_found")
    title: Annotated[str, Field(max_length=TITLE_MAX, pattern=NO_NUL)] | None = Field(
        None, description="title of a group conversation (ignored for a direct one)")


def _text_or_files(schema: dict) -> None:
    """A message needs visible text unless it carries files."""
    schema["anyOf"] = [
        {"properties": {"message": {"pattern": VISIBLE_PATTERN}}},
        {"required": ["attachments"],
         "properties": {"attachments": {"type": "array", "minItems": 1}}},
    ]


# One line with something visible in it, and no NUL (trimmed and its blanks collapsed).
VISIBLE_LINE = r"^[^\x00]*[^\s\x00-\x1f\x7f-\x9f][^\x00]*$"


class NewChannel(Body):
    title: Annotated[str, Field(min_length=1, max_length=TITLE_MAX, pattern=VISIBLE_LINE)] = (
        Field(description="the channel's name"))
    description: Annotated[str, Field(max_length=MAX_DESCRIPTION, pattern=NO_NUL)] = Field(
        "", description=f"plain text, at most {MAX_DESCRIPTION} characters, may be empty")
    visibility: Literal["public", "private"] = Field(
        "public", description="public: in the directory, anyone may join; private: members "
                              "add people")


class RoleChange(Body):
    user_id: UserId = Field(description="a member of the conversation")
    role: Literal["owner", "admin", "member"]


class DescriptionChange(Body):
    description: Annotated[str, Field(max_length=MAX_DESCRIPTION, pattern=NO_NUL)] = Field(
        description=f"plain text, at most {MAX_DESCRIPTION} characters; empty removes it")


class ArchiveChange(Body):
    archived: bool = Field(description="true: read-only (sends answer 409 archived); false: "
                                       "open again")


class NewMessage(Body):
    model_config = ConfigDict(json_schema_extra=_text_or_files)

    message: MessageText = Field(
        description="the text, at most CHAT_MAX_MESSAGE_LENGTH characters; blanks and control "
                    "characters are trimmed, and something must be left unless the message "
                    "carries attachments")
    client_id: Annotated[str, Field(min_length=1, max_length=64)] | None = Field(
        None, description="your id for this send: a retry with the same id is answered with "
                          "the original message, never stored twice")
    reply_to: MessageId | None = Field(
        None, description="the id of the message answered; 404 not_found when it is no "
                          "message of this conversation (or deleted)")
    attachments: Annotated[
        list[Annotated[str, Field(pattern=ATTACHMENT_ID_PATTERN)]] | None,
        WithJsonSchema({"anyOf": [
            {"type": "array", "maxItems": MAX_ATTACHMENTS, "uniqueItems": True,
             "items": {"type": "string", "pattern": ATTACHMENT_ID_PATTERN}},
            {"type": "null"}]}),
    ] = Field(None, description="ids of your uploads to this conversation "
                                "(POST /api/conversations/{id}/attachments), not sent yet, "
                                "each once, at most 10; 404 not_found when one is not yours "
                                "to send here, 409 already_sent when it was sent already")
    thread_id: MessageId | None = Field(
        None, description="reply in the thread of this message (its root: a message of the "
                          "conversation's own flow, not itself a reply, not a system line); 404 "
                          "not_found when it names no such message")
    also_to_conversation: bool | None = Field(
        None, description="with thread_id: show the reply in the conversation's own flow too "
                          "(ignored without thread_id)")


class MuteChange(Body):
    muted: bool = Field(description="true mutes the conversation for you, false unmutes it")


class IncomingHookMessage(Body):
    message: VisibleMessageText = Field(
        description="the text, at most CHAT_MAX_MESSAGE_LENGTH characters, with something "
                    "besides blanks and control characters")
    client_id: Annotated[str, Field(min_length=1, max_length=64)] | None = None


class SlackField(BaseModel):
    title: str | None = None
    value: str | None = Field(None, description="Slack mrkdwn")
    short: bool | None = Field(None, description="ignored: fields are shown one under another")


class SlackAttachment(BaseModel):
    """A legacy attachment: shown as a quote block led by a circle of its colour."""

    model_config = ConfigDict(extra="allow")

    color: str | None = Field(None, description="good, warning, danger or #RRGGBB")
    pretext: str | None = Field(None, description="mrkdwn shown above the attachment")
    author_name: str | None = None
    author_link: str | None = None
    title: str | None = None
    title_link: str | None = Field(None, description="makes the title a link")
    text: str | None = Field(None, description="Slack mrkdwn")
    fields: list[SlackField] | None = None
    image_url: str | None = Field(None, description="shown as a link")
    footer: str | None = None
    ts: int | float | str | None = Field(None, description="Unix time, shown after footer")
    fallback: str | None = Field(None, description="shown when nothing else is")
    blocks: list[dict[str, Any]] | None = None


class SlackMessage(BaseModel):
    """Slack's incoming-webhook message; docs/INTEGRATIONS.md says what each part becomes."""

    model_config = ConfigDict(extra="allow")

    text: str | None = Field(None, description="Slack mrkdwn (*bold*, _italic_, <url|label>, "
                                               "<!here>); only the fallback when blocks show "
                                               "something")
    mrkdwn: bool | None = Field(None, description="false: text is shown as typed")
    attachments: list[SlackAttachment] | None = Field(None, max_length=100)
    blocks: list[dict[str, Any]] | None = Field(
        None, max_length=50, description="Block Kit: header, section, context, divider and "
                                         "image are shown, other types left out")


class CommandAnswer(SlackMessage):
    """A slash command's answer, at once or later to its response_url."""

    response_type: Literal["ephemeral", "in_channel"] | None = Field(
        None, description="ephemeral (the default): shown to the caller alone; in_channel: "
                          "posted in the conversation as the command's bot")


# --------------------------------------------------------------------------- answers


class Error(BaseModel):
    ok: Literal[False]
    error: str = Field(description="invalid, empty, too_long, too_many, not_group, "
                                   "unauthorized, csrf, forbidden, not_allowed, not_found, "
                                   "method_not_allowed, conflict, archived, too_large, "
                                   "rate_limited, unavailable, internal")
    retry_after: float | None = Field(None, description="seconds to wait (rate_limited)")
    max_length: int | None = Field(None, description="the limit (too_long)")


class Me(BaseModel):
    id: int
    username: str
    first_name: str
    last_name: str
    name: str
    is_bot: bool


class Person(BaseModel):
    id: int
    username: str
    name: str
    is_bot: bool


class ReplySummary(BaseModel):
    id: str
    sender: int | None
    sender_name: str | None
    preview: str = Field(description="the first 120 characters of the message answered")


class ThreadSummary(BaseModel):
    reply_count: int
    last_reply_at: str | None = Field(description="UTC, YYYY-MM-DD HH:MM:SS")
    participants: list[int] = Field(description="up to 5 repliers' ids, in the order they "
                                                "first replied")


class AttachmentInfo(BaseModel):
    id: str
    name: str
    size: int
    content_type: str | None
    url: str
    thumbnail_url: str | None
    width: int | None
    height: int | None


class Message(BaseModel):
    """A message as every client sees it (the socket's ``message`` event)."""

    id: str
    conversation_id: int
    sender: int | None
    sender_name: str | None
    message: str
    timestamp: str = Field(description="UTC, YYYY-MM-DD HH:MM:SS")
    client_id: str | None
    edited_at: str | None = None
    deleted: bool | None = None
    deleted_by: int | None = Field(None, description="on a deleted message: who deleted it (its "
                                                     "sender, or an owner or admin)")
    kind: Literal["text", "system"] | None = Field(
        None, description="system: a rename, description, addition, join, removal, departure, "
                          "role change or archiving (see system)")
    html: str | None = Field(None, description="the server's sanitized rendering of message")
    reply_to: ReplySummary | None = None
    mentions: list[int] | None = Field(None, description="the user ids mentioned")
    reactions: dict[str, list[int]] | None = Field(
        None, description="emoji -> the ids of the users who reacted, in order")
    attachments: list[AttachmentInfo] | None = None
    system: dict[str, Any] | None = Field(None, description="what a system line records")
    thread_id: str | None = Field(None, description="a thread reply: its root's id; null in "
                                                    "the conversation's own flow")
    also_to_conversation: bool | None = Field(
        None, description="a thread reply: whether it is shown in the conversation's own flow "
                          "too")
    thread: ThreadSummary | None = Field(None, description="a root: its replies' summary "
                                                           "(null while it has none)")


class Uploaded(BaseModel):
    ok: Literal[True]
    attachment: AttachmentInfo


class Member(Person):
    role: Literal["owner", "admin", "member"]


class LastMessage(BaseModel):
    id: str
    sender: int | None
    message: str
    preview: str = Field(description="the message as one line of plain text of at most 120 "
                                     "characters (no Markdown), or 📎 and the first file's name "
                                     "for files alone")
    timestamp: str


class Conversation(BaseModel):
    id: int
    title: str
    is_group: bool
    visibility: Literal["direct", "private", "public"]
    description: str
    archived: bool
    role: Literal["owner", "admin", "member"] = Field(description="the caller's")
    member_count: int
    participants: list[Member] = Field(
        description=f"the first {roster.DEFAULT_PAGE} members, owners first, then admins, then "
                    "the others by name (all of a smaller conversation); "
                    "GET /api/conversations/{id}/members pages them all")
    last_message: LastMessage | None
    unread: int
    unread_mentions: int  # of the unread messages, those that mention the caller
    muted: bool  # by the caller: no notifications (but for mentions), not in the title count


class ConversationList(BaseModel):
    ok: Literal[True]
    conversations: list[Conversation]
    next_before: str | None = Field(description="pass it as before for the next page; null on "
                                                "the last page")


class MembersPage(BaseModel):
    ok: Literal[True]
    members: list[Member]
    next_before: str | None = Field(description="pass it as before for the next page; null on "
                                                "the last page")


class ConversationAnswer(BaseModel):
    ok: Literal[True]
    conversation: Conversation
    created: bool


class ConversationOne(BaseModel):
    ok: Literal[True]
    conversation: Conversation


class ChannelEntry(BaseModel):
    id: int
    title: str
    is_group: Literal[True]
    visibility: Literal["public"]
    description: str
    archived: Literal[False]
    member_count: int
    role: Literal["owner", "admin", "member"] | None = Field(description="the caller's, null "
                                                                        "when not a member")
    joined: bool = Field(description="whether the caller is a member")
    last_activity: str = Field(description="UTC, YYYY-MM-DD HH:MM:SS: the newest message, or "
                                           "when it was made")


class ChannelDirectory(BaseModel):
    ok: Literal[True]
    channels: list[ChannelEntry]
    next_before: str | None = Field(description="pass it as before (with the same sort) for "
                                                "the next page; null on the last page")


class Left(BaseModel):
    ok: Literal[True]


class Muted(BaseModel):
    ok: Literal[True]
    conversation_id: int
    muted: bool


class MessagesPage(BaseModel):
    ok: Literal[True]
    messages: list[Message]
    has_more: bool


class Sent(BaseModel):
    ok: Literal[True]
    message: Message
    duplicate: bool | None = Field(None, description="true: a retry, the original answered")


class SlashCommandEntry(BaseModel):
    name: str = Field(description="/ and its name, like /deploy")
    description: str
    everywhere: bool = Field(description="true: a command of every conversation")


class SlashCommandList(BaseModel):
    ok: Literal[True]
    commands: list[SlashCommandEntry]


class UserOption(BaseModel):
    id: int
    text: str


class UserSearch(BaseModel):
    results: list[UserOption]


class SnippetPart(BaseModel):
    text: str
    match: bool


class SearchHit(BaseModel):
    id: str
    conversation_id: int
    conversation_title: str
    sender: int | None
    sender_name: str | None
    timestamp: str
    snippet: list[SnippetPart]


class SearchPage(BaseModel):
    ok: Literal[True]
    results: list[SearchHit]
    page: int
    has_more: bool


# --------------------------------------------------------------------------- threads, drafts


class ThreadQuery(Query):
    unread: bool = Field(False, description="true: only the threads with unread replies")
    limit: Annotated[int, _ascii_int(1, following.MAX_PAGE)] = Field(
        following.DEFAULT_PAGE, ge=1, le=following.MAX_PAGE,
        description=f"page size, at most {following.MAX_PAGE}")
    before: Annotated[str, Field(pattern=following.CURSOR_PATTERN)] | None = Field(
        None, description="the next_before of the previous page (an opaque cursor): the "
                          "threads after it")


class FollowChange(Body):
    on: bool = Field(description="true: follow the thread; false: stop following it")


class MessageMarker(Body):
    message_id: MessageId = Field(description="a message of the conversation (of the thread "
                                              "for a thread's marker)")


class DraftChange(Body):
    message: MessageText = Field(
        description="the text as typed, at most CHAT_MAX_MESSAGE_LENGTH characters; nothing "
                    "but blanks deletes the draft")
    thread_id: MessageId | None = Field(
        None, description="the root of the thread whose composer this is; absent or null: the "
                          "conversation's own; 404 not_found when it names no root there")


class ThreadPage(BaseModel):
    ok: Literal[True]
    root: Message
    messages: list[Message]
    has_more: bool


class FollowedThread(BaseModel):
    conversation_id: int
    thread_id: str = Field(description="the root's id")
    root: Message
    unread: int = Field(description="replies from others after your marker")
    unread_mentions: int = Field(description="of those, the ones that mention you")
    last_reply_at: str | None = Field(description="UTC, YYYY-MM-DD HH:MM:SS")
    last_read: str | None = Field(description="your marker: the newest reply you have read")


class ThreadList(BaseModel):
    ok: Literal[True]
    threads: list[FollowedThread]
    next_before: str | None = Field(description="pass it as before for the next page; null on "
                                                "the last page")


class Following(BaseModel):
    ok: Literal[True]
    following: bool


class ThreadMarker(BaseModel):
    ok: Literal[True]
    last_read: str | None


class Unmarked(BaseModel):
    ok: Literal[True]
    last_read: str | None = Field(description="your marker now: the message before the one "
                                              "marked unread (null: none)")
    unread: int
    unread_mentions: int


class DraftEntry(BaseModel):
    conversation_id: int
    thread_id: str | None = Field(description="the thread's root, null for the conversation's "
                                              "own composer")
    message: str
    updated_at: str = Field(description="UTC, YYYY-MM-DD HH:MM:SS")


class DraftSaved(BaseModel):
    ok: Literal[True]
    draft: DraftEntry | None = Field(description="null: deleted (the text was blank)")


class DraftList(BaseModel):
    ok: Literal[True]
    drafts: list[DraftEntry]
