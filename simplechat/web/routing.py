"""URL routing shared by every blueprint: the strict ``<id:...>`` converter, and the JSON API's
blueprint class (no redirects)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask

from simplechat.web.strict_numbers import IdConverter


class ApiBlueprint(Blueprint):
    """The JSON API's blueprint: no redirects."""

    def add_url_rule(self, rule: str, endpoint: str | None = None, view_func: Any = None,
                     provide_automatic_options: bool | None = None, **options: Any) -> None:
        # A doubled slash is a JSON 404 rather than Werkzeug's redirect to the merged path:
        # Flask sends redirects as HTML before any error handler sees them.
        options.setdefault("merge_slashes", False)
        super().add_url_rule(rule, endpoint, view_func, provide_automatic_options, **options)


def init_routing(app: Flask) -> None:
    # ``<id:...>`` in every blueprint's routes: Werkzeug's ``int`` reads "٣" as 3.
    app.url_map.converters["id"] = IdConverter
