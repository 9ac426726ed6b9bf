"""``flask --app wsgi`` command groups for administration: users, conversations, chat, logs.

Every command checks its arguments before it changes anything, commits once, and exits
non-zero with a message on stderr when it cannot do what was asked.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import NoReturn

import click
from email_validator import EmailNotValidError, validate_email
from flask import Flask, current_app
from flask.cli import AppGroup
from sqlalchemy import delete, func, select

from .activity import record_activity
from .auth.forms import (
    NAME_MAX,
    PASSWORD_MAX,
    PASSWORD_MIN,
    RESERVED_USERNAMES,
    USERNAME_MAX,
    USERNAME_MIN,
    USERNAME_RE,
)
from .auth.sessions import describe_agent, end_sessions, end_user_sessions, live_sessions
from .extensions import db
from .models import (
    Conversation,
    GenericActivityLog,
    GenericErrorLog,
    Message,
    Participant,
    User,
    utcnow,
)
from .services import services

users_cli = AppGroup("users", help="Manage user accounts.")
conversations_cli = AppGroup("conversations", help="List and start conversations.")
chat_cli = AppGroup("chat", help="The recent-message cache and live figures.")
logs_cli = AppGroup("logs", help="The activity and error logs.")

TITLE_MAX = 120


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


def check_password(password: str) -> None:
    if not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
        fail(f"the password must have {PASSWORD_MIN} to {PASSWORD_MAX} characters")


# --------------------------------------------------------------------------- users


@users_cli.command("create")
@click.argument("username")
@click.option("--email", help="Required for people; a bot gets USERNAME@bots.invalid.")
@click.option("--first-name", default="")
@click.option("--last-name", default="")
@click.option("--admin", is_flag=True, help="Make the user an administrator.")
@click.option("--bot", is_flag=True,
              help="A bot: no password login, it signs in with tokens (`flask tokens create`).")
@click.option("--password", help="The password (prompted for when not given; not for bots).")
def create_user(username, email, first_name, last_name, admin, bot, password):
    """Create a user account."""
    if not (USERNAME_MIN <= len(username) <= USERNAME_MAX and USERNAME_RE.match(username)):
        fail(f"a username has {USERNAME_MIN} to {USERNAME_MAX} characters: letters, digits, "
             "'.', '_' or '-'")
    if username.lower() in RESERVED_USERNAMES:
        fail(f"the username {username!r} is reserved")
    if bot and (admin or password is not None):
        fail("a bot has no password and is not an administrator")
    if email is None:
        if not bot:
            raise click.UsageError("Missing option '--email' (required unless --bot).")
        email = f"{username.lower()}@bots.invalid"
    else:
        try:
            email = validate_email(email.strip(), check_deliverability=False).normalized.lower()
        except EmailNotValidError as exc:
            fail(f"invalid e-mail address: {exc}")
    if len(first_name) > NAME_MAX or len(last_name) > NAME_MAX:
        fail(f"a name has at most {NAME_MAX} characters")
    if db.session.scalar(select(User).where(func.lower(User.username) == username.lower())):
        fail(f"username {username!r} is taken")
    if db.session.scalar(select(User).where(User.email == email)):
        fail(f"e-mail {email!r} is taken")
    if not bot and password is None:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    user = User(username=username, email=email, first_name=first_name or username,
                last_name=last_name, is_admin=admin, is_bot=bot)
    if bot:
        user.password_hash = "!"  # matches no password
    else:
        check_password(password)
        user.set_password(password)
    db.session.add(user)
    db.session.commit()
    record_activity("user_created", user.id, {"by": "cli", "admin": admin, "bot": bot})
    kind = "bot" if bot else ("admin user" if admin else "user")
    click.echo(f"created {kind} {username} (id {user.id})")


@users_cli.command("list")
@click.option("--inactive", is_flag=True, help="Only deactivated accounts.")
def list_users(inactive):
    """List user accounts."""
    query = select(User).order_by(User.id)
    if inactive:
        query = query.where(User.is_active.is_(False))
    users = list(db.session.scalars(query))
    if not users:
        click.echo("no users")
        return
    click.echo(f"{'id':>6}  {'username':<32}  {'e-mail':<40}  flags")
    for user in users:
        flags = ",".join(f for f, on in (("admin", user.is_admin), ("bot", user.is_bot),
                                          ("inactive", not user.is_active)) if on)
        click.echo(f"{user.id:>6}  {user.username:<32}  {user.email:<40}  {flags or '-'}")


@users_cli.command("set-password")
@click.argument("username")
@click.password_option(help="The new password (prompted for when not given).")
def set_password(username, password):
    """Set a user's password."""
    user = find_user(username)
    if user.is_bot:
        fail(f"{user.username} is a bot: it signs in with tokens, not a password")
    check_password(password)
    user.set_password(password)
    db.session.commit()
    ended = end_user_sessions(user.id, "password_changed")
    record_activity("password_reset", user.id, {"by": "cli", "sessions_ended": ended.sessions})
    click.echo(f"password of {user.username} changed; {ended.sessions} session(s) signed out, "
               f"{ended.sockets} open socket(s) closed")


