"""Who is notified of a message: one pure function of the recipient's level, the mentions,
their do-not-disturb and quiet hours, and whether they are looking at the conversation."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from simplechat.models import (
    LEVEL_ALL,
    LEVEL_DEFAULT,
    LEVEL_MENTIONS,
    LEVEL_NONE,
    PUBLIC,
)


@dataclass(frozen=True)
class QuietHours:
    """Every day from ``start`` to ``end`` (wrapping past midnight when end <= start), read on
    the clock of ``timezone``."""

    start: time
    end: time
    timezone: str


@dataclass(frozen=True)
class Recipient:
    """What the rule needs to know of one participant."""

    user_id: int
    level: str  # the standing level: default, all, mentions or none
    muted_until: datetime | None = None  # naive UTC
    dnd_until: datetime | None = None  # naive UTC
    quiet_hours: QuietHours | None = None
    looking: bool = False  # a socket of theirs in the conversation, not told focus null


def default_level(visibility: str) -> str:
    """The level "default" stands for: mentions in a public channel, all elsewhere."""
    return LEVEL_MENTIONS if visibility == PUBLIC else LEVEL_ALL


def effective_level(level: str, muted_until: datetime | None, visibility: str,
                    now: datetime) -> str:
    """The level that holds at ``now`` (naive UTC): none while a mute lasts, then the
    standing level with "default" spelled out."""
    if muted_until is not None and muted_until > now:
        return LEVEL_NONE
    if level == LEVEL_DEFAULT or level not in (LEVEL_ALL, LEVEL_MENTIONS, LEVEL_NONE):
        return default_level(visibility)
    return level


def in_quiet_hours(quiet: QuietHours | None, now: datetime) -> bool:
    """Whether ``now`` (naive UTC) falls in the quiet hours on their own time zone's clock."""
    if quiet is None or quiet.start == quiet.end:
        return False
    try:
        zone = ZoneInfo(quiet.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    local = now.replace(tzinfo=UTC).astimezone(zone).time().replace(tzinfo=None)
    if quiet.start < quiet.end:
        return quiet.start <= local < quiet.end
    return local >= quiet.start or local < quiet.end


def should_notify(recipient: Recipient, *, sender_id: int | None, mentioned: bool,
                  visibility: str, now: datetime) -> bool:
    """Whether a new message should reach ``recipient`` on their devices (``now``: naive
    UTC). Never their own message; then the level (a mute for a time counts as none),
    mentions for "mentions", do-not-disturb, quiet hours, and not while they look at it."""
    if sender_id == recipient.user_id:
        return False
    level = effective_level(recipient.level, recipient.muted_until, visibility, now)
    if level == LEVEL_NONE or (level == LEVEL_MENTIONS and not mentioned):
        return False
    if recipient.dnd_until is not None and recipient.dnd_until > now:
        return False
    if in_quiet_hours(recipient.quiet_hours, now):
        return False
    return not recipient.looking
