"""Issue 15 in the page: formatted messages, replies that jump to the original, reactions and
system lines, between two people in Chromium against the real stack."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from .conftest import PASSWORD

pytestmark = pytest.mark.e2e

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}


def send(page, text: str) -> None:
    page.fill("#message-input", text)
    page.press("#message-input", "Enter")


def pick_in_select2(page, field: str, search: str, choice: str) -> None:
    page.locator(f"#{field} + .select2 .select2-search__field").click()
    page.keyboard.type(search)
    page.locator(".select2-results__option", has_text=choice).click()


def message(page, text: str):
    return page.locator("#messages .message:not(.pending)",
                        has=page.locator(".message-text", has_text=text))


def test_formatting_replies_reactions_and_system_lines(stack, open_tab):
    ada, grace = open_tab(), open_tab()
    ada.register("rita", "Rita", "Levi")
    grace.register("hedy", "Hedy", "Lamarr")
    stack.flask("users", "create", "ida", "--email", "ida@example.com",
                "--first-name", "Ida", "--last-name", "Rhodes", "--password", PASSWORD)
    page = ada.goto("/chat/new")
    pick_in_select2(page, "participants", "hed", "Hedy Lamarr (@hedy)")
    pick_in_select2(page, "participants", "ida", "Ida Rhodes (@ida)")
    page.fill("#title", "Signals")
    page.click("#start-button")
    page.wait_for_url(re.compile(r"/chat/\d+$"))
    cid = int(page.url.rsplit("/", 1)[1])
    theirs = grace.goto(f"/chat/{cid}")

    # Formatting: bold, a code block, a link, rendered from the server's html on the other side.
    page.fill("#message-input", "**loud** see https://example.org/x\n\n```\nlong_code_line()\n```")
    page.press("#message-input", "Enter")
    got = message(theirs, "loud")
    expect(got.locator(".message-text strong")).to_have_text("loud")
    expect(got.locator(".message-text pre code")).to_contain_text("long_code_line()")
    link = got.locator(".message-text a")
    expect(link).to_have_attribute("href", "https://example.org/x")
    expect(link).to_have_attribute("target", "_blank")
    assert "noopener" in link.get_attribute("rel")
    # Raw HTML stays text.
    send(page, "<b>not bold</b>")
    raw = message(theirs, "<b>not bold</b>")
    expect(raw).to_have_count(1)
    assert raw.locator(".message-text b").count() == 0

    # Reply: Hedy replies to the first message from its menu; the quote jumps to the original.
    original_id = got.get_attribute("data-id")
    got.locator(".message-actions-toggle").click()
    got.locator(".message-reply").click()
    expect(theirs.locator("#reply-preview")).to_contain_text("Replying to Rita Levi")
    theirs.keyboard.press("Escape")
    expect(theirs.locator("#reply-preview")).to_be_hidden()
    got.locator(".message-actions-toggle").click()
    got.locator(".message-reply").click()
    send(theirs, "Heard you")
    reply = message(page, "Heard you")
    quote = reply.locator(".reply-quote")
    expect(quote).to_contain_text("Rita Levi")
    quote.focus()
    page.keyboard.press("Enter")
    expect(page.locator(f'#messages .message[data-id="{original_id}"]')).to_have_class(
        re.compile("message-highlight"))
    ada.screenshot("richer-reply")

    # Reactions: Rita reacts through the picker; Hedy sees the count and who.
    mine = message(page, "loud")
    mine.locator(".reaction-add").click()
    expect(mine.locator(".reaction-picker button")).to_have_count(8)
    mine.locator(".reaction-choice", has_text="🎉").click()
    expect(mine.locator('.reaction[data-emoji="🎉"]')).to_have_attribute("aria-pressed", "true")
    original = theirs.locator(f'#messages .message[data-id="{original_id}"]')
    other = original.locator('.reaction[data-emoji="🎉"]')
    expect(other).to_have_text("🎉 1")
    expect(other).to_have_attribute("aria-pressed", "false")
    expect(other).to_have_attribute("title", "Rita Levi")
    other.click()
    expect(mine.locator('.reaction[data-emoji="🎉"]')).to_have_text("🎉 2")
    grace.screenshot("richer-reactions")

    # A rename shows a system line: centred, no sender, no actions.
    page.click("#manage-group")
    page.fill("#group-title-input", "Frequency hopping")
    page.click("#rename-button")
    line = theirs.locator("#messages .message-system")
    expect(line).to_contain_text("Frequency hopping")
    assert line.locator(".message-actions-toggle").count() == 0
    assert line.locator(".reactions").count() == 0
    grace.screenshot("richer-system-line")
    theirs.set_viewport_size(PHONE)
    grace.screenshot("richer-system-line")
    theirs.set_viewport_size(DESKTOP)
    ada.assert_clean()
    grace.assert_clean()
