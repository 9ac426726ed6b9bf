"""Issue 15 in Chromium: formatted messages, system lines, reactions, replies, attachments and
mentions between people on the real stack. Screenshots: artifacts/screenshots/rich-*.png."""

from __future__ import annotations

import io
import re

import pytest
from playwright.sync_api import expect

from .conftest import opened_conversation, pick_in_select2, wait_until

pytestmark = pytest.mark.e2e


def send(page, text: str) -> None:
    page.fill("#message-input", text)
    page.press("#message-input", "Enter")


def sent(page, text: str):
    return page.locator("#messages .message:not(.pending)",
                        has=page.locator(".message-text", has_text=text))


def act(message, action: str) -> None:
    """Choose an entry ("reply", "react", "edit", "delete") of a message's actions menu."""
    message.hover()
    message.locator(".message-actions-toggle").click()
    message.locator(f".message-{action}").click()


def item(page, conversation_id: int):
    return page.locator(f'.conversation-item[data-conversation-id="{conversation_id}"]')


def group_of_three(open_tab, prefix: str, width: int = 1280, height: int = 800):
    """Three people (the first two with a tab each) in a group the first starts; both tabs end
    on the group's page."""
    first, second, third = open_tab(width, height), open_tab(width, height), open_tab()
    first.register(f"{prefix}a", "Ada", f"{prefix.capitalize()}first")
    second.register(f"{prefix}b", "Bea", f"{prefix.capitalize()}second")
    third.register(f"{prefix}c", "Cy", f"{prefix.capitalize()}third")
    third.close()
    page = first.goto("/chat/new")
    pick_in_select2(page, "participants", f"{prefix}b", f"(@{prefix}b)")
    pick_in_select2(page, "participants", f"{prefix}c", f"(@{prefix}c)")
    page.fill("#title", f"{prefix} room")
    page.click("#start-button")
    gid = opened_conversation(page)
    second.goto(f"/chat/{gid}")
    expect(second.page.locator("#chat-title")).to_have_text(f"{prefix} room")
    return first, second, gid


def test_formatted_messages_render_for_the_other_and_a_rename_is_a_system_line(open_tab):
    ada, bea, gid = group_of_three(open_tab, "fmt")
    send(ada.page, "Look: **bold** and `x`\n\n```\ndef f():\n"
                   "    return 1  # a rather long line of code that has to scroll sideways\n```\n"
                   "[the docs](https://example.com/docs) <b>raw</b>")
    message = sent(bea.page, "Look:")
    expect(message.locator(".message-text strong")).to_have_text("bold")
    expect(message.locator(".message-text code").first).to_have_text("x")
    expect(message.locator(".message-text pre")).to_contain_text("def f():\n    return 1")
    link = message.locator(".message-text a")
    expect(link).to_have_attribute("href", "https://example.com/docs")
    expect(link).to_have_attribute("target", "_blank")
    expect(link).to_have_attribute("rel", re.compile(r"\bnoopener\b"))
    expect(message.locator(".message-text b")).to_have_count(0)   # raw HTML stays text
    expect(message.locator(".message-text")).to_contain_text("<b>raw</b>")
    assert bea.page.locator("pre").evaluate("el => getComputedStyle(el).overflowX") == "auto"
    font = bea.page.locator("pre").evaluate("el => getComputedStyle(el).fontFamily")
    assert "mono" in font.lower()

    # Editing shows the server's new rendering.
    mine = sent(ada.page, "Look:")
    mine.hover()
    mine.locator(".message-actions-toggle").click()
    mine.locator(".message-edit").click()
    box = mine.locator(".message-edit-input")
    expect(box).to_have_value(re.compile(r"^Look: \*\*bold\*\*"))
    box.fill("Now *italic*")
    box.press("Enter")
    expect(sent(bea.page, "Now").locator(".message-text em")).to_have_text("italic")

    # A rename is told in the timeline as a system line: centred, no sender, no actions.
    ada.page.click("#manage-group")
    ada.page.fill("#group-title-input", "Renamed <room>")
    ada.page.click("#rename-button")
    line = bea.page.locator("#messages .message-system")
    expect(line).to_contain_text("renamed the group to “Renamed <room>”")
    extras = ".message-sender, .message-avatar, .message-actions"
    expect(line.locator(extras)).to_have_count(0)
    bea.screenshot("rich-format-system")
    ada.assert_clean()
    bea.assert_clean()


