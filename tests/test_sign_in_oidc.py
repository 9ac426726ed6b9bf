"""Sign-in with OpenID Connect, end to end over HTTP: our app served on a real port, a real
OpenID provider (the npm package oidc-provider, tests/peers/oidc_provider.js) and, for ID tokens
a certified provider will not issue (expired, wrongly signed, for another audience or nonce), an
issuer of our own (tests/peers/oidc.py: TinyIssuer). The browser is a requests.Session."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import pytest
import requests
import socketio as socketio_client
from sqlalchemy import func, select

from simplechat import create_app
from simplechat.auth.sessions import end_user_sessions
from simplechat.extensions import db
from simplechat.models import ExternalIdentity, GenericActivityLog, User, UserSession
from tests.conftest import PASSWORD, app_in_context
from tests.e2e.harness import free_port
from tests.peers.oidc import (
    CLIENT_ID,
    CLIENT_SECRET,
    PORTS,
    OidcProvider,
    TinyIssuer,
    serving_app,
    walk_sign_in,
)

ADMIN_GROUP = "chat-admins"
ACCOUNTS = {
    "sub-ada": {"preferred_username": "ada", "email": "ada@example.com", "email_verified": True,
                "given_name": "Ada", "family_name": "Lovelace",
                "groups": ["staff", ADMIN_GROUP]},
    # Claims an address that a local account has, without the provider verifying it.
    "sub-eve": {"preferred_username": "eve", "email": "victim@example.com",
                "email_verified": False, "name": "Eve Mallory"},
    # "true" as a string is not JSON true: not verified.
    "sub-sloppy": {"preferred_username": "sloppy", "email": "victim@example.com",
                   "email_verified": "true"},
    # The same address, verified: the owner signing in through the provider.
    "sub-vic": {"preferred_username": "victor", "email": "Victim@Example.com",
                "email_verified": True, "name": "Victor Tim", "groups": ["staff"]},
    "sub-zoe": {"preferred_username": "Zoë Smith!", "email": "zoe@example.com",
                "email_verified": True, "given_name": "Zoë", "family_name": "Smith"},
}


@pytest.fixture(scope="module")
def app_port():
    return free_port(PORTS)


@pytest.fixture(scope="module")
def provider(app_port):
    peer = OidcProvider(f"http://127.0.0.1:{app_port}/auth/oidc/callback", ACCOUNTS)
    yield peer
    peer.stop()


def oidc_settings(issuer: str, **more) -> dict:
    return {"OIDC_ISSUER": issuer, "OIDC_CLIENT_ID": CLIENT_ID,
            "OIDC_CLIENT_SECRET": CLIENT_SECRET, "OIDC_NAME": "Test IdP",
            "OIDC_ADMIN_GROUP": ADMIN_GROUP, "OIDC_TIMEOUT": 10, **more}


@pytest.fixture
def settings():
    return {}


@pytest.fixture
def site(database_uri, redis_url, provider, app_port, settings):
    """Our app on its port, signing in through the provider; yields its base URL."""
    for app in app_in_context(database_uri, redis_url,
                              **oidc_settings(provider.issuer, **settings)):
        with serving_app(app, app_port) as base:
            yield base


def browser() -> requests.Session:
    return requests.Session()


def signed_in_as(http: requests.Session, base: str) -> str | None:
    """The username this browser's cookies are logged in as (GET /api/me), or None."""
    response = http.get(f"{base}/api/me", allow_redirects=False, timeout=10)
    if response.status_code == 401:
        return None
    assert response.status_code == 200, response.text[:1000]
    return response.json()["username"]


def sign_in(base: str, account: str, query: str = "",
            http: requests.Session | None = None) -> tuple[requests.Session, requests.Response]:
    http = http or browser()
    callback = walk_sign_in(http, base, account, query)
    return http, http.get(callback, allow_redirects=False, timeout=10)


