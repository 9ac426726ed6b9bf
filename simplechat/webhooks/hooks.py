"""Webhooks of a conversation: making, listing and deleting them, and the address rule.
Outgoing: every new message POSTed to a URL (webhooks.delivery). Incoming: a secret URL that
posts into a conversation as the hook's bot user. Outgoing URLs must resolve to public
addresses only unless WEBHOOK_ALLOW_PRIVATE is set.
"""

from __future__ import annotations

import ipaddress
import logging
import secrets
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from flask import current_app
from sqlalchemy import select

from simplechat.extensions import db
from simplechat.infra.membership import members_changed
from simplechat.infra.secrets import token_hash
from simplechat.models import Conversation, Participant, User, Webhook

log = logging.getLogger(__name__)

OUTGOING, INCOMING = "outgoing", "incoming"
SIGNATURE_HEADER = "X-SimpleChat-Signature"
URL_MAX = 2000


class UnsafeURL(ValueError):
    """A webhook URL that is not http(s), or whose host is (or resolves to) a private address."""


@dataclass(frozen=True)
class NewHook:
    webhook: Webhook
    secret: str  # outgoing: the signing secret; incoming: the secret of its URL


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


