"""Channels over the socket: roles and what each may do, every refusal (forbidden for a
stranger, not_allowed for a member lacking the role, archived, invalid for malformed payloads),
joining a public channel, removal, moderators' deletions, and the system lines, on Redis and
on the embedded default."""

from __future__ import annotations

import pytest
import redis as redis_lib
from conftest import app_in_context
from sqlalchemy import func, select

from simplechat.conversations.channels import create_channel
from simplechat.extensions import db
from simplechat.infra.membership import members_changed
from simplechat.infra.services import services
from simplechat.models import ADMIN, MEMBER, Conversation, Message, Participant

NS = "/chat"


@pytest.fixture
def app(database_uri, backend):
    """No send, change, conversation or event limits: each answer is on its merits."""
    yield from app_in_context(database_uri, backend, CHAT_RATE_LIMIT="off",
                              CHAT_CHANGE_RATE_LIMIT="off", CHAT_CONVERSATION_RATE_LIMIT="off",
                              CHAT_SOCKET_EVENT_RATE="off")


def ask(sio, event: str, payload) -> dict:
    return sio.emit(event, payload, namespace=NS, callback=True)


def received(sio, name: str) -> list:
    # A fanned-out message arrives pre-encoded (realtime/fanout.py): its args are the payload.
    return [e["args"] if isinstance(e["args"], dict) else e["args"][0]
            for e in sio.get_received(NS) if e["name"] == name]


@pytest.fixture
def make_channel(app):
    def make(owner, *members, visibility="public", admins=(), title="Engines"):
        conversation, refusal = create_channel(owner, title, "", visibility, limited=False)
        assert refusal is None, refusal
        for member in members:
            db.session.add(Participant(conversation_id=conversation.id, user_id=member.id,
                                       role=ADMIN if member in admins else MEMBER))
        db.session.commit()
        members_changed([conversation.id], [m.id for m in members])
        return conversation

    return make


@pytest.fixture
def crew(make_user, make_channel, socket_client):
    """A public channel of ada (owner), bob (admin) and cy (member); dee is a stranger. Each
    has a socket; those of members are in the channel's room."""
    ada, bob, cy, dee = (make_user(u, first_name=u.capitalize(), last_name="T")
                         for u in ("ada", "bob", "cy", "dee"))
    channel = make_channel(ada, bob, cy, admins=(bob,))
    socks = {u.username: socket_client(u) for u in (ada, bob, cy, dee)}
    for name in ("ada", "bob", "cy"):
        assert ask(socks[name], "join", {"conversation_id": channel.id})["ok"]
        socks[name].get_received(NS)
    return channel, (ada, bob, cy, dee), socks


def snapshot(conversation_id: int) -> tuple:
    """What an action could change: the conversation's fields, its members and their roles,
    and its messages."""
    db.session.expire_all()
    c = db.session.get(Conversation, conversation_id)
    members = sorted(db.session.execute(
        select(Participant.user_id, Participant.role)
        .where(Participant.conversation_id == conversation_id)).all())
    texts = list(db.session.scalars(select(Message.text).where(
        Message.conversation_id == conversation_id).order_by(Message.id)))
    return (c.title, c.description, c.archived, c.visibility, members, texts)


def system_events(sio, conversation_id: int) -> list:
    return [m["system"] for m in received(sio, "message")
            if m["conversation_id"] == conversation_id and m["kind"] == "system"]


# --------------------------------------------------------------------------- STATE


def test_every_state_carries_the_channel_fields_and_the_callers_role(crew):
    channel, (ada, bob, cy, dee), socks = crew
    ack = ask(socks["ada"], "describe_conversation",
              {"conversation_id": channel.id, "description": "Trains  and\tengines "})
    assert ack["ok"], ack
    state = ack["conversation"]
    assert {k: state[k] for k in ("conversation_id", "title", "is_group", "visibility",
                                  "description", "archived", "member_count", "role")} == {
        "conversation_id": channel.id, "title": "Engines", "is_group": True,
        "visibility": "public", "description": "Trains  and\tengines", "archived": False,
        "member_count": 3, "role": "owner"}
    # Owners first, then admins, then the others; each with a role.
    assert [(p["id"], p["role"]) for p in state["participants"]] == [
        (ada.id, "owner"), (bob.id, "admin"), (cy.id, "member")]
    # What the room hears has every field but the role, which differs per reader.
    [seen] = received(socks["cy"], "conversation_updated")
    assert seen == {k: v for k, v in state.items() if k != "role"}
    joined = ask(socks["dee"], "join_channel", {"conversation_id": channel.id})
    assert joined["conversation"]["role"] == "member"
    assert joined["conversation"]["member_count"] == 4


