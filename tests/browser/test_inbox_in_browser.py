"""The conversation list of someone in many conversations, in Chromium against the real stack:
the first page only, more as the list is scrolled, nothing shown twice, and the pages loaded
kept when a new conversation makes the list refresh."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from e2e.harness import ROOT, base_env
from playwright.sync_api import expect

from .conftest import (
    assert_no_axe_violations,
    opened_conversation,
    pick_in_select2,
    wait_until,
)

pytestmark = pytest.mark.e2e

GROUPS = 120
PAGE = 50


def seed_groups(stack, owner: str, others: list[str], count: int) -> None:
    """``count`` groups of ``owner`` with ``others``, titled "Room 001" onwards, oldest first,
    made in a separate process as a script would."""
    script = (
        "import sys\n"
        "from sqlalchemy import select\n"
        "from simplechat import create_app\n"
        "from simplechat.extensions import db\n"
        "from simplechat.models import User\n"
        "from simplechat.conversations.records import start_conversation\n"
        "app = create_app()\n"
        "with app.app_context():\n"
        "    def user(name):\n"
        "        return db.session.scalars(select(User).where(User.username == name)).one()\n"
        "    owner, others = user(sys.argv[1]), [user(n) for n in sys.argv[3:]]\n"
        "    for n in range(1, int(sys.argv[2]) + 1):\n"
        "        start_conversation(owner, others, f'Room {n:03d}')\n"
    )
    done = subprocess.run([sys.executable, "-c", script, owner, str(count), *others],
                          cwd=ROOT, env=base_env(stack.env), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, f"seeding failed: {done.stderr[-2000:]}"


def titles(page) -> list[str]:
    return page.locator("#conversation-list .conversation-item .conversation-name") \
        .all_inner_texts()


def test_the_list_loads_more_as_it_is_scrolled_and_keeps_it(stack, open_tab, axe_core):
    ivy, ian = open_tab(), open_tab()
    ivy.register("ivy", "Ivy", "Inbox")
    ian.register("ian", "Ian", "Other")
    ike = open_tab()
    ike.register("ike", "Ike", "Third")
    seed_groups(stack, "ivy", ["ian", "ike"], GROUPS)
    every = [f"Room {n:03d}" for n in range(GROUPS, 0, -1)]  # newest first

    page = ivy.goto("/chat/")
    expect(page.locator("#connection-state")).to_have_text("Connected")
    items = page.locator("#conversation-list .conversation-item")
    more = page.locator("#conversation-list .conversation-more")
    expect(items).to_have_count(PAGE)
    expect(more).to_have_text("Show more conversations")
    assert titles(page) == every[:PAGE]
    assert_no_axe_violations(page, "conversation list with more to load")

    # On the chat page the list scrolls in its pane: scrolling to its end loads the rest.
    page = ivy.goto("/chat/")
    page.locator(".conversation-item", has_text="Room 120").click()
    expect(page.locator("#chat-title")).to_have_text("Room 120")
    items = page.locator("#conversation-list .conversation-item")
    expect(items).to_have_count(PAGE)
    pane = page.locator("#conversation-list")
    for expected in (2 * PAGE, GROUPS):
        pane.evaluate("el => { el.scrollTop = el.scrollHeight; }")
        expect(items).to_have_count(expected)
    expect(page.locator("#conversation-list .conversation-more")).to_have_count(0)
    assert titles(page) == every
    expect(page.locator(".conversation-item.active")).to_have_text(re.compile("Room 120"))

    # Ian starts a new group with Ivy and writes in it: her list, refreshed for a conversation
    # it does not hold, shows it first and keeps the 120 it had.
    start = ian.goto("/chat/new")
    pick_in_select2(start, "participants", "ivy", "Ivy Inbox (@ivy)")
    pick_in_select2(start, "participants", "ike", "Ike Third (@ike)")
    start.fill("#title", "Fresh room")
    start.click("#start-button")
    opened_conversation(start)
    start.fill("#message-input", "Anyone here?")
    start.press("#message-input", "Enter")
    expect(items).to_have_count(GROUPS + 1, timeout=15_000)
    wait_until(lambda: titles(page)[0] == "Fresh room", message="the new group on top")
    assert titles(page) == ["Fresh room", *every]
    expect(items.first.locator(".unread-count")).to_have_text("1")
    ivy.assert_clean()
    ian.assert_clean()
