"""Web Push in Chromium against the real stack (its web process restarted with VAPID keys for
this module): the settings page registers the service worker at /sw.js and offers push; a push
delivered through the DevTools protocol (ServiceWorker.deliverPushMessage) shows one
notification per conversation (tag), its click opens the conversation, and a "clear" push closes
it. The conversation's bell sets the level, by keyboard. Zero axe violations on the settings page
and with the bell's menu open. A mention in an unmuted group raises one page notification."""

from __future__ import annotations

import json
import time

import pytest
from playwright.sync_api import expect

from simplechat.notifications.push import generate_keys

from .conftest import (
    PASSWORD,
    assert_no_axe_violations,
    opened_conversation,
    pick_in_select2,
    start_direct,
)

pytestmark = pytest.mark.e2e

SHOWN = """() => navigator.serviceWorker.ready
  .then(r => r.getNotifications())
  .then(ns => ns.map(n => ({title: n.title, body: n.body, tag: n.tag,
                            url: n.data && n.data.url})))"""


@pytest.fixture(scope="module")
def push_stack(stack):
    public, private = generate_keys()
    keys = {"WEBPUSH_VAPID_PUBLIC_KEY": public, "WEBPUSH_VAPID_PRIVATE_KEY": private,
            "WEBPUSH_SUBJECT": "mailto:ops@example.com"}
    stack.stop_web()
    stack.env.update(keys)
    stack.start_web()
    yield stack
    stack.stop_web()
    for name in keys:
        stack.env.pop(name, None)
    stack.start_web()


def registration_id(cdp, page) -> str:
    found: list[dict] = []
    cdp.on("ServiceWorker.workerRegistrationUpdated",
           lambda event: found.extend(event["registrations"]))
    cdp.send("ServiceWorker.enable")
    deadline = time.monotonic() + 30
    while True:
        live = [r for r in found if not r["isDeleted"]]
        if live:
            return live[-1]["registrationId"]
        assert time.monotonic() < deadline, "no service worker registration"
        page.wait_for_timeout(100)  # Playwright hands over the events while it waits


def shown(page, wanted, seconds: float = 30, fail: bool = True) -> list[dict]:
    """The notifications shown, once ``wanted(notes)`` holds (pushes are handled in turn);
    after ``seconds``, a failure, or with ``fail`` false what is shown then."""
    deadline = time.monotonic() + seconds
    while True:
        notes = page.evaluate(SHOWN)
        if wanted(notes):
            return notes
        if time.monotonic() >= deadline:
            assert not fail, notes
            return notes
        page.wait_for_timeout(100)


def test_pushed_notifications_show_open_and_clear(push_stack, open_tab):
    pia, pat = open_tab(), open_tab()
    pia.register("pushpia", "Pia", "Push")
    pat.register("pushpat", "Pat", "Push")
    page, conversation = start_direct(pia, "pushpat", "Pat Push (@pushpat)")
    tab = pat
    tab.context.grant_permissions(["notifications"], origin=push_stack.base_url)
    settings = tab.goto("/chat/settings/notifications")
    expect(settings.locator("#push-status")).not_to_be_empty()
    active = settings.evaluate("navigator.serviceWorker.ready.then(r => r.active.scriptURL)")
    assert active == f"{push_stack.base_url}/sw.js"
    expect(settings.locator("#push-enable")).to_be_visible()
    assert_no_axe_violations(settings, "notification settings with push offered")

    cdp = tab.context.new_cdp_session(settings)
    rid = registration_id(cdp, settings)
    url = f"/chat/{conversation}"

    def deliver(payload: dict) -> None:
        cdp.send("ServiceWorker.deliverPushMessage", {
            "origin": push_stack.base_url, "registrationId": rid, "data": json.dumps(payload)})

    tag = f"conversation-{conversation}"
    base = {"conversation_id": conversation, "tag": tag, "url": url}
    # One per conversation: the second replaced the first. (A push delivered while the worker
    # was still starting showed nothing once in a full run: delivered again, it replaces.)
    expected = [{"title": "Pia Push", "body": "second", "tag": tag,
                 "url": push_stack.base_url + url}]
    for attempt in range(3):
        deliver({**base, "type": "message", "title": "Pia Push", "body": "first"})
        deliver({**base, "type": "message", "title": "Pia Push", "body": "second"})
        notes = shown(settings, lambda notes: notes == expected or len(notes) > 1,
                      seconds=30 if attempt == 2 else 10, fail=attempt == 2)
        if notes:
            break
    assert notes == expected
    other = {"conversation_id": 999999, "tag": "conversation-999999", "type": "message",
             "url": "https://elsewhere.example/x", "title": "Other", "body": "elsewhere"}
    # Headless Chromium has once dropped every shown notification in a full run (the list read
    # [] for 30 s): then both are delivered again, each replacing its own tag.
    for attempt in range(3):
        deliver(other)
        notes = shown(settings, lambda notes: len(notes) >= 2,
                      seconds=30 if attempt == 2 else 10, fail=attempt == 2)
        if len(notes) >= 2:
            break
        deliver({**base, "type": "message", "title": "Pia Push", "body": "second"})
    assert {n["url"] for n in notes} == {push_stack.base_url + url, push_stack.base_url + "/"}

    # A click opens the notification's URL (the worker's notificationclick: Chromium lets a
    # worker open a window only on a real click, which no test can make; the URL it opens is
    # the one checked above, same-origin, and it is the conversation).
    conversation_page = tab.context.new_page()
    conversation_page.goto(notes[0]["url"] if notes[0]["tag"] == tag else notes[1]["url"])
    expect(conversation_page.locator("#chat")).to_have_attribute("data-conversation-id",
                                                                 str(conversation))
    # Read elsewhere: the clear closes that conversation's notification, not the other.
    deliver({**base, "type": "clear", "title": "", "body": ""})
    notes = shown(settings, lambda notes: len(notes) < 2)
    assert [n["tag"] for n in notes] == ["conversation-999999"]
    tab.assert_clean()


