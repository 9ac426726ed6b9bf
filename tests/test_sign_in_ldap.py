"""Password login against a real LDAP directory: Debian's slapd, started with a configuration
folder of its own and a seeded directory (tests/peers/slapd.py), shared by this module's tests."""

from __future__ import annotations

import socket

import pytest
from sqlalchemy import func, select

from simplechat.auth.ldap import UNREACHABLE, user_filter
from simplechat.extensions import db
from simplechat.models import ExternalIdentity, User
from tests.conftest import PASSWORD, app_in_context
from tests.e2e.harness import free_port
from tests.peers.oidc import PORTS
from tests.peers.slapd import HIDDEN_ADMINS, UNIQUE_ADMINS, USERS, Slapd, settings


@pytest.fixture(scope="module")
def directory():
    peer = Slapd(free_port(PORTS))
    yield peer
    peer.stop()


@pytest.fixture
def ldap_settings(request, directory):
    """The directory's settings, changed by an indirect parameter; ``down``: a port nothing
    listens on (connections refused); ``silent``: a server that takes connections and never
    answers."""
    extra = dict(getattr(request, "param", {}))
    with socket.socket() as silent:
        if extra.pop("silent", False):
            silent.bind(("127.0.0.1", 0))
            silent.listen(8)
            url = f"ldap://127.0.0.1:{silent.getsockname()[1]}"
        elif extra.pop("down", False):
            url = f"ldap://127.0.0.1:{free_port(PORTS)}"
        else:
            url = directory.url
        yield settings(url, **extra)


@pytest.fixture
def app(database_uri, redis_url, ldap_settings):
    yield from app_in_context(database_uri, redis_url, **ldap_settings)


def log_in(client, username: str, password: str):
    return client.post("/auth/login", data={"username": username, "password": password})


def logged_in_as(client) -> str | None:
    response = client.get("/api/me")
    return response.get_json()["username"] if response.status_code == 200 else None


def password_of(uid: str) -> str:
    return USERS[uid][3]


def user_named(username: str) -> User | None:
    db.session.remove()
    return db.session.execute(select(User).where(User.username == username)).scalar_one_or_none()


def test_the_right_password_makes_the_account_and_the_group_makes_an_admin(client):
    response = log_in(client, "lalice", password_of("lalice"))
    assert response.status_code == 302, response.get_data(as_text=True)
    assert logged_in_as(client) == "lalice"
    alice = user_named("lalice")
    assert (alice.first_name, alice.last_name, alice.email) == (
        "Alice", "Liddell", "lalice@example.com")
    assert alice.is_admin and not alice.check_password(password_of("lalice"))
    identity = db.session.execute(select(ExternalIdentity)).scalar_one()
    assert identity.issuer == "ldap" and identity.user_id == alice.id
    # Not in the group: no admin; a second login finds the same account.
    client.post("/auth/logout")
    assert log_in(client, "lbob", password_of("lbob")).status_code == 302
    assert not user_named("lbob").is_admin
    client.post("/auth/logout")
    assert log_in(client, "lalice", password_of("lalice")).status_code == 302
    assert db.session.scalar(select(func.count()).select_from(User)) == 2


def test_a_wrong_password_is_refused_and_counted(client):
    response = log_in(client, "lbob", "not-bob's-password")
    assert response.status_code == 200
    assert "Invalid username or password." in response.get_data(as_text=True)
    assert logged_in_as(client) is None and user_named("lbob") is None
    # The failed-login limit holds for the directory too (5 per account in 5 minutes).
    for _ in range(4):
        log_in(client, "lbob", "still wrong")
    assert log_in(client, "lbob", password_of("lbob")).status_code == 429


@pytest.mark.parametrize("typed", ["lali*", "*", "*)(uid=*", "lalice)(|(uid=*",
                                   "*)(|(objectClass=*"])
def test_an_injected_filter_matches_nobody(client, app, typed):
    with app.test_request_context():
        assert "*" not in user_filter(typed)
    response = log_in(client, typed, password_of("lalice"))
    assert response.status_code == 200
    assert "Invalid username or password." in response.get_data(as_text=True)
    assert logged_in_as(client) is None
    assert db.session.scalar(select(func.count()).select_from(User)) == 0


