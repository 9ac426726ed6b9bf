"""``flask attachments``: housekeeping of the attachment store."""

from __future__ import annotations

from datetime import timedelta

import click
from flask import Flask, current_app
from flask.cli import AppGroup

from .records import prune_orphans

attachments_cli = AppGroup("attachments", help="Uploaded files.")


@attachments_cli.command("prune")
@click.option("--older-than", type=click.IntRange(min=0), default=None,
              help="Seconds since upload (default CHAT_ATTACHMENT_ORPHAN_AGE, a day).")
def prune(older_than):
    """Remove uploads never sent with a message (rows and files); run it from cron."""
    age = current_app.config["CHAT_ATTACHMENT_ORPHAN_AGE"] if older_than is None else older_than
    removed = prune_orphans(timedelta(seconds=age))
    click.echo(f"{removed} unsent upload(s) older than {age} s removed")


def register_attachments_cli(app: Flask) -> None:
    app.cli.add_command(attachments_cli)
