"""Presence in a big channel, in Chromium against the real stack: the server pushes nobody's
presence to a channel of more than CHAT_PRESENCE_PUSH_MAX_MEMBERS (50) members, so the chat page
asks for the members its header shows (in each join, and every 30 s), and the members panel,
while open, follows the members it lists (presence_subscribe): their dots follow them coming
online and going offline. And in a channel wide enough that the server answers a send before it
queues the members' copies (more than 64 rooms named), the sender's message shows once."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from e2e.harness import ROOT, base_env
from playwright.sync_api import expect

from .conftest import PASSWORD

pytestmark = pytest.mark.e2e

FILLERS = 50  # with its owner and Bea, a channel of 52


def seed_big_channel(stack, prefix: str = "big", fillers: int = FILLERS) -> int:
    """Bea and Otto (who log in), ``fillers`` members who never do, and Otto's public channel
    of all of them, made in one process: its id. Usernames start with ``prefix``."""
    script = (
        "import json, sys\n"
        "from simplechat import create_app\n"
        "from simplechat.conversations.channels import create_channel\n"
        "from simplechat.extensions import db\n"
        "from simplechat.models import User\n"
        "app = create_app()\n"
        "with app.app_context():\n"
        "    def make(name, first, password=None):\n"
        "        user = User(username=name, first_name=first, last_name='Big',\n"
        "                    email=f'{name}@example.com', password_hash='!')\n"
        "        if password:\n"
        "            user.set_password(password)\n"
        "        db.session.add(user)\n"
        "        return user\n"
        "    p, secret = sys.argv[2], sys.argv[1]\n"
        "    otto, bea = make(p + 'otto', 'Otto', secret), make(p + 'bea', 'Bea', secret)\n"
        "    others = [make(f'{p}fill{n:02d}', 'Member') for n in range(int(sys.argv[3]))]\n"
        "    db.session.commit()\n"
        "    channel, refusal = create_channel(otto, 'Everyone', 'The whole company', 'public',\n"
        "                                      limited=False, members=[bea, *others])\n"
        "    assert refusal is None, refusal\n"
        "    print(json.dumps(channel.id))\n"
    )
    done = subprocess.run([sys.executable, "-c", script, PASSWORD, prefix, str(fillers)], cwd=ROOT,
                          env=base_env(stack.env), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"seeding failed: {done.stderr[-2000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_big_channels_page_asks_for_the_presence_it_shows(stack, open_tab):
    channel = seed_big_channel(stack)
    otto = open_tab()
    otto.login("bigotto")
    page = otto.goto(f"/chat/{channel}")
    bea_id = stack.sql("SELECT id FROM users WHERE username = 'bigbea'")[0][0]
    header_dot = page.locator(f'#chat-members .member[data-user-id="{bea_id}"] .presence-dot')
    expect(page.locator("#chat-members .member")).to_have_count(50)  # the header's first 50
    expect(header_dot).not_to_have_class(re.compile(r"\bunknown\b"))
    expect(header_dot).not_to_have_class(re.compile(r"\bonline\b"))

    bea = open_tab()
    bea.login("bigbea")  # her conversation list opens a socket: she is online
    expect(bea.page.locator("#connection-state")).to_have_attribute("data-state", "connected")
    # The header names its members in each join (and asks every 30 s): a reload shows her
    # online, with no presence event of its own. Her connect may still be being recorded as the
    # first reload asks: a few reloads at most.
    sent: list[str] = []
    page.on("websocket", lambda ws: ws.on("framesent", lambda frame: sent.append(str(frame))))
    for attempt in range(4):
        page.reload()
        try:
            expect(header_dot).to_have_class(re.compile(r"\bonline\b"), timeout=5000)
            break
        except AssertionError:
            if attempt == 3:
                raise
    joins = [f for f in sent if '["join",' in f]
    assert joins and all('"presence_of":[' in f and str(bea_id) in f for f in joins), joins
    assert not [f for f in sent if '["presence",' in f], sent

    # The members panel follows the members it lists, live.
    page.click("#members-button")
    row_dot = page.locator(f'#members-list .member-row[data-user-id="{bea_id}"] .presence-dot')
    expect(row_dot).to_have_class(re.compile(r"\bonline\b"))
    bea.close()
    expect(row_dot).not_to_have_class(re.compile(r"\bonline\b"))
    bea = open_tab()
    bea.login("bigbea")
    expect(row_dot).to_have_class(re.compile(r"\bonline\b"))
    otto.assert_clean()


def test_a_send_to_a_wide_channel_shows_once_though_its_answer_comes_first(stack, open_tab):
    """72 members: the emit names 73 rooms, so the sender's socket gets the answer before its
    copy of the message. The page settles the pending bubble on whichever comes first and shows
    each message once, for the sender and for another member, live and after a reload."""
    channel = seed_big_channel(stack, prefix="wide", fillers=70)
    otto, bea = open_tab(), open_tab()
    otto.login("wideotto")
    bea.login("widebea")
    mine, theirs = otto.goto(f"/chat/{channel}"), bea.goto(f"/chat/{channel}")
    for page in (mine, theirs):
        expect(page.locator("#connection-state")).to_have_attribute("data-state", "connected")
    texts = ["first to the wide channel", "second to the wide channel"]
    for text in texts:
        mine.fill("#message-input", text)
        mine.press("#message-input", "Enter")
    for page in (mine, theirs):
        for text in texts:
            row = page.locator("#messages .message", has=page.locator(".message-text",
                                                                      has_text=text))
            expect(row).to_have_count(1)
            expect(row).not_to_have_class(re.compile(r"\bpending\b"))
    expect(mine.locator("#messages .message.pending")).to_have_count(0)
    mine.reload()
    for text in texts:
        expect(mine.locator("#messages .message", has=mine.locator(
            ".message-text", has_text=text))).to_have_count(1)
    order = mine.locator("#messages .message .message-text").evaluate_all(
        "els => els.map(e => e.textContent.trim())")
    assert [t for t in order if t in texts] == texts
    otto.assert_clean()
    bea.assert_clean()
