"""The hot socket events: no SQL once a conversation's members are cached, one Redis round trip
per send; and the membership cache that makes it so, invalidated on every change."""

from __future__ import annotations

import contextlib
from collections import Counter

import pytest
from conftest import PASSWORD, make_app
from sqlalchemy import delete, event, select

import simplechat.infra.membership as membership_module
from simplechat.conversations.records import start_conversation
from simplechat.extensions import db, socketio
from simplechat.infra.membership import MemoryMembership, RedisMembership, membership
from simplechat.infra.ratelimit import Rate
from simplechat.infra.redis_client import redis_from_url
from simplechat.infra.write_buffer import write_buffer
from simplechat.models import Message, Participant, User

_active: list[Counter] = []


@contextlib.contextmanager
def counting(app):
    """Count SQL statements and Redis round trips (packets sent on the app's Redis pool)."""
    counts: Counter[str] = Counter()
    _active.append(counts)

    def seen(conn, cursor, statement, *rest):
        counts["sql"] += 1

    redis = app.extensions["simplechat"].redis
    pool = redis.connection_pool if redis is not None else None
    if pool is not None:
        original = pool.get_connection

        def counting_connection(*args, **kwargs):
            connection = original(*args, **kwargs)
            if not getattr(connection, "_counted", False):
                send = connection.send_packed_command

                def counted(command, *a, **k):
                    if _active:
                        _active[-1]["redis"] += 1
                    return send(command, *a, **k)

                connection.send_packed_command = counted
                connection._counted = True
            return connection

        pool.get_connection = counting_connection
    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", seen)
    try:
        yield counts
    finally:
        _active.remove(counts)
        event.remove(engine, "before_cursor_execute", seen)
        if pool is not None:
            pool.get_connection = original


def emit(sio, name, payload):
    return sio.emit(name, payload, namespace="/chat", callback=True)


@pytest.fixture
def chatting(app, make_user, make_conversation, socket_client):
    ada, bob = make_user("ada"), make_user("bob")
    conversation = make_conversation(ada, bob)
    a, b = socket_client(ada), socket_client(bob)
    app.config["SESSION_CHECK_INTERVAL"] = 3600  # the session check has its own tests
    # The first event of a conversation fills its cached members from SQL.
    assert emit(a, "join", {"conversation_id": conversation.id})["ok"]
    assert emit(b, "join", {"conversation_id": conversation.id})["ok"]
    return ada, bob, conversation, a, b


@pytest.mark.parametrize("name, payload", [
    ("send_message", {"message": "counted", "client_id": "c-1"}),
    ("typing", {"typing": True}),
    ("join", {}),
    ("presence", {}),
    ("heartbeat", None),
])
def test_hot_events_run_no_sql_once_members_are_cached(app, chatting, name, payload):
    ada, bob, conversation, a, b = chatting
    body = {} if payload is None else {"conversation_id": conversation.id, **payload}
    # Celery is eager in tests (a send stores its row before the ack); a web process only
    # queues the flush task.
    app.extensions["celery"].conf.task_always_eager = False
    with counting(app) as counts:
        ack = emit(a, name, body)
    assert ack["ok"] is True, ack
    assert counts["sql"] == 0, counts


def test_connect_and_disconnect_run_no_sql_once_warm(app, chatting, socket_client):
    """A second tab of a user whose session and conversations are cached: the session check
    comes from the session cache, presence reaches the conversations' rooms and the direct
    peer's personal room from the membership cache."""
    ada, bob, conversation, a, b = chatting
    http = app.test_client()
    assert http.post("/auth/login", data={"username": ada.username,
                                          "password": PASSWORD}).status_code == 302
    a.disconnect("/chat")  # ada goes offline: her next connect announces her
    b.get_received("/chat")  # what came before
    with counting(app) as counts:
        tab = socketio.test_client(app, namespace="/chat", flask_test_client=http)
        assert tab.is_connected("/chat")
    assert counts["sql"] == 0, counts
    presence = [p["args"][0] for p in b.get_received("/chat") if p["name"] == "presence"]
    assert presence == [{"user_id": ada.id, "online": True, "last_seen": None}]
    with counting(app) as counts:
        tab.disconnect("/chat")
    assert counts["sql"] == 0, counts
    presence = [p["args"][0] for p in b.get_received("/chat") if p["name"] == "presence"]
    assert [p["online"] for p in presence] == [False]


