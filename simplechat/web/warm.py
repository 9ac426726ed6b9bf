"""Connections opened before a web worker takes its first socket.

A worker that starts (a deploy, a crash) is met at once by every client it is to hold: a
reconnect storm. Its pools were empty, so the first ``CHAT_CONNECT_CONCURRENCY`` connects each
opened a Redis connection while the event loop was already saturated; the loop answered their
TCP handshakes too late for ``socket_connect_timeout`` (2 s), 32 of them timed out in each
5,000-socket reconnect of benchmarks/big_room.py, and their token checks fell back to SQL.

``open_pools`` runs once in each worker, after its app is built and before it accepts (gunicorn's
``post_worker_init``): it opens the Redis connections that many connects in turn use at once,
the fan-out's publishing connection, and a few database connections, then puts them back in
their pools. A Redis or database that does not answer is logged and skipped: the worker starts
all the same, and its pools fill on first use as before.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from flask import Flask

from simplechat.extensions import db, socketio

log = logging.getLogger(__name__)

SPARE = 8  # Redis connections beyond the connects in turn: the joins and sends beside them
DATABASE_CONNECTIONS = 4  # a connect reads SQL only when a cache misses


@dataclass(frozen=True)
class Opened:
    redis: int
    fanout: int
    database: int
    seconds: float


def open_pools(app: Flask) -> Opened:
    """Open and give back the connections a reconnect storm needs first (see the module's
    docstring). Returns how many of each were opened."""
    started = time.monotonic()
    with app.app_context():
        redis = _redis(app)
        fanout = _fanout()
        database = _database(app)
    opened = Opened(redis, fanout, database, round(time.monotonic() - started, 3))
    log.info("connections opened before the first socket: %d to Redis, %d for the fan-out, "
             "%d to the database (%.3f s)", opened.redis, opened.fanout, opened.database,
             opened.seconds)
    return opened


def _redis(app: Flask) -> int:
    client = app.extensions["simplechat"].redis
    if client is None:
        return 0
    wanted = min(app.config["CHAT_CONNECT_CONCURRENCY"] + SPARE,
                 app.config["REDIS_MAX_CONNECTIONS"])
    return _held_and_released(client.connection_pool, wanted, "Redis")


def _fanout() -> int:
    router = getattr(socketio.server.manager, "router", None)
    if router is None or router.cluster:  # not the room fan-out, or shards found lazily
        return 0
    return sum(_held_and_released(shard.client.connection_pool, 1, "the fan-out's Redis")
               for shard in router.shards())


def _held_and_released(pool, wanted: int, what: str) -> int:
    """Take ``wanted`` connections from a redis-py pool at once (each new one connects), then
    give them all back."""
    return _opened(pool.get_connection, pool.release, wanted, what)


def _opened(take, give_back, wanted: int, what: str) -> int:
    """``take()`` ``wanted`` times, holding every one (so each is a new connection), then
    ``give_back`` each; stops at the first that fails. How many were opened."""
    held = []
    try:
        for _ in range(wanted):
            held.append(take())
    except Exception as exc:
        log.warning("%s not reached before the first socket (%s): its connections open on "
                    "first use", what, exc)
    finally:
        for connection in held:
            give_back(connection)
    return len(held)


def _database(app: Flask) -> int:
    engine = db.engine
    if engine.dialect.name == "sqlite":  # a file: nothing to open ahead
        return 0
    wanted = min(DATABASE_CONNECTIONS, getattr(engine.pool, "size", lambda: 0)())
    return _opened(engine.connect, lambda connection: connection.close(), wanted, "database")
