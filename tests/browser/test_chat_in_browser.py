"""Two people chatting in Chromium against the real stack: Select2, live messages both ways,
safe rendering, the rate-limit countdown, history, unread counts and reconnect catch-up."""

from __future__ import annotations

import re
from datetime import datetime
from zoneinfo import ZoneInfo

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

XSS = "<img src=x onerror=alert(1)>"


def send(page, text: str) -> None:
    page.fill("#message-input", text)
    page.press("#message-input", "Enter")


def texts(page) -> list[str]:
    return page.locator("#messages .message .message-text").all_inner_texts()


def item(page, conversation_id: int):
    return page.locator(f'.conversation-item[data-conversation-id="{conversation_id}"]')


def test_two_people_chat_live_with_unread_counts_history_and_reconnect(stack, open_tab):
    alice, bob = open_tab(timezone="Asia/Kolkata"), open_tab()
    alice.register("alice", "Alice", "Liddell")
    bob.register("bob", "Bob", "Builder")
    stack.flask("users", "create", "carol", "--email", "carol@example.com",
                "--first-name", "Carol", "--last-name", "Danvers", "--password", PASSWORD)
    bob.goto("/chat/")
    expect(bob.page.locator("#no-conversations")).to_be_visible()

    # Alice finds Bob through Select2's search; one person hides the group title.
    page = alice.goto("/chat/new")
    pick_in_select2(page, "participants", "bo", "Bob Builder (@bob)")
    expect(page.locator("#title")).to_be_hidden()
    page.click("#start-button")
    conversation_id = opened_conversation(page)
    expect(page.locator("#chat-title")).to_have_text("Bob Builder")
    send(page, "Hello Bob")
    expect(page.locator("#messages .message-mine .message-text")).to_have_text(["Hello Bob"])
    # Times show in the viewer's zone (UTC+05:30 here); the payload's are UTC.
    time = page.locator("#messages .message-time").first
    utc = datetime.fromisoformat(time.get_attribute("datetime").replace("Z", "+00:00"))
    expect(time).to_have_text(utc.astimezone(ZoneInfo("Asia/Kolkata")).strftime("%-I:%M %p"))

    # Bob's open list learns of the new conversation live, with an unread count and title.
    bob_item = item(bob.page, conversation_id)
    expect(bob_item.locator(".unread-count")).to_have_text("1")
    expect(bob_item.locator(".conversation-preview")).to_have_text("Hello Bob")
    expect(bob.page).to_have_title(re.compile(r"^\(1\) "))
    bob_item.click()
    expect(bob.page.locator("#messages .message-theirs .message-text")).to_have_text(["Hello Bob"])
    expect(item(bob.page, conversation_id).locator(".unread-count")).to_be_hidden()

    # Bob answers with a link and two lines (Shift+Enter); Alice sees it live.
    bob.page.fill("#message-input", "Hi Alice, see https://example.com/docs.")
    bob.page.press("#message-input", "Shift+Enter")
    bob.page.type("#message-input", "Second line")
    bob.page.press("#message-input", "Enter")
    reply = page.locator("#messages .message-theirs .message-text").last
    expect(reply).to_have_text("Hi Alice, see https://example.com/docs.\nSecond line")
    link = reply.locator("a")
    expect(link).to_have_attribute("href", "https://example.com/docs")
    expect(link).to_have_attribute("rel", "noopener noreferrer nofollow")

    # Markup arrives as text and runs nothing.
    send(page, XSS)
    expect(bob.page.locator("#messages .message-text").last).to_have_text(XSS)
    assert bob.page.locator("#messages img").count() == 0
    # A second message within 2 s: the countdown shows, then the message goes by itself.
    send(page, "Too quick")
    expect(page.locator("#chat-status")).to_contain_text("sending in")
    expect(bob.page.locator("#messages .message-text").last).to_have_text("Too quick")
    expect(page.locator("#chat-status")).to_have_text("")

    # A reload shows the same history, in order.
    expected = ["Hello Bob", "Hi Alice, see https://example.com/docs.\nSecond line", XSS,
                "Too quick"]
    bob.page.reload()
    expect(bob.page.locator("#messages .message-text")).to_have_text(expected)

    # Unread counts: they rise on Bob's list, survive a reload, and clear on opening.
    bob.goto("/chat/")
    bob_item = item(bob.page, conversation_id)
    expect(bob_item.locator(".unread-count")).to_be_hidden()
    send(page, "Are you there?")
    expect(bob_item.locator(".unread-count")).to_have_text("1")
    page.wait_for_timeout(2100)
    send(page, "Bob?")
    expect(bob_item.locator(".unread-count")).to_have_text("2")
    expect(bob_item.locator(".conversation-preview")).to_have_text("Bob?")
    bob.page.reload()
    expect(item(bob.page, conversation_id).locator(".unread-count")).to_have_text("2")
    expect(bob.page).to_have_title(re.compile(r"^\(2\) "))
    bob.screenshot("conversations-unread")
    item(bob.page, conversation_id).click()
    expect(bob.page.locator("#messages .message-text").last).to_have_text("Bob?")
    # The read reaches the server once Bob's socket has joined: Alice sees "Seen" (leaving
    # before that, as a loaded host's page may, leaves the messages unread).
    expect(page.locator("#messages .message-seen")).to_have_text("Seen", timeout=15_000)
    bob.goto("/chat/")
    expect(item(bob.page, conversation_id).locator(".unread-count")).to_be_hidden()
    expect(bob.page).not_to_have_title(re.compile(r"^\("))

    # A group with a long history: the title field shows for two people, older pages load on
    # scrolling up, and sender names show.
    page = alice.goto("/chat/new")
    pick_in_select2(page, "participants", "bo", "Bob Builder (@bob)")
    pick_in_select2(page, "participants", "car", "Carol Danvers (@carol)")
    expect(page.locator("#title")).to_be_visible()
    page.fill("#title", "Book club")
    page.click("#start-button")
    group_id = opened_conversation(page)
    seed_messages(stack, "carol", group_id, 130)
    wait_until(lambda: stack.sql("SELECT count(*) FROM messages WHERE conversation_id = :c",
                                 c=group_id)[0][0] == 130, message="the worker to store 130")
    page.reload()
    expect(page.locator("#messages .message")).to_have_count(100)
    expect(page.locator("#messages .message-text").last).to_have_text("seed message 130")
    expect(page.locator("#messages .message-sender").first).to_have_text("Carol Danvers")
    page.locator("#messages-scroll").evaluate("el => { el.scrollTop = 0; }")
    expect(page.locator("#messages .message")).to_have_count(130)
    expect(page.locator("#messages .message-text").first).to_have_text("seed message 1")
    expect(page.locator("#history-status")).to_have_text(
        "This is the beginning of the conversation.")
    seeded = page.locator("#messages .message-text").all_inner_texts()
    assert seeded == [f"seed message {n}" for n in range(1, 131)]
    # Scrolled up, a new message does not pull the view down: a pill offers to jump.
    pill = page.locator("#new-messages-pill")
    expect(pill).to_be_hidden()
    seed_messages(stack, "bob", group_id, 1)
    expect(page.locator("#messages .message-text").last).to_have_text("seed message 1")
    expect(pill).to_be_visible()
    assert page.locator("#messages-scroll").evaluate(
        "el => el.scrollHeight - el.scrollTop - el.clientHeight") > 1000
    pill.click()
    expect(pill).to_be_hidden()
    expect(page.locator("#messages .message").last).to_be_in_viewport()
    expect(page.locator("#messages .message-sender").last).to_have_text("Bob Builder")
    alice.screenshot("chat-group")

    # The server restarts: Bob's page says so, then catches up with what was sent meanwhile.
    page = bob.goto(f"/chat/{conversation_id}")
    expect(page.locator("#messages .message")).to_have_count(6)
    stack.stop_web()
    expect(page.locator("#chat-status")).to_contain_text("Reconnecting")
    seed_messages(stack, "alice", conversation_id, 3)
    stack.start_web()
    expect(page.locator("#messages .message")).to_have_count(9, timeout=20_000)
    expect(page.locator("#chat-status")).to_have_text("")
    assert texts(page)[-3:] == ["seed message 1", "seed message 2", "seed message 3"]
    ids = page.locator("#messages .message").evaluate_all("els => els.map(e => e.dataset.id)")
    assert len(set(ids)) == len(ids) == 9
    # And it still talks after the restart.
    send(page, "Back again")
    page = alice.goto(f"/chat/{conversation_id}")
    expect(page.locator("#messages .message-text").last).to_have_text("Back again")
    # The chat page's own list counts what arrives in the other conversations.
    seed_messages(stack, "carol", group_id, 2)
    expect(item(page, group_id).locator(".unread-count")).to_have_text("2")
    expect(item(page, group_id).locator(".conversation-preview")).to_have_text(
        "Carol Danvers: seed message 2")
    expect(item(page, conversation_id).locator(".unread-count")).to_be_hidden()

    assert alice.dialogs == [] and bob.dialogs == []
    alice.assert_clean()
    bob.assert_clean()


