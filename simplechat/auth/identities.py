"""Accounts of people who sign in through an outside provider (an OpenID Connect issuer, an LDAP
directory): found by their identity there, linked to an existing account only through an e-mail
address the provider vouches for, or made on their first sign-in with a unique username."""

from __future__ import annotations

import logging
import re
import unicodedata
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from simplechat.auth.forms import (
    EMAIL_MAX,
    NAME_MAX,
    RESERVED_USERNAMES,
    USERNAME_MAX,
    USERNAME_MIN,
    email_taken,
)
from simplechat.auth.sessions import forget_identities
from simplechat.extensions import db
from simplechat.models import ExternalIdentity, User, utcnow
from simplechat.observability.activity import record_activity

log = logging.getLogger(__name__)

NO_PASSWORD = "!"  # the hash of an account made by a provider: it matches no password
_NOT_IN_USERNAME = re.compile(r"[^A-Za-z0-9._-]+")
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


@dataclass(frozen=True)
class Profile:
    """What a provider says of the person signing in."""

    issuer: str  # an OpenID issuer URL, or "ldap"
    subject: str  # its stable id of the person (``sub``; an LDAP entry's entryUUID or DN)
    username: str | None  # the name they would like (preferred_username, uid)
    email: str | None
    email_verified: bool  # the provider vouches that the address is theirs
    first_name: str
    last_name: str
    is_admin: bool | None  # from the admin group; None: not configured, left as it is


class Refused(Exception):
    """The sign-in is refused; ``message`` is for the person, ``status`` the HTTP status."""

    def __init__(self, message: str, status: int = 403):
        super().__init__(message)
        self.message = message
        self.status = status


DEACTIVATED = "This account is deactivated."
NO_EMAIL = "Your sign-in provider did not share an e-mail address, which an account needs."
EMAIL_UNVERIFIED = ("An account with this e-mail address exists already. Your sign-in provider "
                    "has not verified the address, so it cannot be linked to that account.")
LINKED_ELSEWHERE = ("The account with this e-mail address is linked to another sign-in at the "
                    "same provider.")


def clean_text(value: object, limit: int) -> str:
    """A provider's free text, without control characters, trimmed to the column's length."""
    if not isinstance(value, str):
        return ""
    return _CONTROL_CHARS.sub("", value).strip()[:limit]


def clean_email(value: object) -> str | None:
    """The address lower-cased, or None when it does not look like one."""
    text = clean_text(value, EMAIL_MAX + 1).lower()
    return text if len(text) <= EMAIL_MAX and _EMAIL.fullmatch(text) else None


def username_base(*wishes: object) -> str:
    """A name that follows our username rules, from the first wish that leaves one: accents
    taken off, other characters dropped, padded to the shortest length allowed."""
    for wish in wishes:
        if not isinstance(wish, str):
            continue
        ascii_ = unicodedata.normalize("NFKD", wish).encode("ascii", "ignore").decode()
        name = _NOT_IN_USERNAME.sub("-", ascii_).strip("-.")[:USERNAME_MAX]
        if name:
            return name if len(name) >= USERNAME_MIN else f"{name}-user"
    return "user"


def unique_username(base: str) -> str:
    """``base``, or ``base`` with the lowest number from 2 that no account has (case ignored),
    within the username's length. One query reads the names that could clash."""
    stem = base[: USERNAME_MAX - 4]
    taken = set(db.session.scalars(
        select(func.lower(User.username)).where(func.lower(User.username).like(
            stem.lower() + "%"))))
    taken |= RESERVED_USERNAMES
    for n in range(1, 10_000):
        suffix = "" if n == 1 else str(n)
        name = base[: USERNAME_MAX - len(suffix)] + suffix
        if name.lower() not in taken:
            return name
    raise Refused("No username is left for this account.", 409)


