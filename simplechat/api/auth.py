"""Who calls an /api/ route: the bearer token's user, else the session cookie's (whose writes
need the X-CSRFToken header), else nobody."""

from __future__ import annotations

from flask import current_app, g, request
from flask_login import current_user

from simplechat.auth.tokens import bearer_user
from simplechat.extensions import csrf
from simplechat.web.errors import api_error, is_api_request
from simplechat.web.routing import ApiBlueprint

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
# Routes that authenticate by a secret in their URL, not by a token or a cookie.
SECRET_URL_ENDPOINTS = frozenset({"rest.incoming_hook", "rest.incoming_slack_hook",
                                  "commands.command_response"})


def authenticate_api_request():
    if not is_api_request() or request.endpoint in SECRET_URL_ENDPOINTS:
        return None
    header = request.headers.get("Authorization")
    if header is not None:
        scheme, _, raw = header.strip().partition(" ")
        found = bearer_user(raw.strip()) if scheme.lower() == "bearer" else None
        if found is None:
            response = api_error("unauthorized", 401)
            response.headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
            return response
        g.api_token, g._login_user = found  # current_user from here on
        g.log_user_id = found[1].id
        return None  # a token is not sent by browsers on their own: no CSRF check
    # Every route of every API blueprint: a blueprint added later is covered without being
    # named here (a list of names once left two of them out).
    if (request.method not in SAFE_METHODS and current_app.config.get("WTF_CSRF_ENABLED", True)
            and isinstance(current_app.blueprints.get(request.blueprint or ""), ApiBlueprint)
            and current_user.is_authenticated):
        csrf.protect()  # CSRFError: the JSON 400 "csrf"
    return None
