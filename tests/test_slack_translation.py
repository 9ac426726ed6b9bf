"""Slack's message payloads as the chat's Markdown (webhooks/slack.py), and that Markdown as the
HTML every message gets: payloads shaped like the examples in Slack's documentation (text only,
legacy attachments, Block Kit, both, what Alertmanager and Grafana send), mrkdwn's edge cases,
and the malformed ones refused."""

from __future__ import annotations

import re

import pytest

from simplechat.messaging.formatting import render_html
from simplechat.webhooks.slack import (
    SlackPayloadError,
    color_marker,
    mrkdwn,
    parse_payload,
    plain,
    to_markdown,
)


def html(markdown: str) -> str:
    """As the send path renders it, ``@all`` taken as a mention (a group's)."""
    return render_html(markdown, {"all": 0})


# --------------------------------------------------------------------------- mrkdwn

@pytest.mark.parametrize("slack, markdown", [
    ("*bold*", "**bold**"),
    ("some *bold words* here", "some **bold words** here"),
    ("*a*", "**a**"),
    ("_italic_", "_italic_"),
    ("*_both_*", "**_both_**"),
    ("~strike~", "~strike~"),  # no strikethrough in the chat's Markdown: as typed
    ("`*code*`", "`*code*`"),
    ("a*b*c", "a\\*b\\*c"),  # inside a word: stars, as in Slack
    ("* not bold *", "\\* not bold \\*"),  # a blank after the opening star
    ("5 * 3 = 15", "5 \\* 3 = 15"),
    ("**double**", "\\*\\*double\\*\\*"),
    ("*no end", "\\*no end"),
    ("C:\\*path*", "C:\\\\**path**"),
])
def test_mrkdwn_emphasis(slack, markdown):
    assert mrkdwn(slack) == markdown


@pytest.mark.parametrize("slack, shown", [
    ("*bold*", "<strong>bold</strong>"),
    ("_italic_", "<em>italic</em>"),
    ("~strike~", "~strike~"),
    ("a*b*c", "a*b*c"),
    ("* not a list", "* not a list"),
    ("*bold with <https://example.com|a link>* after",
     '<strong>bold with <a href="https://example.com" rel="noopener noreferrer nofollow">'
     "a link</a></strong> after"),
])
def test_mrkdwn_emphasis_renders_as_slack_shows_it(slack, shown):
    assert shown in html(mrkdwn(slack))


@pytest.mark.parametrize("slack, markdown", [
    ("<https://example.com|Example>", "[Example](<https://example.com>)"),
    ("<https://example.com>", "[https://example.com](<https://example.com>)"),
    ("<mailto:ops@example.com|mail us>", "[mail us](<mailto:ops@example.com>)"),
    ("<mailto:ops@example.com>", "[ops@example.com](<mailto:ops@example.com>)"),
    ("<https://example.com/a?b=1&amp;c=2|A &amp; B>",
     "[A & B](<https://example.com/a?b=1&c=2>)"),
    ("<https://example.com/a b|label [x]>", "[label \\[x\\]](<https://example.com/a%20b>)"),
    ("<javascript:alert(1)|click me>", "click me"),
    ("<ftp://example.com/file>", "ftp://example.com/file"),
    ("<script>", "\\<script\\>"),  # no address at all: text, as typed
    ("<www.example.com|site>", "\\<www.example.com|site\\>"),
])
def test_mrkdwn_links(slack, markdown):
    assert mrkdwn(slack) == markdown


def test_a_link_renders_as_a_sanitized_anchor():
    shown = html(mrkdwn("see <https://example.com/x?a=1&amp;b=2|the *docs*>"))
    assert ('<a href="https://example.com/x?a=1&amp;b=2" rel="noopener noreferrer nofollow">'
            in shown)
    assert "javascript" not in html(mrkdwn("<javascript:alert(1)|x> <JavaScript:alert(1)>"))