@users_cli.command("deactivate")
@click.argument("username")
def deactivate_user(username):
    """Deactivate an account: no more logins, and its sessions and open sockets end."""
    user = find_user(username)
    if not user.is_active:
        click.echo(f"{user.username} is already inactive")
        return
    user.is_active = False
    db.session.commit()
    record_activity("account_deactivated", user.id, {"by": "cli"})
    # After the commit: a reconnect, or an event still in flight, now finds an inactive user.
    try:
        from .api.tokens import forget_user_tokens

        ended = end_user_sessions(user.id, "deactivated")
        forget_user_tokens(user.id)
    except Exception as exc:
        fail(f"{user.username} is deactivated, but ending the sessions failed ({exc}); "
             "their events are refused within a second all the same")
    click.echo(f"{user.username} deactivated; {ended.sessions} session(s) ended, "
               f"{ended.sockets} open socket(s) closed")


@users_cli.command("sessions")
@click.argument("username")
def list_sessions(username):
    """List a user's live login sessions."""
    user = find_user(username)
    rows = live_sessions(user.id)
    if not rows:
        click.echo(f"{user.username} has no live sessions")
        return
    click.echo(f"{'id':>8}  {'created (UTC)':<16}  {'last seen (UTC)':<16}  {'address':<15}  "
               "remembered  browser")
    for row in rows:
        click.echo(f"{row.id:>8}  {row.created_at:%Y-%m-%d %H:%M}  "
                   f"{row.last_seen_at:%Y-%m-%d %H:%M}  {row.ip or '-':<15}  "
                   f"{'yes' if row.remember_hash else 'no':<10}  {describe_agent(row.user_agent)}")


@users_cli.command("sign-out")
@click.argument("username")
@click.option("--all", "everything", is_flag=True, help="Every live session of the user.")
@click.option("--session", "session_id", type=click.IntRange(min=1),
              help="One session, by the id `users sessions` shows.")
def sign_out(username, everything, session_id):
    """End a user's sessions: their cookies stop working and their sockets close."""
    from .models import UserSession

    user = find_user(username)
    if everything == (session_id is not None):
        fail("say which: --all, or --session ID")
    if everything:
        ended = end_user_sessions(user.id, "signed_out")
    else:
        row = db.session.get(UserSession, session_id)
        if row is None or row.user_id != user.id or row.ended_at is not None:
            fail(f"{user.username} has no live session {session_id}")
        ended = end_sessions([row], "signed_out")
    record_activity("sessions_signed_out", user.id, {"by": "cli", "count": ended.sessions})
    click.echo(f"{ended.sessions} session(s) of {user.username} signed out; "
               f"{ended.sockets} open socket(s) closed")


@users_cli.command("activate")
@click.argument("username")
def activate_user(username):
    """Activate a deactivated account again."""
    user = find_user(username)
    if user.is_active:
        click.echo(f"{user.username} is already active")
        return
    user.is_active = True
    db.session.commit()
    record_activity("account_activated", user.id, {"by": "cli"})
    click.echo(f"{user.username} activated")


