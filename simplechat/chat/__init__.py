"""Chat: conversations, the chat page, the JSON API and the Socket.IO events."""

from __future__ import annotations

from typing import Any

from flask import Blueprint


class ApiBlueprint(Blueprint):
    """The JSON API's blueprint: no redirects."""

    def add_url_rule(self, rule: str, endpoint: str | None = None, view_func: Any = None,
                     provide_automatic_options: bool | None = None, **options: Any) -> None:
        # A doubled slash is a JSON 404 rather than Werkzeug's redirect to the merged path:
        # Flask sends redirects as HTML before any error handler sees them.
        options.setdefault("merge_slashes", False)
        super().add_url_rule(rule, endpoint, view_func, provide_automatic_options, **options)


bp = Blueprint("chat", __name__)
api_bp = ApiBlueprint("api", __name__)

from . import api, avatars, events, views  # noqa: E402,F401  (register on import)
