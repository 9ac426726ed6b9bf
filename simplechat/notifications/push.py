"""Web Push (RFC 8030, 8291, 8292): the VAPID keys, a user's subscriptions (one per device),
and sending one encrypted push (aes128gcm, with pywebpush) to one subscription through the
webhooks' address rule and deadline."""

from __future__ import annotations

import base64
import binascii
import hashlib
import http.client
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from flask import current_app
from py_vapid import Vapid02
from pywebpush import WebPusher
from sqlalchemy import delete, select

from simplechat.answers import error
from simplechat.extensions import db
from simplechat.models import PushSubscription, UserSession
from simplechat.webhooks.delivery import post_checked
from simplechat.webhooks.hooks import UnsafeURL, checked_addresses

MESSAGE, CLEAR = "message", "clear"
PREVIEW_MAX = 200
ENDPOINT_MAX = 2000
PUSH_TTL = 24 * 3600  # seconds a push service keeps a push for a device that is away
SENT, GONE, RETRY, REFUSED = "sent", "gone", "retry", "refused"


# --------------------------------------------------------------------------- keys
def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def generate_keys() -> tuple[str, str]:
    """A new VAPID key pair in the Web Push form: (public point, private scalar)."""
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key().public_bytes(serialization.Encoding.X962,
                                           serialization.PublicFormat.UncompressedPoint)
    return b64url(public), b64url(key.private_numbers().private_value.to_bytes(32, "big"))


def push_configured() -> bool:
    config = current_app.config
    return bool(config.get("WEBPUSH_VAPID_PUBLIC_KEY") and config.get("WEBPUSH_VAPID_PRIVATE_KEY"))


def public_key() -> str | None:
    """The VAPID public key the browser subscribes with, None while push is off."""
    return current_app.config["WEBPUSH_VAPID_PUBLIC_KEY"] if push_configured() else None


# --------------------------------------------------------------------------- subscriptions
def _key_of(value: object, size: int, first: int | None = None) -> str | None:
    if not isinstance(value, str) or not 0 < len(value) <= 128:
        return None
    try:
        raw = unb64url(value)
    except (binascii.Error, ValueError):
        return None
    if len(raw) != size or (first is not None and raw[0] != first):
        return None
    return b64url(raw)


def add_subscription(user_id: int, session_id: int | None, data: object) -> dict:
    """Record the browser's PushSubscription JSON (``endpoint``, ``keys.p256dh``,
    ``keys.auth``) for the user: ``{"ok": true, "id"}``. The same endpoint again is the same
    device: its row is updated (and moves to this user). ``invalid`` for a malformed
    subscription, or an endpoint the webhooks' address rule refuses (``reason`` says why)."""
    if not push_configured():
        return error("not_found")
    if not isinstance(data, dict) or not {"endpoint", "keys"} <= set(data):
        return error("invalid")
    endpoint, keys = data["endpoint"], data["keys"]
    if not isinstance(endpoint, str) or not 0 < len(endpoint) <= ENDPOINT_MAX \
            or not isinstance(keys, dict):
        return error("invalid")
    p256dh = _key_of(keys.get("p256dh"), 65, 0x04)
    auth = _key_of(keys.get("auth"), 16)
    if p256dh is None or auth is None:
        return error("invalid")
    try:
        checked_addresses(endpoint, current_app.config["WEBHOOK_ALLOW_PRIVATE"])
    except UnsafeURL as exc:
        return error("invalid", reason=str(exc))
    digest = hashlib.sha256(endpoint.encode()).hexdigest()
    row = db.session.scalar(select(PushSubscription)
                            .where(PushSubscription.endpoint_hash == digest))
    if row is None:
        row = PushSubscription(endpoint=endpoint, endpoint_hash=digest)
        db.session.add(row)
    row.user_id, row.session_id, row.p256dh, row.auth = user_id, session_id or None, p256dh, auth
    row.failures = 0
    db.session.commit()
    return {"ok": True, "id": row.id}


def delete_subscription(user_id: int, subscription_id: int) -> bool:
    """Forget one of the user's subscriptions; False if they have none of that id."""
    gone = db.session.execute(delete(PushSubscription).where(
        PushSubscription.id == subscription_id, PushSubscription.user_id == user_id)).rowcount
    db.session.commit()
    return bool(gone)


