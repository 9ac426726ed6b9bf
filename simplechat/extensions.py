"""Flask extensions, created unbound here and bound to the app in ``create_app``."""

from flask_login import LoginManager
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
csrf = CSRFProtect()
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
