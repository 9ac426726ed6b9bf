"""Presence, typing, read state, edit and delete, group management and search."""

import time

import pytest
from sqlalchemy import select

from simplechat.extensions import db
from simplechat.infra.services import init_services
from simplechat.messaging.read_state import unread_counts
from simplechat.messaging.send import send_message
from simplechat.messaging.storage import apply_message_change, store_messages
from simplechat.models import Message, Participant

NS = "/chat"


def received(sio, event):
    return [e["args"][0] for e in sio.get_received(NS) if e["name"] == event]


def call(sio, event, **payload):
    return sio.emit(event, payload, namespace=NS, callback=True)


@pytest.fixture
def trio(app, make_user, make_conversation):
    app.config["CHAT_RATE_LIMIT"] = "off"
    init_services(app)
    ada = make_user("ada", first_name="Ada", last_name="Lovelace")
    bob = make_user("bob", first_name="Bob", last_name="Babbage")
    eve = make_user("eve", first_name="Eve", last_name="Outsider")
    return ada, bob, eve, make_conversation(ada, bob)


def login(app, user):
    http = app.test_client()
    http.post("/auth/login", data={"username": user.username, "password": "correct horse battery"})
    return http


# ---- presence -------------------------------------------------------------------------------

def test_presence_shows_who_is_online_and_last_seen(trio, socket_client):
    ada, bob, eve, conversation = trio
    a = socket_client(ada)
    joined = call(a, "join", conversation_id=conversation.id)
    assert joined["presence"][str(ada.id)] == {"online": True, "last_seen": None}
    assert joined["presence"][str(bob.id)] == {"online": False, "last_seen": None}
    b = socket_client(bob)
    assert {"user_id": bob.id, "online": True, "last_seen": None} in received(a, "presence")
    b.disconnect(NS)
    gone = [p for p in received(a, "presence") if p["user_id"] == bob.id]
    assert gone[-1]["online"] is False and gone[-1]["last_seen"]
    status = call(a, "presence", conversation_id=conversation.id)["presence"][str(bob.id)]
    assert status["online"] is False and status["last_seen"] == gone[-1]["last_seen"]
    assert call(socket_client(eve), "presence", conversation_id=conversation.id) == {
        "ok": False, "error": "forbidden"}


def test_presence_reaches_a_direct_peers_list_without_joining(trio, socket_client,
                                                              make_conversation):
    ada, bob, eve, _direct = trio
    make_conversation(ada, bob, eve, title="Three")  # eve shares only a group with ada
    listing_bob = socket_client(bob)  # a conversation list: no room joined
    listing_eve = socket_client(eve)
    listing_bob.get_received(NS), listing_eve.get_received(NS)
    a = socket_client(ada)
    assert received(listing_bob, "presence") == [
        {"user_id": ada.id, "online": True, "last_seen": None}]  # once, though two rooms named
    assert received(listing_eve, "presence") == []  # her list shows no dot for a group
    a.disconnect(NS)
    gone = received(listing_bob, "presence")
    assert [p["online"] for p in gone] == [False] and gone[0]["last_seen"]


def test_a_socket_without_heartbeat_goes_offline(app, trio, socket_client):
    ada, bob, _, conversation = trio
    app.config["CHAT_PRESENCE_TTL"] = 1
    app.extensions.pop("simplechat.presence", None)
    socket_client(bob)
    a = socket_client(ada)
    assert call(a, "presence", conversation_id=conversation.id)["presence"][str(bob.id)][
        "online"] is True
    time.sleep(1.2)  # bob's process "died": no heartbeat, no disconnect
    assert call(a, "heartbeat") == {"ok": True}
    statuses = call(a, "presence", conversation_id=conversation.id)["presence"]
    assert statuses[str(bob.id)]["online"] is False
    assert statuses[str(ada.id)]["online"] is True


# ---- typing ---------------------------------------------------------------------------------

