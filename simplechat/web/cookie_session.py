"""Flask's signed cookie session, its signing serializer made once per set of keys.

Flask builds a new serializer in every request context: each HTTP request, and each Socket.IO
event (Flask-SocketIO runs every event in a request context). itsdangerous serializes a test
value whenever one is built, a third of the context's cost (89 µs pushed and popped with a new
serializer, 60 µs with this one). A serializer keeps nothing between calls, so one serves every
request until the keys change (SECRET_KEY, SECRET_KEY_FALLBACKS): then the next request builds
one with the new keys.

A Socket.IO event after a socket's first does not decode the cookie at all: Flask-SocketIO
(``manage_session``) keeps a copy of the session made at the socket's first event in the
socket's environ (``saved_session``) and puts it in place of the request context's session as
soon as the context is pushed, so what ``open_session`` would read there is thrown away.
"""

from __future__ import annotations

from flask import Flask, Request
from flask.sessions import SecureCookieSessionInterface, SessionMixin
from itsdangerous import URLSafeTimedSerializer


class SigningOnceSessionInterface(SecureCookieSessionInterface):
    def __init__(self) -> None:
        self._made: tuple[tuple, URLSafeTimedSerializer] | None = None

    def get_signing_serializer(self, app: Flask) -> URLSafeTimedSerializer | None:
        if not app.secret_key:
            return None
        keys = (app.secret_key, tuple(app.config.get("SECRET_KEY_FALLBACKS") or ()))
        made = self._made
        if made is None or made[0] != keys:
            made = self._made = (keys, super().get_signing_serializer(app))
        return made[1]

    def open_session(self, app: Flask, request: Request) -> SessionMixin | None:
        if "saved_session" in request.environ:  # replaced by the socket's own copy at once
            return self.make_null_session(app)
        return super().open_session(app, request)


def init_cookie_session(app: Flask) -> None:
    app.session_interface = SigningOnceSessionInterface()
