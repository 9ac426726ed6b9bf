"""``flask conversations``: list conversations and start one from the command line."""

from __future__ import annotations

import click
from flask import Flask
from flask.cli import AppGroup
from sqlalchemy import func, select

from simplechat.conversations.records import start_conversation
from simplechat.extensions import db
from simplechat.infra.commands import fail, find_user
from simplechat.models import Conversation, Message, Participant, User
from simplechat.observability.activity import record_activity

conversations_cli = AppGroup("conversations", help="List and start conversations.")

TITLE_MAX = 120


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


def register_conversations_cli(app: Flask) -> None:
    app.cli.add_command(conversations_cli)