def test_typing_reaches_the_others_and_is_never_stored(trio, socket_client):
    ada, bob, eve, conversation = trio
    a, b = socket_client(ada), socket_client(bob)
    call(a, "join", conversation_id=conversation.id)
    call(b, "join", conversation_id=conversation.id)
    a.get_received(NS), b.get_received(NS)
    assert call(a, "typing", conversation_id=conversation.id, typing=True) == {"ok": True}
    assert received(b, "typing") == [{"conversation_id": conversation.id, "user_id": ada.id,
                                      "name": "Ada Lovelace", "typing": True}]
    assert received(a, "typing") == []
    assert call(a, "typing", conversation_id=conversation.id, typing="yes")["error"] == "invalid"
    assert call(socket_client(eve), "typing", conversation_id=conversation.id)["error"] == \
        "forbidden"
    assert db.session.scalar(select(db.func.count(Message.id))) == 0


# ---- read state -----------------------------------------------------------------------------

def test_read_marker_moves_forward_only_and_drives_unread_counts(trio, socket_client):
    ada, bob, eve, conversation = trio
    sent = [send_message(ada, conversation.id, f"m{i}")["message"] for i in range(3)]
    assert unread_counts(bob.id) == {conversation.id: 3}
    assert unread_counts(ada.id) == {}  # her own messages are not unread for her
    b = socket_client(bob)
    a = socket_client(ada)
    call(a, "join", conversation_id=conversation.id)
    a.get_received(NS)
    assert call(b, "read", conversation_id=conversation.id, message_id=sent[1]["id"]) == {
        "ok": True, "last_read": sent[1]["id"]}
    assert received(a, "read") == [{"conversation_id": conversation.id, "user_id": bob.id,
                                    "message_id": sent[1]["id"]}]
    assert unread_counts(bob.id) == {conversation.id: 1}
    # The list says which messages its count holds: the newest unread one, or the read marker.
    from simplechat.conversations.inbox import conversations_for

    (listed,) = conversations_for(bob)
    assert (listed.unread, listed.counted_upto) == (1, sent[2]["id"])
    (hers,) = conversations_for(ada)
    assert (hers.unread, hers.counted_upto) == (0, "")
    back = call(b, "read", conversation_id=conversation.id, message_id=sent[0]["id"])
    assert back == {"ok": True, "last_read": sent[1]["id"]}
    joined = call(socket_client(bob), "join", conversation_id=conversation.id)
    assert joined["read"][str(bob.id)] == sent[1]["id"]  # survives reloads and devices
    call(b, "read", conversation_id=conversation.id, message_id=sent[2]["id"])
    db.session.expire_all()
    (listed,) = conversations_for(bob)
    assert (listed.unread, listed.counted_upto) == (0, sent[2]["id"])  # the marker, all read


def test_the_list_counts_and_previews_messages_still_on_their_way_to_sql(
        app, trio, make_conversation):
    """A message is acknowledged once it is cached and buffered; SQL has it a flush later. A
    list rendered in between (a reload right after a send) counts it and shows it, once."""
    from simplechat.conversations.inbox import conversations_for
    from simplechat.infra.write_buffer import write_buffer

    ada, bob, eve, conversation = trio
    quiet = make_conversation(bob, eve)
    stored = send_message(ada, conversation.id, "stored @bob")["message"]
    send_message(eve, quiet.id, "older, elsewhere")
    app.extensions["celery"].conf.task_always_eager = False  # no flush: as before a worker's
    waiting = [send_message(ada, conversation.id, text)["message"]
               for text in ("on its way", "@bob still on its way")]
    mine = send_message(bob, quiet.id, "bob's own, on its way")["message"]
    assert db.session.scalar(select(Message).where(Message.id == waiting[0]["id"])) is None
    listed = {s.id: s for s in conversations_for(bob)}
    first = listed[conversation.id]
    assert (first.unread, first.mentions, first.counted_upto) == (3, 2, waiting[1]["id"])
    assert (first.last_id, first.last_text) == (waiting[1]["id"], "@bob still on its way")
    assert first.last_sender_id == ada.id and first.last_sender_name == "Ada Lovelace"
    other = listed[quiet.id]  # the viewer's own message is the preview, not unread
    assert (other.unread, other.last_id, other.last_text) == (1, mine["id"],
                                                             "bob's own, on its way")
    assert [s.id for s in conversations_for(bob)] == [quiet.id, conversation.id]  # newest first
    # Flushed, the same list from SQL alone: nothing counted twice.
    with app.app_context():
        assert write_buffer().flush(store_messages).stored == 3
    db.session.expire_all()
    again = {s.id: s for s in conversations_for(bob)}[conversation.id]
    assert (again.unread, again.mentions, again.last_id) == (3, 2, waiting[1]["id"])
    assert stored["id"] < again.counted_upto