@dataclass(frozen=True)
class Target:
    """A subscription as a send needs it (no database row held while sending)."""

    id: int
    user_id: int
    session_id: int | None
    endpoint: str
    p256dh: str
    auth: str


def live_targets(user_ids: list[int]) -> list[Target]:
    """The subscriptions of these users whose login has not ended (or that have none)."""
    if not user_ids:
        return []
    rows = db.session.execute(
        select(PushSubscription.id, PushSubscription.user_id, PushSubscription.session_id,
               PushSubscription.endpoint, PushSubscription.p256dh, PushSubscription.auth)
        .outerjoin(UserSession, UserSession.id == PushSubscription.session_id)
        .where(PushSubscription.user_id.in_(user_ids),
               PushSubscription.session_id.is_(None) | UserSession.ended_at.is_(None)))
    return [Target(*row) for row in rows]


# --------------------------------------------------------------------------- sending
def push_payload(kind: str, conversation_id: int, title: str = "", body: str = "",
                 url: str = "") -> dict:
    return {"type": kind, "conversation_id": conversation_id,
            "tag": f"conversation-{conversation_id}", "title": title,
            "body": body[:PREVIEW_MAX], "url": url}


class _VapidCache:
    """A VAPID header per push service (its origin), signed once and used until an hour before
    it expires (the claims live 12 hours): signing costs more than the push."""

    LIFETIME = 12 * 3600

    def __init__(self):
        self._signed: dict[tuple[str, str], tuple[float, str]] = {}
        self._lock = threading.Lock()

    def header(self, private_key: str, subject: str, endpoint: str) -> str:
        parts = urlsplit(endpoint)
        audience = f"{parts.scheme}://{parts.netloc}"
        now = time.time()
        with self._lock:
            found = self._signed.get((private_key, audience))
            if found and found[0] - 3600 > now:
                return found[1]
        expires = int(now) + self.LIFETIME
        signer = Vapid02.from_raw(private_key.encode())
        header = signer.sign({"aud": audience, "sub": subject, "exp": expires})["Authorization"]
        with self._lock:
            self._signed[(private_key, audience)] = (expires, header)
        return header


_vapid = _VapidCache()


def encrypted_request(target: Target, payload: dict, config) -> tuple[bytes, dict[str, str]]:
    """The body (aes128gcm for the subscription's keys) and headers of one push."""
    data = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    pusher = WebPusher({"endpoint": target.endpoint,
                        "keys": {"p256dh": target.p256dh, "auth": target.auth}})
    body = pusher.encode(data, "aes128gcm")["body"]
    headers = {
        "Authorization": _vapid.header(config["WEBPUSH_VAPID_PRIVATE_KEY"],
                                       config["WEBPUSH_SUBJECT"], target.endpoint),
        "Content-Encoding": "aes128gcm", "Content-Type": "application/octet-stream",
        "TTL": str(PUSH_TTL), "Urgency": "high" if payload["type"] == MESSAGE else "normal",
        "User-Agent": "SimpleChat-Push/1",
    }
    return body, headers


def send_push(target: Target, payload: dict, config,
              encrypt: Callable = encrypted_request) -> tuple[str, str]:
    """One push: (outcome, what happened). ``gone`` when the push service answers 404/410 (the
    subscription is dead), ``refused`` when the address rule refuses the endpoint, ``retry``
    when it could not be reached or answered otherwise. ``encrypt`` makes the request (on the
    CPU pool beside the server's loop)."""
    try:
        body, headers = encrypt(target, payload, config)
        answer = post_checked(target.endpoint, body, config["WEBHOOK_ALLOW_PRIVATE"],
                              config["WEBPUSH_DEADLINE"], headers)
    except UnsafeURL as exc:
        return REFUSED, str(exc)
    except (OSError, http.client.HTTPException) as exc:
        return RETRY, f"{type(exc).__name__}: {exc}"
    if 200 <= answer.status < 300:
        return SENT, f"HTTP {answer.status}"
    if answer.status in (404, 410):
        return GONE, f"HTTP {answer.status}"
    return RETRY, f"HTTP {answer.status}"
