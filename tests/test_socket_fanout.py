"""The room-scoped fan-out manager on real Redis: two python-socketio servers with their own
managers stand in for two web processes (real clients over HTTP), and the app's own manager
with Flask-SocketIO's test client."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter

import pytest
import redis as redis_lib
import socketio
from e2e.harness import RedisServer
from werkzeug.serving import make_server

from config import Config
from simplechat.extensions import socketio as app_socketio
from simplechat.infra import fastjson
from simplechat.realtime import fanout as socket_fanout
from simplechat.realtime.answer_first import WIDE_EMIT_ROOMS
from simplechat.realtime.fanout import (
    RecentIds,
    ResyncingRedisManager,
    RoomFanoutManager,
    client_manager,
)
from simplechat.realtime.presence import FOLLOWERS_COUNTABLE, heard_by

NS = "/chat"
OWN_SERVER_PORTS = range(18000, 18100)  # redis-servers of a test's own (e2e/harness.py free_port)


def wait_until(probe, timeout=10.0, message="condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {message}")
        time.sleep(0.02)


@pytest.fixture
def queue_url(redis_url):
    if redis_url is None:
        pytest.skip("needs Redis: the embedded default has no fan-out between processes")
    return redis_url


@pytest.fixture
def channel():
    return f"simplechat-test:{uuid.uuid4().hex[:10]}:socketio"


@pytest.fixture
def redis_client(queue_url):
    client = redis_lib.Redis.from_url(queue_url)
    yield client
    client.close()


@pytest.fixture
def own_redis_client(queue_url, tmp_path):
    """A client of a redis-server of the test's own, for a test that pauses its server,
    flushes its scripts, counts its commands or changes its ACL: ``make test`` runs other
    suites beside this one on the shared server, which would stall, or skew the count."""
    server = RedisServer(tmp_path, ports=OWN_SERVER_PORTS)
    client = server.client()
    yield client
    client.close()
    server.stop()


def url_of(client) -> str:
    return f"redis://127.0.0.1:{client.connection_pool.connection_kwargs['port']}/0"


def subscribers(client, channel_name: bytes) -> int:
    return dict(client.pubsub_numsub(channel_name))[channel_name]


class Process:
    """A python-socketio server with its own RoomFanoutManager, served over HTTP in a thread."""

    def __init__(self, urls, channel):
        self.manager = RoomFanoutManager(urls, channel=channel)
        self.sio = socketio.Server(client_manager=self.manager, async_mode="threading")
        self.sio.on("join", self._join, namespace=NS)
        self.sio.on("join_many", self._join_many, namespace=NS)
        self.sio.on("leave", self._leave, namespace=NS)
        self.sio.on("emit", self._emit, namespace=NS)
        self.sio.on("ask", self._ask, namespace=NS)
        self.http = make_server("127.0.0.1", 0, socketio.WSGIApp(self.sio), threaded=True)
        self.url = f"http://127.0.0.1:{self.http.server_port}"
        self.thread = threading.Thread(target=self.http.serve_forever, daemon=True)
        self.thread.start()

    def _join(self, sid, room):
        self.sio.enter_room(sid, room, namespace=NS)
        return "joined"

    def _join_many(self, sid, rooms):
        self.manager.enter_rooms(sid, NS, rooms)
        return "joined"

    def _leave(self, sid, room):
        self.sio.leave_room(sid, room, namespace=NS)
        return "left"

    def _emit(self, sid, data):
        self.sio.emit("note", data["note"], to=data["to"], skip_sid=data.get("skip_sid"),
                      namespace=NS)
        return "sent"

    def _ask(self, sid, data):
        """Ask another socket (on any process) a question; its answer comes back here."""
        return self.sio.call("question", data["question"], to=data["sid"], namespace=NS,
                             timeout=10)

    def channel_of(self, room):
        return self.manager.channel_of(NS, room)

    def close(self):
        self.http.shutdown()
        self.manager.close()


class Client:
    def __init__(self, url):
        self.notes: list = []
        self.resyncs: list = []
        self.sio = socketio.Client(reconnection=False)
        self.sio.on("note", self.notes.append, namespace=NS)
        self.sio.on("resync", self.resyncs.append, namespace=NS)
        self.sio.on("question", lambda q: f"answer to {q}", namespace=NS)
        self.sio.connect(url, namespaces=[NS], transports=["websocket"], wait_timeout=10)
        self.sid = self.sio.get_sid(NS)

    def call(self, event, data):
        return self.sio.call(event, data, namespace=NS, timeout=15)

    def close(self):
        if self.sio.connected:
            self.sio.disconnect()


@pytest.fixture
def processes(queue_url, channel):
    """``processes(n, urls=None)``: n servers on the same channel prefix."""
    started, clients = [], []

    def start(n=2, urls=None):
        made = [Process(urls or [queue_url], channel) for _ in range(n)]
        started.extend(made)
        return made

    def connect(process):
        client = Client(process.url)
        clients.append(client)
        return client

    start.connect = connect
    yield start
    closing = [threading.Thread(target=client.close) for client in clients]  # each waits a while
    for thread in closing:
        thread.start()
    for thread in closing:
        thread.join(15)
    for process in started:
        process.close()


def test_a_process_subscribes_to_a_room_only_while_a_local_socket_is_in_it(
        processes, redis_client):
    a, b = processes(2)
    ada, ada2 = processes.connect(a), processes.connect(a)
    room = a.channel_of("conversation:1")
    assert subscribers(redis_client, room) == 0
    assert ada.call("join", "conversation:1") == "joined"
    assert subscribers(redis_client, room) == 1  # answered after Redis confirmed it
    assert ada2.call("join", "conversation:1") == "joined"
    assert subscribers(redis_client, room) == 1  # one subscription per process, counted
    assert ada.call("leave", "conversation:1") == "left"
    assert subscribers(redis_client, room) == 1  # ada2 is still there
    own = a.channel_of(ada2.sid)
    assert subscribers(redis_client, own) == 1  # a socket's own room too
    ada2.close()
    wait_until(lambda: subscribers(redis_client, room) == 0, message="unsubscribe on disconnect")
    wait_until(lambda: subscribers(redis_client, own) == 0, message="sid room unsubscribed")
    assert a.manager.router.shard_of(room).held().get(room) is None


def test_rooms_entered_together_are_all_subscribed_before_a_confirmation_is_awaited(
        processes):
    """A connect puts its socket in its user's room and its login's: both SUBSCRIBEs go out
    before the first confirmation is awaited (one wait, not one per room), and both rooms
    then get what another process emits to them."""
    here, there = processes(2)
    joined, sender = processes.connect(here), processes.connect(there)
    shard = here.manager.router.shards()[0]
    held_at_first_wait: list[set] = []
    confirmed = shard.confirmed

    def recording(channel, ready):
        if not held_at_first_wait:
            held_at_first_wait.append(set(shard.held()))
        return confirmed(channel, ready)

    shard.confirmed = recording
    assert joined.call("join_many", ["user:1", "session:1"]) == "joined"
    assert {here.channel_of("user:1"), here.channel_of("session:1")} <= held_at_first_wait[0]
    for room in ("user:1", "session:1"):
        assert sender.call("emit", {"to": room, "note": room}) == "sent"
    wait_until(lambda: sorted(joined.notes) == ["session:1", "user:1"], message="both notes")


def test_a_socket_in_several_named_rooms_on_another_process_gets_one_copy(processes):
    a, b = processes(2)
    sender, both, one = processes.connect(a), processes.connect(b), processes.connect(b)
    for room in ("conversation:7", "user:1", "user:2"):
        assert both.call("join", room) == "joined"
    assert one.call("join", "user:2") == "joined"
    for n in range(3):
        assert sender.call("emit", {"note": n, "to": ["conversation:7", "user:1", "user:2"]}
                           ) == "sent"
    assert sender.call("emit", {"note": "last", "to": "user:2"}) == "sent"
    wait_until(lambda: "last" in both.notes and "last" in one.notes, message="the last note")
    assert Counter(both.notes) == {0: 1, 1: 1, 2: 1, "last": 1}
    assert Counter(one.notes) == {0: 1, 1: 1, 2: 1, "last": 1}
    assert sender.notes == []  # in none of the rooms


def script_calls(client) -> int:
    return client.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0)


def test_an_emit_to_several_rooms_is_one_script_call_and_survives_a_script_flush(
        processes, own_redis_client):
    redis_client = own_redis_client  # its count of script calls is this test's alone
    a, b = processes(2, urls=[url_of(redis_client)])
    sender, bob = processes.connect(a), processes.connect(b)
    for room in ("conversation:12", "user:12"):
        assert bob.call("join", room) == "joined"
    # The first emit loads the script (a fresh server answers its first EVALSHA NOSCRIPT).
    assert sender.call("emit", {"note": 0, "to": ["conversation:12", "user:12"]}) == "sent"
    before = script_calls(redis_client)
    assert sender.call("emit", {"note": 1, "to": ["conversation:12", "user:12"]}) == "sent"
    assert script_calls(redis_client) == before + 1
    redis_client.script_flush()  # as after a restart: the script is loaded again
    assert sender.call("emit", {"note": 2, "to": ["conversation:12", "user:12"]}) == "sent"
    wait_until(lambda: len(bob.notes) == 3, message="every note")
    time.sleep(0.2)
    assert bob.notes == [0, 1, 2]


def test_a_server_that_refuses_scripts_gets_a_pipeline(channel, own_redis_client):
    """A Redis whose ACL forbids scripting (as some hosted ones do): the manager publishes
    with a pipeline instead, and every copy still arrives once."""
    redis_client = own_redis_client
    user = f"noscript-{uuid.uuid4().hex[:8]}"
    redis_client.acl_setuser(user, enabled=True, nopass=True, keys=["~*"], channels=["*"],
                             commands=["+@all", "-@scripting"])
    try:
        parsed = url_of(redis_client).replace("redis://", f"redis://{user}@", 1)
        a, b = Process([parsed], channel), Process([parsed], channel)
        clients = []
        try:
            sender, bob = Client(a.url), Client(b.url)
            clients += [sender, bob]
            for room in ("conversation:13", "user:13"):
                assert bob.call("join", room) == "joined"
            for n in range(3):
                assert sender.call("emit", {"note": n, "to": ["conversation:13", "user:13"]}
                                   ) == "sent"
            wait_until(lambda: len(bob.notes) == 3, message="three notes")
            time.sleep(0.2)
            assert bob.notes == [0, 1, 2]
            assert a.manager.router.shard_of(b"x")._fan_script is None  # it fell back
        finally:
            for client in clients:
                client.close()
            a.close()
            b.close()
    finally:
        redis_client.acl_deluser(user)


def test_the_emitting_process_delivers_once_to_its_own_sockets_too(processes):
    a, b = processes(2)
    sender, here = processes.connect(a), processes.connect(a)
    for room in ("conversation:7", "user:1"):
        assert here.call("join", room) == "joined"
    assert processes.connect(b).call("join", "user:1") == "joined"  # b holds a room too
    assert sender.call("emit", {"note": "x", "to": ["conversation:7", "user:1"]}) == "sent"
    assert sender.call("emit", {"note": "end", "to": "conversation:7"}) == "sent"
    wait_until(lambda: "end" in here.notes, message="the end note")
    assert here.notes == ["x", "end"]


def test_skip_sid_holds_across_processes(processes):
    a, b = processes(2)
    sender, skipped, other = processes.connect(a), processes.connect(b), processes.connect(b)
    for client in (skipped, other):
        assert client.call("join", "conversation:3") == "joined"
    assert sender.call("emit", {"note": "not you", "to": ["conversation:3", "user:9"],
                                "skip_sid": skipped.sid}) == "sent"
    assert sender.call("emit", {"note": "all", "to": "conversation:3"}) == "sent"
    wait_until(lambda: "all" in skipped.notes and "all" in other.notes, message="notes")
    assert skipped.notes == ["all"]
    assert other.notes == ["not you", "all"]


def test_a_process_with_no_socket_in_the_room_receives_nothing(processes, redis_client):
    a, b = processes(2)
    sender, listener = processes.connect(a), processes.connect(a)
    assert listener.call("join", "conversation:5") == "joined"
    received = []
    original = b.manager._deliver
    b.manager._deliver = lambda channel, payload: (received.append(channel),
                                                   original(channel, payload))
    assert sender.call("emit", {"note": "quiet", "to": "conversation:5"}) == "sent"
    wait_until(lambda: listener.notes == ["quiet"], message="delivery on a")
    # b holds only its own callback channel: never the room's.
    assert subscribers(redis_client, a.channel_of("conversation:5")) == 1
    assert b.channel_of("conversation:5") not in b.manager.router.shard_of(
        b.channel_of("conversation:5")).held()
    assert received == []


def test_leave_on_another_process_stops_delivery_and_unsubscribes(processes, redis_client):
    a, b = processes(2)
    sender, bob = processes.connect(a), processes.connect(b)
    assert bob.call("join", "conversation:4") == "joined"
    room = b.channel_of("conversation:4")
    # Process a takes bob's socket, which b holds, out of the room: the request travels on
    # the channel of bob's own room.
    a.sio.leave_room(bob.sid, "conversation:4", namespace=NS)
    wait_until(lambda: subscribers(redis_client, room) == 0, message="b to unsubscribe")
    assert sender.call("emit", {"note": "gone", "to": "conversation:4"}) == "sent"
    assert sender.call("emit", {"note": "still here", "to": bob.sid}) == "sent"
    wait_until(lambda: bob.notes, message="the note to bob's own room")
    assert bob.notes == ["still here"]


def test_disconnect_of_a_socket_on_another_process(processes):
    a, b = processes(2)
    bob = processes.connect(b)
    a.sio.disconnect(bob.sid, namespace=NS)
    wait_until(lambda: not bob.sio.connected, message="bob's socket to close")


def test_a_callback_returns_to_the_asking_process(processes):
    a, b = processes(2)
    asker, answerer = processes.connect(a), processes.connect(b)
    assert asker.call("ask", {"sid": answerer.sid, "question": "q1"}) == "answer to q1"


def test_channels_spread_over_several_servers_and_still_deliver_once(
        processes, queue_url, redis_client):
    # Two entries naming the same server: two shards, two subscriber connections, each room on
    # one of them by CRC-32 of its channel name.
    urls = [queue_url, queue_url.replace("127.0.0.1", "localhost")]
    a, b = processes(2, urls=urls)
    rooms = [f"room:{n}" for n in range(12)]
    shards = {b.manager.router.shard_of(b.channel_of(r)).url for r in rooms}
    assert shards == set(urls)
    sender, member = processes.connect(a), processes.connect(b)
    for room in rooms:
        assert member.call("join", room) == "joined"
    names = [c["name"] for c in redis_client.client_list()]
    assert names.count(b.manager.subscriber_name) == 2
    assert sender.call("emit", {"note": "spread", "to": rooms}) == "sent"
    assert sender.call("emit", {"note": "end", "to": rooms[-1]}) == "sent"
    wait_until(lambda: "end" in member.notes, message="the end note")
    assert member.notes == ["spread", "end"]


def room_on(process, url: str, start: int = 0) -> str:
    """The first ``room:<n>`` from ``start`` whose channel lives on the server ``url``."""
    return next(f"room:{n}" for n in range(start, start + 1000)
                if process.manager.router.shard_of(process.channel_of(f"room:{n}")).url == url)


def test_an_emit_to_several_servers_is_sent_to_each_before_any_answer_is_awaited(
        processes, own_redis_client, tmp_path):
    """A server slow to answer (paused) holds back neither the other server's copy nor the
    reading of its answer: the commands go out together and the waits overlap."""
    other = RedisServer(tmp_path / "other", ports=OWN_SERVER_PORTS)
    try:
        slow, fast = url_of(own_redis_client), other.url + "/0"
        a, b = processes(2, urls=[slow, fast])
        slow_room, fast_room = room_on(b, slow), room_on(b, fast)
        sender, member = processes.connect(a), processes.connect(b)
        for room in (slow_room, fast_room):
            assert member.call("join", room) == "joined"
        assert sender.call("emit", {"note": "warm", "to": [slow_room, fast_room]}) == "sent"
        wait_until(lambda: member.notes == ["warm"], message="the first note")
        own_redis_client.client_pause(6000)
        try:
            answered = []
            emitting = threading.Thread(target=lambda: answered.append(sender.call(
                "emit", {"note": "while paused", "to": [slow_room, fast_room]})))
            emitting.start()
            # Published to the slow server first: one server after the other would deliver
            # nothing until the pause ends.
            wait_until(lambda: "while paused" in member.notes, timeout=4.5,
                       message="the fast server's copy during the pause")
            assert answered == []  # the sender still waits for the slow server's answer
        finally:
            own_redis_client.client_unpause()
        emitting.join(15)
        assert answered == ["sent"]
        assert sender.call("emit", {"note": "end", "to": slow_room}) == "sent"
        wait_until(lambda: "end" in member.notes, message="the end note")
        assert member.notes == ["warm", "while paused", "end"]  # the slow copy was dropped
    finally:
        other.stop()


def test_the_publishes_to_several_servers_survive_a_script_flush_and_a_lost_connection(
        processes, own_redis_client, tmp_path):
    other = RedisServer(tmp_path / "other", ports=OWN_SERVER_PORTS)
    try:
        urls = [url_of(own_redis_client), other.url + "/0"]
        a, b = processes(2, urls=urls)
        rooms = [room_on(b, urls[0]), room_on(b, urls[0], 1000), room_on(b, urls[1]),
                 room_on(b, urls[1], 1000)]
        assert len(set(rooms)) == 4
        sender, member = processes.connect(a), processes.connect(b)
        for room in rooms:
            assert member.call("join", room) == "joined"
        clients = [own_redis_client, other.client()]
        for n in range(3):
            if n == 1:
                for client in clients:
                    client.script_flush()  # NOSCRIPT on both, as after a restart
            if n == 2:  # the sender's publishing connections are closed under it
                for client in clients:
                    for entry in client.client_list():
                        if entry["name"] != a.manager.subscriber_name and entry["cmd"] in (
                                "evalsha", "script|load", "publish"):
                            client.client_kill_filter(_id=entry["id"])
            assert sender.call("emit", {"note": n, "to": rooms}) == "sent"
        assert sender.call("emit", {"note": "end", "to": rooms[0]}) == "sent"
        wait_until(lambda: "end" in member.notes, message="the end note")
        time.sleep(0.2)
        assert member.notes == [0, 1, 2, "end"]
        clients[1].close()
    finally:
        other.stop()


def test_a_server_that_is_down_is_tried_once_and_the_others_still_get_their_copies(
        processes, own_redis_client, tmp_path):
    other = RedisServer(tmp_path / "other", ports=OWN_SERVER_PORTS)
    live, dead = url_of(own_redis_client), other.url + "/0"
    a, b = processes(2, urls=[live, dead])
    live_room, dead_room = room_on(b, live), room_on(b, dead)
    member = processes.connect(b)
    for room in (live_room, dead_room):
        assert member.call("join", room) == "joined"
    other.stop()
    down = a.manager.router.shard_of(a.channel_of(dead_room))
    tries = Counter()
    take = down.client.connection_pool.get_connection
    publish = down.publish

    def counted_take(*args, **kwargs):
        tries["connect"] += 1
        return take(*args, **kwargs)

    def counted_publish(*args, **kwargs):
        tries["again"] += 1
        return publish(*args, **kwargs)

    down.client.connection_pool.get_connection = counted_take
    down.publish = counted_publish
    with pytest.raises(redis_lib.ConnectionError):
        a.manager.router.publish([a.channel_of(dead_room), a.channel_of(live_room)],
                                 b"x|{}")
    # The server that could not be reached is not tried again within the send.
    assert tries == {"connect": 1}, tries
    a.manager.emit("note", "one server down", namespace=NS, room=[dead_room, live_room])
    wait_until(lambda: member.notes == ["one server down"], message="the live server's copy")


def test_a_killed_subscriber_connection_resubscribes_every_channel_then_says_resync(
        processes, redis_client):
    a, b = processes(2)
    sender, bob = processes.connect(a), processes.connect(b)
    bob_too = processes.connect(b)
    assert bob.call("join", "conversation:8") == "joined"
    room = b.channel_of("conversation:8")
    listener = [c for c in redis_client.client_list() if c["name"] == b.manager.subscriber_name]
    assert len(listener) == 1
    redis_client.client_kill_filter(_id=listener[0]["id"])
    wait_until(lambda: any(c["name"] == b.manager.subscriber_name
                           and c["id"] != listener[0]["id"]
                           for c in redis_client.client_list()), message="a new connection")
    wait_until(lambda: subscribers(redis_client, room) == 1, message="the room resubscribed")
    # What was published meanwhile is lost: every socket of b (in the room or not) hears
    # resync once b listens again, and no socket of a, whose listener never stopped.
    wait_until(lambda: bob.resyncs and bob_too.resyncs, message="resync on b's sockets")
    assert bob.resyncs == [{}] and bob_too.resyncs == [{}] and sender.resyncs == []
    assert sender.call("emit", {"note": "after", "to": "conversation:8"}) == "sent"
    wait_until(lambda: bob.notes, message="delivery after the reconnect")
    assert bob.notes == ["after"]
    assert a.sio.call("question", "again", to=bob.sid, namespace=NS, timeout=10) == (
        "answer to again")


def test_the_broadcast_manager_says_resync_after_its_listener_subscribes_again(
        own_redis_client, channel):
    """SOCKETIO_FANOUT=broadcast: python-socketio's own listener, on a redis-server of the
    test's own (every pub/sub connection on it is killed)."""
    manager = ResyncingRedisManager(url_of(own_redis_client), channel=channel)
    sio = socketio.Server(client_manager=manager, async_mode="threading")
    sio.on("connect", lambda sid, environ: True, namespace=NS)
    http = make_server("127.0.0.1", 0, socketio.WSGIApp(sio), threaded=True)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    client = Client(f"http://127.0.0.1:{http.server_port}")
    try:
        wait_until(lambda: own_redis_client.pubsub_numsub(channel)[0][1] == 1,
                   message="the listener's subscription")
        assert client.resyncs == []  # its first subscription says nothing
        for found in own_redis_client.client_list(_type="pubsub"):
            own_redis_client.client_kill_filter(_id=found["id"])
        wait_until(lambda: client.resyncs, 15, "resync after the listener subscribed again")
        assert client.resyncs == [{}]
    finally:
        client.close()
        http.shutdown()