def user_named(username: str) -> User | None:
    db.session.remove()
    return db.session.execute(select(User).where(User.username == username)).scalar_one_or_none()


def user_count() -> int:
    db.session.remove()
    return db.session.scalar(select(func.count()).select_from(User))


def with_query(url: str, **changes) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    query.update(changes)
    return urlunsplit(parts._replace(query=urlencode(query)))


# --------------------------------------------------------------------------- the flow


def test_the_login_page_offers_the_provider_and_the_form(site):
    page = requests.get(f"{site}/auth/login", timeout=10).text
    assert 'id="oidc-login"' in page and "Sign in with Test IdP" in page
    assert 'name="password"' in page


def test_first_sign_in_makes_the_account_with_a_server_session_and_admin_from_the_group(site):
    http, response = sign_in(site, "sub-ada", "?next=/profile/sessions&remember=1")
    assert response.status_code == 302, response.text[:1000]
    assert response.headers["Location"] == "/profile/sessions"
    ada = user_named("ada")
    assert (ada.first_name, ada.last_name, ada.email) == ("Ada", "Lovelace", "ada@example.com")
    assert ada.is_admin and not ada.check_password("")
    identity = db.session.execute(select(ExternalIdentity)).scalar_one()
    assert (identity.subject, identity.user_id) == ("sub-ada", ada.id)
    assert identity.issuer.startswith("http://127.0.0.1:")
    # The same server-side session as a password login, remember-me included.
    row = db.session.execute(select(UserSession).where(UserSession.user_id == ada.id)).scalar_one()
    assert row.ended_at is None and row.remember_hash is not None
    assert "simplechat_remember" in http.cookies
    assert signed_in_as(http, site) == "ada"
    actions = set(db.session.scalars(select(GenericActivityLog.action).where(
        GenericActivityLog.user_id == ada.id)))
    assert {"sso_registered", "login"} <= actions
    # Signing in again finds the same account.
    again, response = sign_in(site, "sub-ada")
    assert response.status_code == 302 and user_count() == 1
    assert signed_in_as(again, site) == "ada"


def test_the_state_must_be_this_browsers(site):
    http = browser()
    callback = walk_sign_in(http, site, "sub-ada")
    forged = http.get(with_query(callback, state="forged-state"), allow_redirects=False,
                      timeout=10)
    assert forged.status_code == 400 and "Sign-in with Test IdP failed" in forged.text
    # Another browser cannot use this one's callback either (it has no state of its own).
    stolen = browser().get(callback, allow_redirects=False, timeout=10)
    assert stolen.status_code == 400
    assert user_count() == 0 and signed_in_as(http, site) is None
    # The refusals were for the state: the genuine callback still works.
    assert http.get(callback, allow_redirects=False, timeout=10).status_code == 302
    assert signed_in_as(http, site) == "ada"


def test_a_code_works_once(site):
    http, response = sign_in(site, "sub-ada")
    first = urlsplit(response.request.url)
    assert response.status_code == 302
    http.post(f"{site}/auth/logout", timeout=10)
    # The same callback again: its state was used up.
    replay = http.get(response.request.url, allow_redirects=False, timeout=10)
    assert replay.status_code == 400 and signed_in_as(http, site) is None
    # The old code under a fresh state of this browser: the provider refuses the code.
    fresh = walk_sign_in(http, site, "sub-ada")
    old_code = parse_qs(first.query)["code"][0]
    replay = http.get(with_query(fresh, code=old_code), allow_redirects=False, timeout=10)
    assert replay.status_code == 400 and signed_in_as(http, site) is None


@pytest.mark.parametrize("account", ["sub-eve", "sub-sloppy"])
def test_an_unverified_address_does_not_take_over_an_account(site, make_user, account):
    victim_id = make_user("victim", email="victim@example.com", is_admin=True).id
    http, response = sign_in(site, account)
    assert response.status_code == 403
    assert "has not verified the address" in response.text
    assert signed_in_as(http, site) is None
    assert db.session.scalar(select(func.count()).select_from(ExternalIdentity)) == 0
    assert user_count() == 1 and user_named("victim").id == victim_id
    # The form still logs the owner in with the password.
    owner = browser()
    owner.post(f"{site}/auth/login", data={"username": "victim", "password": PASSWORD},
               timeout=10)
    assert signed_in_as(owner, site) == "victim"


