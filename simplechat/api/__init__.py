"""The JSON API for programs: tokens, bots, REST routes, the OpenAPI document, webhooks."""

from __future__ import annotations

from flask import Blueprint, Flask

from ..chat import ApiBlueprint

bp = ApiBlueprint("rest", __name__)
docs_bp = Blueprint("api_docs", __name__)


def init_api(app: Flask) -> None:
    """Bearer tokens and CSRF on every /api/ route, the routes, the docs page, the commands."""
    from ..attachments import bp as attachments_bp
    from ..chat import api_bp
    from ..extensions import csrf
    from . import views  # noqa: F401  (routes register on import)
    from .auth import authenticate_api_request
    from .cli import register_api_cli

    # CSRF under /api/ is checked in authenticate_api_request: for cookie callers only.
    csrf.exempt(bp)
    csrf.exempt(api_bp)
    csrf.exempt(attachments_bp)
    app.before_request(authenticate_api_request)
    app.register_blueprint(bp, url_prefix="/api")
    app.register_blueprint(docs_bp, url_prefix="/docs")
    register_api_cli(app)
