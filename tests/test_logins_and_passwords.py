"""Logins and passwords against a hostile user: successful logins are limited per account and per
address too, every password hash runs on the CPU pool (never on the event loop), and a password
change ends the API tokens (on the profile page by default, and from the command line)."""

from __future__ import annotations

import re
import threading

import pytest
from conftest import PASSWORD, app_in_context
from sqlalchemy import func, select
from test_hostile_sends import held_pool
from werkzeug.security import check_password_hash, generate_password_hash

import simplechat.auth.passwords as passwords_module
from simplechat.auth.tokens import create_token
from simplechat.extensions import db
from simplechat.models import ApiToken, User

ADDRESS, OTHER_ADDRESS = "203.0.113.5", "203.0.113.6"
NEW_PASSWORD = "a brand new passphrase"
BUSY = "The server is busy. Try again in a moment."


@pytest.fixture
def app(database_uri, backend):
    """Three successful logins per account and five per address an hour; one CPU slot, no
    queue (so held_pool() makes every hash refused)."""
    yield from app_in_context(database_uri, backend, LOGIN_SUCCESS_RATE_LIMIT_ACCOUNT="3/hour",
                              LOGIN_SUCCESS_RATE_LIMIT_IP="5/hour", CHAT_CPU_WORKERS=1,
                              CHAT_CPU_QUEUE=0)


def login(app, username: str, password: str = PASSWORD, ip: str = ADDRESS):
    client = app.test_client()
    response = client.post("/auth/login", environ_base={"REMOTE_ADDR": ip},
                           data={"username": username, "password": password})
    return response, client


def logged_in(client) -> bool:
    with client.session_transaction() as session:
        return session.get("_user_id") is not None


def login_error(response) -> str | None:
    match = re.search(r'id="login-error">([^<]*)<', response.get_data(as_text=True))
    return match.group(1).strip() if match else None


def live_token_count(user_id: int) -> int:
    db.session.expire_all()
    return db.session.scalar(select(func.count()).select_from(ApiToken).where(
        ApiToken.user_id == user_id, ApiToken.revoked_at.is_(None)))


# --- successful logins are limited ------------------------------------------------------------


def test_successful_logins_are_limited_per_account(app, make_user):
    make_user("ada", email="ada@example.com")
    make_user("bob")
    # By name or by address, from anywhere: the account's count.
    for name, ip in (("ada", ADDRESS), ("ada@example.com", OTHER_ADDRESS), ("ADA", "198.51.100.7")):
        response, _ = login(app, name, ip=ip)
        assert response.status_code == 302
    response, client = login(app, "ada", ip="198.51.100.8")
    assert response.status_code == 429
    seconds = int(re.fullmatch(r"Too many logins\. Try again in (\d+) seconds\.",
                               login_error(response)).group(1))
    assert 0 < seconds <= 3600
    assert 0 < int(response.headers["Retry-After"]) <= 3600
    assert not logged_in(client)
    assert login(app, "bob", ip="198.51.100.8")[0].status_code == 302  # another account


def test_successful_logins_are_limited_per_address(app, make_user):
    for i in range(6):
        make_user(f"user{i}")
    for i in range(5):
        assert login(app, f"user{i}")[0].status_code == 302
    response, client = login(app, "user5")
    assert response.status_code == 429
    assert login_error(response).startswith("Too many logins.")
    assert not logged_in(client)
    assert login(app, "user5", ip=OTHER_ADDRESS)[0].status_code == 302


def test_a_login_past_the_limit_checks_no_password(app, make_user):
    make_user("ada")
    for _ in range(3):
        assert login(app, "ada")[0].status_code == 302
    # With the pool full a checked password is refused with 503: this one is never checked.
    with held_pool():
        response, client = login(app, "ada")
    assert response.status_code == 429 and not logged_in(client)


def test_failed_logins_do_not_use_up_the_successful_ones(app, make_user):
    make_user("ada")
    for _ in range(3):
        assert login(app, "ada", "wrong password")[0].status_code == 200
    for _ in range(3):
        assert login(app, "ada")[0].status_code == 302


def test_a_success_past_the_limit_found_after_the_check_is_refused(app, make_user):
    """Two logins checked at once may both see one left; the second to count it is refused."""
    from simplechat.infra.services import services

    user = make_user("ada")
    for _ in range(2):
        assert login(app, "ada")[0].status_code == 302
    limiter = services().login_limiter
    assert limiter.success_wait(ADDRESS, user.id) == 0.0
    assert limiter.succeeded(user.id, OTHER_ADDRESS) == 0.0  # the other login takes the last
    assert limiter.succeeded(user.id, ADDRESS) > 0


# --- every hash on the CPU pool ---------------------------------------------------------------