def listener_of(redis_client, process):
    found = [c for c in redis_client.client_list() if c["name"] == process.manager.subscriber_name]
    assert len(found) == 1, found
    return found[0]


def test_a_quiet_listener_pings_and_keeps_its_connection(processes, redis_client, monkeypatch):
    monkeypatch.setattr(socket_fanout, "QUIET_PING", 0.3)  # the listener's read timeout
    a, b = processes(2)
    sender, bob = processes.connect(a), processes.connect(b)
    assert bob.call("join", "conversation:9") == "joined"
    first = listener_of(redis_client, b)
    wait_until(lambda: listener_of(redis_client, b)["cmd"] == "ping", timeout=5,
               message="a PING on the quiet subscriber connection")
    time.sleep(1.2)  # four quiet periods, each answered
    assert listener_of(redis_client, b)["id"] == first["id"]
    assert sender.call("emit", {"note": "still here", "to": "conversation:9"}) == "sent"
    wait_until(lambda: bob.notes, message="a delivery on the same connection")
    assert bob.notes == ["still here"]


def test_a_listener_whose_server_stops_answering_reconnects(processes, own_redis_client,
                                                            monkeypatch):
    """A server that stops answering without closing the connection (a paused or partitioned
    Redis): no answer to the PING after a quiet period, and the listener connects again."""
    monkeypatch.setattr(socket_fanout, "QUIET_PING", 0.3)
    redis_client = own_redis_client
    a, b = processes(2, urls=[url_of(redis_client)])
    sender, bob = processes.connect(a), processes.connect(b)
    assert bob.call("join", "conversation:10") == "joined"
    first = listener_of(redis_client, b)
    redis_client.execute_command("CLIENT", "PAUSE", 1500, "ALL")
    wait_until(lambda: any(c["name"] == b.manager.subscriber_name and c["id"] != first["id"]
                           for c in redis_client.client_list()), timeout=15,
               message="a new subscriber connection after the pause")
    room = b.channel_of("conversation:10")
    wait_until(lambda: subscribers(redis_client, room) == 1, message="the room resubscribed")
    assert sender.call("emit", {"note": "after the pause", "to": "conversation:10"}) == "sent"
    wait_until(lambda: bob.notes, message="a delivery after the reconnect")
    assert bob.notes == ["after the pause"]