# --------------------------------------------------------------------------- conversations


@conversations_cli.command("list")
@click.option("--user", "username", help="Only this user's conversations.")
def list_conversations(username):
    """List conversations with their participants and message counts."""
    query = select(Conversation).order_by(Conversation.id)
    if username:
        user = find_user(username)
        query = query.where(Conversation.id.in_(
            select(Participant.conversation_id).where(Participant.user_id == user.id)))
    conversations = list(db.session.scalars(query))
    if not conversations:
        click.echo("no conversations")
        return
    ids = [c.id for c in conversations]
    members: dict[int, list[str]] = {cid: [] for cid in ids}
    for cid, name in db.session.execute(
        select(Participant.conversation_id, User.username)
        .join(User, User.id == Participant.user_id)
        .where(Participant.conversation_id.in_(ids)).order_by(User.username)
    ):
        members[cid].append(name)
    counts = dict(db.session.execute(
        select(Message.conversation_id, func.count()).where(Message.conversation_id.in_(ids))
        .group_by(Message.conversation_id)
    ).all())
    click.echo(f"{'id':>6}  {'kind':<6}  {'messages':>8}  title / participants")
    for c in conversations:
        title = f"{c.title}: " if c.title else ""
        click.echo(f"{c.id:>6}  {'group' if c.is_group else 'direct':<6}  "
                   f"{counts.get(c.id, 0):>8}  {title}{', '.join(members[c.id])}")


@conversations_cli.command("create")
@click.option("--users", "usernames", required=True,
              help="Comma-separated usernames; the first one starts the conversation.")
@click.option("--title", default=None, help="Title of a group conversation (3+ users).")
def create_conversation(usernames, title):
    """Start a direct (two users) or group conversation; a direct one is reused if it exists."""
    from .chat.conversations import start_conversation

    names = [n.strip() for n in usernames.split(",") if n.strip()]
    if len({n.lower() for n in names}) < 2:
        fail("--users needs at least two different usernames, e.g. --users ada,bob")
    users = [find_user(n) for n in names]
    users = list({u.id: u for u in users}.values())
    if len(users) < 2:
        fail("--users names the same account twice")
    if title is not None:
        title = title.strip()
        if len(users) < 3:
            fail("--title is for group conversations (three or more users)")
        if not 0 < len(title) <= TITLE_MAX:
            fail(f"a title has 1 to {TITLE_MAX} characters")
    inactive = [u.username for u in users if not u.is_active]
    if inactive:
        fail(f"inactive account(s): {', '.join(inactive)}")
    conversation, created = start_conversation(users[0], users[1:], title)
    if created:
        record_activity("conversation_created", users[0].id,
                        {"conversation_id": conversation.id, "by": "cli"})
    verb = "created" if created else "exists:"
    click.echo(f"{verb} conversation {conversation.id} "
               f"({'group' if conversation.is_group else 'direct'})")


# --------------------------------------------------------------------------- chat


@chat_cli.command("rebuild-cache")
@click.option("--conversation", "conversation_id", type=click.IntRange(min=1),
              help="Only this conversation (default: every conversation).")
def rebuild_cache(conversation_id):
    """Re-warm the Redis recent-message lists from SQL."""
    from .chat.history import rewarm_recent

    if services().embedded:
        fail("no REDIS_URL: the recent-message cache lives inside the server process and "
             "warms itself")
    if conversation_id is not None:
        if db.session.get(Conversation, conversation_id) is None:
            fail(f"no conversation {conversation_id}")
        ids = [conversation_id]
    else:
        ids = list(db.session.scalars(select(Conversation.id).order_by(Conversation.id)))
    cached = 0
    with click.progressbar(ids, label="re-warming", show_pos=True) as bar:
        for cid in bar:
            cached += rewarm_recent(cid)
            db.session.remove()  # one conversation's rows at a time in memory
    click.echo(f"re-warmed {len(ids)} conversation(s), {cached} message(s) cached")


def open_sockets() -> int | None:
    """Sockets recorded as open across all web processes (None without Redis)."""
    from .chat.presence import presence

    if services().redis is None:
        return None
    return presence().live_count()