def test_a_message_stored_while_the_list_is_read_is_counted_once(
        app, trio, monkeypatch):
    """The worker can store a message between the list's statements. Its unread count and its
    mentions come from one statement, so the message is in both or in neither; then the cache
    adds it, once, as unread and as a mention (a reload once showed "mentioned 2 times")."""
    from simplechat.conversations import inbox
    from simplechat.infra.write_buffer import write_buffer

    ada, bob, eve, conversation = trio
    app.extensions["celery"].conf.task_always_eager = False
    waiting = send_message(ada, conversation.id, "@bob on its way")["message"]
    counted = inbox.unread_state

    def then_the_worker_stores(*args, **kwargs):
        state = counted(*args, **kwargs)
        assert write_buffer().flush(store_messages).stored == 1
        return state

    monkeypatch.setattr(inbox, "unread_state", then_the_worker_stores)
    (listed,) = inbox.conversations_for(bob)
    assert (listed.unread, listed.mentions, listed.counted_upto) == (1, 1, waiting["id"])
    assert db.session.scalar(select(Message.id).where(Message.id == waiting["id"]))


def test_read_refusals(trio, socket_client, make_conversation):
    ada, bob, eve, conversation = trio
    mine = send_message(ada, conversation.id, "hello")["message"]
    other = make_conversation(eve, ada)
    foreign = send_message(eve, other.id, "elsewhere")["message"]
    b, e = socket_client(bob), socket_client(eve)
    assert call(e, "read", conversation_id=conversation.id, message_id=mine["id"])["error"] == \
        "forbidden"
    assert call(b, "read", conversation_id=conversation.id, message_id=foreign["id"])[
        "error"] == "not_found"
    assert call(b, "read", conversation_id=conversation.id, message_id="x")["error"] == "invalid"
    marker = db.session.scalar(select(Participant.last_read_message_id).where(
        Participant.user_id == bob.id))
    assert marker is None


# ---- edit and delete ------------------------------------------------------------------------

def test_edit_reaches_every_client_the_cache_and_sql(app, trio, socket_client):
    ada, bob, _, conversation = trio
    a, b = socket_client(ada), socket_client(bob)
    call(b, "join", conversation_id=conversation.id)
    sent = call(a, "send_message", conversation_id=conversation.id, message="helo")["message"]
    b.get_received(NS)
    ack = call(a, "edit_message", conversation_id=conversation.id, message_id=sent["id"],
               message="hello")
    assert ack["ok"] and ack["message"]["message"] == "hello" and ack["message"]["edited_at"]
    assert received(b, "message_updated") == [ack["message"]]
    assert call(b, "join", conversation_id=conversation.id)["messages"][-1]["message"] == "hello"
    row = db.session.get(Message, sent["id"])
    db.session.refresh(row)
    assert row.text == "hello" and row.edited_at is not None
    page = login(app, bob).get(f"/api/conversations/{conversation.id}/messages").get_json()
    assert page["messages"][-1]["message"] == "hello"