def test_a_verified_address_links_the_existing_account_and_the_group_decides_admin(
        site, make_user):
    owner_id = make_user("victim", email="victim@example.com", is_admin=True).id
    http, response = sign_in(site, "sub-vic")
    assert response.status_code == 302
    assert signed_in_as(http, site) == "victim" and user_count() == 1
    linked = db.session.execute(select(ExternalIdentity)).scalar_one()
    assert (linked.user_id, linked.subject) == (owner_id, "sub-vic")
    # Not in OIDC_ADMIN_GROUP: the provider is the authority on admins of its people.
    assert not user_named("victim").is_admin


def test_a_taken_username_is_made_unique_and_valid(site, make_user):
    make_user("ada", email="someone-else@example.com")
    make_user("Zoe-Smith", email="zoe-local@example.com")
    _, response = sign_in(site, "sub-ada")
    assert response.status_code == 302 and user_named("ada2").email == "ada@example.com"
    _, response = sign_in(site, "sub-zoe")
    assert response.status_code == 302
    zoe = db.session.execute(select(User).where(User.email == "zoe@example.com")).scalar_one()
    assert zoe.username == "Zoe-Smith2" and zoe.first_name == "Zoë"


def test_a_deactivated_account_is_refused(site):
    _, response = sign_in(site, "sub-ada")
    assert response.status_code == 302
    ada = user_named("ada")
    ada.is_active = False
    db.session.commit()
    http, response = sign_in(site, "sub-ada")
    assert response.status_code == 403 and "deactivated" in response.text
    assert signed_in_as(http, site) is None


def test_the_sso_session_ends_on_logout_and_on_signing_out_everywhere(site):
    first, _ = sign_in(site, "sub-ada")
    second, _ = sign_in(site, "sub-ada", "?remember=1")
    third, _ = sign_in(site, "sub-ada")
    assert signed_in_as(first, site) == signed_in_as(second, site) == "ada"
    first.post(f"{site}/auth/logout", timeout=10)
    assert signed_in_as(first, site) is None
    assert signed_in_as(second, site) == "ada"
    # Signing out the other sessions from the third browser ends the second's, remember-me
    # cookie and all.
    third.post(f"{site}/profile/sessions/sign-out-others", timeout=10)
    assert signed_in_as(second, site) is None
    remembered = browser()
    remembered.cookies.set("simplechat_remember", second.cookies.get("simplechat_remember")
                           or "1.x")
    assert signed_in_as(remembered, site) is None
    assert signed_in_as(third, site) == "ada"
    # And everywhere (the command line's and the admin console's function).
    end_user_sessions(user_named("ada").id, "signed_out")
    assert signed_in_as(third, site) is None


def test_the_sso_sessions_socket_hears_session_ended_on_logout(site):
    http, _ = sign_in(site, "sub-ada")
    cookie = "; ".join(f"{c.name}={c.value}" for c in http.cookies)
    ended: list = []
    sio = socketio_client.Client(reconnection=False)
    sio.on("session_ended", ended.append, namespace="/chat")
    sio.connect(site, headers={"Cookie": cookie}, namespaces=["/chat"],
                transports=["websocket"], wait_timeout=5)
    try:
        http.post(f"{site}/auth/logout", timeout=10)
        deadline = time.monotonic() + 10
        while not ended and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        sio.disconnect()
    assert ended and ended[0]["reason"] == "logged_out"


