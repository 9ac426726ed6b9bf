"""Threads in Chromium against the real stack: replying from the thread panel, "1 reply" under
the root and the reply in the other person's open panel (live), a reply also sent to the
conversation, thread unread counts in the conversation list and the Threads view, following
and unfollowing, Escape giving the focus back, the full-screen panel at phone width; axe on
the panel and the Threads view at 1280 and 390 px in both colour schemes."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from e2e.harness import ROOT, base_env
from playwright.sync_api import expect

from .conftest import PASSWORD, assert_no_axe_violations, start_direct, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("axe_core")]

VIEWS = ((1280, 800), (390, 844))


def check_axe(tab, name: str) -> None:
    """Zero axe violations in the state at hand, at both widths in both schemes (screenshots of
    each), back to 1280 px light after."""
    page = tab.page
    failures = []
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        for width, height in VIEWS:
            page.set_viewport_size({"width": width, "height": height})
            tab.screenshot(f"threads-{name}-{scheme}")
            try:
                assert_no_axe_violations(page, f"threads: {name}")
            except AssertionError as failure:
                failures.append(str(failure))
    page.emulate_media(color_scheme="light")
    page.set_viewport_size({"width": 1280, "height": 800})
    assert not failures, "\n".join(failures)


def seed_replies(stack, sender: str, conversation_id: int, root_id: str, count: int) -> None:
    """``count`` replies in a thread through the real send path, in a separate process."""
    script = (
        "import sys\n"
        "from sqlalchemy import select\n"
        "from simplechat import create_app\n"
        "from simplechat.extensions import db\n"
        "from simplechat.models import User\n"
        "from simplechat.messaging.send import send_message\n"
        "app = create_app()\n"
        "with app.app_context():\n"
        "    user = db.session.scalars(select(User).where(User.username == sys.argv[1])).one()\n"
        "    for n in range(1, int(sys.argv[4]) + 1):\n"
        "        ack = send_message(user, int(sys.argv[2]), f'seed reply {n}',\n"
        "                           thread_id=sys.argv[3])\n"
        "        assert ack['ok'], ack\n"
    )
    env = base_env({**stack.env, "CHAT_RATE_LIMIT": "off"})
    done = subprocess.run([sys.executable, "-c", script, sender, str(conversation_id), root_id,
                           str(count)], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, f"seeding failed: {done.stderr[-2000:]}"


def root_row(page, text: str):
    return page.locator("#messages .message:not(.pending)",
                        has=page.locator(".message-text", has_text=text))


def open_thread_from_menu(page, text: str) -> None:
    row = root_row(page, text)
    row.hover()
    row.locator(".message-actions-toggle").click()
    row.locator(".message-thread").click()
    expect(page.locator("#thread-panel")).to_be_visible()
    expect(page.locator("#thread-root .message-text")).to_have_text(text)


def reply(page, text: str, also: bool = False) -> None:
    page.fill("#thread-input", text)
    if also:
        page.check("#thread-also")
    page.press("#thread-input", "Enter")
    expect(page.locator("#thread-replies .message:not(.pending) .message-text",
                        has_text=text)).to_have_count(1)


def test_a_thread_from_the_panel_reaches_the_other_person_live_and_is_counted(stack, open_tab):
    thelma = open_tab()
    theodore = open_tab(width=390, height=844)  # a phone: the panel covers the screen
    thelma.register("thelma", "Thelma", "Stone")
    stack.flask("users", "create", "theodore", "--email", "theodore@example.com",
                "--first-name", "Theodore", "--last-name", "Reed", "--password", PASSWORD)
    theodore.login("theodore")

    page, cid = start_direct(thelma, "theodore", "Theodore Reed (@theodore)")
    page.fill("#message-input", "Shall we plan the **launch**?")
    page.press("#message-input", "Enter")
    expect(root_row(page, "Shall we plan the launch?")).to_have_count(1)
    root_id = root_row(page, "Shall we plan the launch?").get_attribute("data-id")

    phone = theodore.goto(f"/chat/{cid}")
    expect(root_row(phone, "Shall we plan the launch?")).to_have_count(1)

    # Both open the thread from the message's menu; the author's panel sits beside the chat.
    open_thread_from_menu(page, "Shall we plan the launch?")
    expect(page).to_have_url(re.compile(rf"\?thread={root_id}$"))
    expect(page.locator("#thread-count")).to_have_text("No replies yet")
    assert page.locator("#thread-panel").get_attribute("role") is None  # a region at 1280 px
    box = page.locator("#thread-panel").bounding_box()
    chat_box = page.locator("#chat").bounding_box()
    assert box["x"] >= chat_box["x"] + chat_box["width"] - 1, (box, chat_box)  # beside, not over

    open_thread_from_menu(phone, "Shall we plan the launch?")
    panel = phone.locator("#thread-panel")
    expect(panel).to_have_attribute("role", "dialog")
    expect(panel).to_have_attribute("aria-modal", "true")
    box = panel.bounding_box()
    assert (box["x"], box["y"], box["width"], box["height"]) == (0, 0, 390, 844), box
    expect(phone.locator("#thread-input")).to_be_focused()

    # Theodore replies from his panel: Thelma sees "1 reply" under the root and the reply in her
    # open panel, not in the conversation's own flow.
    reply(phone, "I can <b>draft</b> the plan")
    theodore.screenshot("threads-panel-replied")
    summary = root_row(page, "Shall we plan the launch?").locator(".thread-summary")
    expect(summary.locator(".thread-summary-count")).to_have_text("1 reply", timeout=15_000)
    expect(summary).to_contain_text(re.compile(r"1 reply · last reply (just now|\d+ min ago)"))
    expect(summary.locator(".avatar")).to_have_text("TR")  # who replied
    theirs = page.locator("#thread-replies .message-text", has_text="I can <b>draft</b> the plan")
    expect(theirs).to_have_count(1)  # as text: the server escaped the markup
    expect(page.locator("#thread-replies b")).to_have_count(0)
    expect(page.locator("#thread-count")).to_have_text("1 reply")
    expect(page.locator("#messages .message-text", has_text="draft")).to_have_count(0)
    mine = root_row(phone, "Shall we plan the launch?").locator(".thread-summary-count")
    expect(mine).to_have_text("1 reply")

    # Thelma wrote the root: she follows the thread once the reply is stored; her panel was
    # open on it, so nothing is unread.
    expect(page.locator("#thread-follow")).to_have_attribute("aria-pressed", "true", timeout=15_000)
    expect(page.locator("#thread-follow")).to_have_text("Following")
    thelma.screenshot("threads-panel-open")
    check_axe(thelma, "panel")

    # Escape closes the panel and gives the focus back to the menu it was opened from.
    page.locator("#thread-input").focus()
    page.keyboard.press("Escape")
    expect(page.locator("#thread-panel")).to_be_hidden()
    expect(page).to_have_url(re.compile(rf"/chat/{cid}$"))
    toggle = root_row(page, "Shall we plan the launch?").locator(".message-actions-toggle")
    expect(toggle).to_be_focused()

    # A reply also sent to the conversation: in Theodore's main flow, in the count, and unread
    # for Thelma in the list (her panel is closed) and in the Threads view.
    reply(phone, "Also for everyone: Friday, @thelma", also=True)
    expect(summary.locator(".thread-summary-count")).to_have_text("2 replies", timeout=15_000)
    shared = root_row(page, "Also for everyone: Friday")
    expect(shared).to_have_count(1)
    expect(shared.locator(".thread-summary")).to_have_text("Replied in a thread")
    item = page.locator(f'.conversation-item[data-conversation-id="{cid}"]')
    expect(item.locator(".thread-unread")).to_be_visible(timeout=15_000)
    expect(item.locator(".thread-unread-count")).to_have_text("1")
    expect(item.locator(".thread-unread-label")).to_have_text(
        ", 1 unread thread reply, mentioning you", timeout=15_000)  # as the server counts it
    expect(item.locator(".thread-unread")).to_have_class(re.compile(r"\bthread-unread-mention\b"))
    thelma.screenshot("threads-list-badge")
    check_axe(thelma, "list-badge")

    # The Threads view, from the list's header; "Unread only" narrows it.
    page.click("#threads-link")
    expect(page).to_have_url(re.compile(r"/chat/threads$"))
    listed = page.locator("#threads-list .thread-item")
    expect(listed).to_have_count(1)
    expect(listed.locator(".thread-where")).to_have_text("Theodore Reed")
    expect(listed.locator(".thread-item-root")).to_have_text("You: Shall we plan the launch?")
    expect(listed.locator(".thread-item-unread")).to_have_text("1 unread")
    expect(listed.locator(".thread-item-meta")).to_contain_text("2 replies")
    page.check("#threads-unread")
    expect(page).to_have_url(re.compile(r"/chat/threads\?unread=1$"))
    expect(listed).to_have_count(1)
    check_axe(thelma, "view")

    # Opening it: the conversation with the panel open; reading it clears the counts.
    listed.locator("a").click()
    expect(page).to_have_url(re.compile(rf"/chat/{cid}\?thread={root_id}$"))
    expect(page.locator("#thread-replies .message-text", has_text="Friday")).to_have_count(1)
    expect(item.locator(".thread-unread")).to_be_hidden(timeout=15_000)

    # Unfollowing: the thread leaves the Threads view; following again brings it back.
    follow = page.locator("#thread-follow")
    follow.click()
    expect(follow).to_have_attribute("aria-pressed", "false")
    expect(follow).to_have_text("Follow")
    page.goto("/chat/threads")
    expect(page.locator("#threads-status")).to_have_text(
        "You follow no threads yet. Reply in one, or open one and press Follow.")
    page.goto(f"/chat/{cid}?thread={root_id}")
    expect(page.locator("#thread-replies .message-text", has_text="Friday")).to_have_count(1)
    expect(follow).to_have_attribute("aria-pressed", "false")
    follow.click()
    expect(follow).to_have_attribute("aria-pressed", "true")
    page.goto("/chat/threads")
    expect(page.locator("#threads-list .thread-item")).to_have_count(1)
    check_axe(thelma, "view-read")

    # The thread's draft is kept on the server: back after a reload, gone once sent.
    def thread_drafts() -> list:
        return [text for (text,) in stack.sql(
            "SELECT d.text FROM drafts d JOIN users u ON u.id = d.user_id "
            "WHERE u.username = 'thelma' AND d.thread_id = :root", root=root_id)]

    page.goto(f"/chat/{cid}?thread={root_id}")
    expect(page.locator("#thread-replies .message-text", has_text="Friday")).to_have_count(1)
    page.locator("#thread-input").press_sequentially("Half a thought")
    wait_until(lambda: thread_drafts() == ["Half a thought"], timeout=15)
    page.reload()
    expect(page.locator("#thread-input")).to_have_value("Half a thought")
    expect(page.locator("#message-input")).to_have_value("")  # not the conversation's composer
    page.press("#thread-input", "Enter")
    arrived = phone.locator("#thread-replies .message-text", has_text="Half a thought")
    expect(arrived).to_have_count(1)
    wait_until(lambda: thread_drafts() == [], timeout=15)

    # On the phone: Escape closes the full-screen panel and the page behind takes the keyboard
    # again; the line under the root opens it once more.
    expect(phone.locator("#thread-input")).to_be_focused()
    phone.keyboard.press("Escape")
    expect(phone.locator("#thread-panel")).to_be_hidden()
    assert phone.evaluate("document.querySelector('#chat').closest('[inert]') === null")
    line = root_row(phone, "Shall we plan the launch?").locator(".thread-summary")
    expect(line.locator(".thread-summary-count")).to_have_text("3 replies")
    theodore.screenshot("threads-summary")
    line.click()
    expect(phone.locator("#thread-panel")).to_have_attribute("role", "dialog")
    expect(phone.locator("#thread-count")).to_have_text("3 replies")
    assert phone.evaluate("document.querySelector('#chat').closest('[inert]') !== null")
    theodore.screenshot("threads-panel-again")

    # A long thread (3 replies and 104 more): the newest 100, the earlier ones on demand.
    seed_replies(stack, "theodore", cid, root_id, 104)
    page.goto(f"/chat/{cid}?thread={root_id}")
    shown = page.locator("#thread-replies .message")
    expect(shown).to_have_count(100)
    expect(shown.first.locator(".message-text")).to_have_text("seed reply 5")
    expect(page.locator("#thread-count")).to_have_text("107 replies")
    page.click("#thread-older")
    expect(shown).to_have_count(107)
    expect(shown.first.locator(".message-text")).to_have_text("I can <b>draft</b> the plan")
    expect(page.locator("#thread-older")).to_be_hidden()
    expect(page.locator("#thread-replies")).to_be_focused()  # not lost with the button

    thelma.assert_clean()
    theodore.assert_clean()