def logged_in_warm(app, user):
    """A logged-in client whose session's identity and hint are cached (one socket came and
    went)."""
    http = app.test_client()
    assert http.post("/auth/login", data={"username": user.username,
                                          "password": PASSWORD}).status_code == 302
    socketio.test_client(app, namespace="/chat", flask_test_client=http).disconnect("/chat")
    return http


def test_a_warm_connect_join_and_disconnect_take_few_redis_round_trips(app, chatting):
    """With every cache warm: a connect is two round trips (the session's identity by its
    token; the socket counted, recorded, marked live and its user's audience read, together),
    a join two (the user's conversations with the members' markers; once in the room, the
    recent messages with the members' presence), a disconnect one (uncounted, forgotten,
    marked gone and the audience, together). None reads SQL. The embedded default asks nothing
    of Redis. (The presence announcement's publish goes through the fan-out's own client.)"""
    ada, bob, conversation, a, b = chatting
    http = logged_in_warm(app, ada)
    trips = (lambda n: {"redis": n}) if app.extensions["simplechat"].redis else (lambda n: {})
    for _ in range(2):  # the same again: nothing left behind makes the next one cost more
        with counting(app) as connect:
            tab = socketio.test_client(app, namespace="/chat", flask_test_client=http)
            assert tab.is_connected("/chat")
        with counting(app) as join:
            answer = emit(tab, "join", {"conversation_id": conversation.id})
        assert answer["ok"] is True and set(answer["presence"]) == {str(ada.id), str(bob.id)}
        with counting(app) as disconnect:
            tab.disconnect("/chat")
        assert (connect, join, disconnect) == (trips(2), trips(2), trips(1))


def test_a_connect_and_a_join_refill_a_dropped_cache_in_two_more_round_trips(app, chatting):
    """A conversation just started drops its members' cached lists, and a burst of connects
    then fills one each. The connect's own batch found the user's list gone, so the fill reads
    the list (filled meanwhile?) and its generation together, then writes it: two round trips
    more than a warm connect and one SQL read, no more. A join that finds the members' hash
    gone likewise."""
    if app.extensions["simplechat"].redis is None:
        pytest.skip("the embedded default has no Redis to count")
    ada, bob, conversation, a, b = chatting
    http = logged_in_warm(app, ada)
    with app.app_context():
        membership().changed([], [ada.id])
    with counting(app) as connect:
        tab = socketio.test_client(app, namespace="/chat", flask_test_client=http)
        assert tab.is_connected("/chat")
    with app.app_context():
        membership().changed([conversation.id], [])
    with counting(app) as join:
        answer = emit(tab, "join", {"conversation_id": conversation.id})
    assert answer["ok"] is True and set(answer["read"]) == {str(ada.id), str(bob.id)}
    assert (connect, join) == ({"redis": 4, "sql": 1}, {"redis": 4, "sql": 1})
    with counting(app) as again:
        assert emit(tab, "join", {"conversation_id": conversation.id})["ok"] is True
    assert again == {"redis": 2}  # both filled


def test_a_new_redis_connection_opens_without_naming_its_library(redis_url):
    """No CLIENT SETINFO (two more round trips, and a look-up of redis-py's version in the
    installed packages' metadata) and no CLIENT MAINT_NOTIFICATIONS (a third) on each new
    connection."""
    if not redis_url:
        pytest.skip("TEST_REDIS_URL not set")
    client = redis_from_url(redis_url)
    connection = client.connection_pool.make_connection()
    sent: list[str] = []
    send = connection.send_command

    def recorded(*args, **kwargs):
        sent.append(" ".join(str(a) for a in args[:2]))
        return send(*args, **kwargs)

    connection.send_command = recorded
    try:
        connection.connect()
        assert not [command for command in sent if command.startswith("CLIENT")], sent
    finally:
        connection.disconnect()
        client.close()


def test_a_join_of_a_conversation_one_is_not_in_reads_one_round_trip(app, chatting, make_user):
    """The stranger's check and the members' view go together; neither fills a members hash for
    a conversation the user is not in."""
    ada, bob, conversation, a, b = chatting
    cy = make_user("cy")
    with app.app_context():
        other = start_conversation(db.session.merge(bob), [db.session.merge(cy)], None)[0].id
    trips = {"redis": 1} if app.extensions["simplechat"].redis else {}
    for cid in (other, 10**9):
        with counting(app) as counts:
            assert emit(a, "join", {"conversation_id": cid}) == {"ok": False,
                                                                  "error": "forbidden"}
        assert counts == trips, (cid, counts)


