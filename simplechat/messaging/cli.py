"""``flask chat``: the recent-message cache and live figures."""

from __future__ import annotations

import json

import click
from flask import Flask, current_app
from flask.cli import AppGroup
from sqlalchemy import func, select

from simplechat.extensions import db
from simplechat.infra.commands import fail
from simplechat.infra.redis_client import Sentinels, redis_from_url
from simplechat.infra.services import services
from simplechat.messaging.history import rewarm_recent
from simplechat.models import Conversation, Message, User
from simplechat.realtime.presence import presence

chat_cli = AppGroup("chat", help="The recent-message cache and live figures.")


@chat_cli.command("rebuild-cache")
@click.option("--conversation", "conversation_id", type=click.IntRange(min=1),
              help="Only this conversation (default: every conversation).")
def rebuild_cache(conversation_id):
    """Re-warm the Redis recent-message lists from SQL."""
    if services().embedded:
        fail("no REDIS_URL: the recent-message cache lives inside the server process and "
             "warms itself")
    if conversation_id is not None:
        if db.session.get(Conversation, conversation_id) is None:
            fail(f"no conversation {conversation_id}")
        ids = [conversation_id]
    else:
        ids = list(db.session.scalars(select(Conversation.id).order_by(Conversation.id)))
    cached = 0
    with click.progressbar(ids, label="re-warming", show_pos=True) as bar:
        for cid in bar:
            cached += rewarm_recent(cid)
            db.session.remove()  # one conversation's rows at a time in memory
    click.echo(f"re-warmed {len(ids)} conversation(s), {cached} message(s) cached")


def open_sockets() -> int | None:
    """Sockets recorded as open across all web processes (None without Redis)."""
    if services().redis is None:
        return None
    return presence().live_count()


def queue_depth() -> int | None:
    """Tasks waiting in the Celery queue (None when tasks run inline or the broker is not
    Redis)."""
    celery = current_app.extensions["celery"]
    url = celery.conf.broker_url
    sentinels = None
    if url.startswith("sentinel://"):  # the primary the sentinels name (infra/celery_app.py)
        sentinels = Sentinels.from_config(current_app.config)
        url = current_app.config.get("CELERY_BROKER_URL") or current_app.config["REDIS_URL"]
    if celery.conf.task_always_eager or not url.startswith(("redis://", "rediss://")):
        return None
    client = redis_from_url(url, sentinels=sentinels)
    try:
        return client.llen(current_app.config.get("CELERY_QUEUE", "simplechat"))
    finally:
        client.close()


@chat_cli.command("stats")
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of lines.")
def stats(as_json):
    """Users, conversations, messages, open sockets and Celery queue depth."""
    figures = {
        "users": db.session.scalar(select(func.count()).select_from(User)),
        "active_users": db.session.scalar(
            select(func.count()).select_from(User).where(User.is_active.is_(True))),
        "conversations": db.session.scalar(select(func.count()).select_from(Conversation)),
        "messages": db.session.scalar(select(func.count()).select_from(Message)),
    }
    try:
        figures["sockets"] = open_sockets()
        figures["queue_depth"] = queue_depth()
    except Exception as exc:
        fail(f"Redis or the broker did not answer: {exc}")
    if as_json:
        click.echo(json.dumps(figures))
        return
    for name, value in figures.items():
        click.echo(f"{name:<14} {'n/a' if value is None else value}")


def register_chat_cli(app: Flask) -> None:
    app.cli.add_command(chat_cli)
