"""The sessions page in Chromium: one browser signs the other out, whose open chat page is told
why at once and whose cookie no longer logs in."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from .conftest import PASSWORD

pytestmark = pytest.mark.e2e


def test_signing_out_everywhere_else_ends_the_other_browsers_open_chat(stack, open_tab):
    for username, first in (("hedy", "Hedy"), ("alan", "Alan")):
        stack.flask("users", "create", username, "--email", f"{username}@example.com",
                    "--first-name", first, "--last-name", "Session", "--password", PASSWORD)
    stack.flask("conversations", "create", "--users", "hedy,alan")
    conversation_id = stack.sql(
        "SELECT p.conversation_id FROM participants p JOIN users u ON u.id = p.user_id "
        "WHERE u.username = 'hedy'")[0][0]

    laptop, phone = open_tab(), open_tab(width=390, height=844)
    laptop.login("hedy")
    chat = laptop.goto(f"/chat/{conversation_id}")
    expect(chat.locator("#chat-status")).not_to_contain_text("Reconnecting")
    phone.login("hedy")

    page = phone.goto("/profile/sessions")
    rows = page.locator(".session-row")
    expect(rows).to_have_count(2)
    expect(page.locator(".this-session")).to_have_count(1)
    phone.screenshot("profile-sessions")
    page.set_viewport_size({"width": 1280, "height": 800})
    phone.screenshot("profile-sessions")

    page.get_by_role("button", name="Sign out everywhere else").click()
    expect(page.locator(".alert")).to_contain_text("1 other session(s) signed out")
    expect(rows).to_have_count(1)

    # The laptop's open page hears why, straight away, and does not claim to reconnect.
    status = chat.locator("#chat-status")
    expect(status).to_contain_text("This session was signed out")
    chat.wait_for_timeout(1500)
    expect(status).to_contain_text("This session was signed out")
    expect(chat.locator("#message-input")).to_be_disabled()
    laptop.screenshot("chat-session-ended")
    chat.reload()
    assert "/auth/login" in chat.url
    laptop.assert_clean()
    phone.assert_clean()