def test_a_send_is_one_redis_round_trip(app, chatting):
    """Membership, de-duplication, the rate limit, the recent list and the write buffer."""
    if app.extensions["simplechat"].redis is None:
        pytest.skip("the embedded default has no Redis to count")
    ada, bob, conversation, a, b = chatting
    svc = app.extensions["simplechat"]
    app.extensions["celery"].conf.task_always_eager = False
    with app.app_context():
        flag = write_buffer().flag_key
    for rate in (None, Rate(1000, 1)):
        svc.limiter.rate = rate
        # A flush is queued already (its flag is up), so this send queues no task.
        svc.redis.set(flag, "1", ex=60)
        with counting(app) as counts:
            ack = emit(a, "send_message", {"conversation_id": conversation.id,
                                           "message": f"one trip, rate {rate}",
                                           "client_id": f"trip-{rate}"})
        assert ack["ok"] is True, ack
        assert counts == {"redis": 1}, (rate, counts)


def test_a_formatted_send_is_two_round_trips_and_a_mention_no_more(app, chatting):
    """A message that needs the Markdown parser is admitted first (membership, a retry's
    original and the rate limit, taken, in one round trip) so that a stranger or a flooder over
    the limit makes the server render nothing; then the intake takes it in. The admission hands
    the members over, so a mention reads them no more, and no SQL once the name is known to
    this process."""
    if app.extensions["simplechat"].redis is None:
        pytest.skip("the embedded default has no Redis to count")
    ada, bob, conversation, a, b = chatting
    svc = app.extensions["simplechat"]
    svc.limiter.rate = None
    app.extensions["celery"].conf.task_always_eager = False
    with app.app_context():
        flag = write_buffer().flag_key
    # Loads the scripts into a fresh Redis (a first call is EVALSHA, SCRIPT LOAD, EVALSHA).
    assert emit(a, "send_message", {"conversation_id": conversation.id, "message": "*warm*"})["ok"]
    expected = [("**bold** `code` https://example.com a@b.example", {"redis": 2}),
                ("@bob first", {"redis": 2, "sql": None}),  # the name is read from SQL once
                ("@bob again", {"redis": 2}),
                ("@nobody-here", {"redis": 2, "sql": None}),  # no such user: no members read
                ("@nobody-here again", {"redis": 2}),
                ("plain words, no parser", {"redis": 1})]
    for text, trips in expected:
        svc.redis.set(flag, "1", ex=60)
        with counting(app) as counts:
            ack = emit(a, "send_message", {"conversation_id": conversation.id, "message": text})
        assert ack["ok"] is True, ack
        assert counts["redis"] == trips["redis"], (text, counts)
        if "sql" not in trips:
            assert counts["sql"] == 0, (text, counts)


def test_a_repeated_read_runs_no_sql(app, chatting):
    ada, bob, conversation, a, b = chatting
    sent = emit(a, "send_message", {"conversation_id": conversation.id, "message": "read me"})
    first = emit(b, "read", {"conversation_id": conversation.id,
                             "message_id": sent["message"]["id"]})
    assert first == {"ok": True, "last_read": sent["message"]["id"]}
    with counting(app) as counts:
        again = emit(b, "read", {"conversation_id": conversation.id,
                                 "message_id": sent["message"]["id"]})
    assert again == first
    assert counts["sql"] == 0, counts
    # The cached marker moved with the read: a join reports it without reading SQL.
    with counting(app) as counts:
        joined = emit(a, "join", {"conversation_id": conversation.id})
    assert joined["read"][str(bob.id)] == sent["message"]["id"]
    assert counts["sql"] == 0, counts


def test_a_member_who_leaves_a_group_cannot_send_at_once(app, make_user, socket_client):
    ada, bob, cy = make_user("ada"), make_user("bob"), make_user("cy")
    with app.app_context():
        group, _ = start_conversation(db.session.merge(ada),
                                      [db.session.merge(bob), db.session.merge(cy)], "g")
        group_id = group.id
    b = socket_client(bob)
    assert emit(b, "send_message", {"conversation_id": group_id, "message": "in"})["ok"]
    assert emit(b, "leave_conversation", {"conversation_id": group_id}) == {"ok": True}
    for name, payload in [("send_message", {"message": "out"}), ("typing", {"typing": True}),
                          ("join", {}), ("presence", {})]:
        ack = emit(b, name, {"conversation_id": group_id, **payload})
        assert ack == {"ok": False, "error": "forbidden"}, name
    with app.app_context():
        # "in", and the system line of the departure; not "out".
        assert sorted(db.session.execute(db.select(Message.kind, Message.text)).all()) == [
            ("system", f"{bob.full_name} left the group"), ("text", "in")]