def test_delete_leaves_a_tombstone_everywhere(app, trio, socket_client):
    ada, bob, _, conversation = trio
    a = socket_client(ada)
    sent = call(a, "send_message", conversation_id=conversation.id, message="oops")["message"]
    ack = call(a, "delete_message", conversation_id=conversation.id, message_id=sent["id"])
    assert ack["ok"] and ack["message"]["deleted"] is True and ack["message"]["message"] == ""
    joined = call(socket_client(bob), "join", conversation_id=conversation.id)
    assert joined["messages"][-1] == ack["message"]
    row = db.session.get(Message, sent["id"])
    db.session.refresh(row)
    assert row.text == "" and row.deleted_at is not None
    assert call(a, "edit_message", conversation_id=conversation.id, message_id=sent["id"],
                message="back")["error"] == "not_found"
    assert unread_counts(bob.id) == {}


def test_only_the_sender_may_edit_or_delete_within_the_window(app, trio, socket_client):
    ada, bob, eve, conversation = trio
    a, b, e = socket_client(ada), socket_client(bob), socket_client(eve)
    sent = call(a, "send_message", conversation_id=conversation.id, message="mine")["message"]
    target = {"conversation_id": conversation.id, "message_id": sent["id"]}
    assert call(b, "edit_message", **target, message="bob's")["error"] == "forbidden"
    assert call(b, "delete_message", **target)["error"] == "forbidden"
    assert call(e, "edit_message", **target, message="eve's")["error"] == "forbidden"
    assert call(a, "edit_message", **target, message="   ")["error"] == "empty"
    assert call(a, "edit_message", **target, message="x" * 4001)["error"] == "too_long"
    assert call(a, "edit_message", **target, message=["x"])["error"] == "invalid"
    assert call(a, "edit_message", conversation_id=conversation.id,
                message_id="0192f4c5-0000-7000-8000-000000000000",
                message="ghost")["error"] == "not_found"
    app.config["CHAT_EDIT_WINDOW"] = 0
    time.sleep(0.01)
    assert call(a, "edit_message", **target, message="late")["error"] == "edit_window_closed"
    assert call(a, "delete_message", **target)["error"] == "edit_window_closed"
    row = db.session.get(Message, sent["id"])
    db.session.refresh(row)
    assert row.text == "mine" and row.edited_at is None and row.deleted_at is None


def test_a_delete_right_after_an_edit_goes_through_and_changes_have_their_own_limit(
        app, trio, socket_client):
    ada, _, _, conversation = trio
    app.config["CHAT_RATE_LIMIT"] = "2/2s"  # a burst of 2 sends
    app.config["CHAT_CHANGE_RATE_LIMIT"] = "3/10s"  # a burst of 3 changes
    init_services(app)
    a = socket_client(ada)
    target = {"conversation_id": conversation.id}
    call(a, "join", **target)
    one, two = (call(a, "send_message", **target, message=t)["message"] for t in ("one", "two"))
    # A fix at once after sending, and a delete at once after the fix: a person's pace.
    assert call(a, "edit_message", **target, message_id=one["id"], message="uno")["ok"]
    assert call(a, "delete_message", **target, message_id=one["id"])["ok"]
    # Sends keep their own limit: the changes neither used it up nor lifted it.
    refused = call(a, "send_message", **target, message="too soon")
    assert refused["error"] == "rate_limited" and refused["retry_after"] > 0
    # Changes past their allowance are refused with the wait, and change nothing.
    assert call(a, "edit_message", **target, message_id=two["id"], message="dos")["ok"]
    over = call(a, "edit_message", **target, message_id=two["id"], message="deux")
    assert over["error"] == "rate_limited" and over["retry_after"] > 0
    updated = [m for m in received(a, "message_updated") if m["id"] == two["id"]]
    assert [m["message"] for m in updated] == ["dos"]


