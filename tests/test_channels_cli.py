"""The command line's channels: ``flask conversations create --public|--private`` and
``flask channels list|archive|set-owner``, under the same rules as the socket and HTTP."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from simplechat.extensions import db
from simplechat.models import Conversation, Message, Participant, User


def invoke(runner, *args):
    result = runner.invoke(args=list(args))
    db.session.expire_all()  # the command ran in a session of its own
    return result


def roles(conversation_id: int) -> dict[str, str]:
    return dict(db.session.execute(
        select(User.username, Participant.role).join(User, User.id == Participant.user_id)
        .where(Participant.conversation_id == conversation_id)).all())


def system_lines(conversation_id: int) -> list[dict]:
    return list(db.session.scalars(select(Message.system).where(
        Message.conversation_id == conversation_id, Message.kind == "system")
        .order_by(Message.id)))


@pytest.fixture
def users(make_user):
    return {name: make_user(name) for name in ("ann", "ben", "cat")}


def test_create_public_and_private_channels(runner, users):
    result = invoke(runner, "conversations", "create", "--public", "--users", "ann,ben",
                    "--title", " Town  square ", "--description", "Everyone")
    assert result.exit_code == 0, result.output
    assert "(public channel)" in result.output
    channel = db.session.scalar(select(Conversation))
    assert (channel.title, channel.visibility, channel.description, channel.is_group) == (
        "Town square", "public", "Everyone", True)
    assert roles(channel.id) == {"ann": "owner", "ben": "member"}
    alone = invoke(runner, "conversations", "create", "--private", "--users", "cat",
                   "--title", "Notes")
    assert alone.exit_code == 0, alone.output
    private = db.session.scalar(select(Conversation).where(Conversation.id != channel.id))
    assert private.visibility == "private" and roles(private.id) == {"cat": "owner"}


@pytest.mark.parametrize("args, message", [
    (["--public", "--users", "ann"], "a channel needs --title"),
    (["--public", "--users", "ann", "--title", "   "], "a title needs visible characters"),
    (["--public", "--users", "ann", "--title", "x" * 121], "at most 120 characters"),
    (["--public", "--users", "ann", "--title", "x", "--description", "d" * 501],
     "at most 500 characters"),
    (["--public", "--users", "nobody", "--title", "x"], "no user 'nobody'"),
    (["--users", "ann,ben,cat", "--title", "x", "--description", "d"], "--description is for"),
])
def test_create_refuses_bad_channel_arguments(runner, users, args, message):
    result = invoke(runner, "conversations", "create", *args)
    assert result.exit_code != 0 and message in result.output, result.output
    assert db.session.scalar(select(func.count()).select_from(Conversation)) == 0


def test_list_archive_and_set_owner(runner, users, make_conversation):
    group = make_conversation(users["ann"], users["ben"], users["cat"], title="Old group")
    make_conversation(users["ann"], users["ben"])  # direct: not a channel
    assert invoke(runner, "conversations", "create", "--public", "--users", "ben,cat",
                  "--title", "Open").exit_code == 0
    channel = db.session.scalar(select(Conversation).where(Conversation.title == "Open"))
    listing = invoke(runner, "channels", "list")
    assert listing.exit_code == 0
    lines = listing.output.splitlines()[1:]
    assert len(lines) == 2
    assert lines[0].split() == [str(group.id), "private", "no", "3", "ann:", "Old", "group"]
    assert lines[1].split() == [str(channel.id), "public", "no", "2", "ben:", "Open"]
    assert [line.split()[0] for line in invoke(
        runner, "channels", "list", "--public").output.splitlines()[1:]] == [str(channel.id)]

    archived = invoke(runner, "channels", "archive", str(channel.id))
    assert archived.exit_code == 0, archived.output
    assert db.session.get(Conversation, channel.id).archived is True
    assert system_lines(channel.id)[-1] == {"event": "archived"}
    assert invoke(runner, "channels", "list", "--archived").output.splitlines()[1].split()[
        :3] == [str(channel.id), "public", "yes"]
    refused = invoke(runner, "channels", "set-owner", str(channel.id), "cat")
    assert refused.exit_code != 0 and "archived" in refused.output
    assert invoke(runner, "channels", "archive", str(channel.id), "--undo",
                  "--by", "cat").exit_code == 0
    assert system_lines(channel.id)[-1] == {"event": "unarchived"}

    handed = invoke(runner, "channels", "set-owner", str(channel.id), "cat")
    assert handed.exit_code == 0, handed.output
    assert roles(channel.id) == {"ben": "admin", "cat": "owner"}
    assert system_lines(channel.id)[-2:] == [
        {"event": "role_changed", "user_id": users["cat"].id, "role": "owner"},
        {"event": "role_changed", "user_id": users["ben"].id, "role": "admin"}]
    assert "not a member" in invoke(runner, "channels", "set-owner", str(channel.id),
                                    "ann").output
    direct = invoke(runner, "channels", "archive", "999999")
    assert direct.exit_code != 0 and "has no owner" in direct.output
