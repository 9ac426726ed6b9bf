"""Password reset by e-mail: a signed link that works once, for PASSWORD_RESET_MAX_AGE seconds.

The link carries the user's id and a fingerprint of their password hash and e-mail address,
signed with the app's secret. Setting a password changes the hash, so the link dies once used
(or when the password or address changes another way). The request never looks the address
up: it queues a task that does, so the answer and its timing are the same whether or not the
address has an account.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from dataclasses import dataclass
from smtplib import SMTPException

from celery import shared_task
from flask import current_app, render_template
from itsdangerous import BadSignature, SignatureExpired, TimestampSigner, URLSafeTimedSerializer
from sqlalchemy import select, update

from simplechat.auth.passwords import hash_password
from simplechat.auth.sessions import end_user_sessions
from simplechat.auth.tokens import live_tokens, revoke_tokens
from simplechat.extensions import db
from simplechat.infra.services import services
from simplechat.mail.sending import mail_configured, run_off_request, send_mail, site_link
from simplechat.models import User
from simplechat.observability.activity import record_activity

log = logging.getLogger(__name__)

SALT = "simplechat.password-reset"
TOKEN_MAX_LENGTH = 512  # a real token is about 90 characters
EXPIRED, INVALID = "expired", "invalid"


def _fingerprint(user: User) -> str:
    """Changes with the password hash (a new salt each time one is set) or the address; the
    hash itself is not put in the link."""
    raw = f"{user.password_hash or ''}\x00{user.email}".encode()
    return hashlib.sha256(raw).hexdigest()[:24]


class _SignerAt(TimestampSigner):
    """A signer whose clock can be set: a link made ``issued_at`` (tests of expiry)."""

    issued_at: int | None = None

    def get_timestamp(self) -> int:
        return self.issued_at if self.issued_at is not None else int(time.time())


def _serializer(issued_at: int | None = None) -> URLSafeTimedSerializer:
    signer = type("Signer", (_SignerAt,), {"issued_at": issued_at})
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=SALT, signer=signer)


def reset_token(user: User, issued_at: int | None = None) -> str:
    """The token of a reset link for ``user`` (made now, or at ``issued_at``, epoch seconds)."""
    return _serializer(issued_at).dumps([user.id, _fingerprint(user)])


def user_of_token(token: object) -> User | str:
    """The user a reset token is for, or ``EXPIRED`` or ``INVALID`` (forged, altered, used,
    for an account that is gone, inactive or a bot)."""
    if not isinstance(token, str) or len(token) > TOKEN_MAX_LENGTH:
        return INVALID
    try:
        found = _serializer().loads(token, max_age=current_app.config["PASSWORD_RESET_MAX_AGE"])
    except SignatureExpired:
        return EXPIRED
    except BadSignature:
        return INVALID
    if (not isinstance(found, list) or len(found) != 2 or type(found[0]) is not int
            or not isinstance(found[1], str)):
        return INVALID
    user = db.session.get(User, found[0])
    if (user is None or not user.is_active or user.is_bot
            or found[1] != _fingerprint(user)):
        return INVALID
    return user


@dataclass(frozen=True)
class Asked:
    wait: float  # 0.0: the mail is on its way (if the address has an account); else throttled


def ask_for_reset(email: str, ip: str) -> Asked:
    """Take a reset request for what was typed: throttled per address and per client, then a
    task looks the address up and mails the link if it finds an account."""
    wait = services().reset_limiter.hit(email, ip)
    if wait:
        return Asked(wait)
    run_off_request(send_reset_mail, email.strip().lower())
    return Asked(0.0)


@shared_task(name="simplechat.send_password_reset", autoretry_for=(SMTPException, OSError),
             retry_backoff=5, retry_backoff_max=120, max_retries=5)
def send_reset_mail(email: str) -> bool:
    """Mail a reset link to the account of ``email``, if an active person has it; True when
    a mail went out."""
    if not mail_configured() or not current_app.config["PASSWORD_LOGIN"]:
        return False
    user = db.session.execute(select(User).where(User.email == email)).scalar_one_or_none()
    if user is None or not user.is_active or user.is_bot:
        return False
    link = site_link(f"/auth/reset/{reset_token(user)}")
    minutes = math.ceil(current_app.config["PASSWORD_RESET_MAX_AGE"] / 60)
    values = {"user": user, "link": link, "minutes": minutes,
              "site": current_app.config["SITE_URL"]}
    send_mail(user.email, "Reset your Simple Chat password",
              render_template("mail/reset.txt", **values),
              render_template("mail/reset.html", **values))
    record_activity("password_reset_mailed", user.id)
    return True


def reset_password(user: User, password: str, revoke: bool = True) -> bool:
    """Set ``user``'s password from a reset link and end every session of theirs (their open
    sockets get ``session_ended``), and with ``revoke`` their API tokens too. False when the
    link was used meanwhile: the hash is swapped only if it is still the one the link was
    checked against, so two requests with one link cannot both set a password. Raises Busy
    when the CPU pool is full."""
    old_hash, user_id = user.password_hash, user.id
    new_hash = hash_password(password)
    swapped = db.session.execute(
        update(User).where(User.id == user_id, User.password_hash == old_hash)
        .values(password_hash=new_hash).execution_options(synchronize_session=False))
    db.session.commit()
    if swapped.rowcount != 1:
        return False
    ended = end_user_sessions(user_id, "password_changed")
    tokens = live_tokens(user_id) if revoke else []
    revoke_tokens(tokens)
    record_activity("password_reset", user_id, {"by": "mail", "sessions_ended": ended.sessions,
                                                "tokens_revoked": len(tokens)})
    return True


__all__ = ["EXPIRED", "INVALID", "ask_for_reset", "mail_configured", "reset_password",
           "reset_token", "send_reset_mail", "user_of_token"]
