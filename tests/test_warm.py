"""A web worker opens the connections its first sockets need before it accepts any
(simplechat/web/warm.py, called by gunicorn.conf.py's post_worker_init): on real Redis and the
real database; a Redis that does not answer is skipped, not waited for."""

from __future__ import annotations

import socket
import time

import pytest
import redis as redis_lib
from conftest import app_in_context, make_app

from simplechat.extensions import db
from simplechat.web.warm import DATABASE_CONNECTIONS, SPARE, open_pools


def clients_of(url: str, name: str) -> int:
    """Connections to Redis whose client name is ``name``."""
    return sum(1 for c in redis_lib.Redis.from_url(url).client_list() if c.get("name") == name)


@pytest.fixture
def closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens there once closed


@pytest.mark.parametrize("room_for", [100, 10])
def test_the_connects_in_turn_find_their_redis_connections_open(database_uri, backend,
                                                              room_for):
    with_redis = backend is not None
    for app in app_in_context(database_uri, backend, REDIS_MAX_CONNECTIONS=room_for,
                              CHAT_CONNECT_CONCURRENCY=12):
        pool = app.extensions["simplechat"].redis.connection_pool if with_redis else None
        name = f"warm-{time.monotonic_ns()}"
        if pool is not None:
            pool.connection_kwargs["client_name"] = name  # to count them in CLIENT LIST
        opened = open_pools(app)
        wanted = min(12 + SPARE, room_for) if with_redis else 0
        assert opened.redis == wanted
        if with_redis:
            assert clients_of(backend, name) == wanted  # open, and idle in the pool
            # Given back: that many can be taken at once with no new connection.
            held = [pool.get_connection() for _ in range(wanted)]
            assert clients_of(backend, name) == wanted
            for connection in held:
                pool.release(connection)
        on_server = db.engine.dialect.name != "sqlite"
        assert opened.database == (DATABASE_CONNECTIONS if on_server else 0)
        if on_server:
            assert db.engine.pool.checkedin() >= DATABASE_CONNECTIONS
        assert opened.fanout == 0  # the test apps fan out in process


def test_a_redis_that_does_not_answer_is_skipped_at_once(database_uri, closed_port, caplog):
    app = make_app(database_uri, f"redis://127.0.0.1:{closed_port}/0")  # nothing to clean up
    started = time.monotonic()
    opened = open_pools(app)
    assert opened.redis == 0
    assert time.monotonic() - started < 5  # refused: one attempt, not one per connection
    assert "Redis not reached before the first socket" in caplog.text
    with app.app_context():
        db.engine.dispose()
