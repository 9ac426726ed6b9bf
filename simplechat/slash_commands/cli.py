"""``flask commands``: slash commands of one conversation or of every one."""

from __future__ import annotations

import click
from flask import Flask
from flask.cli import AppGroup
from sqlalchemy import select

from simplechat.extensions import db
from simplechat.infra.commands import fail, find_user
from simplechat.models import Conversation, SlashCommand, User
from simplechat.slash_commands.registry import create_command, delete_command

commands_cli = AppGroup("commands", help="Slash commands: /name in the composer calls a service.")


@commands_cli.command("create")
@click.option("--conversation", "conversation_id", type=click.IntRange(min=1),
              help="The conversation it is typed in.")
@click.option("--all", "everywhere", is_flag=True, help="Every conversation instead.")
@click.option("--command", "name", required=True, help="Its name, like /deploy.")
@click.option("--url", required=True, help="The service POSTed to when it is typed.")
@click.option("--description", default="", help="Shown beside it in the composer.")
@click.option("--bot", "bot_name", help="Post in_channel answers as this bot user "
                                        "(default: a new one).")
@click.option("--name", "display_name", help="The new bot user's name (default: the "
                                             "command's, without /).")
def create(conversation_id, everywhere, name, url, description, bot_name, display_name):
    """Add a slash command; prints its signing secret alone on the last line."""
    if everywhere == bool(conversation_id):
        fail("say where: --conversation ID, or --all for every conversation")
    conversation = None
    if conversation_id:
        conversation = db.session.get(Conversation, conversation_id)
        if conversation is None:
            fail(f"no conversation {conversation_id}")
    bot = find_user(bot_name) if bot_name else None
    try:
        new = create_command(conversation, name, url, description=description, bot=bot,
                             bot_name=display_name)
    except ValueError as exc:  # CommandRefused, UnsafeURL
        fail(str(exc))
    where = (f"of conversation {conversation_id}" if conversation_id
             else "of every conversation")
    click.echo(f"slash command {new.command.id} {new.command.name} {where} calls {url}, "
               f"posting as bot user {new.command.bot_user_id}; signing secret:")
    click.echo(new.secret)


@commands_cli.command("list")
@click.option("--conversation", "conversation_id", type=click.IntRange(min=1),
              help="Only this conversation's own.")
def list_commands(conversation_id):
    """List slash commands (of one conversation, or all)."""
    query = (select(SlashCommand, User).join(User, User.id == SlashCommand.bot_user_id)
             .order_by(SlashCommand.id))
    if conversation_id:
        query = query.where(SlashCommand.conversation_id == conversation_id)
    rows = db.session.execute(query).all()
    if not rows:
        click.echo("no slash commands")
        return
    click.echo(f"{'id':>6}  {'conversation':>12}  {'command':<20}  {'bot':<16}  url")
    for command, bot in rows:
        where = str(command.conversation_id) if command.conversation_id else "all"
        click.echo(f"{command.id:>6}  {where:>12}  {command.name:<20}  {bot.username:<16}  "
                   f"{command.url}")


@commands_cli.command("delete")
@click.argument("command_id", type=click.IntRange(min=1))
def delete(command_id):
    """Delete a slash command: typing its name sends a message again."""
    if not delete_command(command_id):
        fail(f"no slash command {command_id}")
    click.echo(f"slash command {command_id} deleted")


def register_commands_cli(app: Flask) -> None:
    app.cli.add_command(commands_cli)
