"""HTTP error answers: ``{"ok": false, "error": CODE}`` JSON under /api/, HTML pages elsewhere,
and every unexpected exception recorded once, here at the edge."""

from __future__ import annotations

import math

from flask import Flask, Response, g, jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from kombu.exceptions import OperationalError as BrokerError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy import exc as sa_exc
from sqlalchemy import inspect as sa_inspect
from werkzeug.exceptions import HTTPException, InternalServerError, NotFound, TooManyRequests

from simplechat.observability.activity import record_error

API_PREFIX = "/api"

# The socket's error codes, by HTTP status; other statuses fall back to invalid or internal.
CODES = {
    400: "invalid",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    429: "rate_limited",
    500: "internal",
    503: "unavailable",
}
CSRF_CODE = "csrf"

# A service the app needs (database, Redis, the Celery broker) cannot be reached.
OUTAGES = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.DisconnectionError,
    sa_exc.TimeoutError,
    RedisConnectionError,
    RedisTimeoutError,
    BrokerError,
    ConnectionError,
)


def api_error(code: str, status: int, retry_after: float | None = None) -> Response:
    """The JSON answer of a refused /api/ request; ``retry_after`` (seconds) for 429s."""
    body: dict = {"ok": False, "error": code}
    if retry_after is not None:
        body["retry_after"] = retry_after
    response = jsonify(body)
    response.status_code = status
    if retry_after is not None:
        response.headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
    return response


def is_api_request() -> bool:
    return request.path == API_PREFIX or request.path.startswith(API_PREFIX + "/")


def is_outage(exc: BaseException) -> bool:
    """Whether ``exc`` says a service is down, rather than that the code is wrong."""
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, OUTAGES)


def error_code(exc: HTTPException) -> str:
    if isinstance(exc, CSRFError):
        return CSRF_CODE
    status = exc.code or 500
    return CODES.get(status) or ("internal" if status >= 500 else "invalid")


def http_error(exc: HTTPException) -> Response | HTTPException | tuple[str, int]:
    """An HTTP error (abort, routing, CSRF, body too large): JSON under /api/, else a page.

    It also gets the 500 of an exception that escaped the handlers (raised in an
    ``after_request`` function, say): Flask has logged that one already."""
    if not is_api_request():
        return page_error(exc)
    retry_after = exc.retry_after if isinstance(exc, TooManyRequests) else None
    response = api_error(error_code(exc), exc.code or 500,
                         retry_after if isinstance(retry_after, int | float) else None)
    for name, value in exc.get_headers():  # Allow (405), Retry-After, WWW-Authenticate
        if name.lower() != "content-type":
            response.headers.setdefault(name, value)
    return response


def page_error(exc: HTTPException) -> Response | HTTPException | tuple[str, int]:
    if isinstance(exc, NotFound):
        return render_template("error.html", code=404, message="Not found."), 404
    return exc


def unexpected_error(exc: Exception) -> Response:
    """Any other exception: recorded (Flask does not log an exception a handler takes), then
    503 ``unavailable`` for an outage or 500 ``internal`` under /api/, the 500 page elsewhere."""
    user_id = known_user_id()
    if user_id is not None:
        g.log_user_id = user_id  # so the log record does not touch the user object either
    rule = request.url_rule.rule if request.url_rule is not None else request.path
    record_error(f"http:{request.method} {rule}", exc, user_id)
    if not is_api_request():
        return InternalServerError(original_exception=exc).get_response()
    if is_outage(exc):
        return api_error("unavailable", 503)
    return api_error("internal", 500)


def known_user_id() -> int | None:
    """The id of the user this request loaded, without a query: the database may be what
    failed, and an expired user object would refresh itself from it."""
    state = sa_inspect(g.get("_login_user"), raiseerr=False)
    if state is None or state.identity is None:
        return None
    return state.identity[0]


# What a 503 tells a client to wait before asking again, when the answer names no time of its
# own: the offload pool full, a decoder busy, the database or Redis down.
UNAVAILABLE_RETRY_AFTER = 5


def retry_after_unavailable(response: Response) -> Response:
    """Every 503 carries Retry-After, so that well-behaved clients back off instead of
    retrying at once into a server that is saturated or waiting for a service."""
    if response.status_code == 503 and "Retry-After" not in response.headers:
        response.headers["Retry-After"] = str(UNAVAILABLE_RETRY_AFTER)
    return response


def init_http_errors(app: Flask) -> None:
    app.register_error_handler(HTTPException, http_error)
    app.register_error_handler(Exception, unexpected_error)
    app.after_request(retry_after_unavailable)
