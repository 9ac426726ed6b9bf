"""Own profile, editing it, changing the password, and public profiles."""

from __future__ import annotations

import pytest

from simplechat.extensions import db
from simplechat.models import User
from tests.conftest import PASSWORD

LONG = "x" * 10_000
NEW_PASSWORD = "a brand new passphrase"


@pytest.fixture
def ada(make_user, auth):
    user = make_user("ada", first_name="Ada", last_name="Lovelace", email="ada@example.com")
    auth.login("ada")
    return user


def reloaded(user: User) -> User:
    db.session.expire_all()
    return db.session.get(User, user.id)


# --- login required ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/profile/", "/profile/edit", "/profile/password", "/profile/someone"]
)
def test_profile_pages_redirect_anonymous_users_to_login(client, make_user, path):
    make_user("someone")
    response = client.get(path)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/auth/login?next=")


@pytest.mark.parametrize("path", ["/profile/edit", "/profile/password"])
def test_profile_forms_refuse_anonymous_posts(client, make_user, path):
    user = make_user("someone")
    before = (user.email, user.password_hash)
    response = client.post(
        path,
        data={
            "email": "x@example.com",
            "first_name": "X",
            "last_name": "Y",
            "current_password": PASSWORD,
            "password": NEW_PASSWORD,
            "confirm": NEW_PASSWORD,
        },
    )
    assert response.status_code == 302
    user = reloaded(user)
    assert (user.email, user.password_hash) == before


# --- own profile ---------------------------------------------------------------------------


def test_own_profile_shows_details_and_links(client, ada):
    response = client.get("/profile/")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    for text in (
        "@ada",
        "Ada",
        "Lovelace",
        "ada@example.com",
        "Member since",
        ada.created_at.strftime("%Y-%m-%d"),
        'href="/profile/edit"',
        'href="/profile/password"',
        "auth-card",
    ):
        assert text in html


# --- edit ----------------------------------------------------------------------------------


def test_edit_form_is_prefilled_with_current_details(client, ada):
    html = client.get("/profile/edit").get_data(as_text=True)
    assert 'value="Ada"' in html and 'value="ada@example.com"' in html
    assert 'autocomplete="email"' in html and "style=" not in html


def test_edit_profile_saves_names_and_lower_cased_email(client, ada):
    response = client.post(
        "/profile/edit",
        data={"first_name": "Augusta", "last_name": "King", "email": "Augusta@Example.org"},
    )
    assert response.status_code == 302
    assert response.headers["Location"] == "/profile/"
    user = reloaded(ada)
    assert (user.first_name, user.last_name, user.email) == (
        "Augusta",
        "King",
        "augusta@example.org",
    )


def test_edit_profile_keeps_own_email_in_another_case(client, ada):
    response = client.post(
        "/profile/edit", data={"first_name": "Ada", "last_name": "King", "email": "ADA@example.com"}
    )
    assert response.status_code == 302
    user = reloaded(ada)
    assert (user.last_name, user.email) == ("King", "ada@example.com")


def test_edit_profile_refuses_another_users_email_in_any_case(client, ada, make_user):
    make_user("bob", email="bob@example.com")
    response = client.post(
        "/profile/edit", data={"first_name": "Ada", "last_name": "King", "email": "BOB@Example.com"}
    )
    assert response.status_code == 200
    assert "That e-mail address is already registered." in response.get_data(as_text=True)
    user = reloaded(ada)
    assert (user.last_name, user.email) == ("Lovelace", "ada@example.com")


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"first_name": "Ada", "last_name": "King"},
        {"first_name": "", "last_name": "King", "email": "ada@example.com"},
        {"first_name": "Ada", "last_name": "King", "email": "not-an-email"},
        {"first_name": LONG, "last_name": "King", "email": "ada@example.com"},
        {"first_name": "Ada", "last_name": LONG, "email": "ada@example.com"},
        {"first_name": "Ada", "last_name": "King", "email": LONG + "@example.com"},
        {"first_name": "Ada\x00", "last_name": "King", "email": "ada@example.com"},
        {"first_name": ["Ada", "Eve"], "last_name": "King", "email": "ada@example.com"},
    ],
    ids=[
        "empty",
        "no-email",
        "blank-name",
        "bad-email",
        "long-first",
        "long-last",
        "long-email",
        "nul",
        "list",
    ],
)
def test_edit_profile_with_bad_input_changes_nothing(client, ada, data):
    response = client.post("/profile/edit", data=data)
    assert response.status_code == 200
    assert "is-invalid" in response.get_data(as_text=True)
    user = reloaded(ada)
    assert (user.first_name, user.last_name, user.email) == ("Ada", "Lovelace", "ada@example.com")