def test_a_member_added_to_a_group_can_send_at_once(app, make_user, socket_client):
    ada, bob, cy, dee = (make_user(n) for n in ("ada", "bob", "cy", "dee"))
    with app.app_context():
        group, _ = start_conversation(db.session.merge(ada),
                                      [db.session.merge(bob), db.session.merge(cy)], "g")
        group_id = group.id
    a, d = socket_client(ada), socket_client(dee)
    refused = emit(d, "send_message", {"conversation_id": group_id, "message": "let me in"})
    assert refused == {"ok": False, "error": "forbidden"}  # now cached as not a member
    assert emit(a, "add_participants", {"conversation_id": group_id,
                                        "user_ids": [dee.id]})["ok"]
    assert emit(d, "send_message", {"conversation_id": group_id, "message": "hi"})["ok"]


def test_membership_changes_on_one_process_reach_the_cache_of_another(
        app, database_uri, redis_url, make_user, make_conversation):
    """Two apps on one Redis prefix stand for two web processes."""
    if redis_url is None:
        pytest.skip("needs Redis: the embedded default is one process")
    ada, bob = make_user("ada"), make_user("bob")
    conversation = make_conversation(ada, bob)
    other = make_app(database_uri, redis_url,
                     REDIS_KEY_PREFIX=app.config["REDIS_KEY_PREFIX"])
    with app.app_context():
        assert bob.id in membership().members(conversation.id)
    with other.app_context():
        db.session.execute(delete(Participant).where(Participant.user_id == bob.id))
        db.session.commit()
        membership().changed([conversation.id], [bob.id])
    with app.app_context():
        assert bob.id not in membership().members(conversation.id)
        assert conversation.id not in membership().conversations(bob.id)


@pytest.fixture(params=["redis", "memory"])
def cache(request, app, redis_url):
    if request.param == "redis":
        if redis_url is None:
            pytest.skip("needs Redis")
        return RedisMembership(app.extensions["simplechat"].redis,
                               app.config["REDIS_KEY_PREFIX"] + "unit:")
    return MemoryMembership()


@contextlib.contextmanager
def racing_the_fill(change):
    """Run ``change(conversation_id)`` right after a cache fill has read SQL, before it writes
    back: the moment a change on another greenlet or process can slip in."""
    loaded = membership_module._members_from_sql

    def load_then_change(conversation_id):
        rows = loaded(conversation_id)
        change(conversation_id)
        return rows

    membership_module._members_from_sql = load_then_change
    try:
        yield
    finally:
        membership_module._members_from_sql = loaded


def test_a_fill_that_raced_a_change_is_not_written(app, make_user, make_conversation, cache):
    ada, bob = make_user("ada"), make_user("bob")
    conversation = make_conversation(ada, bob)
    with app.app_context():
        # Bob leaves (commit, then the invalidation) while a reader fills the cache.
        def bob_leaves(conversation_id):
            db.session.execute(delete(Participant).where(Participant.user_id == bob.id))
            db.session.commit()
            cache.changed([conversation_id], [bob.id])

        with racing_the_fill(bob_leaves):
            stale = cache.members(conversation.id)
        assert bob.id in stale  # what that reader saw
        assert set(cache.members(conversation.id)) == {ada.id}  # not what was cached


def test_read_markers_only_move_forward_in_the_cache(app, make_user, make_conversation, cache):
    ada, bob = make_user("ada"), make_user("bob")
    conversation = make_conversation(ada, bob)
    with app.app_context():
        assert cache.members(conversation.id) == {ada.id: None, bob.id: None}
        cache.read_moved(conversation.id, bob.id, "0002")
        cache.read_moved(conversation.id, bob.id, "0001")
        cache.read_moved(conversation.id, 999, "0003")  # not a member: not added
        assert cache.members(conversation.id) == {ada.id: None, bob.id: "0002"}


def test_a_marker_moved_while_nothing_is_cached_spoils_a_fill_in_flight(
        app, make_user, make_conversation, cache):
    ada, bob = make_user("ada"), make_user("bob")
    conversation = make_conversation(ada, bob)
    with app.app_context():
        def bob_reads(conversation_id):
            db.session.execute(db.update(Participant).where(Participant.user_id == bob.id)
                               .values(last_read_message_id="0009"))
            db.session.commit()
            cache.read_moved(conversation_id, bob.id, "0009")

        with racing_the_fill(bob_reads):
            assert cache.members(conversation.id)[bob.id] is None  # read before the marker
        assert cache.members(conversation.id)[bob.id] == "0009"


