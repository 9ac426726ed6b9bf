"""Shared fixtures: an app on a fresh database (PostgreSQL, MariaDB or SQLite), its own Redis
key prefix per test, and helpers for users, logins, conversations and Socket.IO clients."""

from __future__ import annotations

import itertools
import os
import tempfile
import uuid

import pytest
import redis as redis_lib
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from config import database_url as normalise_url
from simplechat import create_app
from simplechat.extensions import db, socketio
from simplechat.models import User

PASSWORD = "correct horse battery"


def _admin_and_test_url(raw: str, name: str) -> tuple[str, str]:
    url = make_url(normalise_url(raw))
    admin_db = "postgres" if url.get_backend_name() == "postgresql" else None
    return (url.set(database=admin_db).render_as_string(hide_password=False),
            url.set(database=name).render_as_string(hide_password=False))


@pytest.fixture(scope="session")
def database_uri():
    """A database of its own for this test run; dropped at the end."""
    raw = os.environ.get("TEST_DATABASE_URL")
    if not raw:
        # A file, as the embedded default keeps it: an in-memory database would be a different,
        # empty one on every connection, so a real server's threads would find no tables.
        with tempfile.TemporaryDirectory(prefix="simplechat-test-") as folder:
            yield f"sqlite:///{folder}/simplechat.sqlite3"
        return
    name = f"simplechat_test_{os.getpid()}"
    admin_url, test_url = _admin_and_test_url(raw, name)
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {name}"))
        conn.execute(text(f"CREATE DATABASE {name}"))
    _migrate(test_url)
    yield test_url
    with admin.connect() as conn:
        if admin.dialect.name == "postgresql":
            conn.execute(text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                f"WHERE datname = '{name}' AND pid <> pg_backend_pid()"))
        conn.execute(text(f"DROP DATABASE IF EXISTS {name}"))
    admin.dispose()


def _migrate(uri: str) -> None:
    from flask_migrate import upgrade

    app = create_app("testing", {"SQLALCHEMY_DATABASE_URI": uri, "REDIS_URL": None})
    with app.app_context():
        upgrade(directory=os.path.join(os.path.dirname(__file__), "..", "migrations"))
        db.engine.dispose()


@pytest.fixture(scope="session")
def redis_url():
    return os.environ.get("TEST_REDIS_URL") or None


def make_app(database_uri: str, redis_url: str | None, **overrides):
    prefix = f"simplechat-test:{uuid.uuid4().hex[:10]}:"
    settings = {
        "SQLALCHEMY_DATABASE_URI": database_uri,
        "REDIS_URL": redis_url,
        "REDIS_KEY_PREFIX": prefix,
        "SOCKETIO_MESSAGE_QUEUE": None,
        "ATTACHMENT_DIR": tempfile.mkdtemp(prefix="simplechat-attachments-"),
    }
    settings.update(overrides)
    app = create_app("testing", settings)
    _fresh_context_per_request(app)
    return app


class _FreshContext:
    """A request context with an application context of its own, as in production.

    Tests keep an app context open for their own database work; without this, requests and
    socket events would reuse it, and with it ``g`` (Flask-Login's cached user) and the session.
    """

    def __init__(self, app, request_ctx):
        self._app_ctx = app.app_context()
        self._request_ctx = request_ctx

    def push(self):
        self._app_ctx.push()
        self._request_ctx.push()

    def pop(self, exc=None):
        try:
            self._request_ctx.pop(exc)
        finally:
            self._app_ctx.pop(exc)

    def __enter__(self):
        self.push()
        return self

    def __exit__(self, exc_type, exc, tb):
        self.pop(exc)

    def __getattr__(self, name):
        return getattr(self._request_ctx, name)


def _fresh_context_per_request(app) -> None:
    original = app.request_context
    app.request_context = lambda environ: _FreshContext(app, original(environ))


def app_in_context(database_uri: str, redis_url: str | None, **overrides):
    """Yield a test app inside its context; afterwards empty its tables and Redis keys."""
    app = make_app(database_uri, redis_url, **overrides)
    with app.app_context():
        if database_uri.startswith("sqlite"):
            db.create_all()
        yield app
        db.session.remove()
        _empty_tables()
        db.engine.dispose()
    _drop_redis_keys(app)


@pytest.fixture(params=["redis", "embedded"])
def backend(request, redis_url) -> str | None:
    """The Redis URL, or None for the embedded stand-ins: a test that takes it runs on both."""
    if request.param == "embedded":
        return None
    if not redis_url:
        pytest.skip("TEST_REDIS_URL not set")
    return redis_url