# --------------------------------------------------------------------------- who may do what


ACTIONS = {
    "rename_conversation": lambda target: {"title": "Renamed"},
    "describe_conversation": lambda target: {"description": "About"},
    "remove_participant": lambda target: {"user_id": target.id},
    "archive_conversation": lambda target: {"archived": True},
    "set_role": lambda target: {"user_id": target.id, "role": "admin"},
}
# Who is refused what: the stranger everything, the member everything but what any member
# does, the admin setting roles.
EXPECTED = {
    "dee": dict.fromkeys(ACTIONS, "forbidden"),
    "cy": dict.fromkeys(ACTIONS, "not_allowed"),
    "bob": {**dict.fromkeys(ACTIONS, None), "set_role": "not_allowed"},
    "ada": dict.fromkeys(ACTIONS, None),
}


@pytest.mark.parametrize("action", list(ACTIONS))
@pytest.mark.parametrize("actor", ["ada", "bob", "cy", "dee"])
def test_roles_decide_who_may_moderate(crew, make_user, action, actor):
    channel, (ada, bob, cy, dee), socks = crew
    target = make_user("eve")
    db.session.add(Participant(conversation_id=channel.id, user_id=target.id))
    db.session.commit()
    members_changed([channel.id], [target.id])
    before = snapshot(channel.id)
    ack = ask(socks[actor], action, {"conversation_id": channel.id, **ACTIONS[action](target)})
    refusal = EXPECTED[actor][action]
    if refusal is None:
        assert ack["ok"] is True, ack
        assert ack["conversation"]["role"] == {"ada": "owner", "bob": "admin"}[actor]
        assert snapshot(channel.id) != before
    else:
        assert ack == {"ok": False, "error": refusal}
        assert snapshot(channel.id) == before


def test_any_member_adds_people_but_a_stranger_does_not(crew, make_user):
    channel, (ada, bob, cy, dee), socks = crew
    eve = make_user("eve")
    assert ask(socks["dee"], "add_participants",
               {"conversation_id": channel.id, "user_ids": [eve.id]}) == {
        "ok": False, "error": "forbidden"}
    ack = ask(socks["cy"], "add_participants",
              {"conversation_id": channel.id, "user_ids": [eve.id]})
    assert ack["ok"] and ack["conversation"]["role"] == "member"
    assert ack["conversation"]["member_count"] == 4


def test_admins_remove_members_only_and_owners_anyone_but_themselves(crew, make_user):
    channel, (ada, bob, cy, dee), socks = crew
    remove = lambda who, target: ask(socks[who], "remove_participant",  # noqa: E731
                                     {"conversation_id": channel.id, "user_id": target.id})
    assert remove("bob", ada) == {"ok": False, "error": "not_allowed"}
    eve = make_user("eve")
    db.session.add(Participant(conversation_id=channel.id, user_id=eve.id, role=ADMIN))
    db.session.commit()
    assert remove("bob", eve) == {"ok": False, "error": "not_allowed"}
    assert remove("ada", ada) == {"ok": False, "error": "not_allowed"}
    assert remove("ada", dee) == {"ok": False, "error": "not_found"}
    assert remove("ada", eve)["ok"]
    assert remove("bob", cy)["ok"]
    assert [uid for uid, _ in snapshot(channel.id)[4]] == sorted([ada.id, bob.id])


def test_the_last_owner_cannot_step_down_but_can_hand_over(crew):
    channel, (ada, bob, cy, dee), socks = crew
    step_down = {"conversation_id": channel.id, "user_id": ada.id, "role": "member"}
    assert ask(socks["ada"], "set_role", step_down) == {"ok": False, "error": "not_allowed"}
    ack = ask(socks["ada"], "set_role",
              {"conversation_id": channel.id, "user_id": cy.id, "role": "owner"})
    assert ack["ok"] and ack["conversation"]["role"] == "owner"
    # Cy learns of the new role in their personal room.
    assert any(s.get("role") == "owner" for s in received(socks["cy"], "conversation_updated"))
    ack = ask(socks["ada"], "set_role", step_down)
    assert ack["ok"] and ack["conversation"]["role"] == "member"
    assert dict(snapshot(channel.id)[4]) == {ada.id: "member", bob.id: "admin", cy.id: "owner"}


