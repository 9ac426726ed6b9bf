"""Every page at desktop and phone width: screenshots for review under artifacts/screenshots/,
nothing refused by the Content-Security-Policy, labelled controls, and a way around on phones."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from .conftest import PASSWORD, opened_conversation, seed_messages, wait_until

pytestmark = pytest.mark.e2e

DESKTOP = (1280, 800)
PHONE = (390, 844)


def unlabelled_controls(page) -> list[str]:
    """Visible form controls with no accessible name (label, aria-label or aria-labelledby)."""
    return page.evaluate("""() => Array.from(document.querySelectorAll(
        'input:not([type=hidden]), textarea, select, button')).filter(el => {
          if (el.offsetParent === null && el.type !== 'search') return false;
          const named = (el.labels && el.labels.length) || el.getAttribute('aria-label') ||
            el.getAttribute('aria-labelledby') ||
            (el.tagName === 'BUTTON' && el.textContent.trim());
          return !named;
        }).map(el => el.outerHTML.slice(0, 120))""")


def test_csp_watch_sees_an_inline_style(open_tab):
    tab = open_tab()
    page = tab.goto("/auth/login")
    page.evaluate("document.body.insertAdjacentHTML('beforeend', '<p style=\"color:red\">x</p>')")
    wait_until(lambda: tab.csp_violations(), timeout=5, message="a CSP report")


def test_every_page_at_desktop_and_phone_width(stack, open_tab):
    stack.flask("users", "create", "dora", "--email", "dora@example.com", "--first-name", "Dora",
                "--last-name", "Explorer", "--password", PASSWORD)
    stack.flask("users", "create", "eve", "--email", "eve@example.com", "--first-name", "Eve",
                "--last-name", "Moneypenny", "--password", PASSWORD)
    for width, height in (DESKTOP, PHONE):
        phone = width < 600
        tab = open_tab(width, height)
        for path, name in (("/auth/login", "login"), ("/auth/register", "register")):
            page = tab.goto(path)
            expect(page.locator(".auth-card")).to_be_visible()
            assert unlabelled_controls(page) == [], name
            tab.screenshot(name)
            tab.assert_clean()

        tab.login("dora")
        page = tab.goto("/chat/new")
        page.locator("#participants + .select2 .select2-search__field").click()
        page.keyboard.type("ev")
        option = page.locator(".select2-results__option", has_text="Eve Moneypenny (@eve)")
        expect(option).to_be_visible()
        tab.screenshot("new-conversation-search")
        page.keyboard.press("Enter")  # picks the highlighted result: no mouse needed
        expect(page.locator("#participants")).to_have_values([re.compile(r"^\d+$")])
        page.keyboard.press("Escape")
        tab.screenshot("new-conversation")
        tab.assert_clean()
        page.click("#start-button")
        conversation_id = opened_conversation(page)
        if not phone:
            seed_messages(stack, "eve", conversation_id, 2)
            page.fill("#message-input", "Lunch at noon? https://example.com/menu")
            page.press("#message-input", "Enter")
        expect(page.locator("#messages .message")).to_have_count(3)
        assert unlabelled_controls(page) == []
        if phone:
            expect(page.locator("#send-button")).to_be_in_viewport()
            expect(page.locator("#conversation-list")).to_be_hidden()
        tab.screenshot("chat")
        tab.assert_clean()

        if phone:  # the conversation list is one tap away
            page.click("#back-to-list")
            page.wait_for_url(re.compile(r"/chat/$"))
        else:
            page = tab.goto("/chat/")
        expect(page.locator(".conversation-item")).to_have_count(1)
        tab.screenshot("conversations")
        tab.assert_clean()

        page = tab.goto("/profile/")
        expect(page.locator("#profile-username")).to_have_text("@dora")
        tab.screenshot("profile")
        page = tab.goto("/profile/edit")
        assert unlabelled_controls(page) == []
        tab.screenshot("profile-edit")
        tab.assert_clean()
        page.click("#logout-button")
        page.wait_for_url(re.compile(r"/auth/login"))
        expect(page.locator(".alert")).to_contain_text("logged out")
        tab.screenshot("logged-out")
        tab.assert_clean()