@pytest.mark.parametrize("slack, markdown", [
    ("<!here> the build broke", "@all the build broke"),
    ("<!channel>: deploy", "@all: deploy"),
    ("<!everyone>", "@all"),
    ("<!here|here> now", "@all now"),
    ("hey<!here>you", "hey @all you"),
    ("<!here><!channel>", "@all @all"),
    ("<@U024BE7LH> said", "\\<@U024BE7LH\\> said"),
    ("<@U024BE7LH|bob> said", "\\<@U024BE7LH|bob\\> said"),
    ("in <#C024BE7LR|general>", "in #general"),
    ("<!date^1392734382^{date_num} {time_secs}|Feb 18, 2014 6:39 AM PST>",
     "Feb 18, 2014 6:39 AM PST"),
    ("<!subteam^SAZ94GDB8|@oncall>", "@oncall"),
])
def test_mrkdwn_special_mentions_and_users(slack, markdown):
    assert mrkdwn(slack) == markdown


def test_here_and_channel_are_an_all_mention_a_slack_user_is_text():
    shown = html(mrkdwn("<!here> and <!channel>, ask <@U024BE7LH>"))
    assert shown.count('<span class="mention">@all</span>') == 2
    assert "&lt;@U024BE7LH&gt;" in shown and "mention" not in shown.split("ask")[1]


@pytest.mark.parametrize("slack, markdown", [
    ("a &lt; b &amp;&amp; c &gt; d", "a < b && c > d"),
    ("&amp;lt;", "\\&lt;"),  # Slack's "&lt;" written out: shown as typed
    ("&amp;copy;", "\\&copy;"),
    ("&lt;https://evil.example&gt;", "<https://evil.example>"),
    ("tab\there", "tab\there"),
])
def test_mrkdwn_entities_are_decoded(slack, markdown):
    assert mrkdwn(slack) == markdown


@pytest.mark.parametrize("slack", [
    "&lt;script&gt;alert(1)&lt;/script&gt;",
    "<script>alert(1)</script>",
    "`<script>alert(1)</script>`",
    "```<script>alert(1)</script>```",
    "<https://example.com|<script>>",
    "<https://example.com|&lt;script&gt;alert(1)&lt;/script&gt;>",
    "&lt;img src=x onerror=alert(1)&gt;",
    "[x](javascript:alert(1))",
    "&lt;a href=\"javascript:alert(1)\"&gt;x&lt;/a&gt;",
])
def test_script_anywhere_is_text(slack):
    shown = html(mrkdwn(slack))
    assert "<script" not in shown and "<img" not in shown and "<a href=\"javascript" not in shown
    assert all(href.startswith("https://") for href in re.findall(r'<a href="([^"]*)"', shown))


def test_code_is_kept_as_typed():
    assert mrkdwn("run `make *all*` now") == "run `make *all*` now"
    block = mrkdwn("before ```line 1\n*line* &lt;2&gt;``` after")
    assert block == "before \n```\nline 1\n*line* <2>\n```\n after"
    shown = html(block)
    assert "<pre><code>line 1\n*line* &lt;2&gt;\n</code></pre>" in shown


def test_lines_and_quotes_stay():
    assert "<br" in html(mrkdwn("one\ntwo"))
    assert "<blockquote>" in html(mrkdwn("&gt; quoted"))


def test_nul_characters_are_dropped():
    assert mrkdwn("a\x00b *c\x00*") == "ab **c**"


def test_plain_text_is_shown_as_typed():
    assert plain("*not bold* _nor italic_") == "\\*not bold\\* \\_nor italic\\_"
    assert plain("# not a heading\n1. not a list\n- nor this\n> nor a quote") == (
        "\\# not a heading\n1\\. not a list\n\\- nor this\n\\> nor a quote")
    for text in ("# not a heading", "1. not a list", "- nor this", "<b>x</b>",
                 "&amp;", "[a](/x)", "`code`", "*x*", "_x_"):
        shown = html(plain(text))
        assert "<h1" not in shown and "<ol" not in shown and "<ul" not in shown
        assert "<a " not in shown and "<code>" not in shown and "<b>" not in shown
        assert "<em>" not in shown and "<strong>" not in shown