def queue_depth() -> int | None:
    """Tasks waiting in the Celery queue (None when tasks run inline or the broker is not
    Redis)."""
    celery = current_app.extensions["celery"]
    url = celery.conf.broker_url
    if celery.conf.task_always_eager or not url.startswith(("redis://", "rediss://")):
        return None
    from .services import redis_from_url

    client = redis_from_url(url)
    try:
        return client.llen(current_app.config.get("CELERY_QUEUE", "simplechat"))
    finally:
        client.close()


@chat_cli.command("stats")
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of lines.")
def stats(as_json):
    """Users, conversations, messages, open sockets and Celery queue depth."""
    figures = {
        "users": db.session.scalar(select(func.count()).select_from(User)),
        "active_users": db.session.scalar(
            select(func.count()).select_from(User).where(User.is_active.is_(True))),
        "conversations": db.session.scalar(select(func.count()).select_from(Conversation)),
        "messages": db.session.scalar(select(func.count()).select_from(Message)),
    }
    try:
        figures["sockets"] = open_sockets()
        figures["queue_depth"] = queue_depth()
    except Exception as exc:
        fail(f"Redis or the broker did not answer: {exc}")
    if as_json:
        click.echo(json.dumps(figures))
        return
    for name, value in figures.items():
        click.echo(f"{name:<14} {'n/a' if value is None else value}")


# --------------------------------------------------------------------------- logs

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


def _log_model(activity: bool, errors: bool):
    if activity == errors:
        raise click.UsageError("choose one of --activity or --errors")
    return GenericActivityLog if activity else GenericErrorLog


@logs_cli.command("tail")
@click.option("--activity", is_flag=True, help="The activity log.")
@click.option("--errors", is_flag=True, help="The error log.")
@click.option("-n", "count", type=click.IntRange(1, 10_000), default=20, show_default=True,
              help="How many of the newest entries.")
def tail_logs(activity, errors, count):
    """Show the newest entries of the activity or error log, oldest first."""
    model = _log_model(activity, errors)
    rows = list(db.session.scalars(
        select(model).order_by(model.created_at.desc(), model.id.desc()).limit(count)))
    for row in reversed(rows):
        when = row.created_at.strftime("%Y-%m-%d %H:%M:%S")
        user = f"user={row.user_id}" if row.user_id is not None else "user=-"
        if model is GenericActivityLog:
            detail = json.dumps(row.detail, sort_keys=True) if row.detail is not None else ""
            click.echo(f"{when}  {user}  {row.action}  {detail}  {row.ip or ''}".rstrip())
        else:
            first_line = (row.message or "").splitlines()[0] if row.message else ""
            click.echo(f"{when}  {user}  {row.where}  {row.error_type}: {first_line}")
    if not rows:
        click.echo("no entries", err=True)


@logs_cli.command("prune")
@click.option("--older-than", "age", type=AgeType(), required=True,
              help="Delete entries older than this: 30d, 12h or 90m.")
@click.option("--activity/--no-activity", default=True, help="Prune the activity log.")
@click.option("--errors/--no-errors", default=True, help="Prune the error log.")
def prune_logs(age, activity, errors):
    """Delete activity and error log entries older than a given age, in one transaction."""
    if not (activity or errors):
        raise click.UsageError("nothing to prune: --no-activity and --no-errors together")
    cutoff = utcnow() - age
    deleted = {}
    try:
        for name, model, wanted in (("activity", GenericActivityLog, activity),
                                    ("errors", GenericErrorLog, errors)):
            if wanted:
                result = db.session.execute(delete(model).where(model.created_at < cutoff))
                deleted[name] = result.rowcount
        db.session.commit()
    except Exception:
        db.session.rollback()
        raise
    summary = ", ".join(f"{count} {name}" for name, count in deleted.items())
    click.echo(f"pruned entries older than {cutoff:%Y-%m-%d %H:%M:%S} UTC: {summary}")


def register_cli(app: Flask) -> None:
    for group in (users_cli, conversations_cli, chat_cli, logs_cli):
        app.cli.add_command(group)