def test_the_listener_reads_replies_split_across_and_packed_into_reads(
        processes, redis_client):
    """Emits larger than one read of the socket, and many small ones in one read: each
    delivered whole, once, in order."""
    a, b = processes(2)
    sender, bob = processes.connect(a), processes.connect(b)
    assert bob.call("join", "conversation:11") == "joined"
    big = "x" * (3 * socket_fanout.READ_BLOCK + 17)
    assert sender.call("emit", {"note": big, "to": "conversation:11"}) == "sent"
    for n in range(200):
        a.sio.emit("note", n, to="conversation:11", namespace=NS)
    wait_until(lambda: len(bob.notes) == 201, message="every note")
    assert bob.notes == [big, *range(200)]


def test_an_external_emitter_publishes_per_room(processes, queue_url, channel):
    """A process that never serves sockets (Celery, the CLI) only publishes, per room."""
    (b,) = processes(1)
    bob = processes.connect(b)
    assert bob.call("join", "conversation:2") == "joined"
    external = RoomFanoutManager([queue_url], channel=channel)
    server = socketio.Server(client_manager=external, async_mode="threading")
    try:
        server.emit("note", "from outside", to=["conversation:2", "user:5"], namespace=NS)
        wait_until(lambda: bob.notes, message="the external note")
        assert bob.notes == ["from outside"]
        assert not external.listening
    finally:
        external.close()


