"""``flask --app wsgi`` command groups: each feature keeps its own, registered here."""

from __future__ import annotations

from flask import Flask

from simplechat.attachments.cli import register_attachments_cli
from simplechat.auth.cli import register_auth_cli
from simplechat.conversations.cli import register_channels_cli, register_conversations_cli
from simplechat.messaging.cli import register_chat_cli
from simplechat.notifications.cli import register_push_cli
from simplechat.observability.cli import register_logs_cli
from simplechat.slash_commands.cli import register_commands_cli
from simplechat.webhooks.cli import register_webhooks_cli


def register_cli(app: Flask) -> None:
    """users, tokens, conversations, channels, chat, webhooks, commands, attachments, logs,
    push."""
    for register in (register_auth_cli, register_conversations_cli, register_channels_cli,
                     register_chat_cli, register_webhooks_cli, register_commands_cli,
                     register_attachments_cli, register_logs_cli, register_push_cli):
        register(app)
