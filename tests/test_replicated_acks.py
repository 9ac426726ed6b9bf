"""Redis Sentinel and CHAT_ACK_REPLICAS on real servers: the settings as parsed, every Redis
role found through real sentinels, and a send answered ``ok`` only once a real replica holds
it (``WAIT``), else ``unavailable`` with nothing left behind, so that a retry makes exactly
one message."""

from __future__ import annotations

import shutil

import pytest
import redis as redis_lib
from conftest import app_in_context, make_app
from e2e.harness import RedisSentinelSet, RedisServer, wait_until
from sqlalchemy import select

from config import sentinel_hosts
from simplechat.extensions import db
from simplechat.infra.intake import intake
from simplechat.infra.redis_client import Sentinels, primary_options, redis_from_url
from simplechat.infra.services import services
from simplechat.infra.write_buffer import write_buffer
from simplechat.messaging.send import send_message
from simplechat.models import Message
from simplechat.realtime.fanout import RoomFanoutManager, client_manager

OWN_SERVER_PORTS = range(18000, 18100)  # redis-servers of a test's own (e2e/harness.py free_port)

needs_redis_server = pytest.mark.skipif(not shutil.which("redis-server"),
                                        reason="redis-server is not installed")


# --------------------------------------------------------------------------- the settings


@pytest.mark.parametrize("raw, hosts", [
    (None, None),
    ("", None),
    (" , ", None),
    ("10.0.0.1:26379", [("10.0.0.1", 26379)]),
    ("s1:26379,s2:26380, s3", [("s1", 26379), ("s2", 26380), ("s3", 26379)]),
    ("[::1]:26381 [fe80::2]", [("::1", 26381), ("fe80::2", 26379)]),
])
def test_sentinel_hosts_are_read_as_host_and_port_pairs(raw, hosts):
    assert sentinel_hosts(raw) == hosts


@pytest.mark.parametrize("raw", ["s1:port", "s1:0", "s1:70000", "::1:26379", "a@b:1",
                                 "redis://s1:26379", "[::1", "s1:1:2"])
def test_a_malformed_sentinel_is_refused_naming_it(raw):
    with pytest.raises(ValueError, match="REDIS_SENTINELS"):
        sentinel_hosts(f"ok:26379,{raw}")


def test_the_sentinels_of_a_config():
    assert Sentinels.from_config({"REDIS_SENTINELS": None}) is None
    found = Sentinels.from_config({"REDIS_SENTINELS": [("s1", 1), ("::1", 2)],
                                   "REDIS_SENTINEL_MASTER": "chat",
                                   "REDIS_SENTINEL_PASSWORD": "sekret"})
    assert found == Sentinels((("s1", 1), ("::1", 2)), "chat", "sekret")
    assert found.sentinel_options()["password"] == "sekret"
    # The broker: one sentinel:// part per sentinel with the URL's credentials and db.
    assert found.broker_url("redis://:pw@ignored:6379/2") == (
        "sentinel://:pw@s1:1/2;sentinel://:pw@[::1]:2/2")
    assert found.broker_url("redis://ignored") == "sentinel://s1:1/0;sentinel://[::1]:2/0"
    assert found.socketio_url("redis://u:p%40ss@ignored:6379/3") == (
        "redis+sentinel://u:p%40ss@s1:1,[::1]:2/3/chat")
    # A server the sentinels find keeps the URL's db, user, password; never its host.
    options = primary_options("redis://u:pw@ignored:6379/4?socket_timeout=3")
    assert {k: options[k] for k in ("db", "username", "password", "socket_timeout")} == {
        "db": 4, "username": "u", "password": "pw", "socket_timeout": 3.0}
    assert "host" not in options and "port" not in options
    with pytest.raises(ValueError, match="REDIS_SENTINELS"):
        primary_options("unix:///tmp/redis.sock")


@pytest.mark.parametrize("settings, url", [
    ({"SOCKETIO_REDIS_CLUSTER": True}, "redis://a/0"),
    ({}, "redis://a/0,redis://b/0"),
])
def test_sentinels_name_one_server_for_the_fanout(settings, url):
    config = {"REDIS_KEY_PREFIX": "x:", "REDIS_SENTINELS": [("s1", 26379)], **settings}
    with pytest.raises(ValueError, match="REDIS_SENTINELS"):
        client_manager(config, url)