def test_a_join_racing_a_stream_of_emits_misses_nothing_after_its_answer(processes):
    """Emits flow into a room while a socket on another process joins it: what it gets is an
    unbroken run up to the last, and an emit made after the join's answer always arrives."""
    a, b = processes(2)
    bob = processes.connect(b)
    stop = threading.Event()
    sent = []

    def stream():
        for n in range(400):
            if stop.is_set():
                break
            a.manager.emit("note", n, namespace=NS, room="conversation:6")
            sent.append(n)
            time.sleep(0.002)  # pacing only: the polling client drains what it gets

    streamer = threading.Thread(target=stream, daemon=True)
    streamer.start()
    wait_until(lambda: len(sent) > 20, message="the stream to start")
    assert bob.call("join", "conversation:6") == "joined"
    a.manager.emit("note", "after the answer", namespace=NS, room="conversation:6")
    streamer.join(30)
    stop.set()
    a.manager.emit("note", "end", namespace=NS, room="conversation:6")
    wait_until(lambda: "end" in bob.notes, message="the end note")
    # The client runs each event's handler in a thread of its own: order is not kept.
    numbers = sorted(n for n in bob.notes if isinstance(n, int))
    assert numbers == list(range(numbers[0], sent[-1] + 1)), "a gap in the stream"
    assert "after the answer" in bob.notes


