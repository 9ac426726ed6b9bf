"""``flask tokens`` (personal access tokens) and ``flask webhooks``."""

from __future__ import annotations

import click
from flask import Flask
from flask.cli import AppGroup
from sqlalchemy import select

from ..activity import record_activity
from ..cli import fail, find_user
from ..extensions import db
from ..models import ApiToken, Conversation, User, Webhook
from .tokens import create_token, live_tokens, revoke_tokens
from .webhooks import INCOMING, UnsafeURL, create_incoming, create_outgoing

tokens_cli = AppGroup("tokens", help="Personal access tokens for the JSON API.")
webhooks_cli = AppGroup("webhooks", help="Outgoing and incoming webhooks of conversations.")


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
    if row is None or row.revoked_at is not None:
        fail(f"no live token {token_id}")
    sockets = revoke_tokens([row])
    record_activity("token_revoked", row.user_id, {"token_id": row.id, "by": "cli"})
    click.echo(f"token {token_id} revoked; {sockets} open socket(s) closed")


@webhooks_cli.command("create")
@click.option("--conversation", "conversation_id", type=click.IntRange(min=1), required=True)
@click.option("--url", help="Outgoing: POST every new message here.")
@click.option("--incoming", is_flag=True, help="Incoming: a URL that posts into it.")
@click.option("--bot", "bot_name", help="Incoming: post as this bot user (default: a new one).")
@click.option("--name", default="Webhook", show_default=True,
              help="Incoming: the name of the new bot user.")
def create_hook(conversation_id, url, incoming, bot_name, name):
    """Add a webhook; prints its signing secret (outgoing) or its URL path (incoming), alone
    on the last line."""
    conversation = db.session.get(Conversation, conversation_id)
    if conversation is None:
        fail(f"no conversation {conversation_id}")
    if incoming == bool(url):
        fail("say which: --url URL (outgoing) or --incoming")
    if incoming:
        bot = find_user(bot_name) if bot_name else None
        try:
            new = create_incoming(conversation, bot, name)
        except ValueError as exc:
            fail(str(exc))
        click.echo(f"incoming webhook {new.webhook.id} of conversation {conversation_id}, "
                   f"posting as bot user {new.webhook.bot_user_id}; POST to:")
        click.echo(f"/api/hooks/{new.secret}")
        return
    try:
        new = create_outgoing(conversation, url)
    except UnsafeURL as exc:
        fail(str(exc))
    click.echo(f"outgoing webhook {new.webhook.id} of conversation {conversation_id} to {url}; "
               "signing secret:")
    click.echo(new.secret)


@webhooks_cli.command("list")
@click.option("--conversation", "conversation_id", type=click.IntRange(min=1))
def list_hooks(conversation_id):
    """List webhooks (of one conversation, or all)."""
    query = select(Webhook).order_by(Webhook.id)
    if conversation_id:
        query = query.where(Webhook.conversation_id == conversation_id)
    hooks = list(db.session.scalars(query))
    if not hooks:
        click.echo("no webhooks")
        return
    click.echo(f"{'id':>6}  {'conversation':>12}  {'kind':<8}  target")
    for hook in hooks:
        if hook.kind == INCOMING:
            bot = db.session.get(User, hook.bot_user_id)
            target = f"posts as {bot.username if bot else '?'}"
        else:
            target = hook.url
        click.echo(f"{hook.id:>6}  {hook.conversation_id:>12}  {hook.kind:<8}  {target}")


@webhooks_cli.command("delete")
@click.argument("webhook_id", type=click.IntRange(min=1))
def delete_hook(webhook_id):
    """Delete a webhook: no more deliveries (outgoing), its URL refused (incoming)."""
    hook = db.session.get(Webhook, webhook_id)
    if hook is None:
        fail(f"no webhook {webhook_id}")
    db.session.delete(hook)
    db.session.commit()
    click.echo(f"webhook {webhook_id} deleted")


def register_api_cli(app: Flask) -> None:
    for group in (tokens_cli, webhooks_cli):
        app.cli.add_command(group)


