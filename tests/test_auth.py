"""Register, log in and log out through the real forms."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from simplechat.auth.views import LOGIN_FAILED, safe_next
from simplechat.extensions import db
from simplechat.models import GenericActivityLog, User
from tests.conftest import PASSWORD

LONG = "x" * 10_000


def user_count() -> int:
    return db.session.execute(select(func.count(User.id))).scalar_one()


def activity_actions(user_id: int) -> list[str]:
    query = select(GenericActivityLog.action).where(GenericActivityLog.user_id == user_id)
    return list(db.session.execute(query.order_by(GenericActivityLog.id)).scalars())


def registration(**overrides) -> dict:
    data = {
        "username": "ada",
        "first_name": "Ada",
        "last_name": "Lovelace",
        "email": "Ada@Example.com",
        "password": PASSWORD,
        "confirm": PASSWORD,
    }
    data.update(overrides)
    return {key: value for key, value in data.items() if value is not None}


def logged_in_user_id(client) -> str | None:
    with client.session_transaction() as session:
        return session.get("_user_id")


def login_error(response) -> str | None:
    match = re.search(r'id="login-error">([^<]*)<', response.get_data(as_text=True))
    return match.group(1).strip() if match else None


def csrf_token_from(response) -> str:
    return re.search(
        r'name="csrf_token" type="hidden" value="([^"]+)"', response.get_data(as_text=True)
    ).group(1)


# --- pages ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/auth/register", "/auth/login"])
def test_auth_pages_have_labelled_fields_in_a_card_without_inline_script_or_style(client, path):
    response = client.get(path)
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "auth-card" in html
    assert "style=" not in html
    assert re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html) is None
    for name in re.findall(r'<input[^>]*\bid="(\w+)"[^>]*>', html):
        if name not in ("csrf_token", "next"):
            assert f'for="{name}"' in html, f"{name} has no label"
    assert 'autocomplete="username"' in html


def test_register_page_has_the_contract_field_names(client):
    html = client.get("/auth/register").get_data(as_text=True)
    for name in ("username", "first_name", "last_name", "email", "password", "confirm"):
        assert re.search(rf'<input[^>]*\bid="{name}"[^>]*\bname="{name}"', html), name


# --- register ------------------------------------------------------------------------------


def test_register_creates_user_with_hashed_password_and_logs_in(client, app):
    response = client.post("/auth/register", data=registration())
    assert response.status_code == 302
    assert response.headers["Location"] == "/chat/"

    user = db.session.execute(select(User).where(User.username == "ada")).scalar_one()
    assert (user.first_name, user.last_name) == ("Ada", "Lovelace")
    assert user.email == "ada@example.com"
    assert user.password_hash != PASSWORD and PASSWORD not in user.password_hash
    assert user.check_password(PASSWORD)
    assert user.is_active and not user.is_admin
    assert logged_in_user_id(client) == str(user.id)
    assert client.get("/profile/").status_code == 200
    assert "register" in activity_actions(user.id)


def test_register_trims_surrounding_spaces(client):
    client.post("/auth/register", data=registration(username="  ada ", first_name=" Ada "))
    user = db.session.execute(select(User)).scalar_one()
    assert (user.username, user.first_name) == ("ada", "Ada")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"username": None}, "This field is required."),
        ({"first_name": None}, "This field is required."),
        ({"last_name": None}, "This field is required."),
        ({"email": None}, "This field is required."),
        ({"password": None}, "This field is required."),
        ({"confirm": None}, "This field is required."),
        ({"first_name": "   "}, "This field is required."),
        ({"confirm": PASSWORD + "!"}, "The passwords do not match."),
        ({"email": "not-an-email"}, "Enter a valid e-mail address."),
        ({"email": "ada@"}, "Enter a valid e-mail address."),
        ({"password": "short", "confirm": "short"}, "between 8 and 128 characters"),
        ({"username": "ab"}, "between 3 and 32 characters"),
        ({"username": "ada lovelace"}, "Use only letters, digits"),
        ({"username": "ada@home"}, "Use only letters, digits"),
        ({"username": "ad\x00a"}, "Use only letters, digits"),
        ({"first_name": "Ada\x00"}, "not allowed"),
        ({"username": "edit"}, "already taken"),
        ({"username": "Password"}, "already taken"),
        ({"username": LONG}, "between 3 and 32 characters"),
        ({"first_name": LONG}, "longer than 64 characters"),
        ({"last_name": LONG}, "longer than 64 characters"),
        ({"email": LONG + "@example.com"}, "longer than 254 characters"),
        ({"password": LONG, "confirm": LONG}, "between 8 and 128 characters"),
        ({"username": ["ada", "bob"]}, "Send this field only once."),
        ({"email": ["ada@example.com", "bob@example.com"]}, "Send this field only once."),
    ],
)
def test_register_with_bad_input_shows_the_error_and_creates_nothing(client, overrides, message):
    response = client.post("/auth/register", data=registration(**overrides))
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert message in html
    assert "is-invalid" in html
    assert user_count() == 0
    assert logged_in_user_id(client) is None


def test_register_refuses_an_email_registered_in_another_case(client, make_user):
    make_user("someone", email="ada@example.com")
    response = client.post("/auth/register", data=registration(email="ADA@EXAMPLE.COM"))
    assert response.status_code == 200
    assert "That e-mail address is already registered." in response.get_data(as_text=True)
    assert user_count() == 1


def test_register_refuses_a_username_taken_in_another_case(client, make_user):
    make_user("Ada", email="other@example.com")
    response = client.post("/auth/register", data=registration(username="aDA"))
    assert response.status_code == 200
    assert "That username is already taken." in response.get_data(as_text=True)
    assert user_count() == 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"data": {}},
        {"json": registration()},
        {"json": ["not", "an", "object"]},
        {"json": {"username": {"nested": 1}, "password": 12345678}},
        {"data": "username=ada&&&=&%ff%fe", "content_type": "application/x-www-form-urlencoded"},
        {"data": b"\x00\xff garbage", "content_type": "application/octet-stream"},
    ],
    ids=["empty", "json", "json-list", "json-wrong-types", "mangled-form", "binary"],
)
def test_register_with_an_unusable_payload_is_refused_without_creating_anything(client, kwargs):
    response = client.post("/auth/register", **kwargs)
    assert response.status_code in (200, 400)
    assert user_count() == 0


def test_register_without_csrf_token_is_refused_when_csrf_is_enabled(client, app):
    app.config["WTF_CSRF_ENABLED"] = True
    response = client.post("/auth/register", data=registration())
    assert response.status_code == 400
    assert user_count() == 0
    assert logged_in_user_id(client) is None


def test_register_with_the_pages_csrf_token_succeeds_when_csrf_is_enabled(client, app):
    app.config["WTF_CSRF_ENABLED"] = True
    token = csrf_token_from(client.get("/auth/register"))
    response = client.post("/auth/register", data=registration(csrf_token=token))
    assert response.status_code == 302
    assert user_count() == 1


@pytest.mark.parametrize("path", ["/auth/register", "/auth/login"])
def test_logged_in_user_visiting_login_or_register_goes_to_chat(client, auth, make_user, path):
    make_user("ada")
    auth.login("ada")
    response = client.get(path)
    assert response.status_code == 302
    assert response.headers["Location"] == "/chat/"


# --- login ---------------------------------------------------------------------------------


@pytest.mark.parametrize("identifier", ["ada", "ADA", "aDa", "ada@example.com", "Ada@Example.COM"])
def test_login_by_username_or_email_in_any_case(client, auth, make_user, identifier):
    user = make_user("ada", email="ada@example.com")
    response = auth.login(identifier)
    assert response.status_code == 302
    assert response.headers["Location"] == "/chat/"
    assert logged_in_user_id(client) == str(user.id)
    assert activity_actions(user.id) == ["login"]


def test_wrong_password_and_unknown_user_give_the_identical_message(client, auth, make_user):
    make_user("ada")
    wrong_password = auth.login("ada", "not the password")
    unknown_user = auth.login("nobody", "not the password")
    for response in (wrong_password, unknown_user):
        assert response.status_code == 200
        assert login_error(response) == LOGIN_FAILED
    assert logged_in_user_id(client) is None


def test_deactivated_user_cannot_log_in(client, auth, make_user):
    make_user("ada", is_active=False)
    response = auth.login("ada")
    assert response.status_code == 200
    assert login_error(response) == LOGIN_FAILED
    assert logged_in_user_id(client) is None


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"username": "ada"},
        {"password": PASSWORD},
        {"username": LONG, "password": PASSWORD},
        {"username": "ada", "password": LONG},
        {"username": "ada\x00", "password": PASSWORD},
        {"username": ["ada", "bob"], "password": PASSWORD},
    ],
    ids=["empty", "no-password", "no-username", "long-username", "long-password", "nul", "list"],
)
def test_login_with_bad_input_is_refused(client, make_user, data):
    make_user("ada")
    response = client.post("/auth/login", data=data)
    assert response.status_code == 200
    assert "is-invalid" in response.get_data(as_text=True) or login_error(response)
    assert logged_in_user_id(client) is None


def test_login_with_json_payload_is_refused(client, make_user):
    make_user("ada")
    response = client.post("/auth/login", json={"username": ["ada"], "password": 1})
    assert response.status_code in (200, 400)
    assert logged_in_user_id(client) is None


def test_login_with_remember_sets_a_remember_cookie(client, make_user):
    make_user("ada")
    client.post("/auth/login", data={"username": "ada", "password": PASSWORD, "remember": "y"})
    assert client.get_cookie("simplechat_remember") is not None


def test_login_follows_a_local_next_from_the_query_string(client, make_user):
    make_user("ada")
    response = client.post(
        "/auth/login?next=/profile/", data={"username": "ada", "password": PASSWORD}
    )
    assert response.headers["Location"] == "/profile/"


def test_login_follows_a_local_next_from_the_hidden_field(client, make_user):
    make_user("ada")
    page = client.get("/auth/login?next=/profile/").get_data(as_text=True)
    assert 'name="next" type="hidden" value="/profile/"' in page
    response = client.post(
        "/auth/login", data={"username": "ada", "password": PASSWORD, "next": "/profile/"}
    )
    assert response.headers["Location"] == "/profile/"


EVIL_TARGETS = [
    "//evil.example",
    "https://evil.example/x",
    "/\\evil.example",
    "\\\\evil.example",
    "/\t/evil.example",
    "javascript:alert(1)",
    "evil.example",
    "///evil.example",
]


@pytest.mark.parametrize("target", EVIL_TARGETS)
def test_login_ignores_a_next_that_leaves_the_site(client, make_user, target):
    make_user("ada")
    via_query = client.post(
        "/auth/login", query_string={"next": target}, data={"username": "ada", "password": PASSWORD}
    )
    assert via_query.headers["Location"] == "/chat/"
    client.post("/auth/logout")
    via_field = client.post(
        "/auth/login", data={"username": "ada", "password": PASSWORD, "next": target}
    )
    assert via_field.headers["Location"] == "/chat/"


def test_login_page_does_not_echo_an_unsafe_next(client):
    html = client.get("/auth/login", query_string={"next": "//evil.example"}).get_data(as_text=True)
    assert "evil.example" not in html


@pytest.mark.parametrize("target", EVIL_TARGETS + [None, 42, "", "/" + "a" * 5000])
def test_safe_next_refuses_anything_but_a_local_path(target):
    assert safe_next(target) is None


@pytest.mark.parametrize("target", ["/", "/profile/", "/chat/3?x=1#m"])
def test_safe_next_accepts_local_paths(target):
    assert safe_next(target) == target


# --- logout --------------------------------------------------------------------------------


def test_logout_by_get_is_not_allowed(client, auth, make_user):
    make_user("ada")
    auth.login("ada")
    assert client.get("/auth/logout").status_code == 405
    assert logged_in_user_id(client) is not None


def test_logout_logs_out_records_activity_and_goes_to_login(client, auth, make_user):
    user = make_user("ada")
    auth.login("ada")
    response = auth.logout()
    assert response.status_code == 302
    assert response.headers["Location"] == "/auth/login"
    assert logged_in_user_id(client) is None
    assert client.get("/profile/").status_code == 302
    assert activity_actions(user.id) == ["login", "logout"]


def test_logout_without_csrf_token_is_refused_when_csrf_is_enabled(client, app, auth, make_user):
    make_user("ada")
    auth.login("ada")
    app.config["WTF_CSRF_ENABLED"] = True
    assert client.post("/auth/logout").status_code == 400
    assert logged_in_user_id(client) is not None
