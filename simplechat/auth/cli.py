"""``flask users`` (accounts, passwords, sessions, deactivation) and ``flask tokens``
(personal access tokens for the JSON API).

Every command checks its arguments before it changes anything, commits once, and exits
non-zero with a message on stderr when it cannot do what was asked.
"""

from __future__ import annotations

import click
from flask import Flask
from flask.cli import AppGroup
from sqlalchemy import select

from simplechat.auth.accounts import (
    AccountError,
    activate_account,
    create_account,
    deactivate_account,
    password_problem,
    record_account_action,
    revoke_token,
    set_site_admin,
    sign_out_everywhere,
)
from simplechat.auth.forms import PASSWORD_MIN
from simplechat.auth.passwords import set_password as store_password
from simplechat.auth.sessions import describe_agent, end_sessions, end_user_sessions, live_sessions
from simplechat.auth.tokens import create_token, live_tokens, revoke_tokens
from simplechat.extensions import db
from simplechat.infra.commands import fail, find_user
from simplechat.models import ApiToken, User, UserSession
from simplechat.observability.activity import record_activity

users_cli = AppGroup("users", help="Manage user accounts.")
tokens_cli = AppGroup("tokens", help="Personal access tokens for the JSON API.")


def check_password(password: str) -> None:
    if problem := password_problem(password):
        fail(problem)


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
    if email is None and not bot:
        raise click.UsageError("Missing option '--email' (required unless --bot).")
    try:
        # Every check but the password's first, so a refused name is not prompted for.
        create_account(username, email, first_name, last_name, "x" * PASSWORD_MIN if not bot
                       else None, admin=admin, bot=bot, dry_run=True)
        if not bot and password is None:
            password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
        user = create_account(username, email, first_name, last_name, password, admin=admin,
                              bot=bot)
    except AccountError as exc:
        fail(str(exc))
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
@click.option("--keep-tokens", is_flag=True,
              help="Leave the user's API tokens working (by default they are revoked).")
def set_password(username, password, keep_tokens):
    """Set a user's password: their sessions end, and their API tokens are revoked."""
    user = find_user(username)
    if user.is_bot:
        fail(f"{user.username} is a bot: it signs in with tokens, not a password")
    check_password(password)
    store_password(user, password)
    db.session.commit()
    ended = end_user_sessions(user.id, "password_changed")
    tokens = [] if keep_tokens else live_tokens(user.id)
    revoke_tokens(tokens)
    record_activity("password_reset", user.id, {"by": "cli", "sessions_ended": ended.sessions,
                                                "tokens_revoked": len(tokens)})
    click.echo(f"password of {user.username} changed; {ended.sessions} session(s) signed out, "
               f"{ended.sockets} open socket(s) closed, {len(tokens)} API token(s) revoked")


@users_cli.command("deactivate")
@click.argument("username")
def deactivate_user(username):
    """Deactivate an account: no more logins, and its sessions and open sockets end."""
    user = find_user(username)
    try:
        ended = deactivate_account(user)
    except Exception as exc:
        fail(f"{user.username} is deactivated, but ending the sessions failed ({exc}); "
             "their events are refused within a second all the same")
    if ended is None:
        click.echo(f"{user.username} is already inactive")
        return
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
    user = find_user(username)
    if everything == (session_id is not None):
        fail("say which: --all, or --session ID")
    if everything:
        ended = sign_out_everywhere(user)
    else:
        row = db.session.get(UserSession, session_id)
        if row is None or row.user_id != user.id or row.ended_at is not None:
            fail(f"{user.username} has no live session {session_id}")
        ended = end_sessions([row], "signed_out")
        record_account_action("sessions_signed_out", user, None, count=ended.sessions)
    click.echo(f"{ended.sessions} session(s) of {user.username} signed out; "
               f"{ended.sockets} open socket(s) closed")


@users_cli.command("activate")
@click.argument("username")
def activate_user(username):
    """Activate a deactivated account again."""
    user = find_user(username)
    if not activate_account(user):
        click.echo(f"{user.username} is already active")
        return
    click.echo(f"{user.username} activated")


@users_cli.command("set-admin")
@click.argument("username")
@click.option("--off", is_flag=True, help="Take the admin rights away instead.")
def set_admin(username, off):
    """Make a user a site admin (the admin console, moderation), or with --off not."""
    user = find_user(username)
    try:
        changed = set_site_admin(user, not off)
    except AccountError as exc:
        fail(str(exc))
    state = "not an admin" if off else "an admin"
    click.echo(f"{user.username} is {state}" + ("" if changed else " already"))


# --------------------------------------------------------------------------- tokens


@tokens_cli.command("create")
@click.argument("username")
@click.option("--name", required=True, help="What the token is for (shown in lists).")
def create(username, name):
    """Make a token for a user; it is printed once, alone on the last line."""
    user = find_user(username)
    if not user.is_active:
        fail(f"{user.username} is inactive")
    try:
        new = create_token(user, name)
    except ValueError as exc:
        fail(str(exc))
    record_activity("token_created", user.id, {"token_id": new.row.id, "by": "cli"})
    click.echo(f"token {new.row.id} ({new.row.name}) for {user.username}; it is shown once:")
    click.echo(new.secret)


@tokens_cli.command("list")
@click.argument("username")
def list_(username):
    """A user's live tokens."""
    user = find_user(username)
    rows = live_tokens(user.id)
    if not rows:
        click.echo(f"{user.username} has no tokens")
        return
    click.echo(f"{'id':>6}  {'name':<32}  {'starts':<10}  {'created (UTC)':<16}  last used")
    for row in rows:
        used = f"{row.last_used_at:%Y-%m-%d %H:%M}" if row.last_used_at else "never"
        click.echo(f"{row.id:>6}  {row.name:<32}  {row.hint:<10}  "
                   f"{row.created_at:%Y-%m-%d %H:%M}  {used}")


@tokens_cli.command("revoke")
@click.argument("token_id", type=click.IntRange(min=1))
def revoke(token_id):
    """Revoke a token: refused at once, its open sockets closed."""
    row = db.session.get(ApiToken, token_id)
    sockets = revoke_token(row) if row is not None else None
    if sockets is None:
        fail(f"no live token {token_id}")
    click.echo(f"token {token_id} revoked; {sockets} open socket(s) closed")


def register_auth_cli(app: Flask) -> None:
    for group in (users_cli, tokens_cli):
        app.cli.add_command(group)
