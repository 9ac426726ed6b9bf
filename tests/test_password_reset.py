"""Password reset by e-mail, against a real SMTP server: the mail and its link, the link working
once and for a limited time, every session ending, the same answer for unknown addresses, the
throttles, and every refusal of the two pages."""

from __future__ import annotations

import time
from urllib.parse import urlsplit

import pytest
from itsdangerous import URLSafeTimedSerializer
from sqlalchemy import select

from simplechat.auth.reset import SALT, reset_token, send_reset_mail
from simplechat.extensions import db, socketio
from simplechat.models import GenericActivityLog, User
from tests.conftest import PASSWORD, app_in_context
from tests.mailbox import SITE_URL, links, mailbox_fixture, parts  # noqa: F401  (a fixture)

NEW_PASSWORD = "a brand new passphrase"


@pytest.fixture
def app(database_uri, redis_url, mailbox):
    mailbox.clear()
    yield from app_in_context(database_uri, redis_url, **mailbox.settings())


def login(app, username: str, password: str = PASSWORD):
    http = app.test_client()
    return http, http.post("/auth/login", data={"username": username, "password": password})


def logged_in(http) -> bool:
    return http.get("/profile/").status_code == 200


def ask(http, email: str, ip: str = "192.0.2.1"):
    return http.post("/auth/reset", data={"email": email}, environ_base={"REMOTE_ADDR": ip})


def reset_path(mailbox, to: str) -> str:
    """The path of the reset link in the one mail to ``to``."""
    text, html = parts(mailbox.wait_for(1, to=to)[0])
    [link] = links(text, f"{SITE_URL}/auth/reset/")
    assert link in links(html)
    return urlsplit(link).path


def password_of(user_id: int) -> str:
    db.session.expire_all()
    return db.session.get(User, user_id).password_hash


# --- the page and the mail ---

def test_the_login_page_links_to_the_reset_page(client):
    page = client.get("/auth/login").get_data(as_text=True)
    assert 'id="forgot-password"' in page and 'href="/auth/reset"' in page
    form = client.get("/auth/reset").get_data(as_text=True)
    assert 'name="email"' in form and "reset-not-configured" not in form


def test_a_reset_mail_has_both_parts_escaped_and_a_link_under_the_site_url(
        client, make_user, mailbox):
    make_user("ada", first_name="Ada <b>&", email="ada@example.com")
    response = ask(client, "ADA@example.com ")
    assert response.status_code == 200 and 'id="reset-sent"' in response.get_data(as_text=True)

    mail = mailbox.wait_for(1, to="ada@example.com")[0]
    assert mail["To"] == "ada@example.com"
    assert mail["From"] == "Simple Chat <chat@chat.example>"
    assert mail["Subject"] == "Reset your Simple Chat password"
    assert mail.is_multipart() and mail.get_content_type() == "multipart/alternative"
    text, html = parts(mail)
    assert "Hello Ada <b>&," in text  # plain text is not HTML: nothing to escape
    assert "Ada &lt;b&gt;&amp;" in html and "<b>&" not in html
    [link] = links(text, f"{SITE_URL}/auth/reset/")
    assert link.startswith(f"{SITE_URL}/auth/reset/")
    assert f'href="{link}"' in html
    assert "within 60 minutes" in text


