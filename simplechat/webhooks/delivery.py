"""Delivering outgoing webhooks: every newly stored message POSTed as JSON to each hook of its
conversation, signed (``X-SimpleChat-Signature: sha256=<HMAC-SHA256 of the body>``), by a
Celery task that retries with backoff and records a final failure in GenericErrorLog.

Deliveries are queued by the worker that stores messages (messaging.tasks.store_batch), once
per newly stored message and hook whose maker is still an active participant (or that was made
on the command line), on CELERY_WEBHOOK_QUEUE: nothing on the send path or the storing waits
for them. The request goes to the address that was checked (webhooks.hooks.checked_addresses),
checked again at each delivery, and one try takes at most WEBHOOK_DELIVERY_DEADLINE seconds in
all, however slowly the receiver answers.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import hmac
import http.client
import io
import json
import logging
import secrets
import socket
import ssl
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from celery import shared_task
from flask import current_app
from sqlalchemy import Select, select

from simplechat.extensions import db, socketio
from simplechat.models import Participant, User, Webhook
from simplechat.observability.activity import write_error
from simplechat.webhooks.hooks import OUTGOING, SIGNATURE_HEADER, UnsafeURL, checked_addresses

log = logging.getLogger(__name__)

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
    if hook is None or hook.kind != OUTGOING or not _maker_may_read(hook):
        return "gone"
    url, secret, body = hook.url, hook.secret, delivery_body(hook, payload)
    db.session.remove()  # no database connection held while the receiver is slow
    config = current_app.config
    try:
        status = post_signed(url, secret, body, config["WEBHOOK_ALLOW_PRIVATE"],
                             config["WEBHOOK_DELIVERY_DEADLINE"])
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


class _Deadline:
    """The moment a delivery try ends; each wait on the network gets only what is left of it."""

    def __init__(self, seconds: float):
        self._end = time.monotonic() + seconds

    def left(self) -> float:
        """Seconds left; TimeoutError (an OSError) once none are."""
        left = self._end - time.monotonic()
        if left <= 0:
            raise TimeoutError("the delivery's deadline passed")
        return left


class _DeadlineSocket:
    """A connected socket (plain or TLS) whose sends and reads all end by one deadline. A
    socket's own timeout counts per call, so a receiver sending a byte now and then would hold
    a plain one for ever; here each call waits only for what is left of the deadline."""

    def __init__(self, sock: socket.socket, deadline: _Deadline):
        self._sock = sock
        self._deadline = deadline
        # As a socket's own makefile: http.client closes the connection as soon as it has the
        # answer's headers when the receiver closes after it; the socket itself closes when
        # the answer's reader is closed too, so that its body can still be read.
        self._readers = 0
        self._closing = False

    def sendall(self, data: bytes) -> None:
        view = memoryview(data).cast("B")
        while view:
            self._sock.settimeout(self._deadline.left())
            view = view[self._sock.send(view):]

    def recv_into(self, buffer, nbytes: int = 0) -> int:
        self._sock.settimeout(self._deadline.left())
        return self._sock.recv_into(buffer, nbytes)

    def makefile(self, mode: str = "rb", *args, **kwargs) -> io.BufferedReader:
        """What http.client reads the answer from: every refill goes through recv_into."""
        self._readers += 1
        return io.BufferedReader(_DeadlineReader(self))

    def reader_closed(self) -> None:
        self._readers -= 1
        if self._closing and self._readers <= 0:
            self._sock.close()

    def close(self) -> None:
        self._closing = True
        if self._readers <= 0:
            self._sock.close()


class _DeadlineReader(io.RawIOBase):
    def __init__(self, sock: _DeadlineSocket):
        super().__init__()
        self._sock = sock

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        return self._sock.recv_into(buffer)

    def close(self) -> None:
        if not self.closed:
            super().close()
            self._sock.reader_closed()


class _PinnedHTTP(http.client.HTTPConnection):
    """A connection to an address already checked, whatever the host's DNS answers now,
    connecting, sending and reading the answer within one deadline."""

    def __init__(self, host: str, port: int, address: str, deadline: _Deadline):
        super().__init__(host, port)
        self._address = address
        self._deadline = deadline

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self._deadline.left())
        try:
            sock = self._secure(sock)
        except BaseException:
            sock.close()
            raise
        self.sock = _DeadlineSocket(sock, self._deadline)

    def _secure(self, sock: socket.socket) -> socket.socket:
        return sock


class _PinnedHTTPS(_PinnedHTTP):
    default_port = http.client.HTTPS_PORT

    def _secure(self, sock: socket.socket) -> socket.socket:
        secured = ssl.create_default_context().wrap_socket(
            sock, server_hostname=self.host, do_handshake_on_connect=False)
        try:  # the plain socket is the TLS one's now: closing that closes both
            secured.settimeout(self._deadline.left())  # one handshake call waits at most this
            secured.do_handshake()
        except BaseException:
            secured.close()
            raise
        return secured


# Names are resolved on these threads, so that the deadline covers the lookup too: the resolver's
# own timeouts and retries (getaddrinfo cannot be given one) could hold a delivery far longer.
_RESOLVER = concurrent.futures.ThreadPoolExecutor(max_workers=4,
                                                  thread_name_prefix="webhook-resolve")


def _resolve_within(url: str, allow_private: bool, deadline: _Deadline
                    ) -> tuple[str, int, list[str]]:
    """checked_addresses(url), or TimeoutError once the deadline passes first (the lookup is
    left to finish on its thread)."""
    lookup = _RESOLVER.submit(checked_addresses, url, allow_private)
    try:
        return lookup.result(timeout=deadline.left())
    except concurrent.futures.TimeoutError:
        lookup.cancel()
        raise TimeoutError("the receiver's name did not resolve before the deadline") from None


def post_signed(url: str, secret: str, body: bytes, allow_private: bool,
                deadline: float = 10.0) -> int:
    """POST ``body`` to ``url`` with its signature; the answer's status. Redirects are not
    followed. Connecting, sending and reading the answer take at most ``deadline`` seconds
    together. Raises UnsafeURL, or OSError (TimeoutError past the deadline)/HTTPException when
    the receiver cannot be reached or does not answer in time."""
    return exchange_signed(url, secret, body, allow_private, deadline).status


@dataclass(frozen=True)
class Answer:
    status: int
    content_type: str
    body: bytes  # at most ANSWER_MAX + 1 bytes: more means it was longer than that


ANSWER_MAX = 65536


def exchange_signed(url: str, secret: str, body: bytes, allow_private: bool,
                    deadline: float = 10.0, *, content_type: str = "application/json",
                    event: str = "message", headers: dict[str, str] | None = None) -> Answer:
    """post_signed's request (``content_type``, ``X-SimpleChat-Event: event`` and any other
    ``headers``), and the receiver's answer: status, content type and body, read within the
    same deadline."""
    return post_checked(url, body, allow_private, deadline, {
        "Content-Type": content_type, "User-Agent": "SimpleChat-Webhook/1",
        SIGNATURE_HEADER: signature(secret, body), "X-SimpleChat-Event": event,
        **(headers or {})})


def post_checked(url: str, body: bytes, allow_private: bool, deadline: float,
                 headers: dict[str, str]) -> Answer:
    """POST ``body`` with ``headers`` to ``url`` at an address the webhooks' rule allows
    (checked_addresses; the connection pinned to it), within ``deadline`` seconds in all; the
    answer. Raises UnsafeURL, or OSError/HTTPException as post_signed. Web Push uses it too."""
    until = _Deadline(deadline)
    host, port, addresses = _resolve_within(url, allow_private, until)
    parts = urlsplit(url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    pinned = _PinnedHTTPS if parts.scheme == "https" else _PinnedHTTP
    conn = pinned(host, port, addresses[0], until)
    try:
        conn.request("POST", path, body=body, headers=headers)
        response = conn.getresponse()
        return Answer(response.status, response.getheader("Content-Type") or "",
                      response.read(ANSWER_MAX + 1))
    finally:
        conn.close()


def queue_deliveries(payloads: list[dict]) -> int:
    """Queue one delivery per outgoing hook of each newly stored message's conversation."""
    if not payloads:
        return 0
    conversation_ids = {p["conversation_id"] for p in payloads}
    hooks: dict[int, list[int]] = {}
    for hook_id, cid in db.session.execute(
        _readable_hooks(select(Webhook.id, Webhook.conversation_id))
        .where(Webhook.kind == OUTGOING, Webhook.conversation_id.in_(conversation_ids))
    ):
        hooks.setdefault(cid, []).append(hook_id)
    queued = 0
    for payload in payloads:
        for hook_id in hooks.get(payload["conversation_id"], ()):
            _queue(hook_id, payload)
            queued += 1
    return queued


def _readable_hooks(query: Select) -> Select:
    """``query`` of webhooks kept to those whose maker may still read the conversation: an
    active participant. A hook made by a participant (on the settings page) stops when that
    user leaves or is deactivated; one made on the command line (no maker) goes on."""
    return (query
            .outerjoin(Participant, (Participant.conversation_id == Webhook.conversation_id)
                       & (Participant.user_id == Webhook.created_by_id))
            .outerjoin(User, User.id == Participant.user_id)
            .where(Webhook.created_by_id.is_(None) | User.is_active.is_(True)))


def _maker_may_read(hook: Webhook) -> bool:
    """Checked again at each try: a delivery queued, or retrying, when its maker left or was
    deactivated is dropped."""
    return hook.created_by_id is None or db.session.scalar(
        _readable_hooks(select(Webhook.id)).where(Webhook.id == hook.id)) is not None


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