def test_a_new_conversation_counts_its_message_though_the_list_lagged_behind_it(stack, open_tab):
    """The list's count and its last messages are separate statements: a message written
    between them is the list's last message but not in its count. Bob's list, refreshed for a
    conversation new to it, is answered as such a pair of statements saw it; the page must
    still count the message (it compared with the last message, and showed 0)."""
    dan, dot = open_tab(), open_tab()
    dan.register("dan", "Dan", "First")
    dot.register("dot", "Dot", "Second")
    listing = dot.goto("/chat/")
    expect(listing.locator("#connection-state")).to_have_text("Connected")
    lagged, cid = [], None

    def stored() -> bool:
        return stack.sql("SELECT count(*) FROM messages WHERE conversation_id = :c",
                         c=cid)[0][0] == 1

    def as_if_counted_first(route):
        wait_until(stored, message="the message in SQL")  # the list's last message, then
        body = route.fetch().text()
        match = re.search(r'data-conversation-id="(\d+)"[^>]*?data-last-id="([^"]+)"', body,
                          re.S)
        if match is None:  # not yet the refresh for the new conversation
            route.fulfill(status=200, content_type="text/html", body=body)
            return
        item_html = body[match.start():body.index(">", match.end())]
        stale = (item_html.replace('data-unread="1"', 'data-unread="0"')
                 .replace(f'data-counted-upto="{match.group(2)}"', 'data-counted-upto=""'))
        assert stale != item_html
        lagged.append(match.group(1))
        route.fulfill(status=200, content_type="text/html", body=body.replace(item_html, stale))

    page, cid = start_direct(dan, "dot", "Dot Second (@dot)")
    wait_until(lambda: stack.sql("SELECT count(*) FROM conversations WHERE id = :c",
                                 c=cid)[0][0] == 1, message="the conversation in SQL")
    listing.wait_for_load_state("networkidle")  # the first connect's presence fetch is done
    # The list's script fetches a page of the list alone (/chat/list) to refresh it.
    listing.route(lambda url: url.split("?")[0].endswith("/chat/list"), as_if_counted_first)
    send(page, "Are you there?")
    entry = item(listing, cid)
    expect(entry).to_have_count(1, timeout=15_000)
    expect(entry.locator(".unread-count")).to_have_text("1")
    assert lagged == [str(cid)], "the list was not answered as the lagging statements saw it"
    dan.assert_clean()
    dot.assert_clean()
