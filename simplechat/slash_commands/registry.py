"""Which slash commands there are: making, finding, listing and deleting them. A command is
for one conversation (made on its settings page or the command line) or for every one (the
command line's ``--all``); a conversation's own command hides one of every conversation of
the same name. A conversation has at most SLASH_COMMANDS_MAX_PER_CONVERSATION of its own.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

from flask import current_app
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from simplechat.extensions import db
from simplechat.infra.membership import members_changed
from simplechat.models import Conversation, Participant, SlashCommand, User
from simplechat.webhooks.hooks import checked_addresses

# "/" and 1-32 lower-case letters, digits, "-" or "_", starting with a letter or digit.
NAME = re.compile(r"/[a-z0-9][a-z0-9_-]{0,31}")
# A message that calls one: the name, then nothing, or a blank and the command's text.
CALL = re.compile(r"(/[A-Za-z0-9][A-Za-z0-9_-]{0,31})(?:[ \t\n]+(.*))?", re.S)
DESCRIPTION_MAX = 200


class CommandRefused(ValueError):
    """A command that may not be made; the message says why, for a form or the command line."""


@dataclass(frozen=True)
class NewCommand:
    command: SlashCommand
    secret: str  # the signing secret of its requests, shown once


def checked_name(name: str) -> str:
    """The command's name as stored ("/deploy"); CommandRefused if it cannot be one."""
    name = (name or "").strip().lower()
    if not name.startswith("/"):
        name = "/" + name
    if not NAME.fullmatch(name):
        raise CommandRefused("a command is / and up to 32 letters, digits, - or _ "
                             "(like /deploy)")
    return name


def parse_call(text: object) -> tuple[str, str] | None:
    """The (lower-cased) name a message calls and the text after it, or None."""
    if not isinstance(text, str) or not text.startswith("/"):
        return None
    match = CALL.fullmatch(text.strip())
    if match is None:
        return None
    return match.group(1).lower(), (match.group(2) or "").strip()


def create_command(conversation: Conversation | None, name: str, url: str, *,
                   description: str = "", creator: User | None = None, bot: User | None = None,
                   bot_name: str | None = None) -> NewCommand:
    """A command of ``conversation`` (None: of every conversation) calling ``url``; its bot is
    ``bot`` or a new bot user named ``bot_name`` (default: the command's name), who joins a
    conversation when it first posts an answer there (join_bot). CommandRefused (or UnsafeURL,
    also a ValueError) if it may not be made: a bad name or address, the name taken, too many
    commands."""
    name = checked_name(name)
    description = " ".join((description or "").split())
    if len(description) > DESCRIPTION_MAX:
        raise CommandRefused(f"a description has at most {DESCRIPTION_MAX} characters")
    if bot is not None and not bot.is_bot:
        raise CommandRefused(f"{bot.username} is not a bot user")
    checked_addresses(url, current_app.config["WEBHOOK_ALLOW_PRIVATE"])
    conversation_id = conversation.id if conversation is not None else None
    _check_room(conversation_id, name)
    if bot is None:
        username = f"cmd-{secrets.token_hex(4)}"
        bot = User(username=username, first_name=(bot_name or name[1:])[:64], last_name="",
                   email=f"{username}@bots.invalid", password_hash="!", is_bot=True)
        db.session.add(bot)
        db.session.flush()
    secret = secrets.token_hex(32)
    command = SlashCommand(conversation_id=conversation_id, name=name, description=description,
                           url=url, secret=secret, bot_user_id=bot.id,
                           created_by_id=creator.id if creator else None)
    db.session.add(command)
    try:
        db.session.commit()
    except IntegrityError:  # made at the same moment by someone else
        db.session.rollback()
        raise CommandRefused(f"{name} is taken here already") from None
    return NewCommand(command, secret)