def test_reactions_show_counts_and_who_for_the_other_side(open_tab):
    ada, bea, gid = group_of_three(open_tab, "rx")
    send(ada.page, "React to me")
    theirs = sent(bea.page, "React to me")
    act(theirs, "react")
    picker = bea.page.locator(".reaction-picker")
    expect(picker.locator("button")).to_have_count(8)
    picker.locator('button[data-emoji="🎉"]').click()
    expect(picker).to_have_count(0)

    mine = sent(ada.page, "React to me")
    party = mine.locator('.reactions .reaction[data-emoji="🎉"]')
    expect(party.locator(".reaction-count")).to_have_text("1")
    expect(party).to_have_attribute("aria-pressed", "false")
    expect(party).to_have_attribute("title", "Bea Rxsecond reacted with 🎉")
    party.click()   # Ada joins in
    expect(party.locator(".reaction-count")).to_have_text("2")
    expect(party).to_have_attribute("aria-pressed", "true")
    theirs_party = theirs.locator('.reaction[data-emoji="🎉"]')
    expect(theirs_party.locator(".reaction-count")).to_have_text("2")
    expect(theirs_party).to_have_attribute("title", re.compile("Bea Rxsecond, Ada Rxfirst reacted"))
    expect(theirs_party).to_have_attribute("aria-pressed", "true")
    ada.screenshot("rich-reactions")

    # From the keyboard: the menu, then its React entry; Escape closes the picker, focus returns.
    theirs.locator(".message-actions-toggle").focus()
    bea.page.keyboard.press("Enter")
    expect(theirs.locator(".message-react")).to_be_visible()
    theirs.locator(".message-react").focus()
    bea.page.keyboard.press("Enter")
    expect(picker).to_have_count(1)
    expect(picker.locator("button").first).to_be_focused()
    bea.page.keyboard.press("Escape")
    expect(picker).to_have_count(0)
    expect(theirs.locator(".message-actions-toggle")).to_be_focused()
    # Bea takes hers back: Ada sees the count drop.
    theirs_party.click()
    expect(party.locator(".reaction-count")).to_have_text("1")
    expect(party).to_have_attribute("title", "Ada Rxfirst reacted with 🎉")
    ada.assert_clean()
    bea.assert_clean()


def test_a_reply_quotes_and_jumps_to_the_original_through_older_pages(stack, open_tab):
    from .conftest import seed_messages

    ada, bea, gid = group_of_three(open_tab, "rp")
    send(ada.page, "The original question")
    expect(sent(ada.page, "The original question")).to_have_count(1)
    seed_messages(stack, "rpa", gid, 110)   # pushes the original off the first page (100)
    bea.goto(f"/chat/{gid}")
    expect(sent(bea.page, "seed message 110")).to_have_count(1)
    expect(sent(bea.page, "The original question")).to_have_count(0)

    last = sent(bea.page, "seed message 110")
    act(last, "reply")
    bar = bea.page.locator("#reply-bar")
    expect(bar).to_contain_text("Replying to Ada Rpfirst: seed message 110")
    bea.page.keyboard.press("Escape")
    expect(bar).to_be_hidden()
    last.locator(".message-actions-toggle").focus()
    bea.page.keyboard.press("Enter")
    last.locator(".message-reply").focus()
    bea.page.keyboard.press("Enter")
    expect(bar).to_be_visible()
    expect(bea.page.locator("#message-input")).to_be_focused()
    bea.page.keyboard.type("Answering that")
    bea.page.keyboard.press("Enter")
    expect(bar).to_be_hidden()

    answer = sent(ada.page, "Answering that")
    quote = answer.locator(".reply-quote")
    expect(quote).to_contain_text("Ada Rpfirst")
    expect(quote).to_contain_text("seed message 110")

    # A reply to the old question, from Ada; Bea's page must page back to find it.
    ada.goto(f"/chat/{gid}")
    expect(sent(ada.page, "Answering that")).to_have_count(1)
    ada.page.evaluate("() => { document.getElementById('messages-scroll').scrollTop = 0; }")
    old = sent(ada.page, "The original question")
    old.scroll_into_view_if_needed()
    act(old, "reply")
    send(ada.page, "Still open?")
    reply = sent(bea.page, "Still open?")
    expect(reply.locator(".reply-quote")).to_contain_text("The original question")
    bea.page.evaluate("() => { const s = document.getElementById('messages-scroll');"
                      " s.scrollTop = s.scrollHeight; }")
    reply.locator(".reply-quote").click()
    original = sent(bea.page, "The original question")
    expect(original).to_have_class(re.compile(r"\bmessage-highlight\b"))
    expect(original).to_be_in_viewport()
    expect(original).not_to_have_class(re.compile(r"\bmessage-highlight\b"), timeout=6000)
    bea.screenshot("rich-reply")
    ada.assert_clean()
    bea.assert_clean()


