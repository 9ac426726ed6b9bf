"""Big rooms (issue 28): presence is asked for, not pushed. A member of a group of more than
CHAT_PRESENCE_PUSH_MAX_MEMBERS (3 here) coming online or going offline delivers nothing to that
group's room; a socket that subscribed to members (presence_subscribe) gets their status and
its changes; direct conversations and small groups hear presence pushed as before; join's
answer stays bounded in a big room. On Redis and on the embedded default.

The delivery counts use a real server (werkzeug, threading mode) and python-socketio clients
over websocket; payload checks use the Flask-SocketIO test client."""

from __future__ import annotations

import contextlib
import threading

import pytest
import requests
import socketio as socketio_client
from conftest import PASSWORD, app_in_context
from e2e.harness import wait_until
from sqlalchemy import event
from werkzeug.serving import make_server

from simplechat.conversations.channels import create_channel
from simplechat.conversations.records import start_conversation
from simplechat.extensions import db
from simplechat.infra.membership import members_changed, membership
from simplechat.models import Participant

NS = "/chat"
PUSH_MAX = 3


@pytest.fixture
def app(database_uri, backend):
    yield from app_in_context(database_uri, backend, CHAT_PRESENCE_PUSH_MAX_MEMBERS=PUSH_MAX,
                              CHAT_RATE_LIMIT="off", CHAT_SOCKET_EVENT_RATE="off",
                              CHAT_CONVERSATION_RATE_LIMIT="off")


def ask(sio, event_name: str, payload) -> dict:
    return sio.emit(event_name, payload, namespace=NS, callback=True)


def presence_events(sio) -> list[dict]:
    return [e["args"][0] for e in sio.get_received(NS) if e["name"] == "presence"]


@pytest.fixture
def people(make_user):
    return {name: make_user(name, first_name=name.capitalize(), last_name="T")
            for name in ("ada", "bob", "cy", "dee", "eve", "fay")}


def channel_of(owner, *members):
    """A public channel of ``owner`` and ``members``, made as the CLI does (no limits)."""
    conversation, refusal = create_channel(owner, "Crowd", "", "public", limited=False)
    assert refusal is None, refusal
    for member in members:
        db.session.add(Participant(conversation_id=conversation.id, user_id=member.id))
    db.session.commit()
    members_changed([conversation.id], [m.id for m in members])
    return conversation


@pytest.fixture
def rooms(app, people):
    """``big``: ada's channel of ada, bob, cy and dee (one past the threshold); ``small``: a
    group of bob, dee and eve (at the threshold)."""
    p = people
    big = channel_of(p["ada"], p["bob"], p["cy"], p["dee"])
    small, _ = start_conversation(p["bob"], [p["dee"], p["eve"]], "Three")
    return big.id, small.id


# --------------------------------------------------------------------------- real clients


@contextlib.contextmanager
def serving(app):
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    opened: list[socketio_client.Client] = []
    try:
        yield f"http://127.0.0.1:{server.server_port}", opened
    finally:
        for client in opened:
            with contextlib.suppress(Exception):
                client.disconnect()
        server.shutdown()
        thread.join(5)


class Listener:
    """A python-socketio client on /chat that records every ``presence`` it is sent."""

    def __init__(self, base: str, user, opened: list):
        http = requests.Session()
        response = http.post(f"{base}/auth/login", data={"username": user.username,
                                                         "password": PASSWORD},
                             allow_redirects=False, timeout=10)
        assert response.status_code == 302, response.text
        self.heard: list[dict] = []
        self.sio = socketio_client.Client(reconnection=False)
        self.sio.on("presence", self.heard.append, namespace=NS)
        opened.append(self.sio)
        self.sio.connect(base, namespaces=[NS], transports=["websocket"], wait_timeout=10,
                         headers={"Cookie": "; ".join(f"{c.name}={c.value}"
                                                      for c in http.cookies)})

    def call(self, name: str, data) -> dict:
        return self.sio.call(name, data, namespace=NS, timeout=10)

    def about(self, user) -> list[bool]:
        """What this socket heard of ``user``, once everything sent to it before now has
        arrived (an answer comes after what was queued for the socket before it)."""
        assert self.call("heartbeat", {}) == {"ok": True}
        return [p["online"] for p in self.heard if p["user_id"] == user.id]


