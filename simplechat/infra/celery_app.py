"""Celery bound to the app factory: every task runs inside an application context."""

from __future__ import annotations

import logging

from celery import Celery, Task, bootsteps
from celery.worker.consumer import Consumer as CeleryConsumer
from flask import Flask
from kombu import Exchange, Queue
from sqlalchemy.exc import OperationalError

from simplechat.infra.redis_client import Sentinels

log = logging.getLogger(__name__)

# Tasks that call out to other servers, routed to CELERY_WEBHOOK_QUEUE (by name: the task's
# module need not be imported to route it).
OUTGOING_TASKS = ("simplechat.deliver_webhook", "simplechat.run_slash_command",
                  "simplechat.notify_messages", "simplechat.notify_pending",
                  "simplechat.push_held", "simplechat.retry_push",
                  "simplechat.clear_notifications", "simplechat.send_password_reset",
                  "simplechat.send_digest")

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
    transport_options = _transport_options(app.config["CELERY_VISIBILITY_TIMEOUT"])
    sentinels = Sentinels.from_config(app.config)
    if broker and sentinels is not None and broker.startswith("redis://"):
        # kombu's Sentinel transport: it asks the sentinels for the primary at each connect,
        # so a worker (and a web process publishing) follows a failover by reconnecting.
        broker = sentinels.broker_url(broker)
        transport_options.update(master_name=sentinels.master,
                                 sentinel_kwargs=sentinels.sentinel_options())
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
        broker_transport_options=transport_options,
        broker_connection_retry_on_startup=True,
        worker_consumer="simplechat.infra.celery_app:Consumer",
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
        imports=("simplechat.messaging.tasks", "simplechat.profile.export"),
        # Periodic tasks, for `celery beat` (by name: this floor imports none of them).
        beat_schedule={
            "remove-expired-exports": {"task": "simplechat.remove_expired_exports",
                                       "schedule": 3600.0},
        },
    )
    celery.set_default()
    app.extensions["celery"] = celery
    celery.steps["consumer"].add(FlushOnConnect)
    return celery


def _queue(name: str) -> Queue:
    """A queue bound to an exchange of its own name, as Celery makes its default queue."""
    return Queue(name, Exchange(name), routing_key=name)


class Consumer(CeleryConsumer):
    """Celery's consumer, surviving the loss of its broker connection.

    Celery 5.7 closes a lost connection after collecting it, and kombu's Redis channel, asked
    on close to give back its unacknowledged tasks, needs the client that collecting removed:
    the AttributeError ("'NoneType' object has no attribute 'hostname'") is not one of the
    connection errors the close ignores, and the worker stopped for good ("Unrecoverable
    error") on a Redis restart while it held tasks. Here that close gives up quietly: the
    tasks stay in the broker's unacknowledged set, which the visibility timeout hands out
    again, as after a worker's death."""

    def on_connection_error_after_connected(self, exc):
        lost = self.connection
        if lost is not None:
            close = lost.close

            def close_collected():
                try:
                    close()
                except AttributeError:
                    log.warning("the lost broker connection could not be closed cleanly; its "
                                "unacknowledged tasks return after the visibility timeout")

            lost.close = close_collected
        super().on_connection_error_after_connected(exc)


class FlushOnConnect(bootsteps.StartStopStep):
    """Each time a worker's consumer connects to the broker (at start, and again after losing
    it: a Redis restart, a Sentinel failover) it queues a flush that takes the buffer over:
    what a dead worker left, a batch whose flush the lost connection cut off, and payloads
    whose flush task was lost with the old primary (while the flag of that task lives on, the
    sends after it queue none)."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def start(self, c) -> None:
        try:
            c.app.send_task("simplechat.flush_writes", kwargs={"take_over": True})
        except Exception:  # the connection went again: the next start queues it
            log.warning("could not queue a flush of the write buffer", exc_info=True)


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
