"""Offline-first composing in Chromium against the real stack: messages typed with no connection
show at once as pending, go out in order when it comes back, exactly once, and a refused one
shows "failed" with Retry; the connection state and presence say what is known."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from .conftest import PASSWORD, start_direct, wait_until

pytestmark = pytest.mark.e2e

OUTBOX_KEYS = ("() => Object.keys(sessionStorage)"
               ".filter(k => k.startsWith('simplechat:outbox:'))")


def send(page, text: str) -> None:
    page.fill("#message-input", text)
    page.press("#message-input", "Enter")


def sent_texts(page) -> list[str]:
    return page.locator("#messages .message:not(.pending) .message-text").all_inner_texts()


def stored(stack, conversation_id: int) -> list[str]:
    return [r[0] for r in stack.sql(
        "SELECT text FROM messages WHERE conversation_id = :c ORDER BY created_at, id",
        c=conversation_id)]


def test_messages_typed_offline_go_out_once_in_order_and_a_refused_one_can_be_retried(
        stack, open_tab):
    olive, oscar = open_tab(), open_tab()
    olive.register("olive", "Olive", "Oyl")
    oscar.register("oscar", "Oscar", "Wilde")
    page, cid = start_direct(olive, "osc", "Oscar Wilde (@oscar)")
    theirs = oscar.goto(f"/chat/{cid}")

    # Connected: the navbar says so on both pages, and each sees the other online.
    for p in (page, theirs):
        expect(p.locator("#connection-state")).to_have_text("Connected")
    expect(page.locator("#chat-presence")).to_have_text("Online")
    send(page, "Before the storm")
    expect(theirs.locator("#messages .message-text")).to_have_text(["Before the storm"])

    # The network goes. The browser's own offline signal closes the socket at once (Chromium
    # keeps an open WebSocket through network emulation), and the page says what it knows:
    # offline, and the peer's presence unknown rather than a stale "Online".
    olive.context.set_offline(True)
    expect(page.locator("#connection-state")).to_have_text("Offline")
    expect(page.locator("#chat-status")).to_contain_text("Reconnecting")
    expect(page.locator("#chat-presence")).to_have_text("Status unknown while offline")
    assert page.evaluate("() => navigator.onLine") is False
    # The server goes too, so nothing can slip through while "offline" (and the server that
    # comes back allows 30 characters, so one message will be refused).
    stack.stop_web()
    expect(theirs.locator("#connection-state")).to_have_text("Reconnecting…")

    typed = ["One, while offline", "Two, while offline", "Three, while offline"]
    for text in typed:
        send(page, text)
    too_long = "Four: this one is longer than thirty characters"
    send(page, too_long)
    pending = page.locator("#messages .message.pending")
    expect(pending.locator(".message-text")).to_have_text([*typed, too_long])
    expect(pending.locator(".message-state")).to_have_text(["Sending…"] * 4)
    expect(page.locator("#messages .message:not(.pending) .message-text")).to_have_text(
        ["Before the storm"])
    olive.screenshot("chat-offline-pending")
    page.set_viewport_size({"width": 390, "height": 844})
    olive.screenshot("chat-offline-pending")
    page.set_viewport_size({"width": 1280, "height": 800})

    stack.start_web(env={"CHAT_MAX_MESSAGE_LENGTH": "30"})
    olive.context.set_offline(False)
    # Back: the three go out in order (the rate limit spaces them), exactly once each; the
    # long one is refused and says so, with a Retry button.
    expected = ["Before the storm", *typed]
    expect(theirs.locator("#messages .message-text")).to_have_text(expected, timeout=30_000)
    expect(page.locator("#messages .message:not(.pending):not(.failed) .message-text")
           ).to_have_text(expected, timeout=20_000)
    failed = page.locator("#messages .message.failed")
    expect(failed.locator(".message-text")).to_have_text([too_long])
    expect(failed.locator(".message-state")).to_contain_text("Failed —")
    expect(failed.get_by_role("button", name="Retry")).to_be_visible()
    expect(page.locator("#chat-status")).to_have_text("That message is too long.")
    expect(page.locator("#connection-state")).to_have_text("Connected")
    expect(page.locator("#chat-presence")).to_have_text("Online")
    expect(page.locator("#messages .message.pending")).to_have_count(0)
    olive.screenshot("chat-offline-failed")
    wait_until(lambda: stored(stack, cid) == expected, message="the worker to store 4")

    # The server takes long messages again: Retry sends it, once.
    stack.stop_web()
    stack.start_web()
    expect(page.locator("#connection-state")).to_have_text("Connected", timeout=20_000)
    failed.get_by_role("button", name="Retry").click()
    expected.append(too_long)
    expect(theirs.locator("#messages .message-text")).to_have_text(expected, timeout=20_000)
    expect(page.locator("#messages .message .message-text")).to_have_text(expected)
    # The peer can see the copy before this page has the server's answer: until then the
    # message is still "Sending…".
    expect(page.locator("#messages .message.failed, #messages .message.pending")
           ).to_have_count(0)
    wait_until(lambda: stored(stack, cid) == expected, message="the worker to store 5")

    # After a reload, history shows each message once, in order, on both sides.
    for p in (page, theirs):
        p.reload()
        expect(p.locator("#messages .message .message-text")).to_have_text(expected)
        ids = p.locator("#messages .message").evaluate_all("els => els.map(e => e.dataset.id)")
        assert len(set(ids)) == len(ids) == len(expected)

    # An outbox left by a reload (a message typed, its ack never seen) goes out after it, and
    # a second copy of the same client id is the same message: still once.
    page.evaluate("""([cid, uid]) => sessionStorage.setItem('simplechat:outbox:' + uid + ':' + cid,
        JSON.stringify([{text: 'Kept across a reload', clientId: 'reload-1'}]))""",
                  [cid, page.evaluate("() => document.body.dataset.userId")])
    page.reload()
    expected.append("Kept across a reload")
    expect(theirs.locator("#messages .message .message-text")).to_have_text(expected,
                                                                            timeout=20_000)
    expect(page.locator("#messages .message .message-text")).to_have_text(expected)
    assert page.evaluate(OUTBOX_KEYS) == []
    page.evaluate("""([cid, uid]) => sessionStorage.setItem('simplechat:outbox:' + uid + ':' + cid,
        JSON.stringify([{text: 'Kept across a reload', clientId: 'reload-1'}]))""",
                  [cid, page.evaluate("() => document.body.dataset.userId")])
    page.reload()
    expect(page.locator("#messages .message:not(.pending) .message-text")).to_have_text(expected)
    wait_until(lambda: page.evaluate(OUTBOX_KEYS) == [], message="the outbox to empty")
    expect(page.locator("#messages .message .message-text")).to_have_text(expected)
    wait_until(lambda: stored(stack, cid) == expected, message="the worker to store 6")
    assert sent_texts(theirs) == expected

    # Logging out drops whatever is left in the outbox.
    page.evaluate("""([cid, uid]) => sessionStorage.setItem('simplechat:outbox:' + uid + ':' + cid,
        JSON.stringify([{text: 'Never sent', clientId: 'gone-1'}]))""",
                  [cid + 1000, page.evaluate("() => document.body.dataset.userId")])
    page.click("#logout-button")
    page.wait_for_url(re.compile(r"/auth/login"))
    assert page.evaluate(OUTBOX_KEYS) == []

    assert olive.dialogs == [] and oscar.dialogs == []
    olive.assert_clean()
    oscar.assert_clean()


def test_the_list_shows_the_connection_and_follows_presence_live(stack, open_tab):
    uma, ulf = open_tab(), open_tab()
    uma.register("uma", "Uma", "Thurman")
    ulf.register("ulf", "Ulf", "Stark")
    page, cid = start_direct(uma, "ulf", "Ulf Stark (@ulf)")
    listing = ulf.goto("/chat/")
    entry = listing.locator(f'.conversation-item[data-conversation-id="{cid}"]')
    expect(listing.locator("#connection-state")).to_have_text("Connected")
    expect(entry.locator(".presence-dot")).to_have_class(re.compile(r"\bonline\b"))
    expect(entry.locator(".presence-label")).to_have_text(", online")

    # Uma's only page goes: Ulf's list shows her offline at once (no reload, no refresh).
    uma.page.goto("about:blank")
    expect(entry.locator(".presence-dot")).not_to_have_class(re.compile(r"\bonline\b"))
    expect(entry.locator(".presence-label")).to_contain_text("last seen")
    uma.goto(f"/chat/{cid}")
    expect(entry.locator(".presence-dot")).to_have_class(re.compile(r"\bonline\b"))

    # Ulf's own connection drops: the list says so, and no longer claims Uma is online.
    ulf.context.set_offline(True)
    expect(listing.locator("#connection-state")).to_have_text("Offline")
    expect(entry.locator(".presence-dot")).to_have_class(re.compile(r"\bunknown\b"))
    expect(entry.locator(".presence-label")).to_have_text(", status unknown while offline")
    ulf.screenshot("list-offline")
    ulf.context.set_offline(False)
    expect(listing.locator("#connection-state")).to_have_text("Connected", timeout=20_000)
    expect(entry.locator(".presence-dot")).to_have_class(re.compile(r"\bonline\b"))
    uma.assert_clean()
    ulf.assert_clean()


def test_coming_back_online_reconnects_without_waiting_out_the_backoff(stack, open_tab):
    """The client retries with a growing delay while offline; the browser's "online" signal
    reconnects at once instead of waiting for the next try (here at least 30 s away)."""
    wes = open_tab()
    wes.register("wes", "Wes", "Online")
    page = wes.goto("/chat/")
    expect(page.locator("#connection-state")).to_have_text("Connected")
    page.evaluate("() => SimpleChat.socket().io"
                  ".reconnectionDelay(60000).reconnectionDelayMax(60000)")
    wes.context.set_offline(True)
    # The socket closed at once, and its next try is now 30 to 90 s away.
    expect(page.locator("#connection-state")).to_have_text("Offline")
    page.wait_for_timeout(1000)
    wes.context.set_offline(False)
    expect(page.locator("#connection-state")).to_have_text("Connected", timeout=15_000)
    wes.assert_clean()


def test_the_list_takes_presence_that_changed_before_its_socket_connected(stack, open_tab):
    """Between the server rendering the list and the socket joining the personal room, a peer's
    `presence` reaches nobody: the list asks the server once it is connected."""
    for username, first in (("vic", "Vic"), ("val", "Val")):
        stack.flask("users", "create", username, "--email", f"{username}@example.com",
                    "--first-name", first, "--last-name", "Early", "--password", PASSWORD)
    made = stack.flask("conversations", "create", "--users", "vic,val")
    cid = int(re.search(r"\d+", made).group())
    vic, val = open_tab(), open_tab()
    val.login("val")
    listing = val.page
    rendered = {}

    def held_back(route):  # the Socket.IO client: no socket until Vic has come online
        label = listing.locator(f'.conversation-item[data-conversation-id="{cid}"] '
                                ".presence-label")
        rendered["online"] = label.get_attribute("data-online")
        vic.login("vic")
        expect(vic.goto(f"/chat/{cid}").locator("#connection-state")).to_have_text("Connected")
        route.continue_()

    listing.route(re.compile(r"/static/vendor/socket\.io/socket\.io\.min(\.[0-9a-f]+)?\.js"),
                  held_back)
    # The page's load waits for the held script, which waits for Vic's login and socket: the
    # navigation is not waited for here, the connection below is (a loaded run took over 10 s).
    listing.goto("/chat/", wait_until="commit", timeout=30_000)
    entry = listing.locator(f'.conversation-item[data-conversation-id="{cid}"]')
    expect(listing.locator("#connection-state")).to_have_text("Connected", timeout=30_000)
    assert rendered == {"online": "false"}  # the page was rendered with Vic offline
    expect(entry.locator(".presence-dot")).to_have_class(re.compile(r"\bonline\b"))
    expect(entry.locator(".presence-label")).to_have_text(", online")
    vic.assert_clean()
    val.assert_clean()