def test_a_member_coming_or_going_pushes_nothing_to_a_big_room(app, people, rooms):
    """dee is in the big channel and in the small group. Her coming online reaches bob (in
    the small group's room) once, ada and cy (only in the big room) never, unless they
    subscribed to her: then once, however many of its rooms they are in."""
    big, small = rooms
    p = people
    with serving(app) as (base, opened):
        ada, bob, cy = (Listener(base, p[n], opened) for n in ("ada", "bob", "cy"))
        for listener in (ada, bob, cy):
            assert listener.call("join", {"conversation_id": big})["ok"]
        assert bob.call("join", {"conversation_id": small})["ok"]

        dee = Listener(base, p["dee"], opened)
        wait_until(lambda: bob.about(p["dee"]) == [True], message="bob hearing of dee")
        assert ada.about(p["dee"]) == [] and cy.about(p["dee"]) == []
        dee.sio.disconnect()
        wait_until(lambda: bob.about(p["dee"]) == [True, False], message="dee offline")
        assert ada.about(p["dee"]) == [] and cy.about(p["dee"]) == []

        # ada asks for dee (and bob) in the big room: she hears of dee from then on, once.
        answer = ada.call("presence_subscribe", {"conversation_id": big,
                                                 "user_ids": [p["dee"].id, p["bob"].id]})
        assert answer["ok"] and answer["presence"][str(p["dee"].id)]["online"] is False
        assert answer["presence"][str(p["bob"].id)] == {"online": True, "last_seen": None}
        dee = Listener(base, p["dee"], opened)
        wait_until(lambda: ada.about(p["dee"]) == [True], message="ada hearing of dee")
        dee.sio.disconnect()
        wait_until(lambda: ada.about(p["dee"]) == [True, False], message="ada: dee offline")
        assert cy.about(p["dee"]) == []
        # The small room, as before: each change once.
        wait_until(lambda: bob.about(p["dee"]) == [True, False, True, False],
                   message="bob hearing of dee again")


# --------------------------------------------------------------------------- test clients


def test_a_subscriber_gets_the_members_it_asked_for_and_their_changes(app, people, rooms,
                                                                      socket_client):
    big, small = rooms
    p = people
    ada = socket_client(p["ada"])
    socket_client(p["bob"])
    answer = ask(ada, "presence_subscribe",
                 {"conversation_id": big, "user_ids": [p["cy"].id, p["bob"].id, p["eve"].id,
                                                       p["cy"].id, 10**9]})
    # eve (not a member) and an unknown id are left out; cy asked twice is answered once.
    assert answer == {"ok": True, "presence": {
        str(p["cy"].id): {"online": False, "last_seen": None},
        str(p["bob"].id): {"online": True, "last_seen": None}}}
    ada.get_received(NS)
    cy = socket_client(p["cy"])
    assert presence_events(ada) == [{"user_id": p["cy"].id, "online": True, "last_seen": None}]
    eve = socket_client(p["eve"])  # asked for, but not a member: nothing
    dee = socket_client(p["dee"])  # a member, not asked for: nothing
    assert presence_events(ada) == []

    # A new subscription replaces the last: cy is no longer followed, dee is.
    assert ask(ada, "presence_subscribe", {"conversation_id": big, "user_ids": [p["dee"].id]})[
        "presence"] == {str(p["dee"].id): {"online": True, "last_seen": None}}
    cy.disconnect(NS)
    dee.disconnect(NS)
    heard = presence_events(ada)
    assert [(e["user_id"], e["online"]) for e in heard] == [(p["dee"].id, False)]
    assert heard[0]["last_seen"]
    # An empty list follows no one.
    assert ask(ada, "presence_subscribe", {"conversation_id": big, "user_ids": []}) == {
        "ok": True, "presence": {}}
    socket_client(p["dee"])
    assert presence_events(ada) == []

    # A stranger to the conversation may not ask; eve is no member of the big channel.
    assert ask(eve, "presence_subscribe", {"conversation_id": big,
                                           "user_ids": [p["ada"].id]}) == {
        "ok": False, "error": "forbidden"}
    assert ask(eve, "presence", {"conversation_id": big, "user_ids": [p["ada"].id]}) == {
        "ok": False, "error": "forbidden"}