def png_bytes(width: int = 320, height: int = 200) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 60, 30)).save(out, "PNG")
    return out.getvalue()


PDF = (b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
       b"2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n"
       b"3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 72 72]>>endobj\n"
       b"trailer<</Root 1 0 R>>\n%%EOF\n")


@pytest.mark.parametrize("width,height", [(1280, 800), (390, 844)])
def test_attachments_upload_with_chips_and_show_as_thumbnail_lightbox_and_download(
        open_tab, width, height):
    ada, bea, gid = group_of_three(open_tab, f"at{width}", width, height)
    page = ada.page
    page.set_input_files("#attach-input", files=[
        {"name": "sunset <1>.png", "mimeType": "image/png", "buffer": png_bytes()},
        {"name": "plan.pdf", "mimeType": "application/pdf", "buffer": PDF},
    ])
    chips = page.locator("#attachment-chips .attachment-chip")
    expect(chips).to_have_count(2)
    expect(page.locator("#attachment-chips .attachment-chip.uploaded")).to_have_count(2)
    expect(chips.nth(0).locator(".attachment-chip-name")).to_have_text("sunset <1>.png")
    ada.screenshot(f"rich-attach-chips-{width}")
    # An attachments-only message: no text needed.
    page.press("#message-input", "Enter")
    expect(chips).to_have_count(0)

    files = bea.page.locator("#messages .message .attachments")
    expect(files).to_have_count(1)
    img = files.locator(".attachment-image img")
    expect(img).to_have_attribute("width", "240")
    expect(img).to_have_attribute("height", "150")
    expect(img).to_have_attribute("alt", "sunset _1_.png")   # the server's safe name
    bea.page.wait_for_function("() => { const el = document.querySelector('.attachment-image img');"
                               " return el.complete && el.naturalWidth > 0; }")
    chip = files.locator(".attachment-file")
    expect(chip.locator(".attachment-name")).to_have_text("plan.pdf")
    expect(chip.locator(".attachment-size")).to_have_text(f"{len(PDF)} B")
    with bea.page.expect_download() as download:
        chip.click()
    assert download.value.suggested_filename == "plan.pdf"
    assert open(download.value.path(), "rb").read() == PDF

    # The image opens in the lightbox; Escape shuts it and focus goes back to the thumbnail.
    files.locator(".attachment-image").click()
    box = bea.page.locator("#lightbox")
    expect(box).to_be_visible()
    expect(box.locator(".lightbox-caption")).to_have_text("sunset _1_.png")
    bea.page.wait_for_function(
        "() => document.querySelector('.lightbox-image').naturalWidth === 320")
    bea.screenshot(f"rich-lightbox-{width}")
    bea.page.keyboard.press("Escape")
    expect(box).to_be_hidden()
    expect(files.locator(".attachment-image")).to_be_focused()
    bea.screenshot(f"rich-attachments-{width}")
    ada.assert_clean()
    bea.assert_clean()


def test_a_too_large_file_is_refused_clearly_and_can_be_removed(open_tab):
    ada, bea, gid = group_of_three(open_tab, "big")
    page = ada.page
    page.set_input_files("#attach-input", files=[
        {"name": "huge.bin", "mimeType": "application/octet-stream",
         "buffer": b"0" * (2 * 1024 * 1024 + 10)},
    ])
    chip = page.locator("#attachment-chips .attachment-chip")
    expect(chip).to_have_class(re.compile(r"\bfailed\b"))
    expect(page.locator("#chat-status")).to_have_text("huge.bin is too large to send.")
    chip.locator(".attachment-remove").click()
    expect(chip).to_have_count(0)
    expect(page.locator("#attachment-chips")).to_be_hidden()
    ada.assert_clean()


