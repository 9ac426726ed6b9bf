"""``flask webhooks``: a conversation's outgoing and incoming webhooks."""

from __future__ import annotations

import click
from flask import Flask
from flask.cli import AppGroup
from sqlalchemy import select

from simplechat.extensions import db
from simplechat.infra.commands import fail, find_user
from simplechat.models import Conversation, User, Webhook
from simplechat.webhooks.hooks import (
    INCOMING,
    WebhookRefused,
    create_incoming,
    create_outgoing,
    remove_webhook,
)

webhooks_cli = AppGroup("webhooks", help="Outgoing and incoming webhooks of conversations.")


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
    except WebhookRefused as exc:
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
    if not remove_webhook(webhook_id):
        fail(f"no webhook {webhook_id}")
    click.echo(f"webhook {webhook_id} deleted")


def register_webhooks_cli(app: Flask) -> None:
    app.cli.add_command(webhooks_cli)