def test_presence_asked_by_ids_answers_members_only(app, people, rooms, socket_client):
    big, small = rooms
    p = people
    socket_client(p["cy"])
    ada = socket_client(p["ada"])
    answer = ask(ada, "presence", {"conversation_id": big,
                                   "user_ids": [p["cy"].id, p["dee"].id, p["eve"].id]})
    assert answer == {"ok": True, "presence": {
        str(p["cy"].id): {"online": True, "last_seen": None},
        str(p["dee"].id): {"online": False, "last_seen": None}}}
    # Without ids, a small conversation answers for everyone, a big one for the caller.
    bob = socket_client(p["bob"])
    assert set(ask(bob, "presence", {"conversation_id": small})["presence"]) == {
        str(p[n].id) for n in ("bob", "dee", "eve")}
    assert set(ask(ada, "presence", {"conversation_id": big})["presence"]) == {str(p["ada"].id)}


MALFORMED = [None, "1", 5, {"1": 1}, [True], [0], [-3], [2**63], ["7"], [1.5], [None],
             list(range(1, 102))]


@pytest.mark.parametrize("user_ids", MALFORMED)
def test_malformed_ids_are_invalid_and_change_no_subscription(app, people, rooms,
                                                              socket_client, user_ids):
    big, _ = rooms
    p = people
    ada = socket_client(p["ada"])
    assert ask(ada, "presence_subscribe", {"conversation_id": big,
                                           "user_ids": [p["dee"].id]})["ok"]
    for name in ("presence_subscribe", "presence"):
        assert ask(ada, name, {"conversation_id": big, "user_ids": user_ids}) == {
            "ok": False, "error": "invalid"}, name
    ada.get_received(NS)
    socket_client(p["dee"])  # still followed
    assert [e["user_id"] for e in presence_events(ada)] == [p["dee"].id]


@pytest.mark.parametrize("payload", [
    {}, {"conversation_id": "x", "user_ids": [1]}, {"conversation_id": 0, "user_ids": [1]},
    {"conversation_id": True, "user_ids": [1]}, {"conversation_id": 2**63, "user_ids": [1]},
    [1], "subscribe", None, 7])
def test_a_malformed_subscription_payload_is_invalid(app, people, rooms, socket_client,
                                                     payload):
    big, _ = rooms
    ada = socket_client(people["ada"])
    if payload == {}:
        payload = {"conversation_id": big}  # no user_ids
    assert ada.emit("presence_subscribe", payload, namespace=NS, callback=True) == {
        "ok": False, "error": "invalid"}


def test_a_hundred_ids_may_be_asked_for(app, people, rooms, socket_client):
    big, _ = rooms
    p = people
    ada = socket_client(p["ada"])
    ids = [p["bob"].id, *range(10**6, 10**6 + 99)]
    assert ask(ada, "presence_subscribe", {"conversation_id": big, "user_ids": ids})[
        "presence"] == {str(p["bob"].id): {"online": False, "last_seen": None}}


