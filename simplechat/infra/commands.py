"""What every ``flask`` command group shares: failing with a message, finding a user by name,
and durations (``30d``, ``12h``, ``90m``) as arguments."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import NoReturn

import click
from sqlalchemy import func, select

from simplechat.extensions import db
from simplechat.models import User


def fail(message: str) -> NoReturn:
    """Stop the command with ``message`` and exit status 1."""
    raise click.ClickException(message)


def find_user(name: str) -> User:
    """The user with this username (any case) or e-mail address, else the command fails."""
    user = db.session.scalar(select(User).where(func.lower(User.username) == name.lower()))
    if user is None:
        user = db.session.scalar(select(User).where(User.email == name.strip().lower()))
    if user is None:
        fail(f"no user {name!r}")
    return user


_DURATION = re.compile(r"^\s*(\d+)\s*([dhm])\s*$", re.IGNORECASE)
_UNITS = {"d": "days", "h": "hours", "m": "minutes"}


def parse_age(value: str) -> timedelta:
    """``30d``, ``12h`` or ``90m`` as a timedelta; ValueError for anything else."""
    match = _DURATION.match(value or "")
    if not match:
        raise ValueError(f"{value!r} is not a duration like 30d, 12h or 90m")
    amount = int(match.group(1))
    if amount <= 0:
        raise ValueError("the duration must be more than zero")
    age = timedelta(**{_UNITS[match.group(2).lower()]: amount})
    if age > timedelta(days=365 * 100):
        raise ValueError(f"{value!r} is more than a hundred years")
    return age


class AgeType(click.ParamType):
    name = "duration"

    def convert(self, value, param, ctx):
        if isinstance(value, timedelta):
            return value
        try:
            return parse_age(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