def test_an_emit_to_several_rooms_is_one_publish_round_trip_per_server(processes, queue_url):
    """The manager's own Redis client (apart from the app's pool that tests/test_hot_path.py
    counts): one pipeline per server, whatever the number of rooms named."""
    urls = [queue_url, queue_url.replace("127.0.0.1", "localhost")]
    (a,) = processes(1, urls=urls)
    sends = Counter()
    for shard in a.manager.router.shards():
        original = shard.client.connection_pool.get_connection

        def counting(*args, _original=original, _url=shard.url, **kwargs):
            connection = _original(*args, **kwargs)
            if not getattr(connection, "_counted", False):
                send = connection.send_packed_command

                def counted(command, *more, **options):
                    sends[_url] += 1
                    return send(command, *more, **options)

                connection.send_packed_command = counted
                connection._counted = True
            return connection

        shard.client.connection_pool.get_connection = counting
    rooms = [f"user:{n}" for n in range(10)]
    assert {a.manager.router.shard_of(a.channel_of(r)).url for r in rooms} == set(urls)
    a.manager.emit("note", "x", namespace=NS, room=rooms)
    assert sends == {urls[0]: 1, urls[1]: 1}
    a.manager.emit("note", "y", namespace=NS, room=rooms[0])
    assert sum(sends.values()) == 3