def test_join_answers_a_bounded_read_and_presence_in_a_big_room(app, people, rooms,
                                                                socket_client):
    big, small = rooms
    p = people
    bob = socket_client(p["bob"])
    joined = ask(bob, "join", {"conversation_id": big})
    assert joined["ok"] and joined["presence_pushed"] is False
    assert set(joined["read"]) == set(joined["presence"]) == {str(p["bob"].id)}
    assert joined["presence"][str(p["bob"].id)]["online"] is True
    joined = ask(bob, "join", {"conversation_id": small})
    assert joined["ok"] and joined["presence_pushed"] is True
    assert set(joined["read"]) == set(joined["presence"]) == {
        str(p[n].id) for n in ("bob", "dee", "eve")}
    # Strangers are still refused, whatever the size.
    assert ask(socket_client(p["eve"]), "join", {"conversation_id": big}) == {
        "ok": False, "error": "forbidden"}


@pytest.mark.parametrize("after", [False, True])
def test_join_answers_the_presence_of_the_members_named_in_presence_of(app, people, rooms,
                                                                      socket_client, after):
    """A page's join names the members its header shows: a big room's answer holds their
    presence (members only, strangers left out) with the caller's, on a first join and on a
    catch-up (``after``) alike; a small room's holds every member's whatever is named."""
    big, small = rooms
    p = people
    socket_client(p["cy"])
    bob = socket_client(p["bob"])
    payload = {"conversation_id": big,
               "presence_of": [p["ada"].id, p["cy"].id, p["bob"].id, p["eve"].id, 10**9]}
    if after:
        from simplechat.messaging.send import send_message

        assert send_message(p["dee"], big, "before")["ok"]
        assert send_message(p["dee"], big, "since")["ok"]
        first = ask(bob, "join", {"conversation_id": big})
        payload["after"] = first["messages"][0]["id"]  # one missed: "since"
    joined = ask(bob, "join", payload)
    assert joined["ok"] and joined["presence_pushed"] is False, joined
    if after:
        assert [m["message"] for m in joined["messages"]] == ["since"]
    assert joined["presence"] == {
        str(p["ada"].id): {"online": False, "last_seen": None},
        str(p["cy"].id): {"online": True, "last_seen": None},
        str(p["bob"].id): {"online": True, "last_seen": None}}
    joined = ask(bob, "join", {"conversation_id": small, "presence_of": [p["ada"].id]})
    assert set(joined["presence"]) == {str(p[n].id) for n in ("bob", "dee", "eve")}


def test_a_catch_up_join_naming_members_is_two_round_trips_and_no_sql(app, people, rooms,
                                                                      socket_client):
    """With warm caches: the user's list with the markers, then (in the room) the recent
    messages, the members among those named and their presence, together."""
    from test_hot_path import counting

    big, _ = rooms
    p = people
    bob = socket_client(p["bob"])
    first = ask(bob, "join", {"conversation_id": big, "presence_of": [p["cy"].id]})
    named = [p["ada"].id, p["cy"].id, p["eve"].id]
    with counting(app) as trips:
        joined = ask(bob, "join", {"conversation_id": big, "presence_of": named,
                                   "after": "018f0000-0000-7000-8000-000000000000"})
    assert joined["ok"] and set(joined["presence"]) == {str(p[n].id) for n in ("ada", "cy",
                                                                                "bob")}
    assert first["ok"] and "sql" not in trips
    assert trips == ({"redis": 2} if app.extensions["simplechat"].redis else {})


@pytest.mark.parametrize("presence_of", MALFORMED)
def test_a_malformed_presence_of_is_invalid_and_joins_nothing(app, people, rooms,
                                                              socket_client, presence_of):
    big, _ = rooms
    p = people
    bob = socket_client(p["bob"])
    assert ask(bob, "join", {"conversation_id": big, "presence_of": presence_of}) == {
        "ok": False, "error": "invalid"}
    # Refused before the room was entered: "typing" there (relayed to the room alone) does
    # not reach this socket, as it does once the join is well formed.
    ada = socket_client(p["ada"])
    for joined in (False, True):
        if joined:
            assert ask(bob, "join", {"conversation_id": big, "presence_of": []})["ok"]
        assert ask(ada, "typing", {"conversation_id": big})["ok"]
        assert ask(bob, "heartbeat", {}) == {"ok": True}
        assert bool([e for e in bob.get_received(NS) if e["name"] == "typing"]) is joined
    # And a stranger naming members is refused as before.
    assert ask(socket_client(p["eve"]), "join", {"conversation_id": big,
                                                 "presence_of": [p["ada"].id]}) == {
        "ok": False, "error": "forbidden"}


