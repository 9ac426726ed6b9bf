"""Celery bound to the app factory: every task runs inside an application context."""

from __future__ import annotations

from celery import Celery, Task
from celery.signals import worker_ready
from flask import Flask
from kombu import Exchange, Queue
from sqlalchemy.exc import OperationalError

# Tasks that call out to other servers, routed to CELERY_WEBHOOK_QUEUE (by name: the task's
# module need not be imported to route it).
OUTGOING_TASKS = ("simplechat.deliver_webhook",)

# A database that is down or restarting is retried with backoff for about half an hour.
DATABASE_RETRY = {"autoretry_for": (OperationalError,), "retry_backoff": 1,
                  "retry_backoff_max": 30, "retry_jitter": True, "max_retries": 60}


def celery_init_app(app: Flask) -> Celery:
    class FlaskTask(Task):
        def __call__(self, *args, **kwargs):
            with app.app_context():
                return self.run(*args, **kwargs)

    broker = app.config.get("CELERY_BROKER_URL") or app.config.get("REDIS_URL")
    eager = app.config.get("CELERY_TASK_ALWAYS_EAGER")
    if eager is None:
        eager = not broker
    queue = app.config.get("CELERY_QUEUE") or "simplechat"
    webhook_queue = app.config.get("CELERY_WEBHOOK_QUEUE") or f"{queue}-webhooks"
    celery = Celery(app.name, task_cls=FlaskTask)
    celery.conf.update(
        broker_url=broker or "memory://",
        result_backend=None,
        task_ignore_result=True,
        task_always_eager=bool(eager),
        task_eager_propagates=app.testing,
        # Durability: a task is acknowledged only after it ran, and goes back to the queue when
        # the worker running it dies, so a killed worker loses no message.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=4,
        broker_transport_options=_transport_options(app.config["CELERY_VISIBILITY_TIMEOUT"]),
        broker_connection_retry_on_startup=True,
        # Publishing must fail fast when the broker is down, so the sender hears "unavailable".
        task_publish_retry=True,
        task_publish_retry_policy={"max_retries": 2, "interval_start": 0.1,
                                   "interval_step": 0.2, "interval_max": 0.5},
        broker_connection_timeout=2,
        redis_socket_connect_timeout=2,
        redis_socket_timeout=5,
        task_default_queue=queue,
        # Outgoing calls wait on other people's servers: on a queue of their own, so that a
        # worker for it alone (`-Q <CELERY_WEBHOOK_QUEUE>`) keeps them from ever holding up the
        # storing of messages. A worker started with no -Q consumes both queues.
        task_queues=(_queue(queue), _queue(webhook_queue)),
        task_routes={name: {"queue": webhook_queue} for name in OUTGOING_TASKS},
        imports=("simplechat.messaging.tasks",),
    )
    celery.set_default()
    app.extensions["celery"] = celery
    worker_ready.connect(_flush_left_writes, dispatch_uid="simplechat.flush_left_writes")
    return celery


def _queue(name: str) -> Queue:
    """A queue bound to an exchange of its own name, as Celery makes its default queue."""
    return Queue(name, Exchange(name), routing_key=name)


def _flush_left_writes(sender=None, **_) -> None:
    """A starting worker drains what a crashed one left in the write buffer, without waiting
    for the next send to queue a flush; it takes over a dead flusher's lease."""
    sender.app.send_task("simplechat.flush_writes", kwargs={"take_over": True})


def _transport_options(visibility_timeout: int) -> dict:
    """Redis broker options. A dead worker's unacknowledged tasks go back to the queue once
    ``visibility_timeout`` has passed, at the next sweep for them; kombu sweeps only every
    100 s by default (every 10 s, scanning every 10th time), so the sweep is made to keep
    pace with the timeout."""
    return {
        "visibility_timeout": visibility_timeout,
        "unacked_restore_interval": max(1, min(10, visibility_timeout // 3)),
        "unacked_restore_throttle": 1,
    }
