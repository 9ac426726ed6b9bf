"""The app factory: a short list of ``register_*`` steps, each handing the app to the part that
owns it."""

from __future__ import annotations

import logging
import os
from typing import Any

from flask import Flask, redirect, url_for
from werkzeug.middleware.proxy_fix import ProxyFix

from config import config as config_classes
from simplechat import (
    admin,
    api,
    auth,
    chat,
    digests,
    models,  # noqa: F401  (the models register with SQLAlchemy)
    profile,
)
from simplechat.api.attachments import ChatRequest
from simplechat.auth.sessions import init_login
from simplechat.cli import register_cli
from simplechat.conversations.drafts import init_drafts
from simplechat.extensions import csrf, db, mail, migrate
from simplechat.infra.celery_app import celery_init_app
from simplechat.infra.services import init_services
from simplechat.notifications import init_notifications
from simplechat.observability.logging_setup import configure_logging
from simplechat.observability.metrics import init_metrics
from simplechat.realtime.server import init_socketio
from simplechat.threads import init_threads
from simplechat.web.cookie_session import init_cookie_session
from simplechat.web.errors import init_http_errors
from simplechat.web.health import init_health
from simplechat.web.manifest import init_web_app
from simplechat.web.routing import init_routing
from simplechat.web.security import init_security
from simplechat.web.static_files import init_static_files

log = logging.getLogger(__name__)


def create_app(config_name: str | None = None, overrides: dict[str, Any] | None = None) -> Flask:
    """Build the app. ``config_name`` is development, testing or production
    (default: the ``SIMPLECHAT_CONFIG`` environment variable, else development)."""
    app = Flask("simplechat", instance_relative_config=True)
    app.request_class = ChatRequest  # an upload's body may be larger than other requests'
    register_config(app, config_name or os.environ.get("SIMPLECHAT_CONFIG") or "development",
                    overrides)
    configure_logging(app)
    register_database(app)
    register_extensions(app)
    register_blueprints(app)
    register_shell(app)
    register_cli(app)
    # Last, so WhiteNoise wraps everything else: it answers hashed static URLs, nothing more.
    init_static_files(app)
    return app


def register_config(app: Flask, config_name: str, overrides: dict[str, Any] | None) -> None:
    config_class = config_classes[config_name]
    app.config.from_object(config_class)
    if overrides:
        app.config.update(overrides)
    if hasattr(config_class, "validate"):
        config_class.validate()


def register_database(app: Flask) -> None:
    """The configured database, else SQLite in the instance folder (the embedded default)."""
    embedded = not app.config.get("SQLALCHEMY_DATABASE_URI") and not app.config.get("REDIS_URL")
    if not app.config.get("SQLALCHEMY_DATABASE_URI"):
        os.makedirs(app.instance_path, exist_ok=True)
        app.config["SQLALCHEMY_DATABASE_URI"] = "sqlite:///" + os.path.join(
            app.instance_path, "simplechat.sqlite3"
        )
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        app.config["SQLALCHEMY_ENGINE_OPTIONS"] = {}
    if embedded and not app.testing:
        log.warning(
            "Embedded mode (no DATABASE_URL, no REDIS_URL): SQLite, in-process cache and rate "
            "limiter, Celery tasks run inline. It serves ONE process only; set DATABASE_URL and "
            "REDIS_URL to run several."
        )


def register_extensions(app: Flask) -> None:
    db.init_app(app)
    migrate.init_app(app, db, render_as_batch=True)
    csrf.init_app(app)
    mail.init_app(app)
    init_login(app)
    init_services(app)
    celery_init_app(app)
    init_socketio(app)
    # Features above the messages' storage keep their own rows in step with it.
    init_threads(app)
    init_drafts(app)
    digests.init_digests(app)
    init_notifications(app)


def register_blueprints(app: Flask) -> None:
    init_routing(app)
    init_cookie_session(app)
    init_http_errors(app)
    app.register_blueprint(auth.bp, url_prefix="/auth")
    app.register_blueprint(profile.bp, url_prefix="/profile")
    app.register_blueprint(chat.bp, url_prefix="/chat")
    app.register_blueprint(digests.bp, url_prefix="/mail")
    app.register_blueprint(admin.bp, url_prefix="/admin")
    api.init_api(app)
    app.add_url_rule("/", "index", lambda: redirect(url_for("chat.index")))


def register_shell(app: Flask) -> None:
    """What every page and response shares: proxies, metrics, health, headers, the manifest."""
    if app.config.get("TRUSTED_PROXY_HOPS"):
        hops = app.config["TRUSTED_PROXY_HOPS"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)
    init_metrics(app)
    init_health(app)
    init_security(app)
    init_web_app(app)