# --------------------------------------------------------------------------- real sentinels


@pytest.fixture(scope="module")
def sentinel_set(tmp_path_factory):
    """A primary, one replica and one sentinel watching them, shared by this module."""
    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed")
    found = RedisSentinelSet(tmp_path_factory.mktemp("sentinels"), replicas=1, sentinels=1,
                             ports=OWN_SERVER_PORTS)
    yield found
    found.stop()


@needs_redis_server
def test_every_redis_role_reaches_the_primary_the_sentinels_name(database_uri, sentinel_set):
    primary = sentinel_set.primary()
    # REDIS_URL names a host that does not exist: only its db number (and password) count.
    app = make_app(database_uri, "redis://nowhere.invalid:1/5",
                   REDIS_SENTINELS=[("127.0.0.1", p) for p in sentinel_set.sentinels],
                   REDIS_SENTINEL_MASTER=sentinel_set.master)
    with app.app_context():
        client = services().redis
        key = app.config["REDIS_KEY_PREFIX"] + "where"
        client.set(key, "here", ex=60)
        direct = redis_lib.Redis(host="127.0.0.1", port=primary, db=5)
        try:
            assert direct.get(key) == b"here"
            direct.delete(key)
        finally:
            direct.close()
        assert client.connection_pool.master_address == ("127.0.0.1", primary)
        # Celery: kombu's sentinel transport, on db 5 of the same primary.
        celery = app.extensions["celery"]
        assert celery.conf.broker_url.startswith("sentinel://127.0.0.1:")
        assert celery.conf.broker_url.endswith("/5")
        assert celery.conf.broker_transport_options["master_name"] == sentinel_set.master
        with celery.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=5)
            assert conn.default_channel.client.connection_pool.connection_kwargs["db"] == 5
        # The Socket.IO fan-out publishes and listens on the primary too.
        manager = client_manager(app.config, app.config["REDIS_URL"])
        try:
            assert isinstance(manager, RoomFanoutManager)
            shard = manager.router.shards()[0]
            assert shard.client.execute_command("ROLE")[0] == b"master"
            assert shard.client.connection_pool.master_address == ("127.0.0.1", primary)
        finally:
            manager.close()
        services().redis.close()


# --------------------------------------------------------------------------- CHAT_ACK_REPLICAS


@pytest.fixture(scope="module")
def primary_and_replica(tmp_path_factory):
    """A redis-server and another one that replicates it while ``attach``ed."""
    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed")
    folder = tmp_path_factory.mktemp("replication")
    primary = RedisServer(folder, OWN_SERVER_PORTS, name="primary")
    replica = RedisServer(folder, OWN_SERVER_PORTS, name="replica")
    yield primary, replica
    replica.stop()
    primary.stop()


def attach(replica: RedisServer, primary: RedisServer) -> None:
    client = replica.client()
    try:
        client.replicaof("127.0.0.1", primary.port)
    finally:
        client.close()
    watcher = primary.client()
    try:
        # Online (its first sync done), and acknowledging a write of this connection.
        wait_until(lambda: watcher.info("replication").get("slave0", {}).get("state") == "online"
                   and watcher.set("attached", 1) and watcher.execute_command("WAIT", 1, 500),
                   15, 0.05, "the replica to be attached")
    finally:
        watcher.close()


def detach(replica: RedisServer, primary: RedisServer) -> None:
    client = replica.client()
    try:
        client.replicaof("NO", "ONE")
    finally:
        client.close()
    watcher = primary.client()
    try:
        wait_until(lambda: watcher.info("replication")["connected_slaves"] == 0, 15, 0.05,
                   "the replica to be detached")
    finally:
        watcher.close()


@pytest.fixture
def app(request, database_uri, primary_and_replica):
    """The app on the primary, with CHAT_ACK_REPLICAS=1 (or the test's indirect parameter)."""
    primary, _replica = primary_and_replica
    yield from app_in_context(database_uri, primary.url + "/0",
                              CHAT_ACK_REPLICAS=getattr(request, "param", 1),
                              CHAT_ACK_TIMEOUT_MS=300, CHAT_RATE_LIMIT="off")


