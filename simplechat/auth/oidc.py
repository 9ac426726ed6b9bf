"""Sign-in with OpenID Connect, through Authlib: the authorization code flow with PKCE (S256),
``state`` and ``nonce`` kept in the signed session cookie, the client authenticated to the token
endpoint with HTTP Basic (client_secret_basic), and the ID token's signature (the provider's
JWKS), ``iss``, ``aud``, ``exp`` and ``nonce`` checked.

Every call to the provider has a deadline (``OIDC_TIMEOUT``). It goes through the server's
sockets, which eventlet and gevent make cooperative: the event loop serves everyone else while
it waits. The signature check is one RSA or EC verification (microseconds), done in place."""

from __future__ import annotations

import logging
from urllib.parse import urljoin

import requests
from authlib.common.errors import AuthlibBaseError
from authlib.integrations.flask_client import OAuth
from flask import Flask, current_app, session, url_for
from joserfc.errors import JoseError

from simplechat.auth.identities import Profile, Refused

log = logging.getLogger(__name__)

EXTENSION = "simplechat_oidc"
PENDING_KEY = "_oidc_login"  # the session's note of where to go after the callback
STATE_PREFIX = "_state_oidc_"  # where Authlib keeps a flow's state, nonce and code_verifier

FAILED = "Sign-in with {name} failed. Try again."
UNAVAILABLE = "{name} cannot be reached right now. Try again in a moment."

# What a provider that misbehaves or cannot be reached raises on the way.
_PROVIDER_ERRORS = (AuthlibBaseError, JoseError, requests.RequestException, RuntimeError,
                    ValueError, TypeError, KeyError)


def init_oidc(app: Flask) -> None:
    """Register the provider's client on ``app`` when OIDC_ISSUER is set. Nothing is fetched
    here: the discovery document is read at the first sign-in."""
    issuer = app.config.get("OIDC_ISSUER")
    if not issuer:
        return
    if not app.config.get("OIDC_CLIENT_ID") or not app.config.get("OIDC_CLIENT_SECRET"):
        raise RuntimeError("OIDC_ISSUER is set: OIDC_CLIENT_ID and OIDC_CLIENT_SECRET must be too")
    scopes = app.config["OIDC_SCOPES"].split()
    if "openid" not in scopes:
        scopes.insert(0, "openid")
    oauth = OAuth(app)
    oauth.register(
        "oidc",
        client_id=app.config["OIDC_CLIENT_ID"],
        client_secret=app.config["OIDC_CLIENT_SECRET"],
        server_metadata_url=discovery_url(issuer),
        client_kwargs={
            "scope": " ".join(scopes),
            "code_challenge_method": "S256",
            "token_endpoint_auth_method": "client_secret_basic",
            "default_timeout": app.config["OIDC_TIMEOUT"],
        },
    )
    app.extensions[EXTENSION] = oauth.create_client("oidc")


def discovery_url(issuer: str) -> str:
    return issuer.rstrip("/") + "/.well-known/openid-configuration"


def oidc_enabled() -> bool:
    return EXTENSION in current_app.extensions


def provider_name() -> str:
    return current_app.config["OIDC_NAME"]


def _client():
    return current_app.extensions[EXTENSION]


def _checked_metadata() -> dict:
    """The provider's discovery document; its issuer must be the one configured."""
    metadata = _client().load_server_metadata()
    if metadata.get("issuer") != current_app.config["OIDC_ISSUER"]:
        raise ValueError(f"discovery names issuer {metadata.get('issuer')!r}")
    return metadata


def _callback_url() -> str:
    site = current_app.config.get("SITE_URL")
    path = url_for("auth.oidc_callback")
    return urljoin(site.rstrip("/") + "/", path.lstrip("/")) if site else url_for(
        "auth.oidc_callback", _external=True)


def begin(next_url: str | None, remember: bool):
    """The redirect to the provider's authorization endpoint, with a new state, nonce and PKCE
    challenge; an earlier unfinished flow of this browser is forgotten (one at a time keeps the
    cookie small). Refused (503) when the provider cannot be reached."""
    for key in [k for k in session if k.startswith(STATE_PREFIX)]:
        session.pop(key)
    try:
        _checked_metadata()
        response = _client().authorize_redirect(_callback_url())
    except _PROVIDER_ERRORS:
        log.warning("OpenID provider %s unavailable", current_app.config["OIDC_ISSUER"],
                    exc_info=True)
        raise Refused(UNAVAILABLE.format(name=provider_name()), 503) from None
    session[PENDING_KEY] = {"next": next_url, "remember": remember}
    return response


def finish() -> tuple[Profile, str | None, bool]:
    """The person the provider's answer on the callback names, with where to go next and whether
    to remember the login. The state must be this browser's (a replayed or forged callback finds
    none), the code is exchanged once, and the ID token must pass every check; else Refused."""
    pending = session.pop(PENDING_KEY, None) or {}
    client = _client()
    try:
        metadata = _checked_metadata()
        token = client.authorize_access_token(
            claims_options={"iss": {"essential": True, "values": [metadata["issuer"]]}})
        claims = token.get("userinfo")
        if not claims:
            raise ValueError("the token endpoint returned no ID token")
        claims = dict(claims)
        if not isinstance(claims.get("sub"), str) or not 0 < len(claims["sub"]) <= 255:
            raise ValueError("the ID token's sub is not a string of 1 to 255 characters")
        if metadata.get("userinfo_endpoint"):
            more = client.userinfo(token=token)
            if more.get("sub") == claims["sub"]:
                claims = {**more, **claims}
    except _PROVIDER_ERRORS as exc:
        log.warning("OpenID sign-in refused: %s", exc)
        raise Refused(FAILED.format(name=provider_name()), 400) from None
    next_url = pending.get("next") if isinstance(pending, dict) else None
    return profile_of(claims), next_url, bool(pending.get("remember"))


def profile_of(claims: dict) -> Profile:
    """The Profile an ID token's (and userinfo's) claims describe."""
    config = current_app.config
    first, last = claims.get("given_name"), claims.get("family_name")
    if not first and not last and isinstance(claims.get("name"), str):
        first, _, last = claims["name"].strip().partition(" ")
    admin_group = config.get("OIDC_ADMIN_GROUP")
    groups = claims.get(config["OIDC_GROUPS_CLAIM"])
    if isinstance(groups, str):
        groups = groups.split()
    return Profile(
        issuer=config["OIDC_ISSUER"],
        subject=claims["sub"],
        username=claims.get("preferred_username") or claims.get("nickname"),
        email=claims.get("email"),
        # Only a JSON true counts: a string "true" or "1" from a sloppy provider does not.
        email_verified=claims.get("email_verified") is True,
        first_name=first or "",
        last_name=last or "",
        is_admin=(admin_group in groups if isinstance(groups, list) else False)
        if admin_group else None,
    )
