"""Real OpenID providers for the sign-in tests, on 127.0.0.1.

``OidcProvider``: the npm package oidc-provider (tests/peers/oidc_provider.js), installed with
`npm ci` from tests/peers/package-lock.json when missing. ``TinyIssuer``: an issuer of our own
(discovery, JWKS, an authorization endpoint that answers at once, a token endpoint that checks
client_secret_basic and PKCE) whose ID tokens a test shapes: expired, signed with another key,
for another audience, with another nonce. ``walk_sign_in`` plays the browser through a flow."""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import html
import json
import re
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import requests
from joserfc import jwt
from joserfc.jwk import RSAKey

from tests.peers import stop_process

PEER_DIR = Path(__file__).parent
SCRIPT = PEER_DIR / "oidc_provider.js"
PORTS = range(18800, 18900)  # the sign-in tests' own (tests/e2e/harness.py free_port)
CLIENT_ID, CLIENT_SECRET = "simplechat-test", "test-client-secret-not-real"


def _wanted() -> str:
    return json.loads((PEER_DIR / "package.json").read_text())["devDependencies"]["oidc-provider"]


def _installed() -> str | None:
    try:
        return json.loads((PEER_DIR / "node_modules" / "oidc-provider" / "package.json")
                          .read_text())["version"]
    except (OSError, ValueError, KeyError):
        return None


def ensure_installed() -> None:
    """oidc-provider from the lock file (`npm ci`), once for all test processes (a file lock)."""
    # npm ci empties node_modules first, so the lock lives outside the folder.
    with open(Path(tempfile.gettempdir()) / "simplechat-test-peers-npm.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _installed() != _wanted():
            npm = shutil.which("npm")
            assert npm, "the sign-in tests need npm (Node 20) to install oidc-provider"
            done = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                                  cwd=PEER_DIR, capture_output=True, text=True, timeout=600)
            assert done.returncode == 0, f"npm ci: {done.stderr[-2000:]}"
    assert _installed() == _wanted(), "npm ci did not install the pinned oidc-provider"


