"""The details of a group chat in Chromium against the real stack: initials avatars, "Seen by",
times without a leading zero (the full date on hover and for screen readers), sender names in
group previews before and after a reload, a delete right after an edit, and leaving and being
added back (the prompt's wording, no phantom unread count); a chat script that arrives after
the socket has connected."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from .conftest import (
    PASSWORD,
    opened_conversation,
    pick_in_select2,
    seed_messages,
    start_direct,
    wait_until,
)

pytestmark = pytest.mark.e2e


def send(page, text: str) -> None:
    page.fill("#message-input", text)
    page.press("#message-input", "Enter")


def item(page, conversation_id: int):
    return page.locator(f'.conversation-item[data-conversation-id="{conversation_id}"]')


def sent(page, text: str):
    return page.locator("#messages .message:not(.pending)",
                        has=page.locator(".message-text", has_text=text))


def test_a_group_shows_avatars_receipts_times_previews_and_survives_leaving(stack, open_tab):
    nora, ned, nia = open_tab(), open_tab(), open_tab(timezone="America/New_York")
    nora.register("nora", "Nora", "Ephron")
    for username, first, last in (("ned", "Ned", "Kelly"), ("nia", "Nia", "Long")):
        stack.flask("users", "create", username, "--email", f"{username}@example.com",
                    "--first-name", first, "--last-name", last, "--password", PASSWORD)
    ned.login("ned")
    nia.login("nia")
    ids = dict(stack.sql("SELECT username, id FROM users WHERE username IN ('nora', 'ned')"))

    page = nora.goto("/chat/new")
    pick_in_select2(page, "participants", "ned", "Ned Kelly (@ned)")
    pick_in_select2(page, "participants", "nia", "Nia Long (@nia)")
    page.fill("#title", "Night owls")
    page.click("#start-button")
    gid = opened_conversation(page)
    send(page, "Hello owls")
    expect(sent(page, "Hello owls")).to_have_count(1)

    # Receipts: "Seen by" names each reader as they open the group.
    seen = page.locator("#messages .message-seen")
    expect(seen).to_have_count(0)
    theirs = ned.goto(f"/chat/{gid}")
    expect(seen).to_have_text("Seen by Ned", timeout=15_000)  # a busy host
    third = nia.goto(f"/chat/{gid}")
    expect(seen).to_have_text("Seen by Ned, Nia", timeout=15_000)
    expect(seen).to_have_attribute("title", "Seen by Ned Kelly, Nia Long")

    # Avatars: initials on a colour from the user id, the same in the messages, the list and
    # the header; a group has one of its own.
    hello = sent(theirs, "Hello owls")
    avatar = hello.locator(".message-avatar")
    expect(avatar).to_have_text("NE")
    expect(avatar).to_have_class(re.compile(rf"\bavatar-c{ids['nora'] % 12}\b"))
    expect(avatar).to_have_attribute("aria-hidden", "true")
    expect(theirs.locator("#chat-avatar .avatar")).to_have_text("NO")
    expect(item(theirs, gid).locator(".avatar")).to_have_text("NO")
    assert sent(page, "Hello owls").locator(".message-avatar").count() == 0  # not on my own

    # Times: "8:21 PM", no leading zero; the full date on hover and for screen readers.
    time = hello.locator("time.message-time")
    expect(time).to_have_text(re.compile(r"^[1-9]\d?:\d\d\s?[AP]M$"))
    expect(time).to_have_attribute("title", re.compile(r"\b20\d\d\b"))
    full = hello.locator(".message-meta .visually-hidden")
    expect(full).to_have_text(re.compile(r"\b20\d\d\b.*\d:\d\d"))
    expect(theirs.locator("#messages .day-separator").first).to_have_text("Today")
    expect(item(third, gid).locator("time.conversation-time")).to_have_text(
        re.compile(r"^[1-9]\d?:\d\d\s?[AP]M$"))

    # A group preview names the sender, live and after a reload.
    nora.goto("/chat/")
    send(theirs, "Great")
    expect(item(nora.page, gid).locator(".conversation-preview")).to_have_text("Ned Kelly: Great")
    nora.page.reload()
    expect(item(nora.page, gid).locator(".conversation-preview")).to_have_text("Ned Kelly: Great")
    nora.screenshot("list-avatars")

    # Ned fixes his message and deletes it at once: both go through.
    great_id = sent(theirs, "Great").get_attribute("data-id")
    great = theirs.locator(f'#messages .message[data-id="{great_id}"]')
    great.locator(".message-actions-toggle").click()
    great.locator(".message-edit").click()
    editor = great.locator("textarea.message-edit-input")
    editor.fill("Great, see you")
    editor.press("Enter")
    expect(great.locator(".message-text")).to_have_text("Great, see you")
    great.locator(".message-actions-toggle").click()
    great.locator(".message-delete").click()
    theirs.locator(".message-delete-yes").click()
    expect(great).to_have_class(re.compile(r"\bmessage-deleted\b"))
    expect(sent(third, "This message was deleted")).to_have_count(1)
    expect(theirs.locator("#chat-status")).to_have_text("")
    ned.screenshot("chat-group-avatars")
    both = nia.page
    both.set_viewport_size({"width": 390, "height": 844})
    nia.screenshot("chat-group-avatars")

    # Ned leaves (the prompt says what really happens) and is added back: the history is
    # there again, with nothing unread that he had read.
    theirs.click("#manage-group")
    theirs.click("#leave-group")
    expect(theirs.locator("#leave-confirm")).to_have_text(
        "Leave this group? You stop getting its messages and cannot open it until someone "
        "adds you back.")
    theirs.click("#leave-group")
    theirs.wait_for_url(re.compile(r"/chat/$"), timeout=30_000)  # a loaded CI machine
    expect(item(theirs, gid)).to_have_count(0)
    page = nora.goto(f"/chat/{gid}")
    page.click("#manage-group")
    pick_in_select2(page, "add-people", "ned", "Ned Kelly (@ned)")
    page.click("#add-people-button")
    expect(page.locator("#group-status")).to_have_text("Added 1 person.")
    expect(item(theirs, gid)).to_have_count(1)
    expect(item(theirs, gid).locator(".unread-count")).to_be_hidden()
    theirs.reload()
    expect(item(theirs, gid).locator(".unread-count")).to_be_hidden()
    item(theirs, gid).click()
    expect(sent(theirs, "Hello owls")).to_have_count(1)

    for tab in (nora, ned, nia):
        assert tab.dialogs == []
        tab.assert_clean()


def test_a_chat_script_that_arrives_after_the_socket_connected_still_joins(stack, open_tab):
    """The page's scripts are deferred: while the browser waits for a slow one, it runs the
    socket's events. chat.js held back until the socket has connected must still join (it
    once listened only for "connect", and the conversation stayed empty)."""
    pia, pat = open_tab(), open_tab()
    pia.register("pia", "Pia", "Late")
    stack.flask("users", "create", "pat", "--email", "pat@example.com", "--first-name", "Pat",
                "--last-name", "Early", "--password", PASSWORD)
    page, cid = start_direct(pia, "pat", "Pat Early (@pat)")
    seed_messages(stack, "pat", cid, 2)
    pat.login("pat")
    late = pat.page

    def held_back(route):
        wait_until(lambda: late.evaluate(
            "() => !!(window.SimpleChat && window.SimpleChat.socket().connected)"),
            timeout=20, message="the socket to connect before chat.js runs")
        body = route.fetch().text()
        route.fulfill(status=200, content_type="application/javascript",
                      body="window.connectedBeforeChat = window.SimpleChat.socket().connected;\n"
                           + body)

    late.route(re.compile(r"/static/js/chat(\.[0-9a-f]+)?\.js"), held_back)
    pat.goto(f"/chat/{cid}")
    expect(sent(late, "seed message 2")).to_have_count(1, timeout=15_000)
    assert late.evaluate("() => window.connectedBeforeChat") is True
    expect(late.locator("#chat-status")).to_have_text("")
    send(late, "Here now")
    expect(sent(page, "Here now")).to_have_count(1)
    for tab in (pia, pat):
        tab.assert_clean()


NOTIFICATION_SPY = """
window.__notifications = [];
window.Notification = function (title, options) {
  window.__notifications.push([title, (options && options.body) || ""]);
  this.close = function () {};
};
window.Notification.permission = "granted";
window.Notification.requestPermission = function () { return Promise.resolve("granted"); };
"""


def test_a_muted_conversation_stays_quiet_but_for_mentions(stack, open_tab):
    """Mute is a toggle on the chat page: the list greys its count and shows it muted (on the
    user's other pages at once, and after a reload), the title-bar count leaves it out, and its
    messages raise no notification, but a mention does."""
    mia, max_ = open_tab(), open_tab()
    mia.register("mira", "Mia", "Farrow")
    max_.register("max", "Max", "Planck")
    page, cid = start_direct(mia, "max", "Max Planck (@max)")
    max_.context.add_init_script(NOTIFICATION_SPY)
    listing = max_.goto("/chat/")
    chat = max_.context.new_page()
    chat.goto(f"/chat/{cid}")
    button = chat.locator("#mute-button")
    expect(button).to_have_attribute("aria-pressed", "false")
    button.click()
    expect(button).to_have_attribute("aria-pressed", "true")
    entry = item(listing, cid)  # the other page follows, through conversation_muted
    expect(entry.locator(".muted-icon")).to_be_visible()
    expect(entry.locator(".muted-label")).to_have_text(", muted")
    chat.close()

    # Nothing rings for a muted conversation's messages; its count is grey and not in the
    # title. A mention of Max still notifies.
    listing.evaluate("() => Object.defineProperty(document, 'hidden', {get: () => true})")
    send(page, "Just saying")
    expect(entry.locator(".unread-count")).to_have_text("1")
    expect(entry.locator(".unread-count")).to_have_class(re.compile(r"\btext-bg-secondary\b"))
    assert not listing.title().startswith("(")
    send(page, "@max look")
    expect(entry.locator(".unread-count")).to_have_text("2")
    wait_until(lambda: listing.evaluate("() => window.__notifications.length"),
               message="the mention's notification")
    assert listing.evaluate("() => window.__notifications") == [["Mia Farrow mentioned you",
                                                                 "@max look"]]
    max_.screenshot("chat-muted")

    # It stays muted over a reload; unmuted, messages notify again and count in the title.
    listing.reload()
    entry = item(listing, cid)
    expect(entry.locator(".muted-icon")).to_be_visible()
    chat = max_.goto(f"/chat/{cid}")
    expect(chat.locator("#mute-button")).to_have_attribute("aria-pressed", "true")
    chat.locator("#mute-button").click()
    expect(chat.locator("#mute-button")).to_have_attribute("aria-pressed", "false")
    listing = max_.goto("/chat/")
    entry = item(listing, cid)
    expect(entry.locator(".muted-icon")).to_be_hidden()
    listing.evaluate("() => Object.defineProperty(document, 'hidden', {get: () => true})")
    send(page, "Back to normal")
    wait_until(lambda: listing.evaluate("() => window.__notifications.length"),
               message="the message's notification")
    assert listing.evaluate("() => window.__notifications") == [["Mia Farrow", "Back to normal"]]
    expect(entry.locator(".unread-count")).to_have_class(re.compile(r"\btext-bg-danger\b"))
    assert listing.title().startswith("(")
    mia.assert_clean()
    max_.assert_clean()
