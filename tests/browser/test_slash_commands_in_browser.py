"""Slash commands in Chromium against the real stack: typing "/" offers the conversation's
commands (arrows, Tab, Enter), a command sent leaves no bubble behind, its ephemeral answer
shows to the caller alone marked "Only visible to you", and an in_channel answer reaches both.
Zero axe violations with the list open and with the answer shown."""

from __future__ import annotations

import pytest
from e2e.command_service import CommandService
from playwright.sync_api import expect

from .conftest import assert_no_axe_violations, start_direct

pytestmark = pytest.mark.e2e


@pytest.fixture
def service():
    made = CommandService()
    yield made
    made.close()


def test_the_composer_offers_commands_and_shows_their_answers(stack, open_tab, service):
    sam, tom = open_tab(), open_tab()
    sam.register("sam", "Sam", "Slash")
    tom.register("tom", "Tom", "Other")
    page, conversation = start_direct(sam, "tom", "Tom Other (@tom)")
    service.secret = stack.flask(
        "commands", "create", "--conversation", str(conversation), "--command", "/deploy",
        "--url", service.url, "--description", "Deploy a branch").strip().splitlines()[-1]
    service.more_secrets.append(stack.flask(
        "commands", "create", "--conversation", str(conversation), "--command", "/status",
        "--url", service.url).strip().splitlines()[-1])
    page.reload()
    other = tom.goto(f"/chat/{conversation}")

    # "/" offers both; "/de" only /deploy, with its description; Tab completes it.
    composer = page.locator("#message-input")
    composer.fill("/")
    offered = page.locator("#command-suggestions [role=option]")
    expect(offered).to_have_count(2)
    expect(composer).to_have_attribute("aria-activedescendant", "command-option-0")
    assert_no_axe_violations(page, "composer with slash commands offered")
    composer.fill("/de")
    expect(offered).to_have_count(1)
    expect(offered.first).to_contain_text("/deploy")
    expect(offered.first).to_contain_text("Deploy a branch")
    composer.press("Tab")
    expect(composer).to_have_value("/deploy ")
    expect(page.locator("#command-suggestions")).to_be_hidden()

    service.answers({"text": "Deploying *main* to staging"})
    composer.type("main")
    composer.press("Enter")
    answer = page.locator("#messages .message-ephemeral")
    expect(answer).to_have_count(1)
    expect(answer).to_contain_text("Only visible to you")
    expect(answer.locator(".message-text strong")).to_have_text("main")
    expect(page.locator("#messages .message.pending")).to_have_count(0)
    assert service.calls[0]["text"] == "main" and service.calls[0]["user_name"] == "sam"
    assert_no_axe_violations(page, "an ephemeral answer")
    sam.screenshot("slash-command-ephemeral")

    service.answers({"response_type": "in_channel", "text": "Status: *all green*"})
    composer.fill("/status")
    composer.press("Enter")  # the name typed in full: Enter sends it
    for tab_page in (page, other):
        expect(tab_page.locator("#messages .message:not(.message-ephemeral)",
                                has_text="Status: all green")).to_have_count(1)
    expect(other.locator("#messages .message-ephemeral")).to_have_count(0)
    expect(other.locator("#messages")).not_to_contain_text("Deploying")
    # An unregistered /word is a message.
    composer.fill("/shrug fine")
    composer.press("Enter")
    expect(other.locator("#messages .message-text", has_text="/shrug fine")).to_have_count(1)
    sam.assert_clean()
    tom.assert_clean()
