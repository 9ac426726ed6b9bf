"""Accessibility: axe-core on every page and state, and the keyboard alone.

Every state is checked in four views: 1280x800 and 390x844, each in the light and the dark
colour scheme (prefers-color-scheme), with every rule axe-core runs by default (tags wcag2a,
wcag2aa, wcag21a, wcag21aa, wcag22aa, best-practice). The goal is zero violations of any impact.
Screenshots of each view: artifacts/screenshots/a11y-<state>-<scheme>-<desktop|phone>.png;
axe's findings: artifacts/axe/report.jsonl.

States covered:
  signed out      login; login refused; register; register refused (server-side errors)
  list            conversations with unread counts; search results; reconnecting (offline)
  new chat        empty form; Select2 open with results; a person picked; refused (nobody picked)
  direct chat     messages both ways, "(edited)", "Seen", day separator; message menu open;
                  editing a message; delete confirmation open; reconnecting (offline)
  group chat      sender names; Manage dialog open; its Select2 open; leave confirmation
  channels        the directory (/chat/browse: search, sort, a joined channel, more to load);
                  a channel's preview open; the new-channel form; refused (no name); a channel
                  page with its description and the members panel open, a member's actions
                  open (as its owner); the settings dialog with description and archiving; an
                  archived channel (read-only composer, the reason)
  rich messages   formatting and code, a reply's quote, reactions, attachments (thumbnail and
                  file chip), a mention of me, a system line; the reaction picker open; the
                  mention list open; the reply bar and file chips in the composer; the lightbox
  profile         own; edit; edit refused; change password; change password refused; sessions;
                  someone else's public profile
  errors          404 for an unknown page; 404 for a conversation that does not exist

To cover a new state: bring the page into it and call ``check(tab, "name")`` (all four views),
or ``assert_no_axe_violations(page, label)`` from conftest for the view at hand.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from .conftest import (
    PASSWORD,
    Tab,
    assert_no_axe_violations,
    opened_conversation,
    pick_in_select2,
    seed_channels,
    seed_messages,
    start_direct,
    wait_until,
)

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("axe_core")]

VIEWS = ((1280, 800), (390, 844))
SCHEMES = ("light", "dark")
PEOPLE = (("ann", "Ann", "Archer"), ("ben", "Ben", "Baker"), ("cleo", "Cleo", "Cole"))


class Checker:
    """Runs axe in every view of a tab's current state and keeps what failed, so one run
    reports every state at once."""

    def __init__(self):
        self.failures: list[str] = []
        self.states = 0

    def __call__(self, tab: Tab, name: str) -> None:
        page = tab.page
        for scheme in SCHEMES:
            page.emulate_media(color_scheme=scheme)
            for width, height in VIEWS:
                page.set_viewport_size({"width": width, "height": height})
                tab.screenshot(f"a11y-{name}-{scheme}")
                try:
                    assert_no_axe_violations(page, name)
                except AssertionError as failure:
                    self.failures.append(str(failure))
                self.states += 1
        page.emulate_media(color_scheme="light")
        page.set_viewport_size({"width": VIEWS[0][0], "height": VIEWS[0][1]})

    def assert_clean(self, expected_states: int) -> None:
        assert self.states == expected_states * len(VIEWS) * len(SCHEMES)
        assert not self.failures, "\n".join(self.failures)


@pytest.fixture
def check():
    return Checker()


def own(page, text: str):
    return page.locator("#messages .message-mine", has=page.locator(".message-text", has_text=text))


@pytest.fixture(scope="module")
def chats(stack, browser):
    """Ann, Ben and Cleo; a direct chat of Ann and Ben (Ann's message edited and seen by Ben),
    and a group of the three with messages Ann has not read."""
    for username, first, last in PEOPLE:
        stack.flask("users", "create", username, "--email", f"{username}@example.com",
                    "--first-name", first, "--last-name", last, "--password", PASSWORD)
    ann, ben = Tab(browser, stack.base_url), Tab(browser, stack.base_url)
    try:
        ann.login("ann")
        ben.login("ben")
        page, direct = start_direct(ann, "ben", "Ben Baker (@ben)")
        seed_messages(stack, "ben", direct, 3)
        page.reload()
        page.fill("#message-input", "Shall we meet at noon?")
        page.press("#message-input", "Enter")
        mine = own(page, "Shall we meet at noon?")
        expect(mine).to_have_count(1)
        mine.locator(".message-actions-toggle").click()
        mine.locator(".message-edit").click()
        page.keyboard.press("End")
        page.keyboard.type(" Or at one?")
        page.keyboard.press("Enter")

        def edited() -> bool:  # an edit right after sending is refused by the rate limit
            if mine.locator(".message-edited").count():
                return True
            if "Slow down" in (page.text_content("#chat-status") or ""):
                mine.locator(".message-edit-input").press("Enter")
            return False

        wait_until(edited, interval=1.0, message="the edit to be saved")
        ben.goto(f"/chat/{direct}")
        expect(page.locator("#messages .message-seen")).to_have_text("Seen")

        page = ann.goto("/chat/new")
        pick_in_select2(page, "participants", "ben", "Ben Baker (@ben)")
        pick_in_select2(page, "participants", "cleo", "Cleo Cole (@cleo)")
        page.fill("#title", "Design review")
        page.click("#start-button")
        group = opened_conversation(page)
        ann.goto("/chat/")  # so the group's messages arrive unread
        seed_messages(stack, "ben", group, 2)
        seed_messages(stack, "cleo", group, 2)
        ann.assert_clean()
        ben.assert_clean()
    finally:
        ann.close()
        ben.close()
    return {"direct": direct, "group": group}


def test_signed_out_pages(open_tab, check, chats):
    tab = open_tab()
    page = tab.goto("/auth/login")
    check(tab, "login")
    page.fill("#username", "nobody")
    page.fill("#password", "not the password")
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#login-error")).to_be_visible()
    check(tab, "login-refused")

    page = tab.goto("/auth/register")
    # The rules are on the page, tied to their fields, not only in validation bubbles.
    expect(page.locator("#username-help")).to_contain_text("letters, digits")
    expect(page.locator("#password-help")).to_have_text("At least 8 characters.")
    assert page.get_attribute("#username", "aria-describedby") == "username-help"
    check(tab, "register")
    for field, value in (("username", "ben"), ("first_name", "Ben"), ("last_name", "Again"),
                         ("email", "ben@example.com"), ("password", PASSWORD),
                         ("confirm", PASSWORD + "!")):
        page.fill(f"#{field}", value)
    page.get_by_role("button", name="Register").click()
    summary = page.locator("#form-errors")
    expect(summary).to_be_focused()  # read out at once, with links to the fields
    expect(summary).to_have_attribute("role", "alert")
    expect(summary.locator("a")).to_have_text(["Username", "E-mail", "Confirm password"])
    expect(page.locator("#username")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#username")).to_have_attribute("aria-describedby",
                                                        "username-help username-errors")
    expect(page.locator("#confirm-errors")).to_have_text("The passwords do not match.")
    check(tab, "register-refused")
    tab.assert_clean()
    check.assert_clean(4)


def test_conversation_list_and_new_conversation(open_tab, check, chats):
    tab = open_tab()
    tab.login("ann")
    page = tab.goto("/chat/")
    group = page.locator(f'.conversation-item[data-conversation-id="{chats["group"]}"]')
    expect(group.locator(".unread-count")).to_have_text("4")
    check(tab, "conversations")
    page.fill("#search-input", "seed message")
    page.press("#search-input", "Enter")
    expect(page.locator("#search-results .search-result").first).to_be_visible()
    check(tab, "conversations-search")
    tab.context.set_offline(True)
    check(tab, "conversations-offline")
    tab.context.set_offline(False)

    page = tab.goto("/chat/new")
    check(tab, "new-conversation")
    page.locator("#participants + .select2 .select2-search__field").click()
    page.keyboard.type("cle")
    expect(page.locator(".select2-results__option", has_text="Cleo Cole (@cleo)")).to_be_visible()
    check(tab, "new-conversation-select2-open")
    page.keyboard.press("Enter")
    page.keyboard.press("Escape")
    expect(page.locator(".select2-selection__choice")).to_have_count(1)
    check(tab, "new-conversation-picked")
    page.locator(".select2-selection__choice__remove").click()
    page.keyboard.press("Escape")
    page.click("#start-button")
    expect(page.locator("#participants-errors")).to_be_visible()
    expect(page.locator("#form-errors")).to_be_focused()
    check(tab, "new-conversation-refused")
    tab.assert_clean()
    check.assert_clean(7)


def test_direct_chat(open_tab, check, chats):
    tab = open_tab()
    tab.login("ann")
    page = tab.goto(f"/chat/{chats['direct']}")
    mine = own(page, "Or at one?")
    expect(mine.locator(".message-edited")).to_be_visible()
    expect(page.locator("#messages .message-seen")).to_have_text("Seen")
    expect(page.locator("#messages .day-separator")).to_have_count(1)
    check(tab, "chat-direct")

    mine.locator(".message-actions-toggle").click()
    expect(mine.locator(".dropdown-menu")).to_be_visible()
    check(tab, "chat-message-menu")
    mine.locator(".message-edit").click()
    expect(mine.locator(".message-edit-input")).to_be_focused()
    check(tab, "chat-editing")
    page.keyboard.press("Escape")
    mine.locator(".message-actions-toggle").click()
    mine.locator(".message-delete").click()
    expect(mine.locator(".message-delete-yes")).to_be_focused()
    check(tab, "chat-delete-confirm")
    mine.locator(".message-delete-no").click()
    expect(mine.locator(".message-delete-confirm")).to_have_count(0)

    tab.context.set_offline(True)
    expect(page.locator("#chat-status")).to_have_text("Connection lost. Reconnecting…")
    check(tab, "chat-reconnecting")
    tab.context.set_offline(False)
    expect(page.locator("#chat-status")).to_have_text("")
    tab.assert_clean()
    check.assert_clean(5)


def test_group_chat(open_tab, check, chats):
    tab = open_tab()
    tab.login("ann")
    page = tab.goto(f"/chat/{chats['group']}")
    expect(page.locator("#messages .message-sender").first).to_be_visible()
    check(tab, "chat-group")
    page.click("#manage-group")
    expect(page.locator("#group-title-input")).to_be_focused()  # the dialog has finished opening
    check(tab, "group-dialog")
    page.locator("#add-people + .select2 .select2-search__field").click()
    page.keyboard.type("cleo")
    expect(page.locator(".select2-results__option", has_text="Cleo Cole")).to_be_visible()
    check(tab, "group-dialog-select2-open")
    page.locator("#group-title-input").click()  # closes Select2's list, not the dialog
    expect(page.locator(".select2-results__option")).to_have_count(0)
    page.click("#leave-group")
    expect(page.locator("#leave-confirm")).to_be_visible()
    check(tab, "group-leave-confirm")
    page.click("#leave-cancel")
    tab.assert_clean()
    check.assert_clean(4)


def test_profile_and_error_pages(open_tab, check, chats):
    tab = open_tab()
    tab.login("cleo")
    tab.goto("/profile/")
    check(tab, "profile")
    page = tab.goto("/profile/edit")
    check(tab, "profile-edit")
    page.fill("#email", "ben@example.com")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#form-errors")).to_be_focused()
    check(tab, "profile-edit-refused")
    page = tab.goto("/profile/password")
    check(tab, "password")
    page.fill("#current_password", "not my password")
    page.fill("#password", "a new password")
    page.fill("#confirm", "a new password")
    page.get_by_role("button", name="Change password").click()
    expect(page.locator("#current_password-errors")).to_be_visible()
    check(tab, "password-refused")
    tab.goto("/profile/sessions")
    check(tab, "sessions")
    page = tab.goto("/profile/ben")
    expect(page.locator("#profile-username")).to_have_text("@ben")
    check(tab, "public-profile")
    page = tab.goto("/no-such-page")
    expect(page.locator("h1")).to_have_text("404")
    check(tab, "not-found")
    page = tab.goto("/chat/999999")
    expect(page.locator("h1")).to_have_text("404")
    check(tab, "conversation-not-found")
    tab.assert_clean()
    check.assert_clean(9)


def active(page) -> dict:
    """The focused element: id, classes, tag, and the outline it shows."""
    return page.evaluate("""() => { const el = document.activeElement;
        const style = getComputedStyle(el);
        return {id: el.id, cls: el.className, tag: el.tagName, text: el.textContent.trim(),
                outline: style.outlineStyle, outlineColor: style.outlineColor,
                outlineWidth: parseFloat(style.outlineWidth), inNav: !!el.closest("nav")}; }""")


def tab_until(page, found, key: str = "Tab", most: int = 60) -> dict:
    for _ in range(most):
        page.keyboard.press(key)
        now = active(page)
        if found(now):
            return now
    raise AssertionError(f"{key} never reached the element; last: {now}")


def test_keyboard_only(stack, open_tab, chats):
    """Register, start a chat, send and read back through the history without the mouse."""
    tab = open_tab()
    page = tab.goto("/auth/register")
    assert active(page)["id"] == "username"
    for value in ("kim", "Kim", "Keyes", "kim@example.com", PASSWORD, PASSWORD):
        page.keyboard.type(value)
        page.keyboard.press("Tab")
    page.keyboard.press("Enter")  # on Register, after Confirm password
    page.wait_for_url(re.compile(r"/chat/$"))
    # A new account has no conversations: the focus waits on New chat, not on the body.
    assert active(page)["id"] == "new-conversation"

    # Focus shows on the blue bar: a white ring.
    nav = tab_until(page, lambda a: a["inNav"], key="Shift+Tab")
    assert nav["outline"] == "solid" and nav["outlineColor"] == "rgb(255, 255, 255)", nav
    assert nav["outlineWidth"] >= 2
    tab.screenshot("a11y-keyboard-navbar-focus")

    # A skip link comes first and leads to the content.
    page = tab.goto("/chat/new")
    skip = tab_until(page, lambda a: True)
    assert skip["text"] == "Skip to content"
    assert page.locator(".skip-link").bounding_box()["width"] > 20  # shown while focused
    page.keyboard.press("Enter")
    assert active(page)["id"] == "content"

    # Select2 takes the keyboard, with a ring around the field.
    tab_until(page, lambda a: "select2-search__field" in a["cls"])
    ring = page.evaluate("""getComputedStyle(document.querySelector(
        '#participants + .select2 .select2-selection')).outlineStyle""")
    assert ring == "solid"
    page.keyboard.type("ann")
    expect(page.locator(".select2-results__option", has_text="Ann Archer (@ann)")).to_be_visible()
    tab.screenshot("a11y-keyboard-select2")
    page.keyboard.press("Enter")
    page.keyboard.press("Escape")
    tab_until(page, lambda a: a["id"] == "start-button")
    page.keyboard.press("Enter")
    conversation_id = opened_conversation(page)
    assert active(page)["id"] == "message-input"
    page.keyboard.type("Hello Ann, typed without a mouse")
    page.keyboard.press("Enter")
    expect(own(page, "typed without a mouse")).to_have_count(1)

    # The message list takes the focus and scrolls with the keys. Kim's own messages: the page
    # opens at the newest (another's, unless read before the reload, would open it at the
    # first unread under the "New messages" line).
    seed_messages(stack, "kim", conversation_id, 40)
    page.reload()
    expect(page.locator("#messages .message")).to_have_count(41)
    scroller = page.locator("#messages-scroll")
    page.wait_for_function("""() => { const s = document.getElementById('messages-scroll');
        return s.scrollHeight - s.scrollTop - s.clientHeight < 40; }""")
    at_bottom = scroller.evaluate("s => s.scrollTop")
    assert at_bottom > 0
    # The list is one Tab stop: its newest message (a roving tabindex, arrows inside).
    row = tab_until(page, lambda a: "message" in a["cls"].split(), key="Shift+Tab")
    assert row["outline"] == "solid", row
    assert page.evaluate("document.activeElement.parentElement.id") == "messages"
    assert page.get_attribute("#messages", "role") == "log"
    page.keyboard.press("PageUp")
    page.wait_for_function(
        f"() => document.getElementById('messages-scroll').scrollTop < {at_bottom}")
    tab.screenshot("a11y-keyboard-messages")
    tab.assert_clean()


def test_channels(stack, open_tab, check, chats):
    """The directory, a preview, the new-channel form, and a channel's page as its owner:
    members panel, settings dialog, archived."""
    # More channels than the directory's first page, so that it has more to load.
    channel = seed_channels(stack, "ann", [
        ("Announcements", "News for everyone: releases, outages and plans.", ["ben", "cleo"]),
    ])["Announcements"]
    seed_channels(stack, "cleo", [(f"Side room {n:02d}", f"Room number {n}.", [])
                                  for n in range(1, 22)])
    seed_messages(stack, "ben", channel, 2)

    tab = open_tab()
    tab.login("ann")
    page = tab.goto("/chat/")
    page.click("#browse-channels")
    items = page.locator("#channel-list .channel-item")
    expect(items).to_have_count(20)
    expect(items.filter(has_text="Announcements").locator(".channel-open")).to_be_visible()
    expect(page.locator("#channel-list .channel-more")).to_be_visible()
    check(tab, "browse")
    page.fill("#channel-q", "room number 1")
    expect(page.locator("#channel-status")).to_contain_text("matching")
    page.select_option("#channel-sort", "name")
    expect(items.first.locator(".channel-title")).to_contain_text("Side room 01")
    page.fill("#channel-q", "news for everyone")
    expect(items).to_have_count(1)
    items.first.locator(".channel-preview").click()
    expect(page.locator("#preview-modal")).to_be_focused()
    expect(page.locator("#preview-messages .preview-message")).to_have_count(2)
    expect(page.locator("#preview-open")).to_be_visible()  # Ann is in it
    expect(page.locator("#preview-hint")).to_be_hidden()
    check(tab, "browse-preview")
    page.keyboard.press("Escape")
    expect(page.locator("#preview-modal")).to_be_hidden()

    page = tab.goto("/chat/channels/new")
    check(tab, "new-channel")
    page.click("#create-channel-button")
    expect(page.locator("#form-errors")).to_be_focused()
    check(tab, "new-channel-refused")

    page = tab.goto(f"/chat/{channel}")
    expect(page.locator("#chat-description")).to_contain_text("News for everyone")
    expect(page.locator("#messages .message-theirs")).to_have_count(2)
    check(tab, "channel")
    page.click("#members-button")
    expect(page.locator("#members-panel")).to_be_focused()  # slid in
    row = page.locator("#members-list .member-row", has_text="Ben Baker")
    row.locator(".member-manage").click()
    expect(row.locator(".member-set-role").first).to_be_focused()  # the panel has slid in
    check(tab, "channel-members")
    page.keyboard.press("Escape")  # closes the member's actions
    page.keyboard.press("Escape")  # and the panel
    expect(page.locator("#members-panel")).to_be_hidden()
    page.click("#manage-group")
    expect(page.locator("#group-title-input")).to_be_focused()
    check(tab, "channel-settings")
    page.click("#archive-button")
    expect(page.locator("#archive-button")).to_have_text("Unarchive channel")
    page.keyboard.press("Escape")
    expect(page.locator("#group-modal")).to_be_hidden()
    expect(page.locator("#message-input")).to_be_disabled()
    check(tab, "channel-archived")
    page.click("#unarchive-inline")
    expect(page.locator("#message-input")).to_be_enabled()
    tab.assert_clean()
    check.assert_clean(8)


def _png() -> bytes:
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (300, 180), (30, 90, 160)).save(out, "PNG")
    return out.getvalue()


def test_richer_messages(open_tab, check, chats):
    """Runs last: it adds to the group (the list's unread counts above count on it as seeded)."""
    ben, ann = open_tab(), open_tab()
    ben.login("ben")
    ann.login("ann")
    group = chats["group"]
    page = ben.goto(f"/chat/{group}")
    code = "make check  # a long line " + "x" * 80
    page.fill("#message-input", f"See **this**, @ann:\n\n```\n{code}\n```")
    page.press("#message-input", "Enter")
    page.set_input_files("#attach-input", files=[
        {"name": "chart.png", "mimeType": "image/png", "buffer": _png()},
        {"name": "notes.pdf", "mimeType": "application/pdf", "buffer": b"%PDF-1.4\n%%EOF\n"},
    ])
    expect(page.locator("#attachment-chips .attachment-chip.uploaded")).to_have_count(2)
    page.fill("#message-input", "The files")
    page.press("#message-input", "Enter")
    files = page.locator("#messages .message:not(.pending) .attachments")
    expect(files).to_have_count(1)

    page = ann.goto(f"/chat/{group}")
    expect(page.locator("#messages .mention-me")).to_have_count(1)
    formatted = page.locator("#messages .message", has=page.locator("pre"))
    formatted.hover()
    formatted.locator(".message-actions-toggle").click()
    formatted.locator(".message-reply").click()
    page.fill("#message-input", "Looks good")
    page.press("#message-input", "Enter")
    expect(page.locator("#messages .message:not(.pending) .reply-quote")).to_have_count(1)
    formatted.locator(".message-actions-toggle").click()
    formatted.locator(".message-react").click()
    page.locator('.reaction-picker button[data-emoji="👍"]').click()
    expect(formatted.locator(".reactions .reaction")).to_have_count(1)
    check(ann, "rich-messages")

    formatted.locator(".message-actions-toggle").click()
    formatted.locator(".message-react").click()
    expect(page.locator(".reaction-picker")).to_be_visible()
    check(ann, "rich-reaction-picker")
    page.keyboard.press("Escape")

    formatted.locator(".message-actions-toggle").click()
    formatted.locator(".message-reply").click()
    page.set_input_files("#attach-input", files=[
        {"name": "more.pdf", "mimeType": "application/pdf", "buffer": b"%PDF-1.4\n%%EOF\n"},
    ])
    expect(page.locator("#attachment-chips .attachment-chip.uploaded")).to_have_count(1)
    page.click("#message-input")
    page.keyboard.type("@b")
    expect(page.locator("#mention-list [role=option]").first).to_be_visible()
    check(ann, "rich-composer-mention-list")
    page.keyboard.press("Escape")

    page.locator("#messages .attachment-image").click()
    expect(page.locator("#lightbox")).to_be_visible()
    check(ann, "rich-lightbox")
    page.keyboard.press("Escape")
    expect(page.locator("#lightbox")).to_be_hidden()
    ann.assert_clean()
    ben.assert_clean()
    check.assert_clean(4)