def test_edit_profile_with_json_payload_changes_nothing(client, ada):
    response = client.post(
        "/profile/edit", json={"first_name": {"a": 1}, "last_name": 7, "email": ["x@example.com"]}
    )
    assert response.status_code in (200, 400)
    user = reloaded(ada)
    assert (user.first_name, user.last_name, user.email) == ("Ada", "Lovelace", "ada@example.com")


def test_edit_profile_without_csrf_token_is_refused_when_csrf_is_enabled(client, app, ada):
    app.config["WTF_CSRF_ENABLED"] = True
    response = client.post(
        "/profile/edit",
        data={"first_name": "Augusta", "last_name": "King", "email": "augusta@example.org"},
    )
    assert response.status_code == 400
    assert reloaded(ada).first_name == "Ada"


# --- password ------------------------------------------------------------------------------


def test_change_password_with_the_right_current_password(client, auth, ada):
    response = client.post(
        "/profile/password",
        data={"current_password": PASSWORD, "password": NEW_PASSWORD, "confirm": NEW_PASSWORD},
    )
    assert response.status_code == 302
    assert response.headers["Location"] == "/profile/"
    assert reloaded(ada).check_password(NEW_PASSWORD)

    auth.logout()
    assert auth.login("ada", PASSWORD).status_code == 200
    assert auth.login("ada", NEW_PASSWORD).status_code == 302


def test_change_password_with_a_wrong_current_password_keeps_the_hash(client, ada):
    before = ada.password_hash
    response = client.post(
        "/profile/password",
        data={
            "current_password": "not my password",
            "password": NEW_PASSWORD,
            "confirm": NEW_PASSWORD,
        },
    )
    assert response.status_code == 200
    assert "That is not your current password." in response.get_data(as_text=True)
    assert reloaded(ada).password_hash == before


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"current_password": PASSWORD, "password": NEW_PASSWORD},
        {"current_password": PASSWORD, "password": NEW_PASSWORD, "confirm": NEW_PASSWORD + "x"},
        {"current_password": PASSWORD, "password": "short", "confirm": "short"},
        {"current_password": PASSWORD, "password": LONG, "confirm": LONG},
        {"current_password": LONG, "password": NEW_PASSWORD, "confirm": NEW_PASSWORD},
        {"current_password": [PASSWORD, "x"], "password": NEW_PASSWORD, "confirm": NEW_PASSWORD},
    ],
    ids=["empty", "no-confirm", "mismatch", "short", "long", "long-current", "list"],
)
def test_change_password_with_bad_input_keeps_the_hash(client, ada, data):
    before = ada.password_hash
    response = client.post("/profile/password", data=data)
    assert response.status_code == 200
    assert "is-invalid" in response.get_data(as_text=True)
    assert reloaded(ada).password_hash == before


# --- public profile ------------------------------------------------------------------------


def test_public_profile_shows_name_and_no_email(client, ada, make_user):
    make_user("Grace", first_name="Grace", last_name="Hopper", email="grace.secret@example.net")
    response = client.get("/profile/grace")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    for text in ("@Grace", "Grace Hopper", "Member since"):
        assert text in html
    assert "grace.secret" not in html and "example.net" not in html
    assert "@example" not in html


@pytest.mark.parametrize("username", ["nobody", "no%00body", "a" * 5000, "..."])
def test_public_profile_of_unknown_username_is_404(client, ada, username):
    assert client.get(f"/profile/{username}").status_code == 404