def test_a_change_stored_before_the_message_itself_still_wins(app, trio):
    ada, _, _, conversation = trio
    from datetime import datetime

    from simplechat.infra.ids import new_message_id
    from simplechat.messaging.payload import message_payload

    original = message_payload(new_message_id(), conversation.id, ada, "first")
    edited = {**original, "message": "second", "edited_at": "x"}
    assert apply_message_change(edited, datetime(2030, 1, 1)) is True
    store_messages([original])  # the original write, delivered late
    assert apply_message_change({**original, "message": "older edit"}, datetime(2029, 1, 1)) \
        is False
    row = db.session.get(Message, original["id"])
    db.session.refresh(row)
    assert row.text == "second"


# ---- group management -----------------------------------------------------------------------

def test_rename_and_add_participants(trio, make_user, make_conversation, socket_client):
    ada, bob, eve, direct = trio
    cyd = make_user("cyd")
    group = make_conversation(ada, bob, cyd, title="Engines")
    a, e = socket_client(ada), socket_client(eve)
    assert call(a, "rename_conversation", conversation_id=direct.id, title="x")["error"] == \
        "not_group"
    renamed = call(a, "rename_conversation", conversation_id=group.id, title="  Analytical  ")
    assert renamed["ok"] and renamed["conversation"]["title"] == "Analytical"
    assert call(a, "rename_conversation", conversation_id=group.id, title="")["error"] == "empty"
    assert call(e, "rename_conversation", conversation_id=group.id, title="mine")["error"] == \
        "forbidden"
    assert call(a, "add_participants", conversation_id=group.id, user_ids=[999999])["error"] == \
        "not_found"
    assert call(a, "add_participants", conversation_id=group.id, user_ids="eve")["error"] == \
        "invalid"
    e.get_received(NS)
    added = call(a, "add_participants", conversation_id=group.id, user_ids=[eve.id])
    assert eve.id in [p["id"] for p in added["conversation"]["participants"]]
    assert [u["conversation_id"] for u in received(e, "conversation_updated")] == [group.id]
    assert call(e, "join", conversation_id=group.id)["ok"] is True


def test_someone_added_back_has_nothing_unread_from_before(trio, make_user, make_conversation,
                                                           socket_client):
    ada, bob, eve, _ = trio
    group = make_conversation(ada, bob, eve, title="Trio")
    a, b = socket_client(ada), socket_client(bob)
    for n in range(6):
        send_message(ada, group.id, f"read by bob {n}")
    latest = call(b, "join", conversation_id=group.id)["messages"][-1]["id"]
    assert call(b, "read", conversation_id=group.id, message_id=latest)["ok"]
    assert unread_counts(bob.id).get(group.id, 0) == 0
    assert call(b, "leave_conversation", conversation_id=group.id) == {"ok": True}
    send_message(ada, group.id, "said while bob was away")
    assert call(a, "add_participants", conversation_id=group.id, user_ids=[bob.id])["ok"]
    assert unread_counts(bob.id).get(group.id, 0) == 0  # it was 6 (then 7) before the fix
    # The history is his to read again, and what comes next counts as usual.
    joined = call(b, "join", conversation_id=group.id)
    texts = [m for m in joined["messages"] if m["kind"] == "text"]
    assert [m["message"] for m in texts][-2:] == ["read by bob 5", "said while bob was away"]
    # Read up to what was said before the addition; the system line of it is not unread.
    assert joined["read"][str(bob.id)] == texts[-1]["id"]
    assert joined["messages"][-1]["kind"] == "system"
    send_message(ada, group.id, "welcome back")
    assert unread_counts(bob.id) == {group.id: 1}
    # Someone added for the first time starts with nothing unread either.
    cyd = make_user("cyd")
    assert call(a, "add_participants", conversation_id=group.id, user_ids=[cyd.id])["ok"]
    assert unread_counts(cyd.id).get(group.id, 0) == 0


