"""Flask extensions, created unbound here and bound to the app in ``create_app``."""

from flask import current_app, request
from flask_login import LoginManager
from flask_mailman import Mail
from flask_migrate import Migrate
from flask_socketio import SocketIO
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect
from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base)
migrate = Migrate()
login_manager = LoginManager()
mail = Mail()  # outgoing mail; sent only by Celery tasks (mail/sending.py)


class HeaderFirstCSRF(CSRFProtect):
    """CSRF protection that takes the token from a header (X-CSRFToken) before the form.

    Flask-WTF looks in the form first, and reading ``request.form`` parses the whole body: an
    upload of 25 MiB was read and parsed before anything could refuse it (the upload rate limit,
    the quota, a stranger). With the token in a header, as the page's scripts and programs send
    it, the body is left alone until the route decides to read it. Forms still carry theirs."""

    def _get_csrf_token(self):
        for header_name in current_app.config["WTF_CSRF_HEADERS"]:
            if token := request.headers.get(header_name):
                return token
        return super()._get_csrf_token()


csrf = HeaderFirstCSRF()
socketio = SocketIO()


def end_transaction() -> None:
    """Give the database connection back to the pool (end the read transaction) before work
    that does not need it: Redis and broker round trips, or a write on a connection of its own.

    One eventlet worker runs many events at once; a send otherwise kept one of the pool's few
    connections until its event ended. A benchmark with 1,000 clients ran the pool dry (events
    waited 30 s for a connection, then failed; docs/PERFORMANCE.md). The caller's objects keep
    what they had loaded."""
    session = db.session()
    if not session.in_transaction():
        return  # nothing begun, nothing held (committing would begin a transaction first)
    expire, session.expire_on_commit = session.expire_on_commit, False
    try:
        session.commit()
    finally:
        session.expire_on_commit = expire
