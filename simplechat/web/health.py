"""``/healthz``: whether the database, Redis and the Celery broker answer, and whether the
write buffer drains.

200 with every check's status, or 503 naming what is down. In the embedded default (no
REDIS_URL, tasks run inline) Redis and the broker are "embedded" and count as up. A write
buffer whose oldest payload has waited past WRITE_BUFFER_STUCK_SECONDS (no worker consumes
the queue, or the database refuses the writes) makes the status "degraded", still 200: the
web processes serve, a balancer must not take them out for it; monitoring alerts on it.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from flask import Flask, current_app, jsonify
from sqlalchemy import text

from simplechat.extensions import db
from simplechat.infra.ids import message_id_time
from simplechat.infra.redis_client import redis_from_url
from simplechat.infra.services import services
from simplechat.infra.write_buffer import write_buffer

log = logging.getLogger(__name__)

UP = ("ok", "embedded")


def check_database() -> str:
    try:
        db.session.execute(text("SELECT 1"))
        return "ok"
    except Exception as exc:
        log.warning("health: database unreachable: %s", type(exc).__name__)
        return "down"
    finally:
        db.session.remove()


def check_redis() -> str:
    client = services().redis
    if client is None:
        return "embedded"
    try:
        client.ping()
        return "ok"
    except Exception as exc:
        log.warning("health: redis unreachable: %s", type(exc).__name__)
        return "down"


def check_broker() -> str:
    celery = current_app.extensions["celery"]
    if celery.conf.task_always_eager:
        return "embedded"
    url = celery.conf.broker_url
    try:
        if url.startswith(("redis://", "rediss://", "unix://")):
            client = services().redis
            if client is None or url != current_app.config.get("REDIS_URL"):
                client = redis_from_url(url)
                try:
                    client.ping()
                finally:
                    client.close()
            else:
                client.ping()
        else:
            with celery.connection_for_write() as conn:
                conn.ensure_connection(max_retries=1, timeout=2)
        return "ok"
    except Exception as exc:
        log.warning("health: broker unreachable: %s", type(exc).__name__)
        return "down"


def check_writes() -> dict:
    """The write buffer: payloads waiting for SQL, how long the oldest has, and "stuck" when
    that is past WRITE_BUFFER_STUCK_SECONDS ("embedded" when tasks run inline; "unknown"
    when Redis cannot say)."""
    if services().embedded or current_app.extensions["celery"].conf.task_always_eager:
        return {"status": "embedded"}
    try:
        waiting, oldest = write_buffer().backlog()
        age = 0.0
        if oldest is not None:
            age = (datetime.now(UTC).replace(tzinfo=None)
                   - message_id_time(oldest["id"])).total_seconds()
    except Exception as exc:
        log.warning("health: write buffer unreadable: %s", type(exc).__name__)
        return {"status": "unknown"}
    stuck = bool(waiting) and age > current_app.config["WRITE_BUFFER_STUCK_SECONDS"]
    if stuck:
        log.warning("health: %d message(s) waiting for SQL, the oldest for %.0f s", waiting, age)
    return {"status": "stuck" if stuck else "ok", "waiting": waiting,
            "oldest_seconds": round(max(age, 0.0), 1)}


def health() -> tuple[dict, bool]:
    """Every check's status, and whether all of them are up."""
    checks = {"database": check_database(), "redis": check_redis(), "broker": check_broker()}
    down = sorted(name for name, status in checks.items() if status not in UP)
    writes = check_writes()
    status = "down" if down else ("degraded" if writes["status"] == "stuck" else "ok")
    report = {"status": status, "checks": checks, "writes": writes}
    if down:
        report["down"] = down
    return report, not down


def init_health(app: Flask) -> None:
    @app.get("/healthz")
    def healthz():
        report, up = health()
        response = jsonify(report)
        response.status_code = 200 if up else 503
        response.headers["Cache-Control"] = "no-store"
        return response