def test_an_owner_who_leaves_hands_ownership_to_the_earliest_admin(crew):
    channel, (ada, bob, cy, dee), socks = crew
    assert ask(socks["ada"], "leave_conversation", {"conversation_id": channel.id}) == {
        "ok": True}
    assert dict(snapshot(channel.id)[4]) == {bob.id: "owner", cy.id: "member"}
    assert system_events(socks["cy"], channel.id) == [
        {"event": "left", "user_id": ada.id},
        {"event": "role_changed", "user_id": bob.id, "role": "owner"}]


def test_roles_mean_nothing_in_a_direct_conversation(make_user, make_conversation,
                                                    socket_client):
    ada, bob = make_user(), make_user()
    direct = make_conversation(ada, bob)
    sio = socket_client(ada)
    for event, extra in (("describe_conversation", {"description": "x"}),
                         ("archive_conversation", {"archived": True}),
                         ("remove_participant", {"user_id": bob.id}),
                         ("set_role", {"user_id": bob.id, "role": "admin"}),
                         ("rename_conversation", {"title": "x"})):
        assert ask(sio, event, {"conversation_id": direct.id, **extra}) == {
            "ok": False, "error": "not_group"}, event
    assert ask(sio, "join_channel", {"conversation_id": direct.id}) == {
        "ok": False, "error": "forbidden"}


# --------------------------------------------------------------------------- archived


def test_an_archived_conversation_is_read_only(crew, make_user):
    channel, (ada, bob, cy, dee), socks = crew
    earlier = ask(socks["cy"], "send_message", {"conversation_id": channel.id,
                                                "message": "before"})["message"]
    ack = ask(socks["bob"], "archive_conversation",
              {"conversation_id": channel.id, "archived": True})
    assert ack["ok"] and ack["conversation"]["archived"] is True
    before = snapshot(channel.id)
    eve = make_user("eve")
    refused = {"ok": False, "error": "archived"}
    cid = {"conversation_id": channel.id}
    for payload in ({"message": "plain"}, {"message": "**formatted** @ada"},
                    {"message": "a reply", "reply_to": earlier["id"]}):
        assert ask(socks["cy"], "send_message", {**cid, **payload}) == refused, payload
    # A stranger still learns nothing.
    assert ask(socks["dee"], "send_message", {**cid, "message": "x"}) == {
        "ok": False, "error": "forbidden"}
    message = {**cid, "message_id": earlier["id"]}
    assert ask(socks["cy"], "edit_message", {**message, "message": "changed"}) == refused
    assert ask(socks["cy"], "delete_message", message) == refused
    assert ask(socks["ada"], "delete_message", message) == refused
    assert ask(socks["cy"], "react", {**message, "emoji": "👍"}) == refused
    for event, extra in (("rename_conversation", {"title": "x"}),
                         ("describe_conversation", {"description": "x"}),
                         ("add_participants", {"user_ids": [eve.id]}),
                         ("remove_participant", {"user_id": cy.id}),
                         ("set_role", {"user_id": cy.id, "role": "admin"})):
        assert ask(socks["ada"], event, {**cid, **extra}) == refused, event
    assert ask(socks["dee"], "join_channel", cid) == {"ok": False, "error": "forbidden"}
    # The same when the members are not cached (the send path reads them from SQL).
    members_changed([channel.id], [])
    assert ask(socks["cy"], "send_message", {**cid, "message": "cold"}) == refused
    members_changed([channel.id], [])
    assert ask(socks["cy"], "send_message", {**cid, "message": "**cold**"}) == refused
    assert snapshot(channel.id) == before
    # Unarchived, it takes messages again.
    assert ask(socks["ada"], "archive_conversation", {**cid, "archived": False})["ok"]
    assert ask(socks["cy"], "send_message", {**cid, "message": "after"})["ok"]
    assert [s["event"] for s in system_events(socks["cy"], channel.id)] == [
        "archived", "unarchived"]


# --------------------------------------------------------------------------- deletions