def test_recent_ids_forget_the_oldest_beyond_their_size():
    seen = RecentIds(2)
    assert seen.add("a") and seen.add("b")
    assert not seen.add("a")
    assert seen.add("c")  # "a" is forgotten now
    assert seen.add("a")
    assert not seen.add("c")


@pytest.mark.parametrize("settings, error", [
    ({"SOCKETIO_FANOUT": "everywhere"}, "SOCKETIO_FANOUT"),
    ({"SOCKETIO_FANOUT": "broadcast", "urls": "redis://a,redis://b"}, "need SOCKETIO_FANOUT"),
    ({"SOCKETIO_REDIS_CLUSTER": True, "urls": "redis://a,redis://b"}, "one URL"),
    ({"urls": "redis://a,amqp://b"}, "only redis"),
])
def test_a_bad_fanout_setting_is_refused_with_a_clear_error(settings, error):
    config = {"REDIS_KEY_PREFIX": "x:", "SOCKETIO_FANOUT": "rooms", **settings}
    with pytest.raises(ValueError, match=error):
        client_manager(config, config.pop("urls", "redis://127.0.0.1:6379/0"))


def test_the_modes_pick_their_managers():
    assert isinstance(client_manager({"REDIS_KEY_PREFIX": "x:"}, "redis://h/0"),
                      RoomFanoutManager)
    stock = client_manager({"REDIS_KEY_PREFIX": "x:", "SOCKETIO_FANOUT": "broadcast"},
                           "redis://h/0")
    assert type(stock) is ResyncingRedisManager and stock.channel == "x:socketio"
    assert isinstance(stock, socketio.RedisManager)
    assert client_manager({"REDIS_KEY_PREFIX": "x:"}, "amqp://h//") is None