def test_the_escaped_filter(app):
    with app.test_request_context():
        assert user_filter("*)(uid=*") == r"(uid=\2a\29\28uid=\2a)"


def test_a_name_the_directory_does_not_know_falls_to_the_local_password(client, make_user):
    make_user("localadmin", is_admin=True)
    assert log_in(client, "localadmin", "wrong password").status_code == 200
    assert logged_in_as(client) is None
    assert log_in(client, "localadmin", PASSWORD).status_code == 302
    assert logged_in_as(client) == "localadmin"


def test_a_directory_name_is_the_directorys_to_decide(client, make_user):
    # A local account that has the name and the password: the directory's entry wins.
    make_user("lbob", email="bob-local@example.com")
    assert log_in(client, "lbob", PASSWORD).status_code == 200
    assert logged_in_as(client) is None
    assert log_in(client, "lbob", password_of("lbob")).status_code == 302
    # Its address differs: a new account with a unique username, the local one untouched.
    assert logged_in_as(client) == "lbob2"
    assert user_named("lbob").email == "bob-local@example.com"


def test_a_directory_entry_links_the_account_with_its_address(client, make_user):
    carol_id = make_user("carol", email="lcarol@example.com").id
    assert log_in(client, "lcarol", password_of("lcarol")).status_code == 302
    assert logged_in_as(client) == "carol"
    assert db.session.execute(select(ExternalIdentity.user_id)).scalar_one() == carol_id


# uniqueMember: a groupOfUniqueNames. memberOf: the service account cannot read the group, so
# only lbob's memberOf (slapd's memberof overlay) names it.
@pytest.mark.parametrize("ldap_settings, admin, other", [
    ({"LDAP_ADMIN_GROUP": UNIQUE_ADMINS}, "lcarol", "lalice"),
    ({"LDAP_ADMIN_GROUP": HIDDEN_ADMINS}, "lbob", "lalice"),
], indirect=["ldap_settings"], ids=["uniqueMember", "memberOf"])
def test_other_kinds_of_groups_make_admins(client, admin, other):
    assert log_in(client, admin, password_of(admin)).status_code == 302
    assert user_named(admin).is_admin
    client.post("/auth/logout")
    assert log_in(client, other, password_of(other)).status_code == 302
    assert not user_named(other).is_admin


def test_a_deactivated_directory_account_is_refused(client):
    assert log_in(client, "lbob", password_of("lbob")).status_code == 302
    client.post("/auth/logout")
    bob = user_named("lbob")
    bob.is_active = False
    db.session.commit()
    response = log_in(client, "lbob", password_of("lbob"))
    assert response.status_code == 403 and "deactivated" in response.get_data(as_text=True)
    assert logged_in_as(client) is None


@pytest.mark.parametrize("ldap_settings", [{"down": True, "LDAP_TIMEOUT": 2},
                                           {"silent": True, "LDAP_TIMEOUT": 1}],
                         indirect=True, ids=["down", "silent"])
def test_a_directory_down_says_so_and_local_admins_still_log_in(client, make_user):
    make_user("localadmin", is_admin=True)
    response = log_in(client, "lalice", password_of("lalice"))
    assert response.status_code == 503 and response.headers["Retry-After"] == "1"
    assert UNREACHABLE in response.get_data(as_text=True)
    assert logged_in_as(client) is None
    assert log_in(client, "localadmin", PASSWORD).status_code == 302
    assert logged_in_as(client) == "localadmin"


@pytest.mark.parametrize("ldap_settings", [{"LDAP_BIND_PASSWORD": "wrong"}], indirect=True,
                         ids=["wrong-service-password"])
def test_a_service_account_the_directory_refuses_is_a_directory_down(client):
    response = log_in(client, "lalice", password_of("lalice"))
    assert response.status_code == 503
    assert UNREACHABLE in response.get_data(as_text=True)


@pytest.mark.parametrize("ldap_settings", [{"PASSWORD_LOGIN": False}], indirect=True,
                         ids=["password-login-off"])
def test_with_password_login_off_the_directory_still_logs_in(client, make_user):
    make_user("local")
    assert 'name="password"' in client.get("/auth/login").get_data(as_text=True)
    assert log_in(client, "local", PASSWORD).status_code == 200
    assert logged_in_as(client) is None
    assert log_in(client, "lbob", password_of("lbob")).status_code == 302
