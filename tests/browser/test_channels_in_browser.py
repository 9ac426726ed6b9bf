"""Channels in Chromium against the real stack: the directory (/chat/browse) found from the
conversation list, searched, sorted and paged; a channel previewed before joining, joined from
the preview, and chatted in (its owner sees the message live); a new channel made from the
list; and an owner's work on the channel page: the members panel with roles, making an admin,
deleting a member's message, removing that member (whose page says so) and archiving (the
composer goes read-only on the other members' pages, and comes back when unarchived).
Screenshots: artifacts/screenshots/channels-*.png at desktop and phone width."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from .conftest import PASSWORD, seed_channels, seed_messages, wait_until

pytestmark = pytest.mark.e2e

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}


def make_users(stack, *people: tuple[str, str, str]) -> None:
    for username, first, last in people:
        stack.flask("users", "create", username, "--email", f"{username}@example.com",
                    "--first-name", first, "--last-name", last, "--password", PASSWORD)


def send(page, text: str) -> None:
    page.fill("#message-input", text)
    page.press("#message-input", "Enter")


def message(page, text: str):
    return page.locator("#messages .message:not(.pending)",
                        has=page.locator(".message-text", has_text=text))


def channel_titles(page) -> list[str]:
    return [t.strip() for t in page.locator(
        "#channel-list .channel-item .channel-title").evaluate_all(
        "els => els.map(e => e.firstChild.textContent)")]


def member_row(page, name: str):
    return page.locator("#members-list .member-row", has_text=name)


def test_browse_search_preview_join_and_chat_in_a_channel(stack, open_tab):
    make_users(stack, ("olga", "Olga", "Owner"), ("pete", "Pete", "Peers"),
               ("fern", "Fern", "Filler"))
    # 25 channels, each with "Olgaverse" in its description (other tests' channels share the
    # directory): more than its first page of 20. "Rust lovers" has the most members; a
    # private group is not listed.
    fillers = [(f"Topic {n:02d}", f"Olgaverse filler number {n}", []) for n in range(1, 24)]
    ids = seed_channels(stack, "olga", [
        ("Rust lovers", "Olgaverse: ownership, borrowing and\nfearless concurrency.", ["fern"]),
        ("Gardening", "Olgaverse plants, soil and compost.", []),
        *fillers,
    ])
    stack.flask("conversations", "create", "--private", "--users", "olga",
                "--title", "Secret plans", "--description", "Olgaverse secrets")
    rust = ids["Rust lovers"]
    seed_messages(stack, "olga", rust, 3)

    olga, pete = open_tab(), open_tab()
    olga.login("olga")
    pete.login("pete")
    theirs = olga.goto(f"/chat/{rust}")
    expect(theirs.locator("#chat-description")).to_contain_text("ownership, borrowing")
    expect(message(theirs, "seed message 3")).to_have_count(1)

    # From the conversation list to the directory.
    page = pete.goto("/chat/")
    page.click("#browse-channels")
    page.wait_for_url(re.compile(r"/chat/browse$"))
    items = page.locator("#channel-list .channel-item")
    expect(items.first).to_be_visible()
    page.fill("#channel-q", "olgaverse")
    expect(page.locator("#channel-status")).to_have_text(
        "20 channels (more below) matching “olgaverse”.")
    expect(items).to_have_count(20)
    first = items.first
    expect(first.locator(".channel-title")).to_contain_text("Rust lovers")
    expect(first.locator(".channel-members")).to_have_text("2 members")
    expect(first.locator(".channel-description")).to_contain_text("fearless concurrency")
    expect(first.locator(".channel-join")).to_be_visible()
    assert "Secret plans" not in channel_titles(page)
    pete.screenshot("channels-browse")
    page.set_viewport_size(PHONE)
    pete.screenshot("channels-browse")
    page.set_viewport_size(DESKTOP)

    # Scrolling to the list's end brings the rest, once each.
    page.locator("#channel-list .channel-more").scroll_into_view_if_needed()
    expect(items).to_have_count(25)
    expect(page.locator("#channel-list .channel-more")).to_have_count(0)
    assert len(set(channel_titles(page))) == 25

    # Searching and sorting replace the list and keep the address in step.
    page.fill("#channel-q", "COMPOST")
    expect(items).to_have_count(1)
    expect(items.first.locator(".channel-title")).to_contain_text("Gardening")
    expect(page.locator("#channel-status")).to_have_text("1 channel matching “COMPOST”.")
    assert "q=COMPOST" in page.url
    page.fill("#channel-q", "nothing like this")
    expect(page.locator("#no-channels")).to_have_text("No channels match “nothing like this”.")
    page.fill("#channel-q", "Olgaverse")
    page.select_option("#channel-sort", "name")
    expect(page.locator("#channel-status")).to_contain_text("matching “Olgaverse”")
    expect(items).to_have_count(20)
    assert channel_titles(page)[:3] == ["Gardening", "Rust lovers", "Topic 01"]
    assert "sort=name" in page.url
    page.reload()  # the address holds the search
    expect(page.locator("#channel-sort")).to_have_value("name")
    expect(page.locator("#channel-q")).to_have_value("Olgaverse")
    assert channel_titles(page)[0] == "Gardening"

    # A preview before joining: the recent messages, read-only; Pete is still no member.
    page.fill("#channel-q", "rust lovers")
    expect(items).to_have_count(1)
    items.first.locator(".channel-preview").click()
    modal = page.locator("#preview-modal")
    expect(modal).to_be_visible()
    expect(page.locator("#preview-title")).to_have_text("Rust lovers")
    expect(modal).to_be_focused()  # opened: the dialog holds the focus
    expect(modal.locator(".preview-message")).to_have_count(3)
    expect(modal.locator(".preview-message").last).to_contain_text("seed message 3")
    expect(modal.locator(".preview-sender").first).to_have_text("Olga Owner")
    expect(modal.locator("#message-input")).to_have_count(0)
    expect(page.locator("#preview-hint")).to_be_visible()
    pete.screenshot("channels-preview")
    page.set_viewport_size(PHONE)
    pete.screenshot("channels-preview")
    page.set_viewport_size(DESKTOP)
    assert stack.sql("SELECT count(*) FROM participants p JOIN users u ON u.id = p.user_id "
                     "WHERE u.username = 'pete' AND p.conversation_id = :c", c=rust)[0][0] == 0
    # Escape closes it and gives the focus back to the button that opened it.
    page.keyboard.press("Escape")
    expect(modal).to_be_hidden()
    expect(items.first.locator(".channel-preview")).to_be_focused()

    # Joining from the preview opens the channel; the owner sees Pete join and speak.
    items.first.locator(".channel-preview").click()
    expect(modal).to_be_focused()
    page.click("#preview-join")
    page.wait_for_url(re.compile(rf"/chat/{rust}$"))
    expect(page.locator("#chat-title")).to_have_text("Rust lovers")
    expect(page.locator("#chat-description")).to_contain_text("ownership, borrowing")
    expect(page.locator("#members-button")).to_contain_text("3")
    expect(page.locator(f'#conversation-list .conversation-item[data-conversation-id="{rust}"]')
           ).to_contain_text("channel")
    expect(theirs.locator("#messages .message-system", has_text="Pete Peers")).to_have_count(1)
    send(page, "Hello rustaceans")
    expect(message(page, "Hello rustaceans")).to_have_count(1)
    expect(message(theirs, "Hello rustaceans")).to_have_count(1)
    # A member's message menu has no Delete for others' messages.
    theirs_message = message(page, "seed message 3")
    theirs_message.hover()
    theirs_message.locator(".message-actions-toggle").click()
    expect(theirs_message.locator(".message-delete")).to_have_count(0)
    page.keyboard.press("Escape")
    pete.screenshot("channels-joined")
    page.set_viewport_size(PHONE)
    pete.screenshot("channels-joined")
    page.set_viewport_size(DESKTOP)

    # The directory says he joined: Open, not Join.
    page = pete.goto("/chat/browse?q=rust+lovers")
    expect(items.first.locator(".channel-joined")).to_have_text("Joined")
    items.first.locator(".channel-open").click()
    page.wait_for_url(re.compile(rf"/chat/{rust}$"))

    # A new channel, made from the list: private, so not in the directory.
    page = pete.goto("/chat/")
    page.click("#new-channel")
    page.wait_for_url(re.compile(r"/chat/channels/new$"))
    expect(page.locator("#title")).to_be_focused()
    page.click("#create-channel-button")
    expect(page.locator("#form-errors")).to_be_focused()
    expect(page.locator("#title-errors")).to_have_text("Give the channel a name.")
    page.fill("#title", "Pete's corner")
    page.fill("#description", "Where Pete thinks out loud.")
    page.check("#visibility-1")
    pete.screenshot("channels-new")
    page.click("#create-channel-button")
    page.wait_for_url(re.compile(r"/chat/\d+$"))
    expect(page.locator("#chat-title")).to_have_text("Pete's corner")
    expect(page.locator("#chat-description")).to_have_text("Where Pete thinks out loud.")
    page = pete.goto("/chat/browse?q=corner")
    expect(page.locator("#no-channels")).to_be_visible()

    for tab in (olga, pete):
        assert tab.dialogs == []
        tab.assert_clean()


def test_an_owner_makes_an_admin_deletes_a_message_removes_a_member_and_archives(
        stack, open_tab):
    make_users(stack, ("otto", "Otto", "Owner"), ("mia", "Mia", "Member"),
               ("adam", "Adam", "Admin"))
    ids = seed_channels(stack, "otto", [("Town hall", "Where the town talks.", ["mia", "adam"])])
    hall = ids["Town hall"]
    seed_messages(stack, "mia", hall, 1)

    otto, mia, adam = open_tab(), open_tab(), open_tab(width=390, height=844)
    for tab, name in ((otto, "otto"), (mia, "mia"), (adam, "adam")):
        tab.login(name)
    page = otto.goto(f"/chat/{hall}")
    hers = mia.goto(f"/chat/{hall}")
    his = adam.goto(f"/chat/{hall}")
    for p in (page, hers, his):
        expect(p.locator("#connection-state")).to_have_attribute("data-state", "connected")
        expect(message(p, "seed message 1")).to_have_count(1)

    # The members panel: everyone with their role; the owner may manage the others.
    page.click("#members-button")
    panel = page.locator("#members-panel")
    expect(panel).to_be_focused()  # slid in
    expect(page.locator("#members-list .member-row")).to_have_count(3)
    expect(member_row(page, "Otto Owner").locator(".member-role")).to_have_text("Owner")
    expect(member_row(page, "Otto Owner").locator(".member-manage")).to_have_count(0)
    expect(member_row(page, "Mia Member").locator(".member-role")).to_have_count(0)
    # Who is online (all three have the page open).
    expect(member_row(page, "Mia Member").locator(".presence-dot")).to_have_class(
        re.compile(r"\bonline\b"))
    expect(member_row(page, "Mia Member").locator(".presence-label")).to_have_text(" (online)")
    # Adam, a member, sees the list but no actions.
    # (On his phone the header's buttons are in its actions menu.)
    his.click("#chat-header-menu-toggle")
    his.locator("#chat-header-menu .dropdown-item", has_text="Members").click()
    expect(his.locator("#members-panel")).to_be_focused()
    expect(his.locator("#members-list .member-row")).to_have_count(3)
    expect(his.locator("#members-list .member-manage")).to_have_count(0)
    expect(his.locator("#describe-form")).to_be_hidden()

    # Adam made an admin, from the keyboard: his page follows (he may describe now).
    adam_row = member_row(page, "Adam Admin")
    adam_row.locator(".member-manage").focus()
    page.keyboard.press("Enter")
    expect(adam_row.locator(".member-set-role").first).to_be_focused()
    adam_row.locator(".member-set-role", has_text="Make an admin").click()
    expect(page.locator("#members-status")).to_have_text("Adam Admin is an admin now.")
    expect(member_row(page, "Adam Admin").locator(".member-role")).to_have_text("Admin")
    expect(his.locator("#chat")).to_have_attribute("data-role", "admin")
    expect(member_row(his, "Adam Admin").locator(".member-role")).to_have_text("Admin")
    expect(member_row(his, "Mia Member").locator(".member-manage")).to_have_count(1)
    expect(member_row(his, "Otto Owner").locator(".member-manage")).to_have_count(0)
    otto.screenshot("channels-members")
    adam.screenshot("channels-members")
    page.keyboard.press("Escape")
    expect(panel).to_be_hidden()
    his.keyboard.press("Escape")

    # The owner deletes Mia's message: a tombstone that says by whom, on her page too.
    hers_message = message(page, "seed message 1")
    hers_message.hover()
    hers_message.locator(".message-actions-toggle").click()
    hers_message.locator(".message-delete").click()
    hers_message.locator(".message-delete-yes").click()
    expect(message(page, "This message was deleted by you")).to_have_count(1)
    expect(message(hers, "This message was deleted by Otto Owner")).to_have_count(1)

    # Mia is removed: her page says so and takes her back to her list.
    send(hers, "Am I still here?")
    expect(message(page, "Am I still here?")).to_have_count(1)
    page.click("#members-button")
    expect(panel).to_be_focused()
    mia_row = member_row(page, "Mia Member")
    mia_row.locator(".member-manage").click()
    mia_row.locator(".member-remove").click()
    expect(mia_row.locator(".member-remove-yes")).to_be_focused()
    otto.screenshot("channels-remove-confirm")
    mia_row.locator(".member-remove-yes").click()
    expect(page.locator("#members-status")).to_have_text("Mia Member was removed.")
    expect(page.locator("#members-list .member-row")).to_have_count(2)
    expect(page.locator("#members-count")).to_have_text("2")
    hers.wait_for_url(re.compile(r"/chat/$"))
    expect(hers.locator(".flash-messages")).to_contain_text(
        "You were removed from “Town hall” by Otto Owner.")
    expect(hers.locator(f'.conversation-item[data-conversation-id="{hall}"]')).to_have_count(0)
    expect(page.locator("#messages .message-system", has_text="removed Mia Member")
           ).to_have_count(1)
    page.keyboard.press("Escape")

    # Archived: read-only on every member's page, with the reason; unarchived, writable again.
    page.click("#manage-group")
    expect(page.locator("#group-title-input")).to_be_focused()
    page.click("#archive-button")
    expect(page.locator("#group-status")).to_have_text("Archived: the channel is read-only now.")
    expect(page.locator("#archive-button")).to_have_text("Unarchive channel")
    page.keyboard.press("Escape")
    expect(page.locator("#group-modal")).to_be_hidden()
    for p in (page, his):
        expect(p.locator("#archived-notice")).to_be_visible()
        expect(p.locator("#message-input")).to_be_disabled()
        expect(p.locator("#send-button")).to_be_disabled()
    expect(his.locator("#archived-notice")).to_contain_text("This channel is archived")
    expect(page.locator(f'#conversation-list .conversation-item[data-conversation-id="{hall}"]')
           ).to_be_visible()
    otto.screenshot("channels-archived")
    adam.screenshot("channels-archived")
    # An archived channel leaves the directory.
    browse = mia.goto("/chat/browse?q=town")
    expect(browse.locator("#no-channels")).to_be_visible()

    # Adam, an admin, unarchives from the notice.
    his.click("#unarchive-inline")
    expect(his.locator("#chat-status")).to_have_text("Unarchived: everyone can write again.")
    for p in (page, his):
        expect(p.locator("#archived-notice")).to_be_hidden()
        expect(p.locator("#message-input")).to_be_enabled()
    send(his, "Back in business")
    expect(message(page, "Back in business")).to_have_count(1)

    wait_until(lambda: stack.sql(
        "SELECT count(*) FROM messages WHERE conversation_id = :c AND deleted_by IS NOT NULL",
        c=hall)[0][0] == 1, message="the deletion to be stored")
    for tab in (otto, mia, adam):
        assert tab.dialogs == []
        tab.assert_clean()
