"""The program's transport: the JSON API under /api/ (bearer tokens or the session cookie), its
schemas and OpenAPI document, and the attachment routes."""

from __future__ import annotations

from flask import Flask

from simplechat.api import (
    attachments,
    channels,
    commands,
    exports,
    lookups,
    moderation,
    notifications,
    threads,
    views,
)
from simplechat.api.auth import authenticate_api_request
from simplechat.extensions import csrf


def init_api(app: Flask) -> None:
    """Bearer tokens and CSRF on every /api/ route, the routes, the docs page."""
    # CSRF under /api/ is checked in authenticate_api_request: for cookie callers only.
    # The order routes match in.
    for blueprint in (lookups.api_bp, views.bp, channels.bp, commands.bp, threads.bp,
                      attachments.bp, moderation.bp, exports.bp, notifications.bp):
        csrf.exempt(blueprint)
        app.register_blueprint(blueprint, url_prefix="/api")
    app.before_request(authenticate_api_request)
    app.register_blueprint(views.docs_bp, url_prefix="/docs")