def test_the_bell_sets_the_conversations_level(push_stack, open_tab):
    bea, ben = open_tab(), open_tab()
    bea.register("pushbea", "Bea", "Bell")
    ben.register("pushben", "Ben", "Bell")
    page, conversation = start_direct(bea, "pushben", "Ben Bell (@pushben)")
    button = page.locator("#notify-level-button")
    menu = page.locator("#notify-level-menu")
    button.focus()
    page.keyboard.press("Enter")
    expect(menu).to_be_visible()
    expect(menu.locator('[data-level="default"]')).to_have_attribute("aria-pressed", "true")
    assert_no_axe_violations(page, "the conversation's bell open")
    # By keyboard: the arrows walk the menu's items, Enter picks one.
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")
    expect(menu.locator('[data-level="mentions"]')).to_be_focused()
    page.keyboard.press("Enter")
    expect(menu.locator('[data-level="mentions"]')).to_have_attribute("aria-pressed", "true")
    rows = push_stack.sql("SELECT notification_level FROM participants p JOIN users u "
                          "ON u.id = p.user_id WHERE u.username = 'pushbea' "
                          "AND p.conversation_id = :c", c=conversation)
    assert rows == [("mentions",)]
    if not menu.is_visible():
        button.click()
    menu.locator('.notify-mute-option[data-minutes="60"]').click()
    expect(page.locator("#notify-level-status")).to_contain_text("Muted until")
    expect(page.locator("#mute-button")).to_have_attribute("aria-pressed", "true")
    bea.assert_clean()


# The page's own notifications, counted: a stand-in for the browser's Notification, and the
# page taken for hidden (as when another tab is in front), so that it notifies.
_COUNT_NOTIFICATIONS = """
window.__notes = [];
function CountedNotification(title, options) {
  window.__notes.push({title: title, body: (options || {}).body, tag: (options || {}).tag});
}
CountedNotification.prototype.close = function () {};
CountedNotification.permission = "granted";
CountedNotification.requestPermission = function () { return Promise.resolve("granted"); };
Object.defineProperty(window, "Notification", {value: CountedNotification, configurable: true,
                                               writable: true});
Object.defineProperty(document, "hidden", {get: function () { return true; }, configurable: true});
Object.defineProperty(document, "visibilityState", {get: function () { return "hidden"; },
                                                    configurable: true});
"""


def test_a_mention_in_a_group_raises_one_notification(push_stack, open_tab):
    mo, max_ = open_tab(), open_tab()
    mo.register("pushmo", "Mo", "Mention")
    max_.register("pushmax", "Max", "Mention")
    push_stack.flask("users", "create", "pushmel", "--email", "pushmel@example.com",
                     "--first-name", "Mel", "--last-name", "Mention", "--password", PASSWORD)
    page = max_.goto("/chat/new")
    pick_in_select2(page, "participants", "pushmo", "Mo Mention (@pushmo)")
    pick_in_select2(page, "participants", "pushmel", "Mel Mention (@pushmel)")
    page.fill("#title", "Mentions")
    page.click("#start-button")
    group = opened_conversation(page)
    mo.context.add_init_script(_COUNT_NOTIFICATIONS)
    listing = mo.goto("/chat/")
    expect(listing.locator(f'.conversation-item[data-conversation-id="{group}"]')).to_have_count(1)
    for text in ("look here @pushmo, please", "and a plain one"):
        page.fill("#message-input", text)
        page.press("#message-input", "Enter")
        expect(page.locator("#messages .message:not(.pending)", has_text=text)).to_have_count(1)
    # The plain message's notification comes after every event of the mention's message.
    deadline = time.monotonic() + 30
    while not any(n["body"] and "plain" in n["body"] for n in listing.evaluate("window.__notes")):
        assert time.monotonic() < deadline, listing.evaluate("window.__notes")
        listing.wait_for_timeout(100)
    notes = listing.evaluate("window.__notes")
    assert [n["title"] for n in notes] == ["Max Mention mentioned you in Mentions", "Mentions"]
    assert notes[0]["body"] == "look here @pushmo, please"
    assert all(n["tag"] == f"conversation-{group}" for n in notes)