@pytest.fixture
def app(database_uri, redis_url):
    yield from app_in_context(database_uri, redis_url)


def _empty_tables() -> None:
    """Delete every row, children first. On PostgreSQL also restart the id sequences, in the
    same round trip: DELETE and ALTER SEQUENCE take 20 ms where TRUNCATE of the same eleven
    nearly empty tables took 150 ms, about 100 s over the suite."""
    tables = list(reversed(db.metadata.sorted_tables))
    with db.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            sequences = conn.execute(text(
                "SELECT sequencename FROM pg_sequences WHERE schemaname = current_schema()"
            )).scalars().all()
            conn.execute(text("; ".join(
                [f'DELETE FROM "{t.name}"' for t in tables]
                + [f'ALTER SEQUENCE "{name}" RESTART' for name in sequences])))
        else:
            for table in tables:
                conn.execute(table.delete())


def _drop_redis_keys(app) -> None:
    url = app.config.get("REDIS_URL")
    if not url:
        return
    client = redis_lib.Redis.from_url(url)
    keys = list(client.scan_iter(match=app.config["REDIS_KEY_PREFIX"] + "*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


_counter = itertools.count(1)


@pytest.fixture
def make_user(app):
    def make(username: str | None = None, password: str = PASSWORD, **fields) -> User:
        n = next(_counter)
        username = username or f"user{n}"
        user = User(
            username=username,
            first_name=fields.pop("first_name", f"First{n}"),
            last_name=fields.pop("last_name", f"Last{n}"),
            email=fields.pop("email", f"{username}@example.com").lower(),
            **fields,
        )
        user.set_password(password)
        db.session.add(user)
        db.session.commit()
        return user

    return make


@pytest.fixture
def make_conversation(app):
    from simplechat.conversations.records import start_conversation

    def make(creator: User, *others: User, title: str | None = None):
        conversation, _ = start_conversation(creator, list(others), title)
        return conversation

    return make


class AuthActions:
    def __init__(self, client):
        self._client = client

    def login(self, username: str, password: str = PASSWORD):
        return self._client.post("/auth/login", data={"username": username, "password": password})

    def logout(self):
        return self._client.post("/auth/logout")


@pytest.fixture
def auth(client):
    return AuthActions(client)


@pytest.fixture
def socket_client(app):
    """Open a Socket.IO test client on /chat for a user, logged in through the real form."""
    opened = []

    def connect(user: User, password: str = PASSWORD):
        http = app.test_client()
        response = http.post("/auth/login", data={"username": user.username, "password": password})
        assert response.status_code == 302, response.data
        sio = socketio.test_client(app, namespace="/chat", flask_test_client=http)
        opened.append(sio)
        return sio

    yield connect
    for sio in opened:
        if sio.is_connected("/chat"):
            sio.disconnect("/chat")


# Suites that start processes on Redis databases and port ranges of their own (a browser stack
# is set up once per worker that runs a browser test): each one runs on one pytest-xdist worker
# from start to end. Every other module is a scope of its own, as in ``--dist loadscope``.
_SERIAL_SUITES = ("browser", "e2e", "faults")


def pytest_xdist_make_scheduler(config, log):
    """``make test``'s ``--dist loadscope``, with a whole suite of ``_SERIAL_SUITES`` as one
    scope. (``--dist loadgroup`` with marks would say the same, but pytest-xdist 3.8 tags the
    node ids in a way pytest 9 ignores, so its groups are silently spread over the workers.)"""
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class SuiteScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            parts = nodeid.split("::", 1)[0].split("/")
            if len(parts) > 2 and parts[1] in _SERIAL_SUITES:
                return "/".join(parts[:2])
            return super()._split_scope(nodeid)

    return SuiteScheduling(config, log)


def _skipped_count(config) -> int:
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    return len(reporter.stats.get("skipped", [])) if reporter else 0


def pytest_sessionfinish(session, exitstatus):
    """With FAIL_ON_SKIP set (CI), a skipped test fails the run: every service must be there."""
    if os.environ.get("FAIL_ON_SKIP") and _skipped_count(session.config):
        session.exitstatus = 1


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if os.environ.get("FAIL_ON_SKIP") and _skipped_count(config):
        terminalreporter.write_line(
            "FAIL_ON_SKIP: a skipped test fails this run (CI needs every service)", red=True
        )

