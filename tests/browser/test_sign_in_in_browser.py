"""Sign-in with OpenID Connect in Chromium: the login page's button, the real provider's login
and consent pages (oidc-provider, tests/peers/oidc_provider.js), back to the chat page logged
in, and logged out again. Our app runs in this process on a port of the sign-in tests' range."""

from __future__ import annotations

import pytest

from tests.browser.conftest import assert_no_axe_violations
from tests.conftest import app_in_context
from tests.e2e.harness import free_port
from tests.peers.oidc import CLIENT_ID, CLIENT_SECRET, PORTS, OidcProvider, serving_app

pytestmark = [pytest.mark.e2e]

ACCOUNTS = {"sub-browser": {"preferred_username": "sso-in-chromium",
                            "email": "sso-in-chromium@example.com", "email_verified": True,
                            "given_name": "Sso", "family_name": "Chromium"}}


@pytest.fixture(scope="module")
def site(database_uri, redis_url):
    port = free_port(PORTS)
    provider = OidcProvider(f"http://127.0.0.1:{port}/auth/oidc/callback", ACCOUNTS)
    try:
        for app in app_in_context(database_uri, redis_url, OIDC_ISSUER=provider.issuer,
                                  OIDC_CLIENT_ID=CLIENT_ID, OIDC_CLIENT_SECRET=CLIENT_SECRET,
                                  OIDC_NAME="Example SSO"):
            with serving_app(app, port) as base:
                yield base
    finally:
        provider.stop()


def test_sign_in_with_the_provider_and_log_out(browser, site, axe_core):
    context = browser.new_context()
    page = context.new_page()
    try:
        page.goto(f"{site}/auth/login")
        assert_no_axe_violations(page, "login page with a sign-in provider")
        page.get_by_label("Remember me").first.check()
        page.get_by_role("button", name="Sign in with Example SSO").click()
        # The provider's own pages: its login form (any password), then consent.
        page.locator('input[name="login"]').fill("sub-browser")
        page.locator('input[name="password"]').fill("anything")
        page.locator('button[type="submit"]').click()
        page.locator('input[name="prompt"][value="consent"]').wait_for(state="attached")
        page.locator('button[type="submit"]').click()
        page.wait_for_url(f"{site}/chat/**", timeout=30_000)
        assert page.get_by_role("link", name="sso-in-chromium").is_visible()
        assert any(c["name"] == "simplechat_remember" for c in context.cookies())
        page.locator("#logout-button").click()
        page.wait_for_url(f"{site}/auth/login**", timeout=30_000)
        assert page.request.get(f"{site}/api/me").status == 401
    finally:
        context.close()