# --------------------------------------------------------------------------- the app itself
# Flask-SocketIO's test client refuses a pub/sub manager: the app's events over this manager
# are covered end to end (tests/e2e/test_fanout_modes.py).


@pytest.mark.parametrize("mode, manager_class", [("rooms", RoomFanoutManager),
                                                 ("broadcast", ResyncingRedisManager)])
def test_the_app_builds_the_manager_of_its_mode_on_its_prefix(
        database_uri, queue_url, mode, manager_class):
    from conftest import make_app

    app = make_app(database_uri, queue_url, SOCKETIO_MESSAGE_QUEUE=queue_url,
                   SOCKETIO_FANOUT=mode)
    manager = app_socketio.server.manager
    try:
        assert type(manager) is manager_class
        assert manager.channel == app.config["REDIS_KEY_PREFIX"] + "socketio"
        assert manager.json is fastjson
        # Only the room fan-out on the app's own Redis lets presence count a room's followers.
        assert app.extensions[FOLLOWERS_COUNTABLE] is (mode == "rooms")
    finally:
        if isinstance(manager, RoomFanoutManager):
            manager.close()


def test_followers_are_not_counted_on_a_fanout_of_another_redis(database_uri, queue_url):
    from conftest import make_app

    other = queue_url.rstrip("/0123456789") + "/14"  # another database: another keyspace
    app = make_app(database_uri, queue_url, SOCKETIO_MESSAGE_QUEUE=other)
    try:
        assert app.extensions[FOLLOWERS_COUNTABLE] is False
    finally:
        app_socketio.server.manager.close()
    assert make_app(database_uri, queue_url).extensions[FOLLOWERS_COUNTABLE] is False  # none