def test_the_bounded_reads_never_load_a_big_rooms_members_once_cached(app, people, rooms,
                                                                     socket_client):
    """join, presence and presence_subscribe in a big room read no SQL once its members are
    cached, and answer from the one member asked about, not from every member."""
    big, _ = rooms
    p = people
    bob = socket_client(p["bob"])
    assert ask(bob, "join", {"conversation_id": big})["ok"]  # fills the caches
    statements: list[str] = []

    def seen(conn, cursor, statement, *args):
        statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", seen)
    try:
        assert ask(bob, "join", {"conversation_id": big})["ok"]
        assert ask(bob, "presence", {"conversation_id": big, "user_ids": [p["cy"].id]})["ok"]
        assert ask(bob, "presence_subscribe", {"conversation_id": big,
                                               "user_ids": [p["cy"].id]})["ok"]
    finally:
        event.remove(db.engine, "before_cursor_execute", seen)
    assert [s for s in statements if "participants" in s or "conversations" in s] == []
    assert membership().markers_view(big, p["bob"].id)[1] == 4
    assert set(membership().markers_view(big, p["bob"].id)[0]) == {p["bob"].id}
    assert membership().markers_view(big, p["eve"].id) == ({}, 4)


def test_a_group_growing_past_the_threshold_stops_hearing_pushes_once_refreshed(
        app, people, rooms, socket_client):
    """The size of each of a user's groups is kept with the user's cached conversations;
    a membership change of that user refreshes it (others' copies expire within minutes)."""
    big, small = rooms
    p = people
    bob = socket_client(p["bob"])
    assert ask(bob, "join", {"conversation_id": small})["ok"]
    assert membership().presence_audience(p["dee"].id) == ([small], set())
    db.session.add(Participant(conversation_id=small, user_id=p["fay"].id))
    db.session.commit()
    members_changed([small], [p["fay"].id, p["dee"].id])  # dee's copy refreshed here
    bob.get_received(NS)
    socket_client(p["dee"])
    assert [e for e in presence_events(bob) if e["user_id"] == p["dee"].id] == []
    assert ask(bob, "join", {"conversation_id": small})["presence_pushed"] is False
    assert membership().presence_audience(p["dee"].id) == ([], set())


# --------------------------------------------------------------------------- very big rooms


def crowd(owner, size: int) -> int:
    """A public channel of ``owner`` and ``size - 1`` more users, written in bulk."""
    from sqlalchemy import insert, select

    from simplechat.models import User

    names = [f"crowd{size}-{n}" for n in range(size - 1)]
    db.session.execute(insert(User), [
        {"username": n, "first_name": "C", "last_name": n, "email": f"{n}@example.com",
         "password_hash": "!"} for n in names])
    ids = db.session.scalars(select(User.id).where(User.username.in_(names))).all()
    conversation = channel_of(owner)
    db.session.execute(insert(Participant), [
        {"conversation_id": conversation.id, "user_id": uid} for uid in ids])
    db.session.commit()
    members_changed([conversation.id], ids)
    return conversation.id


@pytest.mark.parametrize("backend", ["redis"], indirect=True)  # Redis's members hash
def test_a_channel_of_5000_is_cached_and_one_past_the_cache_still_takes_sends(app, people,
                                                                              backend):
    """A members hash of 5,000 is written to Redis (its fill once failed past about 4,000:
    Lua's unpack), so reads of it are SQL-free; one of 8,000 is not cached, and sends to it
    still work (the send path's script hands the ids back through unpack)."""
    from simplechat.messaging.send import send_message

    ada = people["ada"]
    redis = app.extensions["simplechat"].redis
    five = crowd(ada, 5000)
    assert membership().markers_view(five, ada.id)[1] == 5000
    assert redis.hlen(membership().members_key(five)) == 5001
    assert send_message(ada, five, "to five thousand")["ok"]
    eight = crowd(ada, 8000)
    assert membership().markers_view(eight, ada.id)[1] == 8000
    assert send_message(ada, eight, "to eight thousand")["ok"]
    assert not redis.exists(membership().members_key(eight))


