"""Company sign-in on the server as deployed: gunicorn with one eventlet worker, PostgreSQL and
Redis, against a real issuer (tests/peers/oidc.py TinyIssuer) and a real slapd
(tests/peers/slapd.py). While the provider takes its time, the worker's loop serves others."""

from __future__ import annotations

import threading

import pytest
import requests

from tests.peers.oidc import CLIENT_ID, CLIENT_SECRET, PORTS, TinyIssuer
from tests.peers.slapd import USERS, Slapd, settings

from .harness import free_port

pytestmark = pytest.mark.e2e


@pytest.fixture
def peers():
    issuer, directory = TinyIssuer(free_port(PORTS)), Slapd(free_port(PORTS))
    yield issuer, directory
    issuer.release.set()
    issuer.stop()
    directory.stop()


def test_sign_in_waits_for_the_provider_without_holding_the_event_loop(make_stack, peers):
    issuer, directory = peers
    stack = make_stack(OIDC_ISSUER=issuer.url, OIDC_CLIENT_ID=CLIENT_ID,
                       OIDC_CLIENT_SECRET=CLIENT_SECRET, OIDC_NAME="Tiny",
                       **settings(directory.url))
    web = stack.start_web(workers=1)
    base = web.url

    # LDAP: the directory's person logs in on the eventlet worker.
    ldap = requests.Session()
    response = ldap.post(f"{base}/auth/login", allow_redirects=False, timeout=20, data={
        "username": "lbob", "password": USERS["lbob"][3],
        "csrf_token": _csrf(ldap, base)})
    assert response.status_code == 302, response.text[:2000]
    assert ldap.get(f"{base}/api/me", timeout=10).json()["username"] == "lbob"

    # OpenID Connect, with the token endpoint held until the test lets it answer.
    issuer.hold = True
    http = requests.Session()
    start = http.get(f"{base}/auth/oidc/login", allow_redirects=False, timeout=10)
    assert start.status_code == 302
    back = http.get(start.headers["Location"], allow_redirects=False, timeout=10)
    answer: dict = {}
    callback = threading.Thread(target=lambda: answer.update(response=http.get(
        back.headers["Location"], allow_redirects=False, timeout=60)))
    callback.start()
    try:
        assert issuer.arrived.wait(30), "the callback never reached the token endpoint"
        # The one worker is waiting on the provider: others are still served meanwhile.
        assert requests.get(f"{base}/auth/login", timeout=10).status_code == 200
        assert ldap.get(f"{base}/api/me", timeout=10).status_code == 200
        assert callback.is_alive() and not answer
    finally:
        issuer.release.set()
        callback.join(60)
    assert answer["response"].status_code == 302, answer["response"].text[:2000]
    assert http.get(f"{base}/api/me", timeout=10).json()["username"] == "tiny"


def _csrf(http: requests.Session, base: str) -> str:
    page = http.get(f"{base}/auth/login", timeout=10).text
    marker = 'name="csrf_token" type="hidden" value="'
    start = page.index(marker) + len(marker)
    return page[start:page.index('"', start)]