@pytest.mark.parametrize("settings", [{"PASSWORD_LOGIN": False}])
def test_password_login_off_leaves_only_the_provider(site, make_user):
    make_user("local", email="local@example.com")
    page = requests.get(f"{site}/auth/login", timeout=10).text
    assert "Sign in with Test IdP" in page and 'name="password"' not in page
    assert 'href="/auth/register"' not in page
    http = browser()
    refused = http.post(f"{site}/auth/login", data={"username": "local", "password": PASSWORD},
                        timeout=10)
    assert refused.status_code == 403 and "Password login is turned off" in refused.text
    assert signed_in_as(http, site) is None
    assert requests.get(f"{site}/auth/register", timeout=10).status_code == 404
    _, response = sign_in(site, "sub-ada", http=http)
    assert response.status_code == 302 and signed_in_as(http, site) == "ada"


def test_a_provider_without_its_client_settings_stops_the_start():
    with pytest.raises(RuntimeError, match="OIDC_CLIENT_SECRET"):
        create_app("testing", {"OIDC_ISSUER": "http://127.0.0.1:1", "OIDC_CLIENT_ID": "x",
                               "REDIS_URL": None})


def test_without_a_provider_the_routes_are_not_there(client):
    assert client.get("/auth/oidc/login").status_code == 404
    assert client.get("/auth/oidc/callback?code=x&state=y").status_code == 404
    assert "oidc-login" not in client.get("/auth/login").get_data(as_text=True)


# --------------------------------------------------------------------------- ID token checks


@pytest.fixture(scope="module")
def tiny():
    issuer = TinyIssuer(free_port(PORTS))
    yield issuer
    issuer.stop()


@pytest.fixture
def tiny_site(database_uri, redis_url, tiny, app_port):
    tiny.shape, tiny.sign_with_other_key = {}, False
    for app in app_in_context(database_uri, redis_url, **oidc_settings(tiny.url)):
        with serving_app(app, app_port) as base:
            yield base


def tiny_sign_in(base: str) -> tuple[requests.Session, requests.Response]:
    http = browser()
    response = http.get(f"{base}/auth/oidc/login", allow_redirects=False, timeout=10)
    assert response.status_code == 302
    back = http.get(response.headers["Location"], allow_redirects=False, timeout=10)
    return http, http.get(back.headers["Location"], allow_redirects=False, timeout=10)


def test_a_good_id_token_signs_in_with_basic_auth_and_pkce(tiny_site, tiny):
    http, response = tiny_sign_in(tiny_site)
    assert response.status_code == 302 and signed_in_as(http, tiny_site) == "tiny"
    sent = tiny.token_requests[-1]
    assert sent["authorization"].startswith("Basic ") and "client_secret" not in sent
    assert len(sent["code_verifier"]) >= 43


@pytest.mark.parametrize("shape, other_key", [
    ({"exp": 1_000_000_000, "iat": 999_999_000}, False),
    ({}, True),
    ({"aud": "another-client"}, False),
    ({"nonce": "not-the-one-we-sent"}, False),
    ({"nonce": None}, False),
    ({"iss": "http://127.0.0.1:1"}, False),
], ids=["expired", "wrongly-signed", "wrong-audience", "wrong-nonce", "no-nonce", "wrong-issuer"])
def test_a_bad_id_token_is_refused(tiny_site, tiny, shape, other_key):
    tiny.shape, tiny.sign_with_other_key = shape, other_key
    http, response = tiny_sign_in(tiny_site)
    assert response.status_code == 400 and "Sign-in with Test IdP failed" in response.text
    assert signed_in_as(http, tiny_site) is None and user_count() == 0


def test_a_provider_that_cannot_be_reached_is_told(database_uri, redis_url, app_port):
    gone = f"http://127.0.0.1:{free_port(PORTS)}"
    for app in app_in_context(database_uri, redis_url, **oidc_settings(gone, OIDC_TIMEOUT=2)):
        with serving_app(app, app_port) as base:
            response = requests.get(f"{base}/auth/oidc/login", allow_redirects=False,
                                    timeout=10)
    assert response.status_code == 503 and "cannot be reached" in response.text
