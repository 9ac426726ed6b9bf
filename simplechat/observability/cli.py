"""``flask logs``: the activity and error logs, read and pruned."""

from __future__ import annotations

import json

import click
from flask import Flask
from flask.cli import AppGroup
from sqlalchemy import delete, select

from simplechat.extensions import db
from simplechat.infra.commands import AgeType
from simplechat.models import GenericActivityLog, GenericErrorLog, utcnow

logs_cli = AppGroup("logs", help="The activity and error logs.")


def _log_model(activity: bool, errors: bool):
    if activity == errors:
        raise click.UsageError("choose one of --activity or --errors")
    return GenericActivityLog if activity else GenericErrorLog


@logs_cli.command("tail")
@click.option("--activity", is_flag=True, help="The activity log.")
@click.option("--errors", is_flag=True, help="The error log.")
@click.option("-n", "count", type=click.IntRange(1, 10_000), default=20, show_default=True,
              help="How many of the newest entries.")
def tail_logs(activity, errors, count):
    """Show the newest entries of the activity or error log, oldest first."""
    model = _log_model(activity, errors)
    rows = list(db.session.scalars(
        select(model).order_by(model.created_at.desc(), model.id.desc()).limit(count)))
    for row in reversed(rows):
        when = row.created_at.strftime("%Y-%m-%d %H:%M:%S")
        user = f"user={row.user_id}" if row.user_id is not None else "user=-"
        if model is GenericActivityLog:
            detail = json.dumps(row.detail, sort_keys=True) if row.detail is not None else ""
            click.echo(f"{when}  {user}  {row.action}  {detail}  {row.ip or ''}".rstrip())
        else:
            first_line = (row.message or "").splitlines()[0] if row.message else ""
            click.echo(f"{when}  {user}  {row.where}  {row.error_type}: {first_line}")
    if not rows:
        click.echo("no entries", err=True)


@logs_cli.command("prune")
@click.option("--older-than", "age", type=AgeType(), required=True,
              help="Delete entries older than this: 30d, 12h or 90m.")
@click.option("--activity/--no-activity", default=True, help="Prune the activity log.")
@click.option("--errors/--no-errors", default=True, help="Prune the error log.")
def prune_logs(age, activity, errors):
    """Delete activity and error log entries older than a given age, in one transaction."""
    if not (activity or errors):
        raise click.UsageError("nothing to prune: --no-activity and --no-errors together")
    cutoff = utcnow() - age
    deleted = {}
    try:
        for name, model, wanted in (("activity", GenericActivityLog, activity),
                                    ("errors", GenericErrorLog, errors)):
            if wanted:
                result = db.session.execute(delete(model).where(model.created_at < cutoff))
                deleted[name] = result.rowcount
        db.session.commit()
    except Exception:
        db.session.rollback()
        raise
    summary = ", ".join(f"{count} {name}" for name, count in deleted.items())
    click.echo(f"pruned entries older than {cutoff:%Y-%m-%d %H:%M:%S} UTC: {summary}")


def register_logs_cli(app: Flask) -> None:
    app.cli.add_command(logs_cli)
