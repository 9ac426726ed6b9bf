"""Webhook deliveries wait on a Celery queue of their own (CELERY_WEBHOOK_QUEUE), under their
unchanged task name, so a worker for that queue alone keeps them away from the storing of
messages; a worker started with no -Q consumes both queues, and docker-compose.yml runs one
worker for each."""

from __future__ import annotations

import base64
import json
import uuid
from pathlib import Path

import pytest
import redis as redis_lib
import yaml
from conftest import app_in_context

from simplechat.extensions import db
from simplechat.messaging.tasks import flush_writes
from simplechat.models import Webhook
from simplechat.webhooks import delivery
from tests.test_deploy_files import env_example, interpolate, run_in_service_env
from tests.test_webhooks import outgoing

QUEUE = f"simplechat-test-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def broker(redis_url):
    if not redis_url:
        pytest.skip("needs TEST_REDIS_URL: the queues are Redis lists")
    client = redis_lib.Redis.from_url(redis_url)
    yield client
    for queue in (QUEUE, f"{QUEUE}-webhooks", f"{QUEUE}-outbound"):
        client.delete(queue, f"_kombu.binding.{queue}")
    client.close()


@pytest.fixture
def app(database_uri, redis_url, broker):
    """Tasks published to the broker, not run inline: no worker takes them here."""
    yield from app_in_context(database_uri, redis_url, CELERY_TASK_ALWAYS_EAGER=False,
                              CELERY_BROKER_URL=redis_url, CELERY_QUEUE=QUEUE,
                              WEBHOOK_ALLOW_PRIVATE=True)


def waiting(broker, queue: str) -> list[dict]:
    """The task messages waiting on ``queue``, oldest first."""
    return [json.loads(raw) for raw in reversed(broker.lrange(queue, 0, -1))]


def test_a_delivery_waits_on_the_webhook_queue_under_its_own_name(app, broker, runner,
                                                                   make_user,
                                                                   make_conversation):
    ada, bob = make_user("ada"), make_user("bob")
    conversation = make_conversation(ada, bob)
    outgoing(runner, conversation.id, "http://127.0.0.1:9/hook")
    hook_id = db.session.query(Webhook.id).scalar()
    payload = {"id": "0190", "conversation_id": conversation.id, "message": "hi"}
    assert delivery.queue_deliveries([payload]) == 1
    flush_writes.apply_async()
    [queued] = waiting(broker, f"{QUEUE}-webhooks")
    assert queued["headers"]["task"] == "simplechat.deliver_webhook"
    args, _, _ = json.loads(base64.b64decode(queued["body"]))
    assert args == [hook_id, payload]
    # Everything else keeps to CELERY_QUEUE.
    assert [m["headers"]["task"] for m in waiting(broker, QUEUE)] == ["simplechat.flush_writes"]


def test_a_worker_started_without_q_consumes_both_queues(app):
    celery = app.extensions["celery"]
    assert set(celery.amqp.queues) == {QUEUE, f"{QUEUE}-webhooks"}
    assert celery.conf.task_default_queue == QUEUE
    route = celery.amqp.router.route({}, "simplechat.deliver_webhook")
    assert route["queue"].name == f"{QUEUE}-webhooks"
    assert celery.amqp.router.route({}, "simplechat.flush_writes")["queue"].name == QUEUE


def test_the_webhook_queue_can_be_named(database_uri, redis_url, broker):
    for app in app_in_context(database_uri, redis_url, CELERY_TASK_ALWAYS_EAGER=False,
                              CELERY_BROKER_URL=redis_url, CELERY_QUEUE=QUEUE,
                              CELERY_WEBHOOK_QUEUE=f"{QUEUE}-outbound"):
        celery = app.extensions["celery"]
        assert set(celery.amqp.queues) == {QUEUE, f"{QUEUE}-outbound"}
        route = celery.amqp.router.route({}, "simplechat.deliver_webhook")
        assert route["queue"].name == f"{QUEUE}-outbound"


def test_compose_runs_a_worker_for_each_queue():
    """The worker consumes CELERY_QUEUE alone and the webhooks worker the queue deliveries are
    routed to, as the app in that service's environment routes them."""
    text = (Path(__file__).resolve().parents[1] / "docker-compose.yml").read_text()
    services = interpolate(yaml.safe_load(text), env_example())["services"]
    queues = {}
    for name in ("worker", "webhooks"):
        command = services[name]["command"]
        assert command[:4] == ["celery", "-A", "celery_worker.celery", "worker"], name
        queues[name] = command[command.index("-Q") + 1]
        assert "," not in queues[name], f"{name} consumes one queue"
    assert queues["worker"] != queues["webhooks"]
    result = run_in_service_env(services["webhooks"], (
        "import celery_worker\n"
        "celery = celery_worker.celery\n"
        "route = celery.amqp.router.route({}, 'simplechat.deliver_webhook')\n"
        f"assert route['queue'].name == {queues['webhooks']!r}, route\n"
        f"assert celery.conf.task_default_queue == {queues['worker']!r}\n"
        "celery.loader.import_default_modules()  # as the worker does\n"
        "assert 'simplechat.deliver_webhook' in celery.tasks\n"
    ))
    assert result.returncode == 0, result.stderr[-3000:]
    assert services["webhooks"]["depends_on"]["migrate"]["condition"] == (
        "service_completed_successfully")