def test_mentions_autocomplete_highlight_and_badge(open_tab):
    ada, bea, gid = group_of_three(open_tab, "mn")
    bea.goto("/chat/")   # Bea is elsewhere: the list shows the mention
    page = ada.page
    page.click("#message-input")
    page.keyboard.type("Hey @mn")
    options = page.locator("#mention-list [role=option]")
    expect(options).to_have_count(2)
    expect(page.locator("#mention-list")).to_be_visible()
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowUp")
    expect(options.nth(0)).to_have_attribute("aria-selected", "true")
    expect(page.locator("#message-input")).to_have_attribute("aria-activedescendant",
                                                             "mention-option-0")
    ada.screenshot("rich-mention-list")
    page.keyboard.press("Tab")
    expect(page.locator("#message-input")).to_have_value("Hey @mnb ")
    expect(page.locator("#mention-list")).to_be_hidden()
    page.keyboard.type("and @a")
    expect(options).to_have_text([re.compile("Everyone in this group")])
    page.keyboard.press("Escape")
    expect(page.locator("#mention-list")).to_be_hidden()
    page.keyboard.type("ll look")
    page.keyboard.press("Enter")
    expect(page.locator("#message-input")).to_have_value("")

    badge = item(bea.page, gid).locator(".mention-badge")
    expect(badge).to_be_visible()
    expect(badge).to_have_text("@")
    expect(item(bea.page, gid).locator(".mention-label")).to_have_text(", you were mentioned")

    # A reload keeps it: the server counts the unread messages that mention Bea, once the
    # message has reached SQL.
    def badge_after_a_reload() -> bool:
        bea.page.reload()
        return item(bea.page, gid).locator(".mention-badge").is_visible()

    wait_until(badge_after_a_reload, timeout=20, interval=0.5, message="the badge after a reload")
    expect(item(bea.page, gid).locator(".mention-label")).to_have_text(", you were mentioned")
    item(bea.page, gid).click()
    message = sent(bea.page, "Hey")
    expect(message.locator(".mention.mention-me")).to_have_text("@mnb")
    expect(item(bea.page, gid).locator(".mention-badge")).to_be_hidden()
    bea.screenshot("rich-mention")
    ada.assert_clean()
    bea.assert_clean()


def test_the_offline_outbox_keeps_the_reply_and_the_files(open_tab):
    ada, bea, gid = group_of_three(open_tab, "ob")
    send(bea.page, "Send me the plan")
    question = sent(ada.page, "Send me the plan")
    act(question, "reply")
    ada.page.set_input_files("#attach-input", files=[
        {"name": "plan.pdf", "mimeType": "application/pdf", "buffer": PDF}])
    expect(ada.page.locator("#attachment-chips .attachment-chip.uploaded")).to_have_count(1)

    ada.context.set_offline(True)
    expect(ada.page.locator("#connection-state")).to_have_text("Offline")
    send(ada.page, "Here it is")
    pending = ada.page.locator("#messages .message.pending")
    expect(pending.locator(".reply-quote")).to_contain_text("Send me the plan")
    expect(pending.locator(".attachment-file .attachment-name")).to_have_text("plan.pdf")
    saved = ada.page.evaluate("""() => JSON.parse(sessionStorage.getItem(
        Object.keys(sessionStorage).find(k => k.startsWith('simplechat:outbox:'))))""")
    assert saved[0]["text"] == "Here it is"
    assert saved[0]["replyTo"]["preview"] == "Send me the plan"
    assert [a["name"] for a in saved[0]["attachments"]] == ["plan.pdf"]

    ada.context.set_offline(False)
    expect(pending).to_have_count(0, timeout=20_000)
    answer = sent(bea.page, "Here it is")
    expect(answer.locator(".reply-quote")).to_contain_text("Send me the plan")
    expect(answer.locator(".attachment-file .attachment-name")).to_have_text("plan.pdf")
    ada.assert_clean()
    bea.assert_clean()


DROP_AND_PASTE = """async ([kind, bytes]) => {
  const file = new File([new Uint8Array(bytes)], kind + ".png", { type: "image/png" });
  const data = new DataTransfer();
  data.items.add(file);
  const init = { dataTransfer: data, bubbles: true, cancelable: true };
  if (kind === "dropped") {
    const zone = document.getElementById("messages-scroll");
    zone.dispatchEvent(new DragEvent("dragover", init));
    zone.dispatchEvent(new DragEvent("drop", init));
  } else {
    document.getElementById("message-input").dispatchEvent(
      new ClipboardEvent("paste", { clipboardData: data, bubbles: true, cancelable: true }));
  }
}"""


def test_files_dropped_on_the_messages_or_pasted_are_uploaded(open_tab):
    ada, bea, gid = group_of_three(open_tab, "dp")
    image = list(png_bytes(64, 48))
    ada.page.evaluate(DROP_AND_PASTE, ["dropped", image])
    ada.page.evaluate(DROP_AND_PASTE, ["pasted", image])
    chips = ada.page.locator("#attachment-chips .attachment-chip.uploaded .attachment-chip-name")
    expect(chips).to_have_text(["dropped.png", "pasted.png"])
    send(ada.page, "Two ways in")
    images = sent(bea.page, "Two ways in").locator(".attachment-image img")
    expect(images).to_have_count(2)
    expect(images.first).to_have_attribute("width", "64")
    expect(images.first).to_have_attribute("height", "48")
    ada.assert_clean()
    bea.assert_clean()
