"""The API tokens page and the API reference page in a real browser: a token is made and shown
once, then revoked; both pages pass axe-core and the strict CSP at desktop and phone width."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from .conftest import PASSWORD, assert_no_axe_violations

pytestmark = pytest.mark.e2e


def test_tokens_page_and_api_reference(stack, open_tab, axe_core):
    stack.flask("users", "create", "tess", "--email", "tess@example.com", "--first-name", "Tess",
                "--last-name", "Token", "--password", PASSWORD)
    for width, height in ((1280, 800), (390, 844)):
        tab = open_tab(width, height)
        tab.login("tess")
        page = tab.goto("/profile/tokens")
        assert_no_axe_violations(page, f"tokens-empty-{width}")
        page.fill("#name", f"deploy bot {width}")
        page.get_by_role("button", name="Create token").click()
        expect(page.locator("#new-token")).to_have_text(re.compile(r"^sct_\S{40,}$"))
        tab.screenshot("api-tokens")
        assert_no_axe_violations(page, f"tokens-created-{width}")
        page = tab.goto("/profile/tokens")
        expect(page.locator("#new-token")).to_have_count(0)  # shown once
        row = page.locator(".token-row", has_text=f"deploy bot {width}")
        row.get_by_role("button", name="Revoke").click()
        expect(page.locator(".token-row", has_text=f"deploy bot {width}")).to_have_count(0)
        page = tab.goto("/docs/api")
        document = page.request.get(page.url.replace("/docs/api", "/api/openapi.json")).json()
        operations = sum(len(ops) for ops in document["paths"].values())
        assert operations >= 10
        expect(page.locator("#api-routes li")).to_have_count(operations)
        tab.screenshot("api-reference")
        assert_no_axe_violations(page, f"api-reference-{width}")
        tab.assert_clean()
