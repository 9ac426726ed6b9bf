"""``flask conversations``: list conversations and start one (a channel with ``--public`` or
``--private``) from the command line; ``flask channels``: list channels, archive one, hand one
to a new owner. The rules are those of every transport (conversations.roles), as an operator:
with an owner's rights."""

from __future__ import annotations

import click
from flask import Flask
from flask.cli import AppGroup
from sqlalchemy import func, select

from simplechat.conversations.channels import create_channel
from simplechat.conversations.moderation import archive_conversation, transfer_ownership
from simplechat.conversations.records import start_conversation
from simplechat.conversations.roles import earliest_owner
from simplechat.extensions import db
from simplechat.infra.commands import fail, find_user
from simplechat.models import (
    OWNER,
    PRIVATE,
    PUBLIC,
    Conversation,
    Message,
    Participant,
    User,
)
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
              help="Comma-separated usernames; the first one starts the conversation (and owns "
                   "a group or channel).")
@click.option("--title", default=None, help="Title of a group conversation (3+ users) or of a "
                                            "channel (required).")
@click.option("--public", "visibility", flag_value=PUBLIC, default=None,
              help="A public channel (in the directory; anyone may join): one user is enough.")
@click.option("--private", "visibility", flag_value=PRIVATE,
              help="A private channel: members add people; one user is enough.")
@click.option("--description", default="", help="A channel's description (plain text).")
def create_conversation(usernames, title, visibility, description):
    """Start a direct (two users) or group conversation, or with --public or --private a
    channel; a direct one is reused if it exists."""
    if visibility is not None:
        _create_channel(usernames, title, visibility, description)
        return
    if description:
        fail("--description is for channels (--public or --private)")
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


def _create_channel(usernames: str, title: str | None, visibility: str,
                    description: str) -> None:
    users = [find_user(n.strip()) for n in usernames.split(",") if n.strip()]
    users = list({u.id: u for u in users}.values())
    if not users:
        fail("--users names at least the channel's owner")
    inactive = [u.username for u in users if not u.is_active]
    if inactive:
        fail(f"inactive account(s): {', '.join(inactive)}")
    if title is None:
        fail("a channel needs --title")
    conversation, refusal = create_channel(users[0], title, description, visibility,
                                           limited=False, members=users[1:])
    if refusal:
        fail(_refusal_text(refusal))
    record_activity("conversation_created", users[0].id,
                    {"conversation_id": conversation.id, "by": "cli", "visibility": visibility})
    click.echo(f"created conversation {conversation.id} ({visibility} channel)")


def _refusal_text(refusal: dict) -> str:
    texts = {"empty": "a title needs visible characters",
             "too_long": f"at most {refusal.get('max_length')} characters",
             "too_many": f"at most {refusal.get('max_participants')} members",
             "forbidden": "no such group or channel",
             "not_group": "a direct conversation has no owners",
             "archived": "the conversation is archived (unarchive it first)",
             "not_allowed": "that would leave it without an owner",
             "not_found": "not a member of it"}
    return texts.get(refusal["error"], refusal["error"])


def register_conversations_cli(app: Flask) -> None:
    app.cli.add_command(conversations_cli)


# ----------------------------------------------------------------------------- flask channels

channels_cli = AppGroup("channels", help="List channels, archive them, hand them to an owner.")


@channels_cli.command("list")
@click.option("--public", "visibility", flag_value=PUBLIC, default=None,
              help="Only public channels.")
@click.option("--private", "visibility", flag_value=PRIVATE, help="Only private ones.")
@click.option("--archived/--not-archived", default=None, help="Only archived ones, or none.")
def list_channels(visibility, archived):
    """Every group and channel: id, visibility, archived, members, owners, title."""
    query = select(Conversation).where(Conversation.is_group.is_(True)).order_by(
        Conversation.id)
    if visibility:
        query = query.where(Conversation.visibility == visibility)
    if archived is not None:
        query = query.where(Conversation.archived.is_(archived))
    found = list(db.session.scalars(query))
    if not found:
        click.echo("no channels")
        return
    ids = [c.id for c in found]
    counts = dict(db.session.execute(
        select(Participant.conversation_id, func.count()).where(
            Participant.conversation_id.in_(ids)).group_by(Participant.conversation_id)).all())
    owners: dict[int, list[str]] = {}
    for cid, name in db.session.execute(
        select(Participant.conversation_id, User.username)
        .join(User, User.id == Participant.user_id)
        .where(Participant.conversation_id.in_(ids), Participant.role == OWNER)
        .order_by(User.username)
    ):
        owners.setdefault(cid, []).append(name)
    click.echo(f"{'id':>6}  {'visibility':<10}  {'archived':<8}  {'members':>7}  "
               f"owners: title")
    for c in found:
        click.echo(f"{c.id:>6}  {c.visibility:<10}  {'yes' if c.archived else 'no':<8}  "
                   f"{counts.get(c.id, 0):>7}  {','.join(owners.get(c.id, [])) or '-'}: "
                   f"{c.title or ''}")


def _acting_owner(conversation_id: int, username: str | None) -> User:
    """Who a command's system lines name: ``--by``, else the conversation's earliest owner."""
    if username:
        return find_user(username)
    owner = earliest_owner(conversation_id)
    if owner is None:
        fail(f"conversation {conversation_id} has no owner: name one with --by, or run "
             "`flask channels set-owner` first")
    return owner


@channels_cli.command("archive")
@click.argument("conversation_id", type=click.IntRange(1, 2**63 - 1))
@click.option("--undo", is_flag=True, help="Unarchive it.")
@click.option("--by", "username", help="Who the system line names (default: its owner).")
def archive_channel(conversation_id, undo, username):
    """Archive a group or channel (read-only), or with --undo open it again."""
    actor = _acting_owner(conversation_id, username)
    answer = archive_conversation(actor, {"conversation_id": conversation_id,
                                          "archived": not undo}, operator=True)
    if not answer["ok"]:
        fail(_refusal_text(answer))
    click.echo(f"conversation {conversation_id} {'unarchived' if undo else 'archived'}")


@channels_cli.command("set-owner")
@click.argument("conversation_id", type=click.IntRange(1, 2**63 - 1))
@click.argument("username")
def set_owner(conversation_id, username):
    """Make a member the owner of a group or channel; its other owners become admins."""
    new_owner = find_user(username)
    answer = transfer_ownership(new_owner, conversation_id)
    if not answer["ok"]:
        fail(_refusal_text(answer))
    others = answer["former_owners"]
    click.echo(f"{new_owner.username} owns conversation {conversation_id}"
               + (f"; {len(others)} former owner(s) are admins" if others else ""))


def register_channels_cli(app: Flask) -> None:
    app.cli.add_command(channels_cli)