def test_logins_hash_on_the_cpu_pool(app, make_user):
    make_user("ada")
    with held_pool():
        for name in ("ada", "nobody"):  # an unknown name costs a hash all the same
            response, client = login(app, name)
            assert response.status_code == 503, name
            assert login_error(response) == BUSY
            assert response.headers["Retry-After"] == "1"
            assert not logged_in(client)
    assert login(app, "ada")[0].status_code == 302


def test_registration_hashes_on_the_cpu_pool(app):
    data = {"username": "ada", "first_name": "Ada", "last_name": "L", "email": "ada@example.com",
            "password": PASSWORD, "confirm": PASSWORD}
    with held_pool():
        response = app.test_client().post("/auth/register", data=data)
    assert response.status_code == 503 and BUSY in response.get_data(as_text=True)
    assert db.session.scalar(select(func.count()).select_from(User)) == 0
    assert app.test_client().post("/auth/register", data=data).status_code == 302


def test_a_password_change_hashes_on_the_cpu_pool(app, make_user):
    user = make_user("ada")
    before = user.password_hash
    _, client = login(app, "ada")
    change = {"current_password": PASSWORD, "password": NEW_PASSWORD, "confirm": NEW_PASSWORD}
    with held_pool():
        response = client.post("/profile/password", data=change)
    assert response.status_code == 503 and BUSY in response.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(User, user.id).password_hash == before


def test_the_command_line_hashes_on_the_cpu_pool(app, make_user, monkeypatch):
    """The flask commands share the server's code path: the hash is made on a pool thread."""
    threads: list[str] = []

    def generate(password, method):
        threads.append(threading.current_thread().name)
        return generate_password_hash(password, method=method)

    monkeypatch.setattr(passwords_module, "generate_password_hash", generate)
    make_user("ada")
    runner = app.test_cli_runner()
    for args in (["users", "set-password", "ada", "--password", NEW_PASSWORD],
                 ["users", "create", "bob", "--email", "bob@example.com", "--password", PASSWORD]):
        result = runner.invoke(args=args)
        assert result.exit_code == 0, result.output
    assert len(threads) == 2
    assert all(name.startswith("offload") for name in threads), threads
    db.session.expire_all()
    ada = db.session.scalar(select(User).where(User.username == "ada"))
    assert check_password_hash(ada.password_hash, NEW_PASSWORD)


# --- a password change ends the API tokens ----------------------------------------------------


def test_the_password_page_offers_to_revoke_the_tokens_checked(app, make_user):
    make_user("ada")
    _, client = login(app, "ada")
    page = client.get("/profile/password").get_data(as_text=True)
    box = re.search(r'<input[^>]*name="revoke_tokens"[^>]*>', page).group(0)
    assert 'type="checkbox"' in box and "checked" in box
    assert "Also revoke my API tokens" in page


def test_a_password_change_revokes_the_tokens_when_asked(app, make_user):
    ada, bob = make_user("ada"), make_user("bob")
    secret = create_token(ada, "script").secret
    create_token(ada, "another")
    create_token(bob, "bob's")
    _, client = login(app, "ada")
    assert app.test_client().get("/api/me", headers={
        "Authorization": f"Bearer {secret}"}).status_code == 200
    response = client.post("/profile/password", data={
        "current_password": PASSWORD, "password": NEW_PASSWORD, "confirm": NEW_PASSWORD,
        "revoke_tokens": "y"})
    assert response.status_code == 302
    assert live_token_count(ada.id) == 0 and live_token_count(bob.id) == 1
    assert app.test_client().get("/api/me", headers={
        "Authorization": f"Bearer {secret}"}).status_code == 401
    follow = client.get("/profile/").get_data(as_text=True)
    assert "2 API token(s) were revoked." in follow


def test_a_password_change_keeps_the_tokens_when_unchecked(app, make_user):
    ada = make_user("ada")
    create_token(ada, "script")
    _, client = login(app, "ada")
    response = client.post("/profile/password", data={
        "current_password": PASSWORD, "password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    assert response.status_code == 302
    assert live_token_count(ada.id) == 1


def test_set_password_on_the_command_line_revokes_the_tokens(app, make_user):
    ada = make_user("ada")
    secret = create_token(ada, "script").secret
    create_token(ada, "another")
    runner = app.test_cli_runner()
    result = runner.invoke(args=["users", "set-password", "ada", "--password", NEW_PASSWORD])
    assert result.exit_code == 0, result.output
    assert "2 API token(s) revoked" in result.output
    assert live_token_count(ada.id) == 0
    assert app.test_client().get("/api/me", headers={
        "Authorization": f"Bearer {secret}"}).status_code == 401
    create_token(ada, "kept")
    result = runner.invoke(args=["users", "set-password", "ada", "--password", PASSWORD,
                                 "--keep-tokens"])
    assert result.exit_code == 0, result.output
    assert "0 API token(s) revoked" in result.output
    assert live_token_count(ada.id) == 1