def test_owners_and_admins_delete_others_messages_with_deleted_by(crew, make_user,
                                                                  make_conversation,
                                                                  socket_client):
    channel, (ada, bob, cy, dee), socks = crew
    cid = {"conversation_id": channel.id}
    said = [ask(socks["cy"], "send_message", {**cid, "message": f"m{i}"})["message"]
            for i in range(3)]
    by_ada = ask(socks["ada"], "send_message", {**cid, "message": "ada's"})["message"]
    socks["cy"].get_received(NS)
    assert ask(socks["cy"], "delete_message", {**cid, "message_id": by_ada["id"]}) == {
        "ok": False, "error": "not_allowed"}
    assert ask(socks["dee"], "delete_message", {**cid, "message_id": said[0]["id"]}) == {
        "ok": False, "error": "forbidden"}
    ack = ask(socks["bob"], "delete_message", {**cid, "message_id": said[0]["id"]})
    assert ack["ok"] and ack["message"]["deleted"] and ack["message"]["deleted_by"] == bob.id
    [live] = received(socks["cy"], "message_updated")
    assert live["deleted_by"] == bob.id and live["message"] == ""
    assert ask(socks["ada"], "delete_message",
               {**cid, "message_id": said[1]["id"]})["message"]["deleted_by"] == ada.id
    own = ask(socks["cy"], "delete_message", {**cid, "message_id": said[2]["id"]})
    assert own["message"]["deleted_by"] == cy.id
    stored = dict(db.session.execute(select(Message.id, Message.deleted_by).where(
        Message.id.in_([m["id"] for m in said]))).all())
    assert stored == {said[0]["id"]: bob.id, said[1]["id"]: ada.id, said[2]["id"]: cy.id}
    # In a direct conversation nobody deletes the other's messages.
    direct = make_conversation(ada, dee)
    theirs = ask(socks["dee"], "send_message", {"conversation_id": direct.id,
                                                "message": "mine"})["message"]
    assert ask(socks["ada"], "delete_message", {"conversation_id": direct.id,
                                                "message_id": theirs["id"]}) == {
        "ok": False, "error": "forbidden"}


# --------------------------------------------------------------------------- joining, removal


def test_joining_a_public_channel(app, crew, make_channel, make_user, socket_client):
    channel, (ada, bob, cy, dee), socks = crew
    cid = {"conversation_id": channel.id}
    ack = ask(socks["dee"], "join_channel", cid)
    assert ack["ok"] and ack["conversation"]["role"] == "member"
    again = ask(socks["dee"], "join_channel", cid)
    assert again["ok"] and again["conversation"]["member_count"] == 4
    assert ask(socks["dee"], "join", cid)["ok"]
    assert ask(socks["dee"], "send_message", {**cid, "message": "hello"})["ok"]
    assert system_events(socks["ada"], channel.id) == [{"event": "joined", "user_id": dee.id}]
    private = make_channel(ada, visibility="private")
    assert ask(socks["dee"], "join_channel", {"conversation_id": private.id}) == {
        "ok": False, "error": "forbidden"}
    assert ask(socks["dee"], "join_channel", {"conversation_id": 10**9}) == {
        "ok": False, "error": "forbidden"}
    app.config["CHAT_MAX_MEMBERS"] = 4
    eve = socket_client(make_user("eve"))
    assert ask(eve, "join_channel", cid) == {
        "ok": False, "error": "too_many", "max_participants": 4}
    # Not a member: sending and the room stay closed.
    assert ask(eve, "send_message", {**cid, "message": "x"}) == {
        "ok": False, "error": "forbidden"}
    assert ask(eve, "join", cid) == {"ok": False, "error": "forbidden"}


def test_a_removed_member_hears_nothing_more_and_may_not_come_back_in(crew):
    channel, (ada, bob, cy, dee), socks = crew
    cid = {"conversation_id": channel.id}
    ack = ask(socks["bob"], "remove_participant", {**cid, "user_id": cy.id})
    assert ack["ok"] and ack["conversation"]["member_count"] == 2
    assert received(socks["cy"], "conversation_left") == [
        {"conversation_id": channel.id, "removed_by": bob.id}]
    assert ask(socks["ada"], "send_message", {**cid, "message": "after"})["ok"]
    assert received(socks["cy"], "message") == []
    assert ask(socks["cy"], "send_message", {**cid, "message": "x"}) == {
        "ok": False, "error": "forbidden"}
    assert ask(socks["cy"], "join", cid) == {"ok": False, "error": "forbidden"}
    assert [s for s in system_events(socks["ada"], channel.id)] == [
        {"event": "removed", "user_id": cy.id}]


# --------------------------------------------------------------------------- system lines