def test_a_token_socket_whose_identity_went_stale_is_confirmed_by_one_sql_read(app, chatting):
    """An API client idle for more than IDENTITY_TTL reconnects: its token's hint names the
    token, the identity kept there is no longer trusted, so SQL is read once (by the token's
    id) and the identity put back; the store is not asked again in between."""
    from simplechat.auth.tokens import create_token, token_store

    ada, bob, conversation, a, b = chatting
    token = create_token(ada, "bot")
    warm = socketio.test_client(app, namespace="/chat", auth={"token": token.secret})
    assert warm.is_connected("/chat")
    warm.disconnect("/chat")
    with app.app_context():
        store = token_store()
        identity = store.get(token.row.id)
        store.put(token.row.id, identity, fresh_for=0)  # kept, no longer trusted
    with counting(app) as connect:
        tab = socketio.test_client(app, namespace="/chat", auth={"token": token.secret})
        assert tab.is_connected("/chat")
    with app.app_context():
        assert token_store().get(token.row.id)["username"] == "ada"  # trusted again
    # the hint; the identity put back; the socket's batch (arrive)
    assert connect == ({"redis": 3, "sql": 1} if app.extensions["simplechat"].redis
                       else {"sql": 1})
    tab.disconnect("/chat")


def _driver_autocommits() -> bool:
    dbapi = db.session.connection().connection.dbapi_connection
    if hasattr(dbapi, "get_autocommit"):  # PyMySQL
        return bool(dbapi.get_autocommit())
    if hasattr(dbapi, "autocommit") and not isinstance(dbapi.autocommit, type(None)) \
            and type(dbapi).__module__.startswith("psycopg2"):
        return bool(dbapi.autocommit)
    return dbapi.isolation_level is None  # sqlite3


def test_a_cache_fill_s_own_read_runs_in_autocommit_and_a_caller_s_transaction_is_joined(
        app, make_user):
    """A fill that begins no transaction of the caller's reads in autocommit (no BEGIN and
    COMMIT round trips), and the pooled connection is back to transactions afterwards; inside
    a caller's transaction (its writes not yet committed) the read joins it and sees them."""
    from simplechat.infra.membership import _read_released

    ada = make_user("ada")
    db.session.commit()
    seen = []
    assert _read_released(lambda: seen.append(_driver_autocommits()) or "read") == "read"
    assert seen == [True] and not db.session().in_transaction()
    assert _driver_autocommits() is False  # a transaction of the caller's own: not autocommit
    ada.first_name = "Renamed"
    db.session.flush()
    assert _read_released(lambda: db.session.execute(
        select(User.first_name).where(User.id == ada.id)).scalar_one()) == "Renamed"
    db.session.rollback()
    assert db.session.get(User, ada.id).first_name != "Renamed"


def test_a_presence_ask_for_named_members_is_one_round_trip(app, chatting, make_user):
    """A page's header asks the presence of the members it shows: the user's own list (a
    stranger's id fills nothing), the members among those named and their presence, in one
    round trip with warm caches; no SQL. Someone named who is not a member is left out, a
    conversation the user is not in is refused."""
    ada, bob, conversation, a, b = chatting
    eve = make_user("eve")
    other = make_conversation_of(app, eve, make_user("zed"))
    ids = conversation.id, ada.id, bob.id, eve.id  # read before counting (the ORM reloads)
    with counting(app) as ask:
        answer = emit(a, "presence", {"conversation_id": ids[0],
                                      "user_ids": [ids[2], ids[3], ids[1]]})
    assert answer["ok"] is True and set(answer["presence"]) == {str(ids[2]), str(ids[1])}
    assert answer["presence"][str(ids[2])]["online"] is True
    assert ask == ({"redis": 1} if app.extensions["simplechat"].redis else {})
    with counting(app) as refused:
        assert emit(a, "presence", {"conversation_id": other, "user_ids": [ids[3]]}) == {
            "ok": False, "error": "forbidden"}
    assert "sql" not in refused  # the stranger's id filled nothing
    for bad in ({"conversation_id": ids[0], "user_ids": "x"},
                {"conversation_id": "x", "user_ids": [ids[2]]}):
        assert emit(a, "presence", bad)["error"] == "invalid"


def make_conversation_of(app, *users) -> int:
    conversation, _ = start_conversation(users[0], list(users[1:]))
    return conversation.id
