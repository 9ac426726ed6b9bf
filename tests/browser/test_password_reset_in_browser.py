"""Forgot your password? in Chromium: the login page's link, the request, the mail (read from a
real SMTP server), the link's page, a new password that logs in while the old one does not;
axe on each page."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.mailbox import links, parts

from .conftest import PASSWORD, assert_no_axe_violations

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("axe_core")]

NEW_PASSWORD = "a fresh passphrase from the mail"


def test_forgot_password_mails_a_link_that_sets_a_new_one(stack, open_tab, mailbox):
    stack.flask("users", "create", "resetta", "--email", "resetta@example.com",
                "--first-name", "Resetta", "--last-name", "Reset", "--password", PASSWORD)
    tab = open_tab()
    page = tab.goto("/auth/login")
    page.get_by_role("link", name="Forgot your password?").click()
    expect(page).to_have_url(f"{stack.base_url}/auth/reset")
    assert_no_axe_violations(page, "reset request")
    page.fill("#email", "resetta@example.com")
    page.get_by_role("button", name="Send the link").click()
    expect(page.locator("#reset-sent")).to_contain_text("resetta@example.com")
    assert_no_axe_violations(page, "reset sent")

    text, html = parts(mailbox.wait_for(1, to="resetta@example.com", timeout=30)[0])
    [link] = links(text, f"{stack.base_url}/auth/reset/")
    assert link in html
    page.goto(link)
    expect(page.get_by_role("heading", name="Set a new password")).to_be_visible()
    assert_no_axe_violations(page, "reset password")
    page.fill("#password", NEW_PASSWORD)
    page.fill("#confirm", NEW_PASSWORD)
    page.get_by_role("button", name="Set the password").click()
    expect(page).to_have_url(f"{stack.base_url}/auth/login", timeout=30_000)
    expect(page.locator(".flash-messages")).to_contain_text("Your password has been set")

    page.goto(link)  # used once: it does not work again
    expect(page.locator("#reset-invalid")).to_contain_text("used already")
    assert_no_axe_violations(page, "reset link used")

    page = tab.goto("/auth/login")
    page.fill("#username", "resetta")
    page.fill("#password", PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#login-error")).to_be_visible()
    page.fill("#password", NEW_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(f"{stack.base_url}/chat/", timeout=30_000)
    tab.assert_clean()