def test_leaving_stops_events_at_once_and_closes_history(app, trio, make_user,
                                                         make_conversation, socket_client):
    ada, bob, eve, _ = trio
    group = make_conversation(ada, bob, eve, title="Trio")
    a, b = socket_client(ada), socket_client(bob)
    b_second_device = socket_client(bob)
    for sio in (a, b, b_second_device):
        call(sio, "join", conversation_id=group.id)
    call(a, "send_message", conversation_id=group.id, message="before")
    b_second_device.get_received(NS)
    assert call(b, "leave_conversation", conversation_id=group.id) == {"ok": True}
    assert received(b_second_device, "conversation_left") == [{"conversation_id": group.id}]
    call(a, "send_message", conversation_id=group.id, message="after")
    assert received(b_second_device, "message") == []
    assert call(b, "join", conversation_id=group.id)["error"] == "forbidden"
    assert call(b, "send_message", conversation_id=group.id, message="hi")["error"] == "forbidden"
    http = login(app, bob)
    assert http.get(f"/api/conversations/{group.id}/messages").status_code == 404
    assert http.get(f"/chat/{group.id}").status_code == 404
    assert http.get("/api/search?q=before").get_json()["results"] == []


# ---- search ---------------------------------------------------------------------------------

def test_search_finds_my_messages_only_with_snippets(app, trio, make_conversation):
    ada, bob, eve, conversation = trio
    send_message(ada, conversation.id, "The analytical engine weaves algebraic patterns")
    send_message(bob, conversation.id, "nothing to see")
    secret = make_conversation(eve, ada)
    send_message(eve, secret.id, "engine room secrets")
    body = login(app, bob).get("/api/search?q=engine").get_json()
    assert [r["conversation_id"] for r in body["results"]] == [conversation.id]
    hit = body["results"][0]
    assert hit["sender_name"] == "Ada Lovelace"
    assert hit["conversation_title"] == "Ada Lovelace"  # a direct one: the other person's name
    assert [s["text"] for s in hit["snippet"] if s["match"]] == ["engine"]
    assert "".join(s["text"] for s in hit["snippet"]) == \
        "The analytical engine weaves algebraic patterns"
    both = login(app, bob).get("/api/search?q=ALGEBRAIC analyt").get_json()["results"]
    assert len(both) == 1
    ada_hits = login(app, ada).get("/api/search?q=engine").get_json()["results"]
    assert sorted(r["conversation_title"] for r in ada_hits) == sorted(
        [bob.full_name, eve.full_name])
    group = make_conversation(ada, bob, eve, title="Engineers")
    send_message(eve, group.id, "engine oil")
    titled = login(app, bob).get("/api/search?q=oil").get_json()["results"]
    assert [r["conversation_title"] for r in titled] == ["Engineers"]


def test_search_pages_and_refuses_bad_queries(app, trio, client):
    ada, bob, _, conversation = trio
    for i in range(25):
        send_message(ada, conversation.id, f"needle number {i}")
    http = login(app, bob)
    first = http.get("/api/search?q=needle").get_json()
    second = http.get("/api/search?q=needle&page=2").get_json()
    assert len(first["results"]) == 20 and first["has_more"] is True
    assert len(second["results"]) == 5 and second["has_more"] is False
    ids = [r["id"] for r in first["results"] + second["results"]]
    assert len(set(ids)) == 25
    assert http.get("/api/search?q=" + "x" * 201).status_code == 400
    assert http.get("/api/search?q=a&page=0").status_code == 400
    assert http.get("/api/search?q=a&page=x").status_code == 400
    assert http.get("/api/search?q=%27%3B%20DROP%20TABLE%20messages").get_json()["results"] == []
    assert http.get("/api/search?q=").get_json()["results"] == []
    assert client.get("/api/search?q=needle").status_code == 401
