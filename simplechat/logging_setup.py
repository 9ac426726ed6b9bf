"""One logging setup for the app, from LOG_LEVEL and LOG_FORMAT (plain or json)."""

from __future__ import annotations

import json
import logging

from flask import Flask, g, has_request_context

_configured = False


class ContextFilter(logging.Filter):
    """Adds the request's user id and conversation id (when there is one) to each record."""

    def filter(self, record: logging.LogRecord) -> bool:
        user_id = conversation_id = None
        if has_request_context():
            user_id = g.get("log_user_id")
            conversation_id = g.get("log_conversation_id")
        record.user_id = user_id
        record.conversation_id = conversation_id
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "user_id": getattr(record, "user_id", None),
            "conversation_id": getattr(record, "conversation_id", None),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging(app: Flask) -> None:
    global _configured
    level = getattr(logging, str(app.config.get("LOG_LEVEL", "INFO")).upper(), logging.INFO)
    logger = logging.getLogger("simplechat")
    logger.setLevel(level)
    if _configured:
        return
    handler = logging.StreamHandler()
    handler.addFilter(ContextFilter())
    if app.config.get("LOG_FORMAT") == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(
            "%(asctime)s %(levelname)s %(name)s [user=%(user_id)s conv=%(conversation_id)s] "
            "%(message)s"
        ))
    logger.addHandler(handler)
    logger.propagate = False
    _configured = True