@pytest.mark.parametrize("backend", ["redis"], indirect=True)  # Redis's members hash
def test_sockets_missing_a_rooms_cached_members_at_once_read_them_from_sql_once(
        app, people, rooms, backend):
    """Eight events at once find the big room's members hash gone (expired, or Redis
    flushed): one reads the members from SQL and fills it, the others wait and take it."""
    big, _ = rooms
    # Read here: the threads must not load the fixture's object through this thread's session.
    ada_id = people["ada"].id
    membership().changed([big], [])
    reads: list[str] = []

    def seen(conn, cursor, statement, *args):
        if "participants" in statement and "archived" in statement:
            reads.append(statement)

    start = threading.Barrier(8)
    answers: list = []

    def join_like() -> None:
        with app.app_context():
            start.wait(10)
            answers.append(membership().markers_view(big, ada_id))
            db.session.remove()

    event.listen(db.engine, "before_cursor_execute", seen)
    try:
        threads = [threading.Thread(target=join_like) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    finally:
        event.remove(db.engine, "before_cursor_execute", seen)
    assert answers == [({ada_id: None}, 4)] * 8
    assert len(reads) == 1, reads


# --------------------------------------------------------------------------- answer first


def test_a_wide_sends_answer_is_queued_before_this_processs_copies(app, people, monkeypatch):
    """The sender of a message to a room wider than WIDE_EMIT_ROOMS (3 here) gets its answer
    before the copy its own socket is sent (both go through that socket's one queue, so the
    order it arrives in is the order they were queued); every member still gets it once. A
    small room's send is delivered before its answer, as before: nothing held."""
    from simplechat.realtime import answer_first

    monkeypatch.setattr(answer_first, "WIDE_EMIT_ROOMS", 3)
    p = people
    big = channel_of(p["ada"], p["bob"], p["cy"], p["dee"]).id  # 1 room + 4 members' own
    small, _ = start_conversation(p["ada"], [p["bob"]], "Two")  # 1 + 2: not wide
    with serving(app) as (base, opened):
        ada, bob = Listener(base, p["ada"], opened), Listener(base, p["bob"], opened)
        arrived: dict[str, list] = {"ada": [], "bob": []}
        for name, listener in (("ada", ada), ("bob", bob)):
            listener.sio.on("message", lambda m, n=name: arrived[n].append(("message", m["id"])),
                            namespace=NS)
        for cid in (big, small.id):
            for listener in (ada, bob):
                assert listener.call("join", {"conversation_id": cid})["ok"]
        orders = {}
        for cid, text in ((big, "to the crowd"), (small.id, "to two")):
            answers: list[str] = []

            def answered(ack, answers=answers):
                arrived["ada"].append(("ack", ack["message"]["id"]))
                answers.append(ack["message"]["id"])

            ada.sio.emit("send_message", {"conversation_id": cid, "message": text},
                         namespace=NS, callback=answered)
            wait_until(lambda answers=answers: answers, message="the answer")
            sent = answers[0]
            wait_until(lambda sent=sent: ("message", sent) in arrived["ada"]
                       and ("message", sent) in arrived["bob"], message="both copies")
            orders[cid] = [kind for kind, i in arrived["ada"] if i == sent]
            assert bob.call("heartbeat", {}) == {"ok": True}  # anything more would be in by now
            assert arrived["bob"].count(("message", sent)) == 1
            arrived["ada"].clear()
        assert orders[big] == ["ack", "message"]
        assert orders[small.id] == ["message", "ack"]
