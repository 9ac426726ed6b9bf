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

from simplechat.conversations.records import MAX_PARTICIPANTS
from simplechat.infra.ids import parse_message_id
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


class SearchQuery(Query):
    q: Annotated[str, Field(max_length=200)] = ""
    page: Annotated[int, _ascii_int(1, 1000)] = Field(1, ge=1, le=1000)


class NewConversation(Body):
    participants: Annotated[list[UserId], Field(min_length=1, max_length=MAX_PARTICIPANTS)] = (
        Field(description="ids of the other participants (yours is added); an id of no other "
                          "active user answers 404 not_found"))
    title: Annotated[str, Field(max_length=TITLE_MAX, pattern=NO_NUL)] | None = Field(
        None, description="title of a group conversation (ignored for a direct one)")


def _text_or_files(schema: dict) -> None:
    """A message needs visible text unless it carries files."""
    schema["anyOf"] = [
        {"properties": {"message": {"pattern": VISIBLE_PATTERN}}},
        {"required": ["attachments"],
         "properties": {"attachments": {"type": "array", "minItems": 1}}},
    ]


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


class MuteChange(Body):
    muted: bool = Field(description="true mutes the conversation for you, false unmutes it")


class IncomingHookMessage(Body):
    message: VisibleMessageText = Field(
        description="the text, at most CHAT_MAX_MESSAGE_LENGTH characters, with something "
                    "besides blanks and control characters")
    client_id: Annotated[str, Field(min_length=1, max_length=64)] | None = None


# --------------------------------------------------------------------------- answers


class Error(BaseModel):
    ok: Literal[False]
    error: str = Field(description="invalid, empty, too_long, unauthorized, csrf, forbidden, "
                                   "not_found, method_not_allowed, conflict, too_large, "
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
    kind: Literal["text", "system"] | None = Field(
        None, description="system: a rename, addition or departure (see system)")
    html: str | None = Field(None, description="the server's sanitized rendering of message")
    reply_to: ReplySummary | None = None
    mentions: list[int] | None = Field(None, description="the user ids mentioned")
    reactions: dict[str, list[int]] | None = Field(
        None, description="emoji -> the ids of the users who reacted, in order")
    attachments: list[AttachmentInfo] | None = None
    system: dict[str, Any] | None = Field(None, description="what a system line records")


class Uploaded(BaseModel):
    ok: Literal[True]
    attachment: AttachmentInfo


class LastMessage(BaseModel):
    id: str
    sender: int | None
    message: str
    timestamp: str


class Conversation(BaseModel):
    id: int
    title: str
    is_group: bool
    participants: list[Person]
    last_message: LastMessage | None
    unread: int
    unread_mentions: int  # of the unread messages, those that mention the caller
    muted: bool  # by the caller: no notifications (but for mentions), not in the title count


class ConversationList(BaseModel):
    ok: Literal[True]
    conversations: list[Conversation]


class ConversationAnswer(BaseModel):
    ok: Literal[True]
    conversation: Conversation
    created: bool


class ConversationOne(BaseModel):
    ok: Literal[True]
    conversation: Conversation


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