# --------------------------------------------------------------------------- payloads


def test_text_only():
    payload = {"text": "Danny Torrence left a 1 star review for your property."}
    assert to_markdown(payload) == payload["text"]


def test_text_without_mrkdwn_is_plain():
    assert to_markdown({"text": "*not bold*", "mrkdwn": False}) == "\\*not bold\\*"


LEGACY_ATTACHMENT = {
    "attachments": [{
        "fallback": "Plain-text summary of the attachment.",
        "color": "#2eb886",
        "pretext": "Optional text that appears above the attachment block",
        "author_name": "Bobby Tables",
        "author_link": "https://example.com/bobby",
        "title": "Slack API Documentation",
        "title_link": "https://api.example.com/",
        "text": "Optional text that appears *within* the attachment",
        "fields": [{"title": "Priority", "value": "High", "short": False},
                   {"title": "Owner", "value": "<@U024BE7LH>", "short": True}],
        "image_url": "https://example.com/path/to/image.jpg",
        "footer": "Slack API",
        "footer_icon": "https://example.com/icon.png",
        "ts": 123456789,
    }],
}


def test_a_legacy_attachment_is_a_quote_led_by_its_colour():
    markdown = to_markdown(LEGACY_ATTACHMENT)
    assert markdown == (
        "Optional text that appears above the attachment block\n\n"
        "> 🟢 [Bobby Tables](<https://example.com/bobby>)\n"
        ">\n"
        "> **[Slack API Documentation](<https://api.example.com/>)**\n"
        ">\n"
        "> Optional text that appears **within** the attachment\n"
        ">\n"
        "> **Priority**\n"
        "> High\n"
        ">\n"
        "> **Owner**\n"
        "> \\<@U024BE7LH\\>\n"
        ">\n"
        "> 🖼 [Plain-text summary of the attachment.](<https://example.com/path/to/image.jpg>)\n"
        ">\n"
        "> Slack API · 1973-11-29 21:33 UTC")
    shown = html(markdown)
    assert shown.startswith("<p>Optional text that appears above the attachment block</p>\n"
                            "<blockquote>\n<p>🟢 <a href=\"https://example.com/bobby\"")
    assert "<strong><a href=\"https://api.example.com/\"" in shown
    assert "<strong>Priority</strong><br>\nHigh" in shown


@pytest.mark.parametrize("color, marker", [
    ("good", "🟢"), ("warning", "🟡"), ("danger", "🔴"), ("DANGER", "🔴"),
    ("#36a64f", "🟢"), ("#ff0000", "🔴"), ("#f00", "🔴"), ("439FE0", "🔵"),
    ("#ff9900", "🟠"), ("#ffd700", "🟡"), ("#800080", "🟣"), ("#000000", "⚫"),
    ("#ffffff", "⚪"), ("#808080", "⚪"), ("#e01e5a", "🔴"),
    ("", ""), ("mauve", ""), ("#12345", ""), (None, ""), (7, ""),
])
def test_colours_become_a_circle(color, marker):
    assert color_marker(color) == marker


def test_an_attachment_of_a_fallback_alone_shows_it():
    assert to_markdown({"attachments": [{"fallback": "Build *42* passed"}]}) == (
        "> Build **42** passed")


def test_an_attachment_starting_with_a_block_gets_its_colour_on_a_line_of_its_own():
    markdown = to_markdown({"attachments": [{
        "color": "danger",
        "blocks": [{"type": "header", "text": {"type": "plain_text", "text": "Down"}}]}]})
    assert markdown == "> 🔴\n>\n> ### Down"
    assert "<h3>Down</h3>" in html(markdown)


