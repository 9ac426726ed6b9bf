"""What is done to an account from outside it: create, deactivate and reactivate, admin on and
off, sign out everywhere. One implementation for ``flask users`` and the admin console; each
writes a GenericActivityLog row whose user is the admin who acted (``actor``), or the account
itself for the command line, with the account in ``detail["user_id"]``."""

from __future__ import annotations

import logging

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import func, select

from simplechat.auth.forms import (
    NAME_MAX,
    PASSWORD_MAX,
    PASSWORD_MIN,
    RESERVED_USERNAMES,
    USERNAME_MAX,
    USERNAME_MIN,
    USERNAME_RE,
)
from simplechat.auth.passwords import set_password as store_password
from simplechat.auth.reset import send_reset_mail
from simplechat.auth.sessions import Ended, end_user_sessions
from simplechat.auth.tokens import forget_user_tokens, revoke_tokens
from simplechat.extensions import db
from simplechat.mail.sending import mail_configured, run_off_request
from simplechat.models import ApiToken, User
from simplechat.observability.activity import record_activity

log = logging.getLogger(__name__)


class AccountError(ValueError):
    """A refused account change; its text says why, for the command line or a form."""


def record_account_action(action: str, user: User, actor: User | None, **detail) -> None:
    record_activity(action, actor.id if actor is not None else user.id,
                    {"by": "admin" if actor is not None else "cli", "user_id": user.id,
                     **detail})


def password_problem(password: str) -> str | None:
    if not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
        return f"the password must have {PASSWORD_MIN} to {PASSWORD_MAX} characters"
    return None


def create_account(username: str, email: str | None, first_name: str = "", last_name: str = "",
                   password: str | None = None, *, admin: bool = False, bot: bool = False,
                   actor: User | None = None, dry_run: bool = False) -> User | None:
    """A new account (a bot signs in with tokens only and gets ``<name>@bots.invalid``);
    raises AccountError, with nothing changed, when a value is refused or taken. ``dry_run``
    checks the values and makes nothing (None)."""
    if not (USERNAME_MIN <= len(username) <= USERNAME_MAX and USERNAME_RE.match(username)):
        raise AccountError(f"a username has {USERNAME_MIN} to {USERNAME_MAX} characters: "
                           "letters, digits, '.', '_' or '-'")
    if username.lower() in RESERVED_USERNAMES:
        raise AccountError(f"the username {username!r} is reserved")
    if bot and (admin or password is not None):
        raise AccountError("a bot has no password and is not an administrator")
    if email is None or (bot and not email):
        if not bot:
            raise AccountError("an e-mail address is required (unless it is a bot)")
        email = f"{username.lower()}@bots.invalid"
    else:
        try:
            email = validate_email(email.strip(), check_deliverability=False).normalized.lower()
        except EmailNotValidError as exc:
            raise AccountError(f"invalid e-mail address: {exc}") from None
    if len(first_name) > NAME_MAX or len(last_name) > NAME_MAX:
        raise AccountError(f"a name has at most {NAME_MAX} characters")
    if db.session.scalar(select(User).where(func.lower(User.username) == username.lower())):
        raise AccountError(f"username {username!r} is taken")
    if db.session.scalar(select(User).where(User.email == email)):
        raise AccountError(f"e-mail {email!r} is taken")
    if not bot and (password is None or (problem := password_problem(password))):
        raise AccountError(problem if password is not None else "a password is required")
    if dry_run:
        return None
    user = User(username=username, email=email, first_name=first_name or username,
                last_name=last_name, is_admin=admin, is_bot=bot)
    if bot:
        user.password_hash = "!"  # matches no password
    else:
        store_password(user, password)
    db.session.add(user)
    db.session.commit()
    record_account_action("user_created", user, actor, admin=admin, bot=bot)
    return user


def deactivate_account(user: User, actor: User | None = None) -> Ended | None:
    """No more logins: its sessions end and its sockets on every process get
    ``session_ended`` and close; its tokens stop working. None if it was inactive already.
    Raises what ending the sessions raised, after the account is deactivated all the same."""
    if not user.is_active:
        return None
    user.is_active = False
    db.session.commit()
    record_account_action("account_deactivated", user, actor)
    # After the commit: a reconnect, or an event still in flight, now finds an inactive user.
    ended = end_user_sessions(user.id, "deactivated")
    forget_user_tokens(user.id)
    return ended


def activate_account(user: User, actor: User | None = None) -> bool:
    """Let a deactivated account log in again; False if it was active."""
    if user.is_active:
        return False
    user.is_active = True
    db.session.commit()
    record_account_action("account_activated", user, actor)
    return True


def set_site_admin(user: User, admin: bool, actor: User | None = None) -> bool:
    """Make the account a site admin or not; False if it already was so. A bot is never
    one; an admin cannot take their own rights (someone else must)."""
    if admin and user.is_bot:
        raise AccountError(f"{user.username} is a bot: it cannot be an administrator")
    if not admin and actor is not None and actor.id == user.id:
        raise AccountError("you cannot take your own admin rights: ask another admin")
    if user.is_admin == admin:
        return False
    user.is_admin = admin
    db.session.commit()
    record_account_action("admin_granted" if admin else "admin_revoked", user, actor)
    return True


def sign_out_everywhere(user: User, actor: User | None = None) -> Ended:
    """End every live session of the account (its sockets everywhere get ``session_ended``)."""
    ended = end_user_sessions(user.id, "signed_out")
    record_account_action("sessions_signed_out", user, actor, count=ended.sessions)
    return ended


def revoke_token(row: ApiToken, actor: User | None = None) -> int | None:
    """Revoke an API token: refused at once, its open sockets closed (their number); None if
    it was revoked already."""
    if row.revoked_at is not None:
        return None
    sockets = revoke_tokens([row])
    record_activity("token_revoked", actor.id if actor is not None else row.user_id,
                    {"token_id": row.id, "user_id": row.user_id,
                     "by": "admin" if actor is not None else "cli"})
    return sockets


def send_password_reset(user: User, actor: User | None = None) -> None:
    """Mail the account a password reset link (the one /auth/reset sends), off the request.
    Raises AccountError when this server sends no mail or the account cannot have one."""
    if not mail_configured():
        raise AccountError("this server sends no mail (set MAIL_SERVER and SITE_URL)")
    if user.is_bot or not user.is_active:
        raise AccountError(f"{user.username} is {'a bot' if user.is_bot else 'inactive'}: "
                           "no password to reset")
    run_off_request(send_reset_mail, user.email)
    record_account_action("password_reset_sent", user, actor)
