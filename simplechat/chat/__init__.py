"""Chat: conversations, the chat page, the JSON API and the Socket.IO events."""

from flask import Blueprint

bp = Blueprint("chat", __name__)
api_bp = Blueprint("api", __name__)

from . import api, events, views  # noqa: E402,F401  (routes and handlers register on import)