def _identity_user(profile: Profile) -> tuple[ExternalIdentity | None, User | None]:
    found = db.session.execute(
        select(ExternalIdentity, User).join(User, User.id == ExternalIdentity.user_id)
        .where(ExternalIdentity.issuer == profile.issuer,
               ExternalIdentity.subject == profile.subject)).first()
    return (found[0], found[1]) if found else (None, None)


def _linkable(profile: Profile, email: str) -> User | None:
    """The existing account with this address, if the provider vouches for it; else refused
    when an account has it (an unverified address must not take over that account)."""
    user = db.session.execute(select(User).where(User.email == email)).scalar_one_or_none()
    if user is None:
        return None
    if not profile.email_verified:
        raise Refused(EMAIL_UNVERIFIED)
    other = db.session.execute(
        select(ExternalIdentity.id).where(ExternalIdentity.user_id == user.id,
                                          ExternalIdentity.issuer == profile.issuer)).first()
    if other is not None:
        raise Refused(LINKED_ELSEWHERE)
    return user


def _new_account(profile: Profile, email: str) -> User:
    user = User(username=unique_username(username_base(profile.username, email.split("@")[0])),
                first_name=profile.first_name, last_name=profile.last_name, email=email,
                password_hash=NO_PASSWORD, is_admin=bool(profile.is_admin))
    db.session.add(user)
    db.session.flush()
    return user


def _found_or_made(profile: Profile) -> tuple[ExternalIdentity, User, str | None]:
    """The identity and its account, linking or making them; and what was done, if anything."""
    identity, user = _identity_user(profile)
    if identity is not None:
        return identity, user, None
    email = clean_email(profile.email)
    if email is None:
        raise Refused(NO_EMAIL)
    user = _linkable(profile, email)
    done = "sso_linked"
    if user is None:
        user, done = _new_account(profile, email), "sso_registered"
    identity = ExternalIdentity(user_id=user.id, issuer=profile.issuer, subject=profile.subject)
    db.session.add(identity)
    return identity, user, done


def _update(user: User, profile: Profile) -> tuple[bool, str | None]:
    """Bring the account in line with the provider: names, a vouched-for address that no other
    account has, the admin flag when an admin group is configured. Whether the name changed,
    and the admin change made, if any."""
    renamed = False
    for attr in ("first_name", "last_name"):
        value = getattr(profile, attr)
        if value and getattr(user, attr) != value:
            setattr(user, attr, value)
            renamed = True
    email = clean_email(profile.email)
    if (email and profile.email_verified and email != user.email
            and not email_taken(email, exclude_id=user.id)):
        user.email = email
    admin_change = None
    if profile.is_admin is not None and user.is_admin != profile.is_admin:
        user.is_admin = profile.is_admin
        admin_change = "admin_granted" if profile.is_admin else "admin_revoked"
    return renamed, admin_change


def sign_in_external(profile: Profile) -> User:
    """The active account of this provider's person, made or linked on a first sign-in and
    brought up to date; Refused when it cannot be (deactivated, no or an unverified address)."""
    profile = Profile(**{**profile.__dict__,
                         "first_name": clean_text(profile.first_name, NAME_MAX),
                         "last_name": clean_text(profile.last_name, NAME_MAX)})
    for attempt in range(3):
        try:
            identity, user, done = _found_or_made(profile)
            if not user.is_active:
                db.session.rollback()
                raise Refused(DEACTIVATED)
            renamed, admin_change = _update(user, profile)
            identity.last_login_at = utcnow()
            db.session.commit()
        except IntegrityError:
            # Another sign-in took the username, the address or this identity meanwhile.
            db.session.rollback()
            if attempt == 2:
                raise
            continue
        # Recorded once committed: the activity task may run inline, in this session.
        for action in (done, admin_change):
            if action:
                record_activity(action, user.id, {"issuer": profile.issuer})
        if renamed and done is None:
            forget_identities(user.id)
        return user
    raise AssertionError("unreachable")
