"""Simple Chat: a real-time chat server on Flask and Flask-SocketIO."""

from __future__ import annotations

import logging
import os
from typing import Any

from flask import Flask, redirect, url_for

from config import config as config_classes

from . import fastjson
from .extensions import csrf, db, login_manager, migrate, socketio
from .packet_guard import JsonPacket, install_event_cap, install_packet_guard

log = logging.getLogger(__name__)


def create_app(config_name: str | None = None, overrides: dict[str, Any] | None = None) -> Flask:
    """Build the app. ``config_name`` is development, testing or production
    (default: the ``SIMPLECHAT_CONFIG`` environment variable, else development)."""
    config_name = config_name or os.environ.get("SIMPLECHAT_CONFIG") or "development"
    config_class = config_classes[config_name]
    app = Flask(__name__, instance_relative_config=True)
    from .attachments import ChatRequest

    app.request_class = ChatRequest  # an upload's body may be larger than other requests'
    app.config.from_object(config_class)
    if overrides:
        app.config.update(overrides)
    if hasattr(config_class, "validate"):
        config_class.validate()

    from .logging_setup import configure_logging

    configure_logging(app)
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

    db.init_app(app)
    migrate.init_app(app, db, render_as_batch=True)
    csrf.init_app(app)
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.login_message_category = "info"

    from .services import init_services

    init_services(app)

    from .celery_app import celery_init_app

    celery_init_app(app)

    queue_url = app.config.get("SOCKETIO_MESSAGE_QUEUE", app.config.get("REDIS_URL"))
    # No queue: the in-process manager, said outright (Flask-SocketIO would keep the manager
    # of an app made earlier in this process).
    queue: dict[str, Any] = {"client_manager": None}
    if queue_url:
        from .socket_fanout import client_manager

        queue["client_manager"] = client_manager(app.config, queue_url)
        if queue["client_manager"] is None:
            del queue["client_manager"]  # not Redis: Flask-SocketIO picks by the URL
    socketio.init_app(
        app,
        async_mode=app.config.get("SOCKETIO_ASYNC_MODE"),
        message_queue=queue_url,
        channel=app.config["REDIS_KEY_PREFIX"] + "socketio",
        **queue,
        cors_allowed_origins=app.config.get("CORS_ALLOWED_ORIGINS"),
        max_http_buffer_size=app.config["SOCKETIO_MAX_HTTP_BUFFER_SIZE"],
        manage_session=True,
        json=fastjson,  # orjson for every packet
        serializer=JsonPacket,
        logger=False,
        engineio_logger=False,
    )
    install_packet_guard(socketio.server)
    install_event_cap(socketio.server)

    if app.config.get("TRUSTED_PROXY_HOPS"):
        from werkzeug.middleware.proxy_fix import ProxyFix

        hops = app.config["TRUSTED_PROXY_HOPS"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)

    from . import models  # noqa: F401  (registers the models with SQLAlchemy)
    from .strict_numbers import IdConverter

    # ``<id:...>`` in every blueprint's routes: Werkzeug's ``int`` reads "٣" as 3.
    app.url_map.converters["id"] = IdConverter
    from .http_errors import init_http_errors

    init_http_errors(app)
    from .auth import bp as auth_bp
    from .chat import api_bp
    from .chat import bp as chat_bp
    from .profile import bp as profile_bp

    app.register_blueprint(auth_bp, url_prefix="/auth")
    app.register_blueprint(profile_bp, url_prefix="/profile")
    app.register_blueprint(chat_bp, url_prefix="/chat")
    app.register_blueprint(api_bp, url_prefix="/api")
    from .api import init_api

    init_api(app)

    from .attachments import bp as attachments_bp
    from .attachments.cli import register_attachments_cli

    app.register_blueprint(attachments_bp, url_prefix="/api")
    register_attachments_cli(app)

    @app.get("/")
    def index():
        return redirect(url_for("chat.index"))

    from .health import init_health
    from .metrics import init_metrics

    init_metrics(app)
    init_health(app)
    from .security import init_security

    init_security(app)
    from .cli import register_cli

    register_cli(app)
    from .static_files import init_static_files
    from .web_app import init_web_app

    init_web_app(app)
    # Last, so WhiteNoise wraps everything else: it answers hashed static URLs, nothing more.
    init_static_files(app)
    return app


@login_manager.user_loader
def load_user(user_id: str):
    """The user of the cookie's server-side session, if that session is live."""
    from .auth.sessions import load_session_user

    return load_session_user(user_id)


@login_manager.request_loader
def load_user_from_request(request):
    """A browser back with only its remember-me cookie gets its session again."""
    from .auth.sessions import restore_remembered

    return restore_remembered(request)
