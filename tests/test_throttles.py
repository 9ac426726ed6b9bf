"""Throttles that keep /auth from telling who has an account: registrations per client address,
and failed logins per typed name whether or not an account has it."""

from __future__ import annotations

import logging
import re

import pytest
from sqlalchemy import event, func, select

from simplechat.auth.views import LOGIN_FAILED
from simplechat.extensions import db
from simplechat.infra.ratelimit import Rate, RedisRateLimiter, RegisterLimiter
from simplechat.infra.redis_client import redis_from_url
from simplechat.infra.services import services
from simplechat.models import User
from tests.conftest import PASSWORD, app_in_context
from tests.test_auth import csrf_token_from, logged_in_user_id, login_error, registration

ADDRESS, OTHER_ADDRESS = "203.0.113.5", "203.0.113.6"
REGISTER_LIMIT = 3
LOGIN_LIMIT = 3
UNREACHABLE_REDIS = "redis://127.0.0.1:1/0"  # nothing listens on port 1


def user_count() -> int:
    return db.session.execute(select(func.count(User.id))).scalar_one()


def masked(response, *values: str) -> str:
    """The page with its CSRF tokens, ``values`` (what the form echoes) and the seconds to wait
    replaced by placeholders: what is left must not depend on whether an account exists."""
    page = response.get_data(as_text=True)
    page = re.sub(r'(name="csrf-token" content=|name="csrf_token" type="hidden" value=)"[^"]+"',
                  r'\1"TOKEN"', page)
    for value in values:
        page = page.replace(value, "VALUE")
    # The seconds left depend on when each counter filled, not on whether an account exists.
    return re.sub(r"Try again in \d+ seconds", "Try again in N seconds", page)


def register_error(response) -> str | None:
    match = re.search(r'id="register-error">([^<]*)<', response.get_data(as_text=True))
    return match.group(1).strip() if match else None


@pytest.fixture(params=["redis", "embedded"])
def limiter_backend(request, redis_url) -> str | None:
    """The Redis URL to build the app on: the test Redis, or None for the in-process limiter."""
    if request.param == "embedded":
        return None
    if not redis_url:
        pytest.skip("TEST_REDIS_URL not set")
    return redis_url


@pytest.fixture
def throttled_app(database_uri, limiter_backend):
    yield from app_in_context(
        database_uri, limiter_backend,
        REGISTER_RATE_LIMIT=f"{REGISTER_LIMIT}/hour",
        LOGIN_RATE_LIMIT_ACCOUNT=f"{LOGIN_LIMIT}/hour", LOGIN_RATE_LIMIT_IP="off",
    )


@pytest.fixture
def app(throttled_app):
    """The conftest helpers (``make_user``) then work on the throttled app."""
    return throttled_app


def register_from(app, ip: str, **overrides):
    """One registration POST from ``ip`` on a client of its own (a success logs that one in)."""
    return app.test_client().post("/auth/register", data=registration(**overrides),
                                  environ_base={"REMOTE_ADDR": ip})


def use_up_registrations(app, ip: str) -> None:
    """Fill the address's budget with attempts that all fail, so nothing is created."""
    for i in range(REGISTER_LIMIT):
        response = register_from(app, ip, username=f"x{i}", confirm="a different password")
        assert response.status_code == 200
        assert "The passwords do not match." in response.get_data(as_text=True)


# --- registration ---------------------------------------------------------------------------


def test_registration_is_refused_with_429_after_the_limit_and_creates_nothing(throttled_app):
    # Successes and failures both count: one account made, then two refused forms.
    assert register_from(throttled_app, ADDRESS).status_code == 302
    assert register_from(throttled_app, ADDRESS, username="bob").status_code == 200  # e-mail taken
    assert register_from(throttled_app, ADDRESS, username="b").status_code == 200  # too short

    client = throttled_app.test_client()
    response = client.post("/auth/register", environ_base={"REMOTE_ADDR": ADDRESS},
                           data=registration(username="carol", email="carol@example.com"))
    assert response.status_code == 429
    message = register_error(response)
    seconds = int(re.fullmatch(
        r"Too many registration attempts from your address\. Try again in (\d+) seconds\.",
        message).group(1))
    assert 0 < seconds <= 3600
    assert "is-invalid" not in response.get_data(as_text=True)  # the form was not checked
    assert user_count() == 1
    assert db.session.execute(select(User.username)).scalars().all() == ["ada"]
    assert logged_in_user_id(client) is None


def test_a_throttled_registration_does_not_tell_whether_the_email_is_taken(throttled_app):
    assert register_from(throttled_app, OTHER_ADDRESS).status_code == 302  # ada@example.com
    use_up_registrations(throttled_app, ADDRESS)
    taken = register_from(throttled_app, ADDRESS, username="eve", email="ada@example.com")
    free = register_from(throttled_app, ADDRESS, username="eve", email="eve@example.com")
    assert taken.status_code == free.status_code == 429
    taken_page = masked(taken, "ada@example.com")
    assert taken_page == masked(free, "eve@example.com")
    assert "already registered" not in taken_page
    assert user_count() == 1


