"""The chat page of issue 29 in Chromium: opening at the first unread message under "New
messages" with its jumps, "Mark unread" moving the count on another tab of the same person,
drafts across a reload and another browser, the phone layout (header menu, reaction picker,
profile) at 390 and 1280 px, and the keys (Up to edit, Alt+Down, one Tab stop for the
messages). axe in both widths and colour schemes for each new view and menu."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from .conftest import (
    assert_no_axe_violations,
    seed_channels,
    seed_texts,
    start_direct,
    wait_until,
)

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("axe_core")]

SEEDED = 60
MENTION_AT = 40   # the seeded message that mentions Lena


def in_four_views(tab, label: str) -> None:
    """axe at 1280 and 390 px in the light and the dark scheme, screenshots of each."""
    page = tab.page
    size = page.viewport_size
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        for width, height in ((1280, 800), (390, 844)):
            page.set_viewport_size({"width": width, "height": height})
            tab.screenshot(f"reading-{label}-{scheme}")
            assert_no_axe_violations(page, f"reading: {label}")
    page.emulate_media(color_scheme="light")
    page.set_viewport_size(size)


def message(page, text: str):
    exactly = re.compile(rf"^{re.escape(text)}$")
    return page.locator("#messages .message:not(.pending)",
                        has=page.locator(".message-text", has_text=exactly))


def login(open_tab, username: str, width: int = 1280, height: int = 800):
    tab = open_tab(width, height)
    tab.login(username)
    return tab


@pytest.fixture(scope="module")
def room(stack, browser):
    """Lena and Marc (and Kira) registered; a direct conversation of Lena and Marc where Lena
    said hello and then left while Marc wrote 60 messages, the 40th mentioning her; a group of
    the three. Ids by name."""
    from .conftest import Tab

    tabs = [Tab(browser, stack.base_url) for _ in range(3)]
    try:
        lena, marc, kira = tabs
        lena.register("rdlena", "Lena", "Lander")
        marc.register("rdmarc", "Marc", "Marker")
        kira.register("rdkira", "Kira", "Keys")
        page, direct = start_direct(lena, "rdmarc", "Marc Marker (@rdmarc)")
        page.fill("#message-input", "Hello Marc")
        page.press("#message-input", "Enter")
        expect(message(page, "Hello Marc")).to_have_count(1)
        lena.goto("/chat/")
        _, kira_direct = start_direct(kira, "rdlena", "Lena Lander (@rdlena)")
        kira.page.fill("#message-input", "Hi Lena, from Kira")
        kira.page.press("#message-input", "Enter")
        expect(message(kira.page, "Hi Lena, from Kira")).to_have_count(1)
    finally:
        for tab in tabs:
            tab.close()
    texts = [f"seed {n}" for n in range(1, SEEDED + 1)]
    texts[MENTION_AT - 1] = f"seed {MENTION_AT} for @rdlena"
    seed_texts(stack, "rdmarc", direct, texts)
    group = seed_channels(stack, "rdlena", [("Reading room", "Where we test reading.",
                                             ["rdmarc", "rdkira"])])["Reading room"]
    seed_texts(stack, "rdmarc", group, ["Something to react to"])
    seed_texts(stack, "rdlena", group, ["Lena's to react to"])
    return {"direct": direct, "kira_direct": kira_direct, "group": group}


def scroll_box(page) -> dict:
    return page.evaluate("""() => { const s = document.getElementById('messages-scroll');
        const r = s.getBoundingClientRect();
        return {top: r.top, bottom: r.bottom, left: r.left, right: r.right}; }""")


def test_opening_lands_at_the_first_unread_message_with_jumps_to_the_mention_and_newest(
        stack, open_tab, room):
    tab = login(open_tab, "rdlena")
    page = tab.goto(f"/chat/{room['direct']}")
    divider = page.locator("#messages .unread-divider")
    expect(divider).to_have_count(1)
    expect(divider).to_have_text("New messages")
    # The line stands right before the first of Marc's messages, after Lena's own.
    first_after = divider.evaluate("""d => { let n = d.nextElementSibling;
        while (n && !n.classList.contains('message')) { n = n.nextElementSibling; }
        return n.querySelector('.message-text').textContent; }""")
    assert first_after == "seed 1"
    before = divider.evaluate("""d => { let n = d.previousElementSibling;
        while (n && !n.classList.contains('message')) { n = n.previousElementSibling; }
        return n.querySelector('.message-text').textContent; }""")
    assert before == "Hello Marc"
    # In view, near the top of the messages; the newest is not.
    box = scroll_box(page)
    line = divider.bounding_box()
    assert box["top"] <= line["y"] < box["top"] + 120, (box, line)
    expect(message(page, "seed 1")).to_be_in_viewport()
    expect(message(page, f"seed {SEEDED}")).not_to_be_in_viewport()
    expect(page.locator("#jump-newest")).to_be_visible()
    expect(page.locator("#jump-mention")).to_be_visible()
    tab.screenshot("reading-unread-landing")
    in_four_views(tab, "unread-landing")

    page.click("#jump-mention")
    mention = message(page, f"seed {MENTION_AT} for @rdlena")
    expect(mention).to_be_in_viewport()
    expect(mention).to_have_class(re.compile(r"\bmessage-highlight\b"))
    expect(page.locator("#jump-mention")).to_be_hidden()
    page.click("#jump-newest")
    expect(message(page, f"seed {SEEDED}")).to_be_in_viewport()
    expect(page.locator("#jump-newest")).to_be_hidden()
    # Read now: opened again, the page goes to the newest, with no line.
    wait_until(lambda: stack.sql(
        "SELECT count(*) FROM participants p JOIN users u ON u.id = p.user_id "
        "WHERE u.username = 'rdlena' AND p.conversation_id = :c AND p.last_read_message_id >= "
        "(SELECT max(id) FROM messages WHERE conversation_id = :c)", c=room["direct"])[0][0] == 1,
        message="Lena's marker to reach the newest message")
    page.reload()
    expect(message(page, f"seed {SEEDED}")).to_be_in_viewport()
    expect(page.locator("#messages .unread-divider")).to_have_count(0)
    expect(page.locator("#jump-newest")).to_be_hidden()
    tab.assert_clean()


def test_mark_unread_moves_the_count_on_another_tab_of_the_same_person(stack, open_tab, room):
    here = login(open_tab, "rdlena")
    there = login(open_tab, "rdlena")
    page = here.goto(f"/chat/{room['direct']}")
    expect(message(page, f"seed {SEEDED}")).to_have_count(1)
    if page.locator("#jump-newest").is_visible():
        page.click("#jump-newest")
    listed = there.goto("/chat/").locator(
        f'.conversation-item[data-conversation-id="{room["direct"]}"] .unread-count')
    expect(listed).to_be_hidden()

    target = message(page, "seed 50")
    target.hover()
    target.locator(".message-actions-toggle").click()
    entry = target.locator(".message-mark-unread")
    expect(entry).to_have_text("Mark unread")
    in_four_views(here, "message-menu-mark-unread")
    entry.click()
    # 50 to 60: eleven of Marc's messages are unread again, on the other tab too.
    expect(listed).to_have_text("11")
    expect(there.page).to_have_title(re.compile(r"^\(\d+\)"))
    divider = page.locator("#messages .unread-divider")
    expect(divider).to_have_count(1)
    assert divider.evaluate("""d => { let n = d.nextElementSibling;
        while (n && !n.classList.contains('message')) { n = n.nextElementSibling; }
        return n.querySelector('.message-text').textContent; }""") == "seed 50"
    expect(page.locator("#chat-status")).to_contain_text("11 unread")
    # It stays unread while the page is open; reopened, the page lands on it.
    page.reload()
    expect(page.locator("#messages .unread-divider")).to_have_count(1)
    expect(message(page, "seed 50")).to_be_in_viewport()
    expect(page.locator("#jump-newest")).to_be_visible()
    expect(page.locator("#jump-mention")).to_be_hidden()  # the mention (seed 40) was read
    page.click("#jump-newest")
    expect(listed).to_be_hidden()
    here.assert_clean()
    there.assert_clean()


def test_a_draft_survives_a_reload_shows_in_another_browser_and_goes_when_sent(open_tab, room):
    one = login(open_tab, "rdlena")
    other = login(open_tab, "rdlena")
    url = f"/chat/{room['kira_direct']}"
    page = one.goto(url)
    expect(message(page, "Hi Lena, from Kira")).to_have_count(1)
    def draft_saved(r):
        return r.url.endswith("/draft") and r.request.method == "PUT"

    with page.expect_response(draft_saved) as put:
        page.locator("#message-input").press_sequentially("Half a thought, to finish later")
    assert put.value.ok
    expect(page.locator("#message-input")).to_have_value("Half a thought, to finish later")
    page.reload()
    expect(page.locator("#message-input")).to_have_value("Half a thought, to finish later")

    # Another browser of hers: the list marks the conversation, the composer has the text.
    listing = other.goto("/chat/")
    item = listing.locator(f'.conversation-item[data-conversation-id="{room["kira_direct"]}"]')
    expect(item.locator(".draft-mark")).to_have_text("Draft")
    other.screenshot("reading-list-draft")
    in_four_views(other, "list-with-draft")
    there = other.goto(url)
    expect(there.locator("#message-input")).to_have_value("Half a thought, to finish later")

    # Sent from the first: gone from both composers and from the server.
    page.locator("#message-input").press("End")
    page.locator("#message-input").press_sequentially(", finished")
    page.locator("#message-input").press("Enter")
    expect(message(page, "Half a thought, to finish later, finished")).to_have_count(1)
    expect(page.locator("#message-input")).to_have_value("")
    expect(there.locator("#message-input")).to_have_value("")
    wait_until(lambda: page.evaluate("""() => fetch('/api/drafts', {credentials: 'same-origin'})
        .then(r => r.json()).then(d => d.drafts.length)""") == 0, message="the draft to go")
    page.reload()
    expect(message(page, "Half a thought, to finish later, finished")).to_have_count(1)
    expect(page.locator("#message-input")).to_have_value("")
    one.assert_clean()
    other.assert_clean()


def test_phone_layout_header_menu_picker_and_profile(open_tab, room):
    phone = login(open_tab, "rdmarc", 390, 844)
    page = phone.goto(f"/chat/{room['group']}")
    expect(message(page, "Lena's to react to")).to_have_count(1)
    title = page.locator("#chat-title")
    expect(title).to_have_text("Reading room")
    # The title is whole: not cut, and the actions are behind one button.
    assert title.evaluate("el => el.scrollWidth <= el.clientWidth"), "the title is cut"
    assert title.bounding_box()["width"] >= 100
    for folded in ("#members-button", "#manage-group", "#mute-button", "#conversation-settings"):
        expect(page.locator(folded)).to_be_hidden()
    toggle = page.locator("#chat-header-menu-toggle")
    expect(toggle).to_be_visible()
    phone.screenshot("reading-header")
    toggle.focus()
    page.keyboard.press("Enter")
    items = page.locator("#chat-header-menu .dropdown-item")
    expect(items).to_have_text(["Members (3)", "Manage", "Mute", "Webhooks"])
    expect(items.first).to_be_visible()
    phone.screenshot("reading-header-menu")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")
    expect(page.locator("#chat-header-menu .dropdown-item", has_text="Manage")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("#group-modal")).to_be_visible()
    expect(page.locator("#group-modal .select2-search__field")).to_be_focused()  # shown
    page.locator("#group-modal .btn-close").click()
    expect(page.locator("#group-modal")).to_be_hidden()
    expect(toggle).to_be_focused()
    page.keyboard.press("Enter")
    expect(items.first).to_be_visible()
    in_four_views(phone, "header-menu")
    page.keyboard.press("Escape")

    # The reaction picker of a message on either side: all eight emoji on the screen.
    for text, side in (("Lena's to react to", "theirs"), ("Something to react to", "mine")):
        row = message(page, text)
        expect(row).to_have_class(re.compile(rf"\bmessage-{side}\b"))
        row.locator(".message-actions-toggle").click()
        row.locator(".message-react").click()
        choices = page.locator(".reaction-picker .reaction-choice")
        expect(choices).to_have_count(8)
        for n in range(8):
            box = choices.nth(n).bounding_box()
            assert box["x"] >= 0 and box["x"] + box["width"] <= 390, (side, n, box)
        phone.screenshot(f"reading-picker-{side}")
        if side == "theirs":
            in_four_views(phone, "reaction-picker")
        page.keyboard.press("Escape")
        expect(choices).to_have_count(0)

    # At 1280 px the header shows its buttons.
    page.set_viewport_size({"width": 1280, "height": 800})
    expect(page.locator("#manage-group")).to_be_visible()
    expect(toggle).to_be_hidden()
    phone.screenshot("reading-header")

    # The profile: no sideways scrolling at 390 px, each button on one line at 1280 px.
    page = phone.goto("/profile/")
    for width in (390, 1280):
        page.set_viewport_size({"width": width, "height": 844})
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        heights = page.locator(".profile-actions .btn").evaluate_all(
            "els => els.map(e => [e.getBoundingClientRect().height,"
            " parseFloat(getComputedStyle(e).lineHeight)])")
        assert all(h < 2 * line for h, line in heights), heights
        phone.screenshot("reading-profile")
    phone.assert_clean()


def test_keys_up_edits_alt_down_switches_and_the_messages_are_one_tab_stop(open_tab, room):
    tab = login(open_tab, "rdlena")
    page = tab.goto(f"/chat/{room['kira_direct']}")
    composer = page.locator("#message-input")
    composer.fill("Typo in this")
    composer.press("Enter")
    expect(message(page, "Typo in this")).to_have_count(1)
    expect(composer).to_have_value("")
    composer.press("ArrowUp")
    editor = page.locator(".message-edit-input")
    expect(editor).to_be_focused()
    expect(editor).to_have_value("Typo in this")
    page.keyboard.press("Escape")
    expect(editor).to_have_count(0)

    # One stop for the whole list: Shift+Tab from the composer lands on a message, and Tab
    # from it leaves the list.
    rows = page.locator("#messages > .message")
    assert rows.count() >= 2
    assert page.locator('#messages [tabindex="0"]').count() == 1
    composer.focus()
    for _ in range(10):
        page.keyboard.press("Shift+Tab")
        if page.evaluate("!!document.activeElement.closest('#messages')"):
            break
    focused = page.evaluate("document.activeElement.dataset.id || ''")
    assert focused == rows.last.get_attribute("data-id")
    page.keyboard.press("ArrowUp")
    previous = rows.nth(rows.count() - 2).get_attribute("data-id")
    assert page.evaluate("document.activeElement.dataset.id") == previous
    assert page.locator('#messages [tabindex="0"]').count() == 1
    page.keyboard.press("Home")
    assert page.evaluate("document.activeElement.dataset.id") == rows.first.get_attribute("data-id")
    page.keyboard.press("ArrowRight")  # into its own controls
    assert page.evaluate("document.activeElement.classList.contains('message-actions-toggle')")
    page.keyboard.press("Escape")
    page.keyboard.press("Enter")  # its menu
    expect(page.locator("#messages .dropdown-menu.show")).to_have_count(1)
    page.keyboard.press("Escape")
    page.keyboard.press("Tab")
    assert not page.evaluate("!!document.activeElement.closest('#messages')")
    in_four_views(tab, "messages-focus")

    # Alt+Down: the next conversation of the list.
    order = page.locator("#conversation-list .conversation-item").evaluate_all(
        "els => els.map(e => e.dataset.conversationId)")
    here = order.index(str(room["kira_direct"]))
    assert here + 1 < len(order)
    composer.focus()
    page.keyboard.press("Alt+ArrowDown")
    page.wait_for_url(re.compile(rf"/chat/{order[here + 1]}$"))
    page.keyboard.press("Alt+ArrowUp")
    page.wait_for_url(re.compile(rf"/chat/{room['kira_direct']}$"))
    # Ctrl+K: the list's search.
    page.keyboard.press("Control+k")
    expect(page.locator("#search-input")).to_be_focused()
    tab.assert_clean()