BLOCKS = {
    "text": "Danny Torrence left a review (the notification's text)",
    "blocks": [
        {"type": "header", "text": {"type": "plain_text", "text": "New review *1 star*"}},
        {"type": "section", "text": {
            "type": "mrkdwn",
            "text": "Danny Torrence left the following review for your property:"}},
        {"type": "section", "block_id": "section567",
         "text": {"type": "mrkdwn",
                  "text": "<https://example.com|Overlook Hotel>\n:star:\nDoors had too many "
                          "axe holes, guest in room 237 was far too rowdy."},
         "accessory": {"type": "image", "image_url": "https://example.com/hotel.png",
                       "alt_text": "Haunted hotel image"}},
        {"type": "section", "fields": [
            {"type": "mrkdwn", "text": "*Average Rating*\n1.0"},
            {"type": "plain_text", "text": "Rooms: 237"}]},
        {"type": "divider"},
        {"type": "context", "elements": [
            {"type": "image", "image_url": "https://example.com/avatar.png", "alt_text": "Danny"},
            {"type": "mrkdwn", "text": "*Danny* reviewed\non Tuesday"},
            {"type": "plain_text", "text": "1 of 3"}]},
        {"type": "image", "image_url": "https://example.com/room.png", "alt_text": "Room 237",
         "title": {"type": "plain_text", "text": "The room"}},
        {"type": "actions", "elements": [
            {"type": "button", "text": {"type": "plain_text", "text": "Reply"},
             "value": "reply"}]},
        {"type": "rich_text", "elements": []},
        {"type": "section", "text": {"type": "mrkdwn", "text": "More"},
         "accessory": {"type": "button", "text": {"type": "plain_text", "text": "Open"},
                       "url": "https://example.com/review/1"}},
    ],
}


def test_blocks_are_rendered_and_unknown_types_ignored():
    markdown = to_markdown(BLOCKS)
    assert markdown == (
        "### New review \\*1 star\\*\n\n"
        "Danny Torrence left the following review for your property:\n\n"
        "[Overlook Hotel](<https://example.com>)\n:star:\nDoors had too many axe holes, guest "
        "in room 237 was far too rowdy.\n\n"
        "🖼 [Haunted hotel image](<https://example.com/hotel.png>)\n\n"
        "**Average Rating**\n1.0\n\n"
        "Rooms: 237\n\n"
        "---\n\n"
        "🖼 [Danny](<https://example.com/avatar.png>) · **Danny** reviewed on Tuesday · 1 of 3\n\n"
        "🖼 [The room](<https://example.com/room.png>)\n\n"
        "More\n\n"
        "[Open](<https://example.com/review/1>)")
    shown = html(markdown)
    assert "<h3>New review *1 star*</h3>" in shown and "<hr>" in shown
    assert "Reply" not in shown  # the actions block
    assert "notification" not in markdown  # text beside blocks is their fallback


def test_text_is_shown_when_the_blocks_show_nothing():
    payload = {"text": "fallback shown", "blocks": [{"type": "actions", "elements": []},
                                                    {"type": "divider-ish"}]}
    assert to_markdown(payload) == "fallback shown"


def test_text_blocks_and_attachments_together():
    payload = {"text": "ignored beside blocks",
               "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "*Deploy*"}}],
               "attachments": [{"color": "good", "text": "v1.2.3 is live"}]}
    assert to_markdown(payload) == "**Deploy**\n\n> 🟢 v1.2.3 is live"
    both = {"text": "Build <https://ci.example/42|#42>",
            "attachments": [{"color": "danger", "title": "Failed", "text": "2 tests"}]}
    assert to_markdown(both) == (
        "Build [#42](<https://ci.example/42>)\n\n> 🔴 **Failed**\n>\n> 2 tests")


ALERTMANAGER = {
    "channel": "#alerts",
    "username": "Alertmanager",
    "icon_emoji": ":fire:",
    "attachments": [{
        "title": "[FIRING:1] InstanceDown (node 10.0.0.5:9100 critical)",
        "title_link": "http://alertmanager.example:9093/#/alerts?receiver=chat",
        "pretext": "",
        "text": "*Alert:* InstanceDown - `critical`\n*Description:* 10.0.0.5 is down",
        "fallback": "[FIRING:1] InstanceDown | http://alertmanager.example:9093/",
        "callback_id": "",
        "footer": "",
        "color": "danger",
        "mrkdwn_in": ["fallback", "pretext", "text"],
    }],
}


