"""A user's notification settings (``/api/me/settings``, the settings page) and a
participant's level in one conversation: reading, checking and writing them."""

from __future__ import annotations

import functools
import re
import zoneinfo
from datetime import datetime

from sqlalchemy import update

from simplechat.answers import TIMESTAMP_FORMAT, error
from simplechat.extensions import db
from simplechat.models import LEVEL_NONE, NOTIFICATION_LEVELS, Participant, User, utcnow
from simplechat.realtime.emit import emit_to
from simplechat.realtime.rooms import user_room

SETTINGS = ("dnd_until", "quiet_hours", "email_notifications", "email_delay_minutes")
CLOCK = re.compile(r"^(?:[01]\d|2[0-3]):[0-5]\d$")
DELAY_MIN, DELAY_MAX = 1, 1440


def settings_of(user: User) -> dict:
    """The settings as the API shows them."""
    quiet = None
    if user.quiet_hours_start and user.quiet_hours_end and user.quiet_hours_timezone:
        quiet = {"start": user.quiet_hours_start, "end": user.quiet_hours_end,
                 "timezone": user.quiet_hours_timezone}
    return {"dnd_until": _timestamp(user.dnd_until), "quiet_hours": quiet,
            "email_notifications": bool(user.email_notifications),
            "email_delay_minutes": user.email_delay_minutes}


@functools.cache
def time_zones() -> frozenset[str]:
    """The IANA names this machine knows (read once: listing them reads the zone files)."""
    return frozenset(zoneinfo.available_timezones())


def parse_timestamp(value: object) -> datetime | None:
    """A UTC ``YYYY-MM-DD HH:MM:SS`` string as a naive datetime, None for anything else."""
    if not isinstance(value, str) or len(value) != 19:
        return None
    try:
        return datetime.strptime(value, TIMESTAMP_FORMAT)
    except ValueError:
        return None


def checked_settings(data: object) -> dict | None:
    """The columns a settings change writes, or None when any part of it is not valid (then
    nothing is written). Any subset of SETTINGS; nothing else."""
    if not isinstance(data, dict) or not set(data) <= set(SETTINGS):
        return None
    columns: dict = {}
    if "dnd_until" in data:
        dnd = data["dnd_until"]
        columns["dnd_until"] = None if dnd is None else parse_timestamp(dnd)
        if dnd is not None and columns["dnd_until"] is None:
            return None
    if "quiet_hours" in data:
        quiet = _checked_quiet_hours(data["quiet_hours"])
        if quiet is None:
            return None
        columns.update(quiet)
    if "email_notifications" in data:
        if not isinstance(data["email_notifications"], bool):
            return None
        columns["email_notifications"] = data["email_notifications"]
    if "email_delay_minutes" in data:
        delay = data["email_delay_minutes"]
        if type(delay) is float and delay.is_integer():
            delay = int(delay)  # 10.0 is the JSON number 10
        if type(delay) is not int or not DELAY_MIN <= delay <= DELAY_MAX:
            return None
        columns["email_delay_minutes"] = delay
    return columns


def _checked_quiet_hours(value: object) -> dict | None:
    off = {"quiet_hours_start": None, "quiet_hours_end": None, "quiet_hours_timezone": None}
    if value is None:
        return off
    if not isinstance(value, dict) or set(value) != {"start", "end", "timezone"}:
        return None
    start, end, zone = value["start"], value["end"], value["timezone"]
    if not all(isinstance(v, str) for v in (start, end, zone)):
        return None
    if not CLOCK.match(start) or not CLOCK.match(end) or zone not in time_zones():
        return None
    return {"quiet_hours_start": start, "quiet_hours_end": end, "quiet_hours_timezone": zone}


def update_settings(user_id: int, data: object) -> dict:
    """Change any subset of the settings: the settings after, or ``invalid`` (nothing
    written)."""
    columns = checked_settings(data)
    if columns is None:
        return error("invalid")
    user = db.session.get(User, user_id)
    if user is None:
        return error("unauthorized")
    for name, value in columns.items():
        setattr(user, name, value)
    db.session.commit()
    return {"ok": True, "settings": settings_of(user)}


def set_level(user_id: int, conversation_id: int, data: object) -> dict:
    """A participant's level in a conversation: ``level`` and ``muted_until`` (a UTC time, only
    with level "none": muted until then, the standing level kept for after; none without an
    end is muted for good). ``not_found`` if they take no part in it."""
    if not isinstance(data, dict) or not {"level"} <= set(data) <= {"level", "muted_until"}:
        return error("invalid")
    level, until_text = data["level"], data.get("muted_until")
    if not isinstance(level, str) or level not in NOTIFICATION_LEVELS:
        return error("invalid")
    until = None if until_text is None else parse_timestamp(until_text)
    if until_text is not None and (until is None or level != LEVEL_NONE):
        return error("invalid")
    values: dict = {"muted_until": until}
    if until is None:
        values["notification_level"] = level
    where = (Participant.user_id == user_id, Participant.conversation_id == conversation_id)
    changed = db.session.execute(update(Participant).where(*where).values(**values)).rowcount
    db.session.commit()
    if not changed:
        return error("not_found")
    participant = db.session.execute(
        db.select(Participant).where(*where)).scalar_one()
    answer = level_of(participant)
    emit_to(user_room(user_id), "conversation_muted",
            {"conversation_id": conversation_id, "muted": answer["muted"]})
    return {"ok": True, "conversation_id": conversation_id, **answer}


def level_of(participant: Participant) -> dict:
    """A participant's level as the API shows it: the standing level, the end of a mute for a
    time (null once passed) and whether the conversation is muted now."""
    until = participant.muted_until
    if until is not None and until <= utcnow():
        until = None
    return {"level": participant.notification_level, "muted_until": _timestamp(until),
            "muted": bool(participant.muted)}


def _timestamp(value: datetime | None) -> str | None:
    return value.strftime(TIMESTAMP_FORMAT) if value is not None else None