def test_another_address_still_registers_while_one_is_throttled(throttled_app):
    use_up_registrations(throttled_app, ADDRESS)
    assert register_from(throttled_app, ADDRESS).status_code == 429
    client = throttled_app.test_client()
    response = client.post("/auth/register", data=registration(),
                           environ_base={"REMOTE_ADDR": OTHER_ADDRESS})
    assert response.status_code == 302
    user = db.session.execute(select(User).where(User.username == "ada")).scalar_one()
    assert logged_in_user_id(client) == str(user.id)


def test_posts_refused_for_their_csrf_token_do_not_use_up_the_registration_limit(throttled_app):
    throttled_app.config["WTF_CSRF_ENABLED"] = True
    client = throttled_app.test_client()
    for _ in range(REGISTER_LIMIT * 2):
        response = client.post("/auth/register", data=registration(),
                               environ_base={"REMOTE_ADDR": ADDRESS})
        assert response.status_code == 400
    token = csrf_token_from(client.get("/auth/register"))
    response = client.post("/auth/register", data=registration(csrf_token=token),
                           environ_base={"REMOTE_ADDR": ADDRESS})
    assert response.status_code == 302
    assert user_count() == 1


def test_registration_limit_off_does_not_throttle(database_uri, limiter_backend):
    for app in app_in_context(database_uri, limiter_backend, REGISTER_RATE_LIMIT="off"):
        for i in range(REGISTER_LIMIT * 3):
            response = register_from(app, ADDRESS, username=f"user{i}",
                                     email=f"user{i}@example.com")
            assert response.status_code == 302
        assert user_count() == REGISTER_LIMIT * 3


def test_an_unreachable_limiter_lets_registration_through_with_a_warning(database_uri, caplog):
    # A Redis outage must not close sign-ups; the warning says the limit is not being applied.
    for app in app_in_context(database_uri, None):
        down = redis_from_url(UNREACHABLE_REDIS)
        services().register_limiter = RegisterLimiter(
            RedisRateLimiter(down, Rate(1, 3600), app.config["REDIS_KEY_PREFIX"]))
        with caplog.at_level(logging.WARNING, logger="simplechat.auth.views"):
            for i in range(3):
                response = register_from(app, ADDRESS, username=f"user{i}",
                                         email=f"user{i}@example.com")
                assert response.status_code == 302
        assert user_count() == 3
        assert caplog.text.count("registration limiter unavailable") == 3


# --- login: a lock-out tells nothing about which names are accounts --------------------------


def _login_page(app, identifier: str, password: str = "wrong password"):
    """A login POST through a fresh client with the page's own CSRF token; returns the
    response and its masked page."""
    client = app.test_client()
    token = csrf_token_from(client.get("/auth/login"))
    response = client.post("/auth/login", environ_base={"REMOTE_ADDR": ADDRESS}, data={
        "csrf_token": token, "username": identifier, "password": password})
    return response, masked(response, identifier)


def test_an_accounts_email_and_an_unknown_address_get_the_same_answers_after_a_lockout(
    throttled_app, make_user
):
    throttled_app.config["WTF_CSRF_ENABLED"] = True
    make_user("grace", email="grace@example.com")
    for _ in range(LOGIN_LIMIT):
        response, _ = _login_page(throttled_app, "grace")
        assert login_error(response) == LOGIN_FAILED
    locked, _ = _login_page(throttled_app, "grace", PASSWORD)
    assert locked.status_code == 429

    # Each identifier fails on its own counter, and the two answers never differ.
    for attempt in range(LOGIN_LIMIT + 2):
        known, known_page = _login_page(throttled_app, "grace@example.com")
        unknown, unknown_page = _login_page(throttled_app, "nobody@example.com")
        expected = 200 if attempt < LOGIN_LIMIT else 429
        assert known.status_code == unknown.status_code == expected, attempt
        assert known_page == unknown_page, attempt
    assert "Too many failed login attempts" in known_page


def test_a_throttled_login_runs_the_same_queries_for_an_account_and_an_unknown_name(
    throttled_app, make_user
):
    throttled_app.config["WTF_CSRF_ENABLED"] = True
    make_user("grace", email="grace@example.com")
    for identifier in ("grace@example.com", "nobody@example.com"):
        for _ in range(LOGIN_LIMIT):
            _login_page(throttled_app, identifier)
    known = _queries_during(lambda: _login_page(throttled_app, "grace@example.com"))
    unknown = _queries_during(lambda: _login_page(throttled_app, "nobody@example.com"))
    assert known.pop(0)[0].status_code == unknown.pop(0)[0].status_code == 429
    assert known == unknown and known  # the same statements, parameters aside


def _queries_during(action) -> list:
    """``[result of action, *SQL statements it ran]``."""
    statements: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        result = action()
    finally:
        event.remove(db.engine, "before_cursor_execute", record)
    return [result, *statements]