def leftovers(app, conversation_id: int) -> dict:
    """What of a send could still be stored or shown: the write buffer, the recent list, the
    client ids remembered."""
    client = services().redis
    prefix = app.config["REDIS_KEY_PREFIX"]
    return {"buffer": client.llen(write_buffer().buffer_key),
            "recent": client.llen(f"{prefix}conv:{conversation_id}:recent"),
            "client ids": len(list(client.scan_iter(match=f"{prefix}cid:*")))}


def stored(conversation_id: int) -> list[str]:
    db.session.remove()
    return list(db.session.scalars(select(Message.text).where(
        Message.conversation_id == conversation_id).order_by(Message.id)))


@needs_redis_server
def test_a_send_is_ok_once_a_replica_holds_it(app, primary_and_replica, make_user,
                                              make_conversation):
    primary, replica = primary_and_replica
    attach(replica, primary)
    ada, bob = make_user(), make_user()
    conversation = make_conversation(ada, bob)
    gate = intake()
    assert (gate.ack_replicas, gate.ack_timeout_ms) == (1, 300)
    ack = send_message(ada, conversation.id, "on two machines", client_id="c1")
    assert ack["ok"] is True, ack
    # The replica has what the primary has: the recent list's entry and the client id.
    mirror = redis_lib.Redis(host="127.0.0.1", port=replica.port, db=0)
    try:
        prefix = app.config["REDIS_KEY_PREFIX"]
        assert b"on two machines" in b"".join(
            mirror.lrange(f"{prefix}conv:{conversation.id}:recent", 0, -1))
        assert mirror.exists(f"{prefix}cid:{ada.id}:{conversation.id}:c1")
    finally:
        mirror.close()
    assert stored(conversation.id) == ["on two machines"]


@needs_redis_server
def test_a_send_no_replica_confirms_is_unavailable_and_leaves_nothing_to_store(
        app, primary_and_replica, make_user, make_conversation):
    primary, replica = primary_and_replica
    attach(replica, primary)
    ada, bob = make_user(), make_user()
    conversation = make_conversation(ada, bob)
    before = leftovers(app, conversation.id)
    detach(replica, primary)
    try:
        for client_id in ("retry-me", None):
            ack = send_message(ada, conversation.id, f"alone {client_id}", client_id=client_id)
            assert ack == {"ok": False, "error": "unavailable"}
        # Taken back: nothing a flush could store later, nothing a join would show, and the
        # client id forgotten (a retry is a new send, not the original's answer).
        assert leftovers(app, conversation.id) == before
        assert stored(conversation.id) == []
    finally:
        attach(replica, primary)
    # A retry with the same client id, and one without (a new send), each make one message.
    first = send_message(ada, conversation.id, "alone retry-me", client_id="retry-me")
    again = send_message(ada, conversation.id, "alone retry-me", client_id="retry-me")
    other = send_message(ada, conversation.id, "alone None")
    assert first["ok"] and again["ok"] and other["ok"], (first, again, other)
    assert again.get("duplicate") and again["message"]["id"] == first["message"]["id"]
    assert stored(conversation.id) == ["alone retry-me", "alone None"]


@needs_redis_server
@pytest.mark.parametrize("app", [0], indirect=True)
def test_without_ack_replicas_a_send_needs_no_replica(app, primary_and_replica, make_user,
                                                       make_conversation):
    primary, replica = primary_and_replica
    detach(replica, primary)
    ada, bob = make_user(), make_user()
    conversation = make_conversation(ada, bob)
    assert intake().ack_replicas == 0
    assert send_message(ada, conversation.id, "no replica asked")["ok"]
    assert stored(conversation.id) == ["no replica asked"]


def test_redis_from_url_with_sentinels_uses_a_blocking_pool():
    client = redis_from_url("redis://ignored/2", 7, Sentinels((("127.0.0.1", 1),)))
    pool = client.connection_pool
    assert isinstance(pool, redis_lib.BlockingConnectionPool)
    assert pool.max_connections == 7 and pool.connection_kwargs["db"] == 2
    assert pool.service_name == "mymaster"
    client.close()