def test_system_lines_survive_a_redis_flush(app, crew):
    channel, (ada, bob, cy, dee), socks = crew
    cid = {"conversation_id": channel.id}
    assert ask(socks["dee"], "join_channel", cid)["ok"]
    assert ask(socks["ada"], "set_role", {**cid, "user_id": dee.id, "role": "admin"})["ok"]
    assert ask(socks["ada"], "describe_conversation", {**cid, "description": "Rails"})["ok"]
    assert ask(socks["dee"], "remove_participant", {**cid, "user_id": cy.id})["ok"]
    assert ask(socks["bob"], "archive_conversation", {**cid, "archived": True})["ok"]
    lines = [(m["message"], m["system"]) for m in ask(socks["ada"], "join", cid)["messages"]]
    assert lines == [
        ("Dee T joined the channel", {"event": "joined", "user_id": dee.id}),
        ("Ada T made Dee T an admin", {"event": "role_changed", "user_id": dee.id,
                                       "role": "admin"}),
        ("Ada T changed the description", {"event": "described", "description": "Rails"}),
        ("Dee T removed Cy T", {"event": "removed", "user_id": cy.id}),
        ("Bob T archived the conversation", {"event": "archived"}),
    ]
    svc = services()
    if svc.redis is not None:
        client = redis_lib.Redis.from_url(app.config["REDIS_URL"])
        keys = list(client.scan_iter(match=app.config["REDIS_KEY_PREFIX"] + "*"))
        assert keys
        client.delete(*keys)
        client.close()
    else:
        svc.cache.__init__(svc.cache.size, 600)  # the in-process list, emptied
    after = [(m["message"], m["system"]) for m in ask(socks["ada"], "join", cid)["messages"]]
    assert after == lines
    # The archived state came back from SQL with the members.
    assert ask(socks["ada"], "send_message", {**cid, "message": "x"}) == {
        "ok": False, "error": "archived"}


# --------------------------------------------------------------------------- invalid


NOT_AN_ID = ["1", 1.5, True, False, 0, -1, 2**63, None, [1], {"id": 1}, ""]
NOT_OBJECTS = [[], "x", 1, True, None, [{"conversation_id": 1}]]
# Each event's own fields, wrong (the conversation id right).
BAD_FIELDS = {
    "join_channel": [],
    "remove_participant": [{}, *({"user_id": v} for v in NOT_AN_ID)],
    "set_role": [{"user_id": "USER"}, *({"user_id": "USER", "role": v} for v in
                                        ("king", "", "Owner", " admin", None, 1, ["admin"],
                                         {"role": "admin"}, True)),
                 *({"user_id": v, "role": "admin"} for v in NOT_AN_ID)],
    "describe_conversation": [{}, *({"description": v} for v in
                                    (None, 1, True, ["x"], {"d": "x"}, "\ud800"))],
    "archive_conversation": [{}, *({"archived": v} for v in
                                   ("true", 1, 0, None, [True], {"a": True}, "false"))],
}


def _payloads(event: str, conversation_id: int, user_id: int) -> list:
    """Every wrong shape of the event's payload: not an object, a wrong conversation id, the
    event's own fields wrong with the right conversation id."""
    fixed = [{k: user_id if v == "USER" else v for k, v in fields.items()}
             for fields in BAD_FIELDS[event]]
    return [*NOT_OBJECTS, {}, *({"conversation_id": v} for v in NOT_AN_ID),
            *({"conversation_id": conversation_id, **fields} for fields in fixed)]


@pytest.mark.parametrize("event", list(BAD_FIELDS))
def test_malformed_payloads_are_invalid_and_change_nothing(crew, event):
    channel, (ada, bob, cy, dee), socks = crew
    before = snapshot(channel.id)
    for payload in _payloads(event, channel.id, cy.id):
        assert ask(socks["ada"], event, payload) == {"ok": False, "error": "invalid"}, payload
    assert snapshot(channel.id) == before
    assert db.session.scalar(select(func.count()).select_from(Conversation)) == 1


def test_a_description_too_long_after_trimming_is_refused(crew):
    channel, (ada, bob, cy, dee), socks = crew
    before = snapshot(channel.id)
    fits = ask(socks["ada"], "describe_conversation",
               {"conversation_id": channel.id, "description": "  " + "d" * 500 + "\n "})
    assert fits["ok"] and fits["conversation"]["description"] == "d" * 500
    assert ask(socks["ada"], "describe_conversation",
               {"conversation_id": channel.id, "description": "d" * 501}) == {
        "ok": False, "error": "too_long", "max_length": 500}
    assert snapshot(channel.id)[1] == "d" * 500 != before[1]
