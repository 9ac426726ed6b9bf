"""The admin console and moderation in Chromium against the real stack: a member reports a
message from its menu with the keyboard; the site admin finds it in /admin/reports and deletes
it (the member's page shows the tombstone live); the admin deactivates the reported user with
the keyboard from /admin/users, whose open page is signed out. axe-core on every console page
at 1280 and 390 px, light and dark. Screenshots: artifacts/screenshots/admin-*.png."""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import expect

from .conftest import PASSWORD, assert_no_axe_violations, seed_texts

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("axe_core")]

PAGES = ("/admin/", "/admin/users", "/admin/channels", "/admin/reports?status=deleted",
         "/admin/activity", "/admin/errors", "/admin/tokens", "/admin/webhooks")


def axe_everywhere(tab, label: str) -> None:
    page = tab.page
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        for width, height in ((1280, 800), (390, 844)):
            page.set_viewport_size({"width": width, "height": height})
            assert_no_axe_violations(page, label)
    page.emulate_media(color_scheme="light")
    page.set_viewport_size({"width": 1280, "height": 800})


def focus_and_press(page, locator, key: str = "Enter") -> None:
    locator.focus()
    expect(locator).to_be_focused()
    page.keyboard.press(key)


def test_report_delete_and_deactivate_from_the_console(stack, open_tab):
    for username, first, admin in (("admqueen", "Queen", True), ("admrita", "Rita", False),
                                   ("admtroll", "Troll", False)):
        stack.flask("users", "create", username, "--email", f"{username}@example.com",
                    "--first-name", first, "--last-name", "Adm", "--password", PASSWORD,
                    *(["--admin"] if admin else []))
    made = stack.flask("conversations", "create", "--users", "admrita,admtroll,admqueen",
                       "--title", "Adm porch")
    conversation_id = int(re.search(r"\d+", made).group())
    seed_texts(stack, "admtroll", conversation_id, ["buy cheap pills now"])

    # Rita reports the message with the keyboard alone.
    rita = open_tab()
    rita.login("admrita")
    page = rita.goto(f"/chat/{conversation_id}")
    expect(page.locator("#connection-state")).to_have_text("Connected")
    found = page.locator("#messages .message", has_text="buy cheap pills now")
    expect(found).to_have_count(1)
    row = page.locator(f'#messages .message[data-id="{found.get_attribute("data-id")}"]')
    focus_and_press(page, row.locator(".message-actions-toggle"))
    report_item = row.locator(".message-report")
    expect(report_item).to_be_visible()
    focus_and_press(page, report_item)
    reason = row.locator(".message-report-reason")
    expect(reason).to_be_focused()
    axe_everywhere(rita, "chat with the report form open")
    reason.focus()
    page.keyboard.type("spam")
    page.keyboard.press("Enter")
    expect(page.get_by_text("Reported. The site admins will look at it.")).to_be_visible()
    expect(row.locator(".message-actions-toggle")).to_be_focused()

    # The admin's console: the report waits; every page clean for axe.
    queen = open_tab()
    queen.login("admqueen")
    admin = queen.goto("/admin/reports")
    report = admin.locator(".report-row", has_text="buy cheap pills now")
    expect(report).to_contain_text("spam")
    axe_everywhere(queen, "admin reports")
    queen.screenshot("admin-reports")
    focus_and_press(admin, report.get_by_role("button", name=re.compile("Delete the message")))
    expect(admin.get_by_text("Message deleted; its reports are closed.")).to_be_visible()
    expect(row.locator(".message-text")).to_have_text(
        re.compile("This message was deleted by (Queen Adm|a moderator)"))

    # Deactivating the troll from the users page, with the keyboard; his open page ends.
    troll = open_tab()
    troll.login("admtroll")
    troll_page = troll.goto(f"/chat/{conversation_id}")
    expect(troll_page.locator("#connection-state")).to_have_text("Connected")
    users = queen.goto("/admin/users?q=admtroll")
    axe_everywhere(queen, "admin users")
    queen.screenshot("admin-users")
    focus_and_press(users, users.locator('tr[data-user="admtroll"]').get_by_role(
        "button", name=re.compile("^Deactivate")))
    expect(users.get_by_text(re.compile("admtroll deactivated"))).to_be_visible()
    expect(users.locator('tr[data-user="admtroll"]')).to_contain_text("Inactive")
    expect(troll_page.get_by_text(re.compile("Your account has been deactivated"))
           ).to_be_visible(timeout=20_000)
    expect(troll_page.locator("#message-input")).to_be_disabled()

    for path in PAGES:
        queen.goto(path)
        axe_everywhere(queen, f"admin {path}")
    activity = queen.goto("/admin/activity?user=admqueen")
    expect(activity.locator("#activity-log")).to_contain_text("account_deactivated")
    expect(activity.locator("#activity-log")).to_contain_text("report_message_deleted")
    # Her own data, from the profile page: asked for with the keyboard, built by the worker.
    profile = queen.goto("/profile/")
    focus_and_press(profile, profile.locator("#export-button"))
    expect(profile.locator(".export-row")).to_have_count(1)
    axe_everywhere(queen, "profile with an export")
    deadline = time.monotonic() + 30
    while profile.locator('.export-row[data-status="ready"]').count() == 0:
        assert time.monotonic() < deadline, "the export was not ready within 30 s"
        profile.wait_for_timeout(500)
        profile.reload()
    href = profile.locator(".export-row a").get_attribute("href")
    download = queen.context.request.get(href)
    assert download.status == 200 and download.body()[:2] == b"PK"
    assert rita.context.request.get(href).status == 404
    # Not an admin: the console is not there.
    assert rita.goto("/admin/").locator("text=Admin console").count() == 0
    for tab in (rita, queen):
        tab.assert_clean()
