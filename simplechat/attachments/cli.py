"""``flask attachments``: removing what can no longer be fetched."""

from __future__ import annotations

import click
from flask import Flask
from flask.cli import AppGroup

from simplechat.attachments.prune import prune_attachments
from simplechat.infra.commands import AgeType

attachments_cli = AppGroup("attachments", help="Uploaded files.")


@attachments_cli.command("prune")
@click.option("--older-than", "age", type=AgeType(), default=None,
              help="Unsent uploads older than this (30d, 12h or 90m); default: "
                   "CHAT_ATTACHMENT_ORPHAN_AGE (24h).")
def prune(age):
    """Remove uploads never sent, and the files of deleted messages (rows and files)."""
    pruned = prune_attachments(age)
    click.echo(f"removed {pruned.unsent} unsent upload(s) and {pruned.of_deleted} "
               "attachment(s) of deleted messages")


def register_attachments_cli(app: Flask) -> None:
    app.cli.add_command(attachments_cli)
