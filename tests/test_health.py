"""/healthz: database, Redis and broker status, 503 naming what is down."""

from __future__ import annotations

import pytest
from conftest import make_app

from simplechat.extensions import db

STOPPED_REDIS = "redis://127.0.0.1:6390/0"  # nothing listens there
WRONG_DATABASE = "postgresql+psycopg2://root@127.0.0.1:5499/nowhere"


def get_health(app):
    with app.app_context():
        response = app.test_client().get("/healthz")
        db.engine.dispose()
    return response.status_code, response.get_json()


def test_healthy_app_answers_200_with_each_check(client, redis_url):
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "ok" and "down" not in body
    assert body["checks"] == {
        "database": "ok",
        "redis": "ok" if redis_url else "embedded",
        "broker": "embedded",  # the test config runs Celery tasks inline
    }
    assert response.headers["Cache-Control"] == "no-store"


def test_redis_broker_is_checked_when_tasks_are_queued(database_uri, redis_url):
    if not redis_url:
        pytest.skip("needs TEST_REDIS_URL")
    app = make_app(database_uri, redis_url, CELERY_TASK_ALWAYS_EAGER=False)
    status, body = get_health(app)
    assert status == 200
    assert body["checks"] == {"database": "ok", "redis": "ok", "broker": "ok"}


def test_stopped_redis_is_reported_down(database_uri):
    app = make_app(database_uri, STOPPED_REDIS, CELERY_TASK_ALWAYS_EAGER=False)
    status, body = get_health(app)
    assert status == 503
    assert body["status"] == "down"
    assert body["down"] == ["broker", "redis"]
    assert body["checks"]["database"] == "ok"


def test_a_broker_of_its_own_is_checked_separately(database_uri, redis_url):
    if not redis_url:
        pytest.skip("needs TEST_REDIS_URL")
    app = make_app(database_uri, redis_url, CELERY_TASK_ALWAYS_EAGER=False,
                   CELERY_BROKER_URL=STOPPED_REDIS)
    status, body = get_health(app)
    assert status == 503
    assert body["down"] == ["broker"]
    assert body["checks"]["redis"] == "ok"


def test_wrong_database_url_is_reported_down(redis_url):
    app = make_app(WRONG_DATABASE, redis_url)
    status, body = get_health(app)
    assert status == 503
    assert body["down"] == ["database"]
    assert body["checks"]["database"] == "down"


def test_embedded_default_counts_as_up(tmp_path):
    app = make_app(f"sqlite:///{tmp_path}/health.sqlite3", None, CELERY_TASK_ALWAYS_EAGER=None)
    status, body = get_health(app)
    assert status == 200
    assert body["checks"] == {"database": "ok", "redis": "embedded", "broker": "embedded"}


def test_a_write_buffer_that_does_not_drain_is_reported_degraded(database_uri, redis_url):
    """No worker consumes the queue (its broker is in this process's memory): the message
    waits in the write buffer, and /healthz says so, still 200; a flush makes it ok again."""
    if not redis_url:
        pytest.skip("needs TEST_REDIS_URL")
    from conftest import _drop_redis_keys

    from simplechat.conversations.records import start_conversation
    from simplechat.infra.write_buffer import write_buffer
    from simplechat.messaging.send import send_message
    from simplechat.messaging.tasks import store_batch
    from simplechat.models import User

    app = make_app(database_uri, redis_url, CELERY_TASK_ALWAYS_EAGER=False,
                   CELERY_BROKER_URL="memory://", WRITE_BUFFER_STUCK_SECONDS=0)
    try:
        with app.app_context():
            if database_uri.startswith("sqlite"):
                db.create_all()
            users = [User(username=f"h{n}", first_name="H", last_name=str(n),
                          email=f"h{n}@example.com") for n in (1, 2)]
            for user in users:
                user.set_password("x" * 12)
                db.session.add(user)
            db.session.commit()
            conversation, _ = start_conversation(users[0], [users[1]], None)
            assert send_message(users[0], conversation.id, "waiting for a worker")["ok"]
            db.session.remove()
        status, body = get_health(app)
        assert status == 200 and body["status"] == "degraded" and "down" not in body
        assert body["writes"]["status"] == "stuck" and body["writes"]["waiting"] == 1
        with app.app_context():
            assert write_buffer().flush(store_batch).stored == 1
            db.session.remove()
        status, body = get_health(app)
        assert status == 200 and body["status"] == "ok"
        assert body["writes"] == {"status": "ok", "waiting": 0, "oldest_seconds": 0.0}
    finally:
        with app.app_context():
            for table in reversed(db.metadata.sorted_tables):
                db.session.execute(table.delete())
            db.session.commit()
            db.engine.dispose()
        _drop_redis_keys(app)
