"""Webhooks. Outgoing: every new message of a conversation POSTed as JSON to a URL, signed
(``X-SimpleChat-Signature: sha256=<HMAC-SHA256 of the body>``), by a Celery task that retries
with backoff and records a final failure in GenericErrorLog. Incoming: a secret URL that posts
into a conversation as the hook's bot user.

Deliveries are queued by the worker that stores messages (tasks.store_batch), once per newly
stored message: nothing on the send path waits for them. Outgoing URLs must resolve to public
addresses only (checked again at each delivery, and the request goes to the checked address)
unless WEBHOOK_ALLOW_PRIVATE is set.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import ipaddress
import json
import logging
import secrets
import socket
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

from flask import current_app
from sqlalchemy import select

from ..auth.sessions import token_hash
from ..chat.membership import members_changed
from ..extensions import db
from ..models import Conversation, Participant, User, Webhook

log = logging.getLogger(__name__)

OUTGOING, INCOMING = "outgoing", "incoming"
SIGNATURE_HEADER = "X-SimpleChat-Signature"
URL_MAX = 2000
DELIVERY_TIMEOUT = 10  # seconds for connecting, and for the answer
BACKOFF_FIRST = 2.0  # seconds before the first retry; doubled each time, up to BACKOFF_MAX
BACKOFF_MAX = 60.0
RETRY = "retry"


class UnsafeURL(ValueError):
    """A webhook URL that is not http(s), or whose host is (or resolves to) a private address."""


@dataclass(frozen=True)
class NewHook:
    webhook: Webhook
    secret: str  # outgoing: the signing secret; incoming: the secret of its URL


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


# --------------------------------------------------------------------------- addresses


def _public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def checked_addresses(url: str, allow_private: bool) -> tuple[str, int, list[str]]:
    """The host, port and resolved addresses of an outgoing URL; UnsafeURL if it may not be
    called: not http(s), credentials in it, no host, or any address not public."""
    if len(url) > URL_MAX:
        raise UnsafeURL(f"a URL has at most {URL_MAX} characters")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UnsafeURL("the URL must be http:// or https:// with a host")
    if parts.username or parts.password:
        raise UnsafeURL("the URL must not carry a user name or password")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise UnsafeURL("the URL's port is not a number") from exc
    try:
        infos = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise UnsafeURL(f"the host {parts.hostname!r} does not resolve") from exc
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    if not allow_private:
        refused = [a for a in addresses if not _public(a)]
        if refused:
            raise UnsafeURL(f"{parts.hostname} resolves to a private or local address "
                            f"({', '.join(refused)}); set WEBHOOK_ALLOW_PRIVATE=1 to allow it")
    return parts.hostname, port, addresses


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


# --------------------------------------------------------------------------- managing


def create_outgoing(conversation: Conversation, url: str, creator: User | None = None
                    ) -> NewHook:
    checked_addresses(url, current_app.config["WEBHOOK_ALLOW_PRIVATE"])
    secret = secrets.token_hex(32)
    hook = Webhook(conversation_id=conversation.id, kind=OUTGOING, url=url, secret=secret,
                   created_by_id=creator.id if creator else None)
    db.session.add(hook)
    db.session.commit()
    return NewHook(hook, secret)


def create_incoming(conversation: Conversation, bot: User | None = None,
                    name: str = "Webhook", creator: User | None = None) -> NewHook:
    """An incoming hook posting as ``bot`` (a new bot user when not given), who is made a
    participant of the conversation."""
    if bot is None:
        username = f"hook-{secrets.token_hex(4)}"
        bot = User(username=username, first_name=name[:64], last_name="",
                   email=f"{username}@bots.invalid", password_hash="!", is_bot=True)
        db.session.add(bot)
        db.session.flush()
    elif not bot.is_bot:
        raise ValueError(f"{bot.username} is not a bot user")
    joined = db.session.scalar(select(Participant).where(
        Participant.conversation_id == conversation.id, Participant.user_id == bot.id))
    if joined is None:
        db.session.add(Participant(conversation_id=conversation.id, user_id=bot.id))
    secret = secrets.token_urlsafe(32)
    hook = Webhook(conversation_id=conversation.id, kind=INCOMING, secret_hash=token_hash(secret),
                   bot_user_id=bot.id, created_by_id=creator.id if creator else None)
    db.session.add(hook)
    db.session.commit()
    if joined is None:
        members_changed([conversation.id], [bot.id])
    return NewHook(hook, secret)


def conversation_webhooks(conversation_id: int) -> list[tuple[Webhook, User | None]]:
    """A conversation's webhooks, oldest first, each with the user who made it (None: made
    on the command line, or that user is gone)."""
    return [(hook, creator) for hook, creator in db.session.execute(
        select(Webhook, User).outerjoin(User, User.id == Webhook.created_by_id)
        .where(Webhook.conversation_id == conversation_id).order_by(Webhook.id))]


def delete_webhook(conversation_id: int, webhook_id: int) -> bool:
    """Delete one webhook of this conversation; False if it has none by that id."""
    hook = db.session.get(Webhook, webhook_id)
    if hook is None or hook.conversation_id != conversation_id:
        return False
    db.session.delete(hook)
    db.session.commit()
    return True


def incoming_hook_sender(secret: str) -> tuple[User, int] | None:
    """The bot user and conversation of an incoming hook's secret, if it is live."""
    if not secret or len(secret) > 100:
        return None
    found = db.session.execute(
        select(Webhook, User).join(User, User.id == Webhook.bot_user_id)
        .where(Webhook.secret_hash == token_hash(secret), Webhook.kind == INCOMING)
    ).first()
    if found is None or not found[1].is_active:
        return None
    return found[1], found[0].conversation_id


# --------------------------------------------------------------------------- delivering


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
    from ..extensions import socketio
    from ..tasks import attempt_delivery, deliver_webhook

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
