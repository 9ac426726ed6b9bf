"""``flask push``: Web Push's VAPID keys."""

from __future__ import annotations

import click
from flask import Flask
from flask.cli import AppGroup

from simplechat.notifications.push import generate_keys

push_cli = AppGroup("push", help="Web Push (VAPID keys).")


@push_cli.command("generate-keys")
def generate_keys_command() -> None:
    """Print a new VAPID key pair as the settings that take it."""
    public, private = generate_keys()
    click.echo(f"WEBPUSH_VAPID_PUBLIC_KEY={public}")
    click.echo(f"WEBPUSH_VAPID_PRIVATE_KEY={private}")


def register_push_cli(app: Flask) -> None:
    app.cli.add_command(push_cli)