def _check_room(conversation_id: int | None, name: str) -> None:
    """CommandRefused if ``name`` is taken in that scope or the conversation has its most
    commands. The conversation's row is locked until the commit, so two makers at once cannot
    both take the last place."""
    if conversation_id is not None:
        db.session.execute(select(Conversation.id).where(Conversation.id == conversation_id)
                           .with_for_update())
    scope = (SlashCommand.conversation_id == conversation_id if conversation_id is not None
             else SlashCommand.conversation_id.is_(None))
    if db.session.scalar(select(SlashCommand.id).where(scope, SlashCommand.name == name)):
        db.session.rollback()
        where = "here" if conversation_id is not None else "for every conversation"
        raise CommandRefused(f"{name} is taken {where} already; delete it first")
    if conversation_id is None:
        return
    limit = current_app.config["SLASH_COMMANDS_MAX_PER_CONVERSATION"]
    count = db.session.scalar(select(func.count(SlashCommand.id)).where(scope))
    if count >= limit:
        db.session.rollback()
        raise CommandRefused(f"this conversation has {count} slash commands, the most it may "
                             f"have ({limit}); delete one first")


def join_bot(conversation_id: int, bot_id: int) -> None:
    """A command's bot takes part in the conversation, to post an in_channel answer there, if
    it does not yet (a bot joins only where it posts: a direct conversation stays two people
    until a command answers in it)."""
    if db.session.scalar(select(Participant.id).where(
            Participant.conversation_id == conversation_id, Participant.user_id == bot_id)):
        return
    db.session.add(Participant(conversation_id=conversation_id, user_id=bot_id))
    try:
        db.session.commit()
    except IntegrityError:  # joined at the same moment
        db.session.rollback()
        return
    members_changed([conversation_id], [bot_id])


def command_for(conversation_id: int, name: str) -> SlashCommand | None:
    """The command ``name`` calls in this conversation: its own, else one of every
    conversation."""
    return db.session.scalars(
        select(SlashCommand).where(
            SlashCommand.name == name,
            (SlashCommand.conversation_id == conversation_id)
            | SlashCommand.conversation_id.is_(None))
        .order_by(SlashCommand.conversation_id.is_(None))).first()


def applies_to(command: SlashCommand, conversation_id: int) -> bool:
    """Whether ``command`` is the one its name calls in the conversation."""
    found = command_for(conversation_id, command.name)
    return found is not None and found.id == command.id


def commands_of(conversation_id: int) -> list[SlashCommand]:
    """The commands one may type in the conversation, by name: its own and those of every
    conversation whose name it does not take."""
    found: dict[str, SlashCommand] = {}
    for command in db.session.scalars(
            select(SlashCommand).where((SlashCommand.conversation_id == conversation_id)
                                       | SlashCommand.conversation_id.is_(None))
            .order_by(SlashCommand.conversation_id.is_(None), SlashCommand.id)):
        found.setdefault(command.name, command)
    return [found[name] for name in sorted(found)]


def listed_commands(conversation_id: int) -> list[tuple[SlashCommand, User | None, bool]]:
    """The commands of the settings page: each with its maker and whether it is hidden by
    one of the conversation's own."""
    own = {c.name for c in db.session.scalars(
        select(SlashCommand).where(SlashCommand.conversation_id == conversation_id))}
    rows = db.session.execute(
        select(SlashCommand, User).outerjoin(User, User.id == SlashCommand.created_by_id)
        .where((SlashCommand.conversation_id == conversation_id)
               | SlashCommand.conversation_id.is_(None))
        .order_by(SlashCommand.name, SlashCommand.conversation_id.is_(None)))
    return [(command, maker, command.conversation_id is None and command.name in own)
            for command, maker in rows]


def delete_command(command_id: int, conversation_id: int | None = None) -> bool:
    """Delete a command (``conversation_id`` given: only one of that conversation's own);
    False if there is none such."""
    command = db.session.get(SlashCommand, command_id)
    if command is None or (conversation_id is not None
                           and command.conversation_id != conversation_id):
        return False
    db.session.delete(command)
    db.session.commit()
    return True