def test_the_default_mode_is_rooms():
    assert Config.SOCKETIO_FANOUT == "rooms"


def publishes(client) -> int:
    """PUBLISH commands run, those of scripts included (tests of other modules may publish on
    the same server meanwhile: only an upper bound is asserted)."""
    return client.info("commandstats").get("cmdstat_publish", {}).get("calls", 0)


def test_an_emit_to_many_rooms_is_one_copy_per_process_on_the_namespace_channel(
        processes, redis_client):
    """Past WIDE_EMIT_ROOMS rooms, an emit is published once, on the namespace's channel: a
    process delivers it once to each of its sockets in any of the rooms named, and to none
    other; the emitting process's own sockets get it once too."""
    a, b = processes(2)
    sender, both, one, neither = (processes.connect(p) for p in (a, b, b, b))
    rooms = [f"user:{n}" for n in range(WIDE_EMIT_ROOMS + 6)]
    for room in ("conversation:9", rooms[3], rooms[-1]):
        assert both.call("join", room) == "joined"
    assert one.call("join", rooms[5]) == "joined"
    assert sender.call("join", rooms[0]) == "joined"
    before = publishes(redis_client)
    for n in range(3):
        a.manager.emit("note", n, namespace=NS, room=["conversation:9", *rooms])
    assert publishes(redis_client) - before < 3 * len(rooms)  # one each, not one per room
    a.manager.emit("note", "last", namespace=NS, room=rooms[5])
    wait_until(lambda: "last" in one.notes and len(both.notes) == 3 and len(sender.notes) == 3,
               message="every copy")
    time.sleep(0.3)  # a late second copy would show
    assert Counter(both.notes) == {0: 1, 1: 1, 2: 1}
    assert Counter(one.notes) == {0: 1, 1: 1, 2: 1, "last": 1}
    assert Counter(sender.notes) == {0: 1, 1: 1, 2: 1}
    assert neither.notes == []


def test_a_listener_that_subscribes_again_closes_its_idle_publishing_connections(
        processes, redis_client):
    """After a failover the publishing connections may be on a replica, where a PUBLISH is
    answered and lost: once the listener had to connect again they are closed, and the next
    publish connects afresh (and is delivered)."""
    a, b = processes(2)
    alice, bob = processes.connect(a), processes.connect(b)
    assert alice.call("join", "conversation:4") == "joined"
    b.manager.emit("note", "before", namespace=NS, room="conversation:4")
    wait_until(lambda: alice.notes == ["before"], message="the first note")
    pool = b.manager.router.shards()[0].client.connection_pool
    idle = list(pool._available_connections)
    assert idle and all(c._sock is not None for c in idle)
    redis_client.client_kill_filter(_id=listener_of(redis_client, b)["id"])
    wait_until(lambda: bob.resyncs, message="b listening again")
    assert all(c._sock is None for c in idle)
    b.manager.emit("note", "after", namespace=NS, room="conversation:4")
    wait_until(lambda: alice.notes == ["before", "after"], message="the note after")


def test_heard_by_leaves_out_only_a_presence_room_nobody_follows():
    rooms = ["conversation:4", "user:9", "presence:7"]
    assert heard_by(7, rooms, [b"c", 0]) == ["conversation:4", "user:9"]
    assert heard_by(7, ["presence:7"], [b"c", 0]) == []
    for kept in ([b"c", 2], None, ConnectionError("down"), [b"c"], 5):
        assert heard_by(7, rooms, kept) == rooms
