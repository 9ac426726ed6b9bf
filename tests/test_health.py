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