def test_the_link_sets_the_password_and_ends_every_session_and_socket(
        app, client, make_user, mailbox):
    ada = make_user("ada")
    laptop, _ = login(app, "ada")
    socket = socketio.test_client(app, namespace="/chat", flask_test_client=laptop)
    assert socket.is_connected("/chat")
    ask(client, "ada@example.com")
    path = reset_path(mailbox, "ada@example.com")

    page = client.get(path)
    assert page.status_code == 200
    body = page.get_data(as_text=True)
    assert 'name="password"' in body and 'name="confirm"' in body and "ada" in body
    response = client.post(path, data={"password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    assert response.status_code == 302 and response.headers["Location"] == "/auth/login"

    ended = [p["args"][0] for p in socket.queue if p["name"] == "session_ended"]
    assert ended == [{"reason": "password_changed"}]
    assert not socket.is_connected("/chat") and not logged_in(laptop)
    assert login(app, "ada")[1].status_code == 200  # the old password is refused
    assert login(app, "ada", NEW_PASSWORD)[1].status_code == 302
    actions = db.session.scalars(select(GenericActivityLog.action)
                                 .where(GenericActivityLog.user_id == ada.id)).all()
    assert "password_reset" in actions


@pytest.mark.parametrize("revoke", [True, False])
def test_the_reset_revokes_api_tokens_unless_told_not_to(app, client, make_user, revoke):
    from simplechat.auth.tokens import create_token, live_tokens

    ada = make_user("ada")
    create_token(ada, "laptop script")
    form = client.get(f"/auth/reset/{reset_token(ada)}").get_data(as_text=True)
    assert 'name="revoke_tokens"' in form and "checked" in form  # ticked by default
    data = {"password": NEW_PASSWORD, "confirm": NEW_PASSWORD}
    if revoke:
        data["revoke_tokens"] = "y"
    assert client.post(f"/auth/reset/{reset_token(ada)}", data=data).status_code == 302
    assert len(live_tokens(ada.id)) == (0 if revoke else 1)


def test_a_link_works_once(app, client, make_user, mailbox):
    ada = make_user("ada")
    ask(client, "ada@example.com")
    path = reset_path(mailbox, "ada@example.com")
    assert client.post(path, data={"password": NEW_PASSWORD,
                                   "confirm": NEW_PASSWORD}).status_code == 302
    after_first = password_of(ada.id)

    again = client.get(path)
    assert again.status_code == 400 and "used already" in again.get_data(as_text=True)
    second = client.post(path, data={"password": "another passphrase",
                                     "confirm": "another passphrase"})
    assert second.status_code == 400
    assert password_of(ada.id) == after_first


def test_a_link_checked_before_another_use_set_the_password_still_sets_nothing(
        app, make_user):
    """Two requests with one link, both checked before either stored: the second finds the
    hash changed under it and stores nothing."""
    from types import SimpleNamespace

    from simplechat.auth.reset import reset_password, user_of_token

    ada = make_user("ada")
    token = reset_token(ada)
    checked = user_of_token(token)
    as_second_read_it = SimpleNamespace(id=ada.id, password_hash=checked.password_hash)
    with app.test_request_context():
        assert reset_password(checked, NEW_PASSWORD) is True
        stored = password_of(ada.id)
        assert reset_password(as_second_read_it, "another passphrase") is False
    assert password_of(ada.id) == stored


def test_an_expired_link_is_refused(app, client, make_user):
    ada = make_user("ada")
    before = password_of(ada.id)
    token = reset_token(ada, issued_at=int(time.time()) - 3601)
    page = client.get(f"/auth/reset/{token}")
    assert page.status_code == 400 and "has expired" in page.get_data(as_text=True)
    post = client.post(f"/auth/reset/{token}",
                       data={"password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    assert post.status_code == 400 and password_of(ada.id) == before
    # Within its time it works.
    fresh = reset_token(ada, issued_at=int(time.time()) - 3500)
    assert client.get(f"/auth/reset/{fresh}").status_code == 200


def _tampered(kind: str, app, user: User) -> str:
    good = reset_token(user)
    payload, stamp, signature = good.split(".")
    if kind == "signature":
        return f"{payload}.{stamp}.{signature[:-2]}{'AA' if signature[-2:] != 'AA' else 'BB'}"
    if kind == "payload":
        other = URLSafeTimedSerializer("x", salt=SALT).dumps([user.id + 1, "0" * 24])
        return f"{other.split('.')[0]}.{stamp}.{signature}"
    if kind == "other secret":
        return URLSafeTimedSerializer("not the secret", salt=SALT).dumps([user.id, "x"])
    if kind == "other salt":
        return URLSafeTimedSerializer(app.config["SECRET_KEY"], salt="other").dumps(
            [user.id, "x"])
    signed = URLSafeTimedSerializer(app.config["SECRET_KEY"], salt=SALT)
    shapes = {"not a list": {"id": user.id}, "id a string": [str(user.id), "x"],
              "id a bool": [True, "x"], "three items": [user.id, "x", 1],
              "unknown user": [user.id + 1000, "x"], "wrong fingerprint": [user.id, "0" * 24]}
    if kind in shapes:
        return signed.dumps(shapes[kind])
    return {"garbage": "not-a-token", "too long": "a" * 600, "dots": "a.b.c"}[kind]


@pytest.mark.parametrize("kind", ["signature", "payload", "other secret", "other salt",
                                  "not a list", "id a string", "id a bool", "three items",
                                  "unknown user", "wrong fingerprint", "garbage", "too long",
                                  "dots"])
def test_a_tampered_link_is_refused_and_changes_nothing(app, client, make_user, kind):
    ada = make_user("ada")
    before = password_of(ada.id)
    token = _tampered(kind, app, ada)
    page = client.get(f"/auth/reset/{token}")
    assert page.status_code == 400 and "not valid" in page.get_data(as_text=True)
    post = client.post(f"/auth/reset/{token}",
                       data={"password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    assert post.status_code == 400 and password_of(ada.id) == before


def test_a_link_dies_when_the_password_or_address_changes(app, client, make_user):
    ada = make_user("ada")
    by_password, by_address = reset_token(ada), reset_token(ada)
    ada.set_password("changed another way")
    db.session.commit()
    assert client.get(f"/auth/reset/{by_password}").status_code == 400
    ada.email = "new@example.com"
    db.session.commit()
    assert client.get(f"/auth/reset/{by_address}").status_code == 400
    assert client.get(f"/auth/reset/{reset_token(ada)}").status_code == 200


def test_an_inactive_user_or_bot_gets_no_working_link(app, client, make_user):
    ada, bot = make_user("ada", is_active=False), make_user("helper", is_bot=True)
    for user in (ada, bot):
        assert client.get(f"/auth/reset/{reset_token(user)}").status_code == 400


# --- the same answer, and nothing mailed, for an address without an account ---

def test_an_unknown_address_gets_the_same_answer_and_no_mail(app, client, make_user, mailbox):
    make_user("ada")
    make_user("sleepy", is_active=False)
    make_user("robot", is_bot=True)
    known = ask(client, "ada@example.com", ip="192.0.2.1")
    unknown = ask(client, "nobody@example.com", ip="192.0.2.2")
    assert known.status_code == unknown.status_code == 200
    assert (known.get_data(as_text=True).replace("ada@example.com", "X")
            == unknown.get_data(as_text=True).replace("nobody@example.com", "X"))
    mailbox.wait_for(1, to="ada@example.com")
    # The task the request queued, run again here: no account, no mail.
    for address in ("nobody@example.com", "sleepy@example.com", "robot@example.com"):
        assert send_reset_mail.run(address) is False
    assert send_reset_mail.run("ada@example.com") is True
    assert [m["To"] for m in mailbox.wait_for(2)] == ["ada@example.com"] * 2


# --- throttles ---

@pytest.fixture
def limited_app(database_uri, redis_url, mailbox):
    mailbox.clear()
    yield from app_in_context(database_uri, redis_url, RESET_RATE_LIMIT_EMAIL="2/hour",
                              RESET_RATE_LIMIT_IP="3/hour", **mailbox.settings())


def test_requests_are_throttled_per_address_whether_it_has_an_account_or_not(limited_app):
    http = limited_app.test_client()
    for address in ("nobody@example.com", "Nobody@Example.com"):
        assert ask(http, address, ip="198.51.100.1").status_code == 200
    refused = ask(http, "nobody@example.com", ip="198.51.100.2")  # another client: still
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0
    assert "Too many reset requests" in refused.get_data(as_text=True)
    assert ask(http, "other@example.com", ip="198.51.100.2").status_code == 200


def test_requests_are_throttled_per_client(limited_app):
    http = limited_app.test_client()
    for n in range(3):
        assert ask(http, f"user{n}@example.com", ip="203.0.113.9").status_code == 200
    assert ask(http, "user9@example.com", ip="203.0.113.9").status_code == 429
    # The refused request did not use up that address: from elsewhere it goes through.
    assert ask(http, "user9@example.com", ip="203.0.113.10").status_code == 200


# --- refusals ---

@pytest.mark.parametrize("data", [{}, {"email": ""}, {"email": "not an address"},
                                  {"email": "a@b"}, {"email": "x" * 250 + "@example.com"},
                                  {"email": "ada@example.com\x00"},
                                  {"email": ["ada@example.com", "bob@example.com"]}])
def test_a_bad_address_is_answered_with_the_form_and_mails_nothing(
        app, client, make_user, mailbox, data):
    make_user("ada")
    response = client.post("/auth/reset", data=data)
    assert response.status_code == 200
    body = response.get_data(as_text=True)
    assert 'id="form-errors"' in body and 'id="reset-sent"' not in body
    assert send_reset_mail.run("ada@example.com") is True  # the server does send...
    assert len(mailbox.wait_for(1)) == 1  # ...and only this one arrived


def test_reset_forms_need_the_csrf_token(app, client, make_user):
    ada = make_user("ada")
    before = password_of(ada.id)
    token = reset_token(ada)
    app.config["WTF_CSRF_ENABLED"] = True
    try:
        assert client.post("/auth/reset", data={"email": "ada@example.com"}).status_code == 400
        assert client.post(f"/auth/reset/{token}", data={
            "password": NEW_PASSWORD, "confirm": NEW_PASSWORD}).status_code == 400
        form = client.get(f"/auth/reset/{token}").get_data(as_text=True)
        assert 'name="csrf_token"' in form
    finally:
        app.config["WTF_CSRF_ENABLED"] = False
    assert password_of(ada.id) == before


@pytest.mark.parametrize("data", [{}, {"password": NEW_PASSWORD},
                                  {"password": NEW_PASSWORD, "confirm": "something else"},
                                  {"password": "short", "confirm": "short"},
                                  {"password": "x" * 129, "confirm": "x" * 129},
                                  {"password": [NEW_PASSWORD, "b"], "confirm": NEW_PASSWORD}])
def test_a_bad_new_password_changes_nothing_and_keeps_the_link(app, client, make_user, data):
    ada = make_user("ada")
    before = password_of(ada.id)
    token = reset_token(ada)
    response = client.post(f"/auth/reset/{token}", data=data)
    assert response.status_code == 200 and 'id="form-errors"' in response.get_data(as_text=True)
    assert password_of(ada.id) == before
    assert client.get(f"/auth/reset/{token}").status_code == 200


def test_the_reset_routes_take_only_get_and_post(client):
    assert client.put("/auth/reset").status_code == 405
    assert client.delete("/auth/reset/abc").status_code == 405


# --- no mail server ---

@pytest.fixture
def mailless_app(database_uri, redis_url):
    yield from app_in_context(database_uri, redis_url, MAIL_SERVER=None, SITE_URL=None)


def test_without_a_mail_server_the_page_says_so_and_set_password_still_works(mailless_app):
    http = mailless_app.test_client()
    page = http.get("/auth/reset")
    assert page.status_code == 200 and 'id="reset-not-configured"' in page.get_data(as_text=True)
    assert 'name="email"' not in page.get_data(as_text=True)
    assert http.post("/auth/reset", data={"email": "ada@example.com"}).status_code == 503
    user = User(username="ada", first_name="Ada", last_name="L", email="ada@example.com")
    user.set_password(PASSWORD)
    db.session.add(user)
    db.session.commit()
    result = mailless_app.test_cli_runner().invoke(
        args=["users", "set-password", "ada", "--password", NEW_PASSWORD])
    assert result.exit_code == 0, result.output
    assert http.post("/auth/login", data={"username": "ada",
                                          "password": NEW_PASSWORD}).status_code == 302


def test_a_mail_server_without_a_site_url_sends_no_links(database_uri, redis_url, mailbox):
    for app in app_in_context(database_uri, redis_url, **mailbox.settings(SITE_URL=None)):
        page = app.test_client().get("/auth/reset").get_data(as_text=True)
        assert 'id="reset-not-configured"' in page


def test_with_password_login_off_there_is_nothing_to_reset(database_uri, redis_url, mailbox):
    mailbox.clear()
    for app in app_in_context(database_uri, redis_url, PASSWORD_LOGIN=False,
                              **mailbox.settings()):
        user = User(username="ada", first_name="Ada", last_name="L", email="ada@example.com")
        user.set_password(PASSWORD)
        db.session.add(user)
        db.session.commit()
        http = app.test_client()
        page = http.get("/auth/reset").get_data(as_text=True)
        assert 'id="reset-not-configured"' in page and "not used to log in" in page
        assert http.post("/auth/reset", data={"email": "ada@example.com"}).status_code == 503
        assert http.get(f"/auth/reset/{reset_token(user)}").status_code == 400
        assert send_reset_mail.run("ada@example.com") is False  # a task queued before
        assert mailbox.mails() == []
