"""``flask --app wsgi`` command groups for administration."""

from __future__ import annotations

import click
from flask import Flask
from flask.cli import AppGroup
from sqlalchemy import func, select

from .extensions import db
from .models import User

users_cli = AppGroup("users", help="Manage user accounts.")


@users_cli.command("create")
@click.argument("username")
@click.option("--email", required=True)
@click.option("--first-name", default="")
@click.option("--last-name", default="")
@click.option("--admin", is_flag=True, help="Make the user an administrator.")
@click.password_option(help="The password (prompted for when not given).")
def create_user(username, email, first_name, last_name, admin, password):
    """Create a user account."""
    email = email.strip().lower()
    if db.session.scalar(select(User).where(func.lower(User.username) == username.lower())):
        raise click.ClickException(f"username {username!r} is taken")
    if db.session.scalar(select(User).where(User.email == email)):
        raise click.ClickException(f"e-mail {email!r} is taken")
    if len(password) < 8:
        raise click.ClickException("the password must have at least 8 characters")
    user = User(username=username, email=email, first_name=first_name or username,
                last_name=last_name, is_admin=admin)
    user.set_password(password)
    db.session.add(user)
    db.session.commit()
    click.echo(f"created {'admin ' if admin else ''}user {username} (id {user.id})")


def register_cli(app: Flask) -> None:
    app.cli.add_command(users_cli)
