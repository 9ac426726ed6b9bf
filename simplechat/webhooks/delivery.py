"""Delivering outgoing webhooks: every newly stored message POSTed as JSON to each hook of its
conversation, signed (``X-SimpleChat-Signature: sha256=<HMAC-SHA256 of the body>``), by a
Celery task that retries with backoff and records a final failure in GenericErrorLog.

Deliveries are queued by the worker that stores messages (messaging.tasks.store_batch), once
per newly stored message: nothing on the send path waits for them. The request goes to the
address that was checked (webhooks.hooks.checked_addresses), checked again at each delivery.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import logging
import secrets
import socket
import ssl
from urllib.parse import urlsplit

from celery import shared_task
from flask import current_app
from sqlalchemy import select

from simplechat.extensions import db, socketio
from simplechat.models import Participant, Webhook
from simplechat.observability.activity import write_error
from simplechat.webhooks.hooks import OUTGOING, SIGNATURE_HEADER, UnsafeURL, checked_addresses

log = logging.getLogger(__name__)

DELIVERY_TIMEOUT = 10  # seconds for connecting, and for the answer
BACKOFF_FIRST = 2.0  # seconds before the first retry; doubled each time, up to BACKOFF_MAX
BACKOFF_MAX = 60.0
RETRY = "retry"



@shared_task(name="simplechat.deliver_webhook", bind=True, max_retries=6)
def deliver_webhook(self, webhook_id: int, payload: dict) -> str:
    """POST one message to an outgoing webhook, signed; retried with backoff while the
    receiver is down or answers other than 2xx, then recorded as failed in GenericErrorLog."""
    outcome = attempt_delivery(webhook_id, payload, self.request.retries, self.max_retries)
    if outcome == RETRY:
        raise self.retry(countdown=backoff(self.request.retries))
    return outcome


def attempt_delivery(webhook_id: int, payload: dict, retries: int, max_retries: int) -> str:
    """One try of a delivery: delivered, gone, refused, failed (the last try), or retry."""
    hook = db.session.get(Webhook, webhook_id)
    if hook is None or hook.kind != OUTGOING:
        return "gone"
    url, secret, body = hook.url, hook.secret, delivery_body(hook, payload)
    db.session.remove()  # no database connection held while the receiver is slow
    try:
        status = post_signed(url, secret, body, current_app.config["WEBHOOK_ALLOW_PRIVATE"])
        if 200 <= status < 300:
            return "delivered"
        problem = f"HTTP {status}"
    except UnsafeURL as exc:
        write_error("tasks.deliver_webhook", "UnsafeURL", f"webhook {webhook_id}: {exc}",
                    None, None)
        return "refused"
    except (OSError, http.client.HTTPException) as exc:
        problem = f"{type(exc).__name__}: {exc}"
    if retries >= max_retries:
        write_error("tasks.deliver_webhook", "WebhookDeliveryFailed",
                    f"webhook {webhook_id} ({url}): message {payload.get('id')} not delivered "
                    f"after {retries + 1} tries: {problem}", None, None)
        return "failed"
    log.info("webhook %s: try %d failed (%s); retrying", webhook_id, retries + 1, problem)
    return RETRY


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class _PinnedHTTP(http.client.HTTPConnection):
    """A connection to an address already checked, whatever the host's DNS answers now."""

    def __init__(self, host: str, port: int, address: str, timeout: float):
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, address: str, timeout: float):
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._address = address

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def post_signed(url: str, secret: str, body: bytes, allow_private: bool) -> int:
    """POST ``body`` to ``url`` with its signature; the answer's status. Redirects are not
    followed. Raises UnsafeURL, or OSError/HTTPException when the receiver cannot be reached."""
    host, port, addresses = checked_addresses(url, allow_private)
    parts = urlsplit(url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    pinned = _PinnedHTTPS if parts.scheme == "https" else _PinnedHTTP
    conn = pinned(host, port, addresses[0], DELIVERY_TIMEOUT)
    try:
        conn.request("POST", path, body=body, headers={
            "Content-Type": "application/json", "User-Agent": "SimpleChat-Webhook/1",
            SIGNATURE_HEADER: signature(secret, body), "X-SimpleChat-Event": "message"})
        response = conn.getresponse()
        response.read(65536)
        return response.status
    finally:
        conn.close()


def queue_deliveries(payloads: list[dict]) -> int:
    """Queue one delivery per outgoing hook of each newly stored message's conversation."""
    if not payloads:
        return 0
    conversation_ids = {p["conversation_id"] for p in payloads}
    hooks: dict[int, list[int]] = {}
    # A hook made by a participant (on the settings page) stops when that user leaves: it
    # must not go on reading a conversation its maker can no longer read.
    for hook_id, cid in db.session.execute(
        select(Webhook.id, Webhook.conversation_id)
        .outerjoin(Participant, (Participant.conversation_id == Webhook.conversation_id)
                   & (Participant.user_id == Webhook.created_by_id))
        .where(Webhook.kind == OUTGOING, Webhook.conversation_id.in_(conversation_ids),
               Webhook.created_by_id.is_(None) | Participant.user_id.is_not(None))
    ):
        hooks.setdefault(cid, []).append(hook_id)
    queued = 0
    for payload in payloads:
        for hook_id in hooks.get(payload["conversation_id"], ()):
            _queue(hook_id, payload)
            queued += 1
    return queued


def _queue(hook_id: int, payload: dict) -> None:
    celery = current_app.extensions["celery"]
    if not celery.conf.task_always_eager:
        deliver_webhook.apply_async(args=(hook_id, payload))
        return
    # Tasks run inline (embedded default, tests): deliver beside the caller, not inside it,
    # with the task's tries and backoff.
    app = current_app._get_current_object()
    max_retries = deliver_webhook.max_retries

    def run() -> None:
        with app.app_context():
            try:
                for retries in range(max_retries + 1):
                    if attempt_delivery(hook_id, payload, retries, max_retries) != RETRY:
                        return
                    socketio.sleep(backoff(retries))
            except Exception:
                log.exception("delivery to webhook %s failed", hook_id)
            finally:
                db.session.remove()

    socketio.start_background_task(run)


def delivery_body(hook: Webhook, payload: dict) -> bytes:
    return json.dumps({"event": "message", "webhook_id": hook.id,
                       "conversation_id": payload["conversation_id"], "message": payload},
                      separators=(",", ":"), ensure_ascii=False).encode()


def backoff(retries: int) -> float:
    """Seconds before retry number ``retries + 1``: doubling, capped, with jitter."""
    return min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** retries) * (0.75 + secrets.randbelow(500) / 1000)
