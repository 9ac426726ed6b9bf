"""One logging setup for the app, from LOG_LEVEL and LOG_FORMAT (plain or json).

Records from the ``simplechat`` loggers carry the user id and conversation id of the request
or socket event they were logged in (None outside one).
"""

from __future__ import annotations

import json
import logging
import sys

from flask import Flask, g, has_request_context, request

LOGGER = "simplechat"
PLAIN = ("%(asctime)s %(levelname)s %(name)s [user=%(user_id)s conv=%(conversation_id)s] "
         "%(message)s")
_FIELDS = ("user_id", "conversation_id")


def _request_context() -> tuple[int | None, int | None]:
    if not has_request_context():
        return None, None
    user_id = g.get("log_user_id")
    if user_id is None:
        # Flask-Login's user, only if this request already loaded it: logging never queries.
        user = g.get("_login_user")
        user_id = getattr(user, "id", None) if getattr(user, "is_authenticated", False) else None
    conversation_id = g.get("log_conversation_id")
    if conversation_id is None and request.view_args:
        conversation_id = request.view_args.get("conversation_id")
    return user_id, conversation_id


class ContextFilter(logging.Filter):
    """Adds the request's user id and conversation id (when there is one) to each record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not all(hasattr(record, f) for f in _FIELDS):  # ``extra=`` given by the caller wins
            user_id, conversation_id = _request_context()
            record.__dict__.setdefault("user_id", user_id)
            record.__dict__.setdefault("conversation_id", conversation_id)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "user_id": getattr(record, "user_id", None),
            "conversation_id": getattr(record, "conversation_id", None),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class _AppHandler(logging.StreamHandler):
    """The handler this module installs (so a second ``configure_logging`` replaces it)."""


def make_handler(log_format: str, stream=None) -> logging.Handler:
    if log_format not in ("plain", "json"):
        raise ValueError(f"LOG_FORMAT must be plain or json, not {log_format!r}")
    handler = _AppHandler(stream or sys.stderr)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(PLAIN))
    return handler


def configure_logging(app: Flask, stream=None) -> logging.Logger:
    """Set the ``simplechat`` logger's level and its one handler from the app's config."""
    level_name = str(app.config.get("LOG_LEVEL") or "INFO").upper()
    level = logging.getLevelNamesMapping().get(level_name)
    if level is None:
        raise ValueError(f"LOG_LEVEL {level_name!r} is not a logging level")
    log_format = str(app.config.get("LOG_FORMAT") or "plain").lower()
    logger = logging.getLogger(LOGGER)
    for old in [h for h in logger.handlers if isinstance(h, _AppHandler)]:
        logger.removeHandler(old)
    logger.addHandler(make_handler(log_format, stream))
    logger.setLevel(level)
    logger.propagate = False
    return logger