class OidcProvider:
    """oidc-provider in a Node process, with ``accounts`` (sub -> claims) and our client."""

    def __init__(self, redirect_uri: str, accounts: dict[str, dict]):
        ensure_installed()
        config = {"port": 0, "accounts": accounts, "clients": [{
            "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
            "redirect_uris": [redirect_uri]}]}
        self.process = subprocess.Popen(
            [shutil.which("node") or "node", str(SCRIPT), json.dumps(config)], cwd=PEER_DIR,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self.process.stdout.readline().strip()
        assert line.startswith("listening "), f"oidc-provider did not start: {line!r}"
        self.issuer = line.split(" ", 1)[1]

    def stop(self) -> None:
        stop_process(self.process)


def _form(page: str) -> tuple[str, str]:
    """The action and prompt of the devInteractions page's form."""
    action = re.search(r'<form[^>]*action="([^"]+)"', page)
    prompt = re.search(r'name="prompt" value="([a-z]+)"', page)
    assert action and prompt, page[:2000]
    return html.unescape(action.group(1)), prompt.group(1)


def walk_sign_in(http: requests.Session, base: str, account: str, query: str = "") -> str:
    """Play the browser from our /auth/oidc/login through the provider's login and consent
    forms (logging in as ``account``); returns the callback URL the provider sends back to,
    not yet visited (its code and state in the query)."""
    callback = f"{base}/auth/oidc/callback"
    response = http.get(f"{base}/auth/oidc/login{query}", allow_redirects=False, timeout=10)
    assert response.status_code == 302, response.text[:2000]
    for _ in range(20):
        if response.is_redirect:
            url = urljoin(response.url, response.headers["Location"])
            if url.startswith(callback):
                return url
            response = http.get(url, allow_redirects=False, timeout=10)
            continue
        assert response.status_code == 200, response.text[:2000]
        action, prompt = _form(response.text)
        data = {"prompt": prompt}
        if prompt == "login":
            data.update(login=account, password="any")
        response = http.post(urljoin(response.url, action), data=data, allow_redirects=False,
                             timeout=10)
    raise AssertionError("the sign-in did not come back to the callback")


# --------------------------------------------------------------------------- an issuer of ours


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TinyIssuer:
    """A small issuer on 127.0.0.1 whose next ID token ``shape`` sets: a dict of claims to
    change (``None`` removes one), and ``key="other"`` to sign with a key not in its JWKS.

    The authorization endpoint redirects back at once with a code; the token endpoint checks
    HTTP Basic client authentication and the PKCE verifier (S256), and remembers what came."""

    def __init__(self, port: int, client_id: str = CLIENT_ID,
                 client_secret: str = CLIENT_SECRET):
        self.key = RSAKey.generate_key(2048, parameters={"kid": "good"})
        self.other_key = RSAKey.generate_key(2048, parameters={"kid": "good"})
        self.client_id, self.client_secret = client_id, client_secret
        self.shape: dict = {}
        self.sign_with_other_key = False
        self.codes: dict[str, dict] = {}
        self.token_requests: list[dict] = []
        # Set ``hold``: the token endpoint tells ``arrived`` and waits for ``release`` (a slow
        # provider whose pace the test sets).
        self.hold = False
        self.arrived, self.release = threading.Event(), threading.Event()
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _json(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                parts = urlsplit(self.path)
                if parts.path == "/.well-known/openid-configuration":
                    self._json(200, issuer.metadata())
                elif parts.path == "/jwks":
                    self._json(200, {"keys": [issuer.key.as_dict(private=False)]})
                elif parts.path == "/authorize":
                    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                    code = secrets.token_urlsafe(16)
                    issuer.codes[code] = query
                    back = query["redirect_uri"] + "?" + urlencode(
                        {"code": code, "state": query.get("state", "")})
                    self.send_response(302)
                    self.send_header("Location", back)
                    self.end_headers()
                else:
                    self._json(404, {"error": "not_found"})

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                status, body = issuer.token(self.headers.get("Authorization", ""), form)
                self._json(status, body)

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def metadata(self) -> dict:
        return {"issuer": self.url, "authorization_endpoint": f"{self.url}/authorize",
                "token_endpoint": f"{self.url}/token", "jwks_uri": f"{self.url}/jwks",
                "response_types_supported": ["code"], "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic"],
                "code_challenge_methods_supported": ["S256"]}

    def token(self, authorization: str, form: dict) -> tuple[int, dict]:
        self.token_requests.append({"authorization": authorization, **form})
        if self.hold:
            self.arrived.set()
            self.release.wait(30)
        expected = "Basic " + base64.b64encode(
            f"{self.client_id}:{self.client_secret}".encode()).decode()
        if authorization != expected:
            return 401, {"error": "invalid_client"}
        asked = self.codes.pop(form.get("code", ""), None)  # a code works once
        if asked is None or form.get("redirect_uri") != asked["redirect_uri"]:
            return 400, {"error": "invalid_grant"}
        challenge = _b64(hashlib.sha256(form.get("code_verifier", "").encode()).digest())
        if asked.get("code_challenge_method") != "S256" or challenge != asked.get(
                "code_challenge"):
            return 400, {"error": "invalid_grant", "error_description": "PKCE"}
        now = int(time.time())
        claims = {"iss": self.url, "sub": "tiny-1", "aud": self.client_id, "iat": now,
                  "exp": now + 300, "nonce": asked.get("nonce"), "email": "tiny@example.com",
                  "email_verified": True, "preferred_username": "tiny"}
        claims.update(self.shape)
        claims = {k: v for k, v in claims.items() if v is not None}
        key = self.other_key if self.sign_with_other_key else self.key
        id_token = jwt.encode({"alg": "RS256", "kid": "good"}, claims, key)
        return 200, {"access_token": secrets.token_urlsafe(16), "token_type": "Bearer",
                     "expires_in": 300, "id_token": id_token}

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@contextlib.contextmanager
def serving_app(app, port: int):
    """``app`` served (threaded) on 127.0.0.1:``port``; yields its base URL."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
