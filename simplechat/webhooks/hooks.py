"""Webhooks of a conversation: making, listing and deleting them, and the address rule.
Outgoing: every new message POSTed to a URL (webhooks.delivery). Incoming: a secret URL that
posts into a conversation as the hook's bot user. Outgoing URLs must resolve to public
addresses only unless WEBHOOK_ALLOW_PRIVATE is set; a conversation has at most
WEBHOOK_MAX_PER_CONVERSATION webhooks.
"""

from __future__ import annotations

import ipaddress
import logging
import secrets
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from flask import current_app
from sqlalchemy import func, select

from simplechat.extensions import db
from simplechat.infra.membership import members_changed
from simplechat.infra.secrets import token_hash
from simplechat.models import Conversation, Participant, User, Webhook
from simplechat.observability.activity import record_activity

log = logging.getLogger(__name__)

OUTGOING, INCOMING = "outgoing", "incoming"
SIGNATURE_HEADER = "X-SimpleChat-Signature"
URL_MAX = 2000


class WebhookRefused(ValueError):
    """A webhook that may not be made; the message says why, for a form or the command line."""


class UnsafeURL(WebhookRefused):
    """A webhook URL that is not http(s), or whose host is (or resolves to) a private address."""


class TooManyWebhooks(WebhookRefused):
    """The conversation already has WEBHOOK_MAX_PER_CONVERSATION webhooks."""


@dataclass(frozen=True)
class NewHook:
    webhook: Webhook
    secret: str  # outgoing: the signing secret; incoming: the secret of its URL


# --------------------------------------------------------------------------- addresses


_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")  # ::a.b.c.d, deprecated (RFC 4291)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # the well-known NAT64 prefix (RFC 6052)
# Local-use NAT64 (RFC 8215): the local translator decides where it leads and where in the
# address the IPv4 address sits, so none of it counts as public, whatever it embeds.
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")


def _public(address: str) -> bool:
    """Whether an address is one the Internet reaches: global and not multicast. An IPv6
    address that carries an IPv4 address (mapped, compatible, NAT64, 6to4, Teredo) is judged
    by that IPv4 address too: a translator or relay delivers to it."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        if ip in _NAT64_LOCAL:
            return False
        carried = _translated_ipv4(ip)
        if carried is not None:  # the IPv4 address is all that is reached
            return _global(carried)
        if not all(_global(end) for end in _tunnel_ipv4(ip)):
            return False
    return _global(ip)


def _global(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return ip.is_global and not ip.is_multicast


def _translated_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv4-mapped, IPv4-compatible or NAT64 address stands for."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _IPV4_COMPATIBLE or ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def _tunnel_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 ends of a 6to4 (2002::/16) or Teredo (2001::/32: server and client)
    address, whose packets a relay sends on to those addresses."""
    if ip.sixtofour is not None:
        return [ip.sixtofour]
    if ip.teredo is not None:
        return list(ip.teredo)
    return []


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


def _check_room(conversation: Conversation) -> None:
    """TooManyWebhooks if the conversation has its most webhooks already. The conversation's
    row is locked until the commit, so two makers at once cannot both take the last place."""
    db.session.execute(select(Conversation.id).where(Conversation.id == conversation.id)
                       .with_for_update())
    limit = current_app.config["WEBHOOK_MAX_PER_CONVERSATION"]
    count = db.session.scalar(select(func.count(Webhook.id))
                              .where(Webhook.conversation_id == conversation.id))
    if count >= limit:
        db.session.rollback()  # the lock goes with it
        raise TooManyWebhooks(f"this conversation has {count} webhooks, the most it may have "
                              f"({limit}); delete one first")


def create_outgoing(conversation: Conversation, url: str, creator: User | None = None
                    ) -> NewHook:
    """An outgoing hook to ``url``; UnsafeURL or TooManyWebhooks if it may not be made."""
    checked_addresses(url, current_app.config["WEBHOOK_ALLOW_PRIVATE"])
    _check_room(conversation)
    secret = secrets.token_hex(32)
    hook = Webhook(conversation_id=conversation.id, kind=OUTGOING, url=url, secret=secret,
                   created_by_id=creator.id if creator else None)
    db.session.add(hook)
    db.session.commit()
    return NewHook(hook, secret)


def create_incoming(conversation: Conversation, bot: User | None = None,
                    name: str = "Webhook", creator: User | None = None) -> NewHook:
    """An incoming hook posting as ``bot`` (a new bot user when not given), who is made a
    participant of the conversation. TooManyWebhooks (a ValueError) if it may not be made."""
    if bot is not None and not bot.is_bot:
        raise ValueError(f"{bot.username} is not a bot user")
    _check_room(conversation)
    if bot is None:
        username = f"hook-{secrets.token_hex(4)}"
        bot = User(username=username, first_name=name[:64], last_name="",
                   email=f"{username}@bots.invalid", password_hash="!", is_bot=True)
        db.session.add(bot)
        db.session.flush()
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


def remove_webhook(webhook_id: int, actor: User | None = None) -> bool:
    """Delete a webhook wherever it is (``flask webhooks delete``, the admin console): no more
    deliveries, its URL refused; recorded with the admin as actor. False if there is none."""
    hook = db.session.get(Webhook, webhook_id)
    if hook is None or not delete_webhook(hook.conversation_id, webhook_id):
        return False
    record_activity("webhook_deleted", actor.id if actor is not None else None,
                    {"webhook_id": webhook_id, "conversation_id": hook.conversation_id,
                     "by": "admin" if actor is not None else "cli"})
    return True


def site_url(fallback: str) -> str:
    """Where people and programs reach this site, without a trailing "/": SITE_URL, else
    ``fallback`` (the address the current request came to)."""
    return (current_app.config.get("SITE_URL") or fallback).rstrip("/")


def incoming_hook_urls(secret: str, base: str) -> tuple[str, str]:
    """The two addresses of an incoming hook: Simple Chat's JSON, and Slack's."""
    path = f"{site_url(base)}/api/hooks/{secret}"
    return path, f"{path}/slack"


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