def test_an_alertmanager_payload():
    markdown = to_markdown(ALERTMANAGER)
    assert markdown == (
        "> 🔴 **[\\[FIRING:1\\] InstanceDown (node 10.0.0.5:9100 critical)]"
        "(<http://alertmanager.example:9093/#/alerts?receiver=chat>)**\n"
        ">\n"
        "> **Alert:** InstanceDown - `critical`\n"
        "> **Description:** 10.0.0.5 is down")
    shown = html(markdown)
    assert "[FIRING:1] InstanceDown" in shown and "<code>critical</code>" in shown


GRAFANA = {
    "username": "Grafana",
    "icon_emoji": ":grafana:",
    "attachments": [{
        "title": "[FIRING:1] HighLatency (api)",
        "title_link": "https://grafana.example/alerting/list",
        "text": "**Firing**\n\nValue: B=812\nLabels:\n - alertname = HighLatency\n",
        "fallback": "[FIRING:1] HighLatency (api)",
        "footer": "Grafana v10.4.1",
        "footer_icon": "https://grafana.com/static/assets/img/fav32.png",
        "color": "#D63232",
        "ts": 1717000000,
        "mrkdwn_in": ["pretext"],
        "fields": None,
    }],
}


def test_a_grafana_payload():
    markdown = to_markdown(GRAFANA)
    assert markdown.startswith("> 🔴 **[\\[FIRING:1\\] HighLatency (api)]"
                               "(<https://grafana.example/alerting/list>)**\n")
    assert markdown.endswith("> Grafana v10.4.1 · 2024-05-29 16:26 UTC")
    shown = html(markdown)
    assert "Value: B=812" in shown and "alertname = HighLatency" in shown


@pytest.mark.parametrize("payload", [
    {}, {"text": ""}, {"text": None}, {"text": "   "}, {"attachments": []},
    {"blocks": [{"type": "actions"}]}, {"attachments": [{"color": "good"}]},
    {"username": "x", "icon_emoji": ":x:"},
])
def test_a_payload_that_shows_nothing_is_empty(payload):
    assert to_markdown(payload) == ""


@pytest.mark.parametrize("payload", [
    [], "text", 7, None,
    {"text": ["a"]}, {"text": {"a": 1}}, {"text": True},
    {"attachments": {"text": "x"}}, {"attachments": ["x"]}, {"attachments": [None]},
    {"blocks": "x"}, {"blocks": [1]},
    {"blocks": [{"type": "section", "text": "not an object"}]},
    {"blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": 5.5j}}]},
    {"blocks": [{"type": "section", "fields": [{"type": "mrkdwn", "text": []}]}]},
    {"blocks": [{"type": "context", "elements": "x"}]},
    {"attachments": [{"fields": [{"title": "a", "value": {"x": 1}}]}]},
    {"attachments": [{"title": ["x"]}]},
    {"blocks": [{"type": "divider"}] * 51},
    {"attachments": [{"text": "x"}] * 101},
    {"blocks": [{"type": "section", "fields": [{"type": "mrkdwn", "text": "x"}] * 101}]},
])
def test_malformed_payloads_are_refused(payload):
    with pytest.raises(SlackPayloadError):
        to_markdown(payload)


def test_numbers_are_written_out():
    assert to_markdown({"attachments": [{"fields": [{"title": "CPU", "value": 93.5}]}]}) == (
        "> **CPU**\n> 93.5")


@pytest.mark.parametrize("raw", [b"", b"not json", b"[1]", b'"text"', b"{", b"\xff\xfe{",
                                 b"[" * 100_000 + b"]" * 100_000, b"{\"text\": 1"])
def test_parse_payload_refuses_what_is_not_a_json_object(raw):
    with pytest.raises(SlackPayloadError):
        parse_payload(raw)


def test_parse_payload_takes_bytes_and_text():
    assert parse_payload(b'{"text": "hi"}') == {"text": "hi"}
    assert parse_payload('{"text": "h\\u00e9"}') == {"text": "hé"}
