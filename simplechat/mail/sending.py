"""Outgoing mail through Flask-Mailman, sent only off the request path: by a Celery task on a
worker, or (tasks inline: the embedded default, tests) by a background task beside the caller,
so no request or socket event ever waits on an SMTP server."""

from __future__ import annotations

import logging
from collections.abc import Callable
from urllib.parse import urljoin

from flask import current_app
from flask_mailman import EmailMultiAlternatives

from simplechat.extensions import db, mail, socketio

log = logging.getLogger(__name__)


def mail_configured() -> bool:
    """Whether this server sends mail: an SMTP server, and a public address for its links."""
    config = current_app.config
    return bool(config.get("MAIL_SERVER")) and bool(config.get("SITE_URL"))


def site_link(path: str) -> str:
    """The public address of ``path`` on this site (``SITE_URL`` + path)."""
    return urljoin(current_app.config["SITE_URL"].rstrip("/") + "/", path.lstrip("/"))


def send_mail(to: str, subject: str, text: str, html: str,
              headers: dict[str, str] | None = None) -> None:
    """Send one mail with a plain text part and an HTML alternative. Raises on an SMTP
    failure (the task decides whether to retry). Never call it on a request's path."""
    message = EmailMultiAlternatives(subject=subject, body=text, to=[to], headers=headers or {},
                                     connection=mail.get_connection())
    message.attach_alternative(html, "text/html")
    message.send()


def run_off_request(task, *args) -> None:
    """Run Celery ``task`` with ``args`` away from the caller: queued for a worker, or, when
    tasks run inline (no broker), in a background task of this process with its own app
    context, after the caller has answered."""
    celery = current_app.extensions["celery"]
    if not celery.conf.task_always_eager:
        task.apply_async(args=args)
        return
    beside(lambda: task.run(*args), task.name)


def beside(work: Callable[[], object], what: str) -> None:
    """``work()`` in a background task of this process, inside an app context; a failure is
    logged, never raised into the caller."""
    app = current_app._get_current_object()

    def run() -> None:
        with app.app_context():
            try:
                work()
            except Exception:
                log.exception("%s failed", what)
            finally:
                db.session.remove()

    socketio.start_background_task(run)
