"""Slack's message payload as the chat's Markdown: ``text`` (Slack's ``mrkdwn``), legacy
``attachments`` and Block Kit ``blocks``, so that tools that post to Slack's incoming webhooks
(Alertmanager, Grafana, CI systems) post here unchanged. Plain functions of plain values; the
Markdown is then rendered and sanitized as every message is (messaging.formatting).

What becomes what (docs/INTEGRATIONS.md says the same for people):

- ``*bold*`` becomes ``**bold**``; ``_italic_``, `` `code` `` and ```` ```blocks``` ```` mean
  the same in both; ``~strike~`` stays as typed (the chat's Markdown has no strikethrough).
- ``<url|label>`` and ``<url>`` become links (http, https and mailto; any other scheme shows
  its label as text); ``<!here>``, ``<!channel>`` and ``<!everyone>`` become ``@all`` (which
  mentions everyone in a group); ``<#C123|name>`` becomes ``#name``; ``<!date^...|fallback>``
  and other labelled sequences show their label; ``<@U123>`` (a Slack user) and a sequence
  that is no address (``<script>``) stay as text.
  ``&amp;``, ``&lt;`` and ``&gt;`` are decoded.
- An attachment is a quote block (the chat draws a bar beside it): a circle emoji coloured
  after ``color`` (``good`` green, ``warning`` yellow, ``danger`` red, a hex colour by its hue)
  starts it, then author, title (a link with ``title_link``), text, fields (``**title**`` and
  value), image (a link), its blocks and ``footer`` with ``ts``; ``pretext`` comes above it.
- Blocks: ``header`` a heading, ``section`` its text and fields (and an image or a button with
  a URL as a link), ``context`` its elements on one line, ``divider`` a rule, ``image`` a link;
  other block types are left out. As in Slack, a top-level ``text`` beside blocks that show
  something is only their notification fallback, and is left out.
"""

from __future__ import annotations

import colorsys
import json
import re
from datetime import UTC, datetime
from urllib.parse import quote

MAX_BLOCKS = 50  # Slack's own limits, or near them: more is a malformed payload
MAX_ATTACHMENTS = 100
MAX_ITEMS = 100  # fields of an attachment or a section, elements of a context block

LINK_SCHEMES = ("http", "https", "mailto")
MENTION_ALL = "@all"
_EVERYONE = frozenset({"here", "channel", "everyone"})
COLORS = {"good": "🟢", "warning": "🟡", "danger": "🔴"}


class SlackPayloadError(ValueError):
    """A payload that is not Slack's message shape: not an object, or a field of a wrong type."""


# --------------------------------------------------------------------------- the payload


def parse_payload(raw: bytes | str) -> dict:
    """The JSON object of a request body or a form's ``payload`` field."""
    try:
        payload = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise SlackPayloadError("the payload is not JSON") from exc
    if not isinstance(payload, dict):
        raise SlackPayloadError("the payload is not a JSON object")
    return payload


def to_markdown(payload: dict) -> str:
    """The chat's Markdown for a Slack message payload ("" when it shows nothing)."""
    if not isinstance(payload, dict):
        raise SlackPayloadError("the payload is not a JSON object")
    formatted = payload.get("mrkdwn", True) is not False
    text = _string(payload.get("text"), "text")
    blocks = _blocks(payload.get("blocks"))
    parts = [] if blocks else [mrkdwn(text) if formatted else plain(text)]
    parts += blocks
    parts += [_attachment(a) for a in _items(payload.get("attachments"), MAX_ATTACHMENTS,
                                             "attachments")]
    return _joined(parts)


def _joined(parts: list[str]) -> str:
    """Markdown parts as paragraphs of their own (a blank line apart: a "---" after a line of
    text would make it a heading)."""
    return "\n\n".join(p.strip("\n") for p in parts if p and p.strip())


def _string(value: object, where: str) -> str:
    """A text field: a string, a number (written out) or nothing."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise SlackPayloadError(f"{where} is not text")


def _items(value: object, limit: int, where: str) -> list[dict]:
    """A list of objects (absent: empty), at most ``limit`` of them."""
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise SlackPayloadError(f"{where} is not a list of objects")
    if len(value) > limit:
        raise SlackPayloadError(f"{where} has more than {limit} items")
    return value


# --------------------------------------------------------------------------- mrkdwn


# What is taken as it is (code) or turned into something else (<...>) before the rest of the
# text is looked at: a code block, an inline code span, a control sequence.
_TOKEN = re.compile(r"```.*?```|`[^`\n]+`|<[^<>\n]+>", re.S)
_PLACEHOLDER = re.compile(r"\x00(\d+)\x00")
# Slack's *bold*: a "*" not inside a word, text not starting or ending with a blank, a "*".
_BOLD = re.compile(r"(?<![\w*])\*(?![\s*])([^*\n]*?[^\s*])\*(?![\w*])|"
                   r"(?<![\w*])\*([^\s*])\*(?![\w*])")
# A backslash before punctuation is a backslash in Slack, an escape in CommonMark.
_BACKSLASH = re.compile(r"\\(?=[!-/:-@\[-`{-~])")
_ENTITIES = (("&lt;", "<"), ("&gt;", ">"), ("&amp;", "&"))
# After decoding, what CommonMark would read as an entity again ("&amp;copy;" means "&copy;").
_ENTITY_LIKE = re.compile(r"&(?=#?\w+;)")
_NAME_CHAR = re.compile(r"[\w.@-]")


def decode(text: str) -> str:
    """Slack's three escapes back to their characters (``&amp;`` last: ``&amp;lt;`` is "&lt;")."""
    for entity, char in _ENTITIES:
        text = text.replace(entity, char)
    return text


def mrkdwn(text: str) -> str:
    """Slack's ``mrkdwn`` text as the chat's Markdown."""
    text = text.replace("\x00", "")
    kept: list[str] = []

    def hold(match: re.Match) -> str:
        kept.append(_token(match.group(0)))
        return f"\x00{len(kept) - 1}\x00"

    held = _TOKEN.sub(hold, text)
    held = _emphasis(_ENTITY_LIKE.sub(r"\\&", _BACKSLASH.sub(r"\\\\", decode(held))))

    return _put_back(held, kept)


def _put_back(held: str, kept: list[str]) -> str:
    """``held`` with each placeholder replaced by what it holds; an ``@all`` gets a blank on
    either side that would run into a name (a word, a dot, another mention)."""
    out, last = [], 0
    for match in _PLACEHOLDER.finditer(held):
        out.append(held[last:match.start()])
        value = kept[int(match.group(1))]
        if value == MENTION_ALL:
            before = out[-1][-1:] if out[-1] else (out[-2][-1:] if len(out) > 1 else "")
            after = held[match.end():match.end() + 1]
            if before and _NAME_CHAR.match(before):
                value = " " + value
            if after and (_NAME_CHAR.match(after) or after == "\x00"):
                value += " "
        out.append(value)
        last = match.end()
    out.append(held[last:])
    return "".join(out)


def _emphasis(text: str) -> str:
    """Slack's bold as CommonMark's; any other "*" is a star (CommonMark would read "a*b*c" as
    emphasis and "* x" as a list)."""
    out, last = [], 0
    for match in _BOLD.finditer(text):
        out += [text[last:match.start()].replace("*", "\\*"),
                f"**{match.group(1) or match.group(2)}**"]
        last = match.end()
    out.append(text[last:].replace("*", "\\*"))
    return "".join(out)


def _token(token: str) -> str:
    if token.startswith("```"):
        body = decode(token[3:-3]).strip("\n")
        return f"\n```\n{body}\n```\n"
    if token.startswith("`"):
        return decode(token)
    return _control(token[1:-1])


def _control(body: str) -> str:
    """A ``<...>`` sequence: a link, a special mention, a channel, a user, a date."""
    target, _, label = body.partition("|")
    target, label = decode(target), decode(label)
    if target.startswith("!"):
        if target[1:].split("^", 1)[0] in _EVERYONE:
            return MENTION_ALL
        return _escaped(label) if label else _escaped(f"<{target}>")
    if target.startswith("#"):
        return "#" + _escaped(label) if label else _escaped(f"<{target}>")
    if target.startswith("@") or ":" not in target:  # a Slack user, or no address at all
        return _escaped(f"<{decode(body)}>")
    return link(label, target)


def link(label: str, url: str) -> str:
    """A Markdown link to ``url`` (http, https or mailto) showing ``label`` (default: the
    address); for any other scheme, the label (or the address) as text."""
    url = url.strip()
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    shown = label or (url[len("mailto:"):] if scheme == "mailto" else url)
    if scheme not in LINK_SCHEMES:
        return _escaped(shown)
    safe = quote(url, safe="!#$%&'()*+,/:;=?@[]~-._")
    return f"[{_label(shown)}](<{safe}>)"


def _label(text: str) -> str:
    return re.sub(r"([\\\[\]])", r"\\\1", " ".join(text.split()))


def _escaped(text: str) -> str:
    """Text shown as it is inside a line: the characters that would start Markdown (or an
    entity) escaped."""
    return _ENTITY_LIKE.sub(r"\\&", _INLINE_SYNTAX.sub(r"\\\1", text))


_INLINE_SYNTAX = re.compile(r"([\\`*_\[\]<>])")


# Block-level starts CommonMark would read: a heading, a quote, a list item, a rule, a fence,
# an ordered list item (escaped at its "." or ")").
_LINE_START = re.compile(r"^([ \t]*)(?:([#>+\-=~])|(\d{1,9})([.)]))", re.M)


def plain(text: str) -> str:
    """Slack's ``plain_text``: shown as typed, nothing read as Markdown."""
    def escape_start(m: re.Match) -> str:
        if m.group(2):
            return f"{m.group(1)}\\{m.group(2)}"
        return f"{m.group(1)}{m.group(3)}\\{m.group(4)}"

    return _LINE_START.sub(escape_start, _escaped(text))


def _text_object(value: object, where: str) -> str:
    """A Block Kit text object (``mrkdwn`` or ``plain_text``) as Markdown."""
    if value is None:
        return ""
    if not isinstance(value, dict):
        raise SlackPayloadError(f"{where} is not a text object")
    text = _string(value.get("text"), where)
    return mrkdwn(text) if value.get("type") == "mrkdwn" else plain(text)


# --------------------------------------------------------------------------- blocks


def _blocks(value: object) -> list[str]:
    """The Markdown of each block that shows something (unknown types left out)."""
    shown = [_block(block) for block in _items(value, MAX_BLOCKS, "blocks")]
    return [b for b in shown if b.strip()]


def _block(block: dict) -> str:
    kind = block.get("type")
    if kind == "header":
        title = " ".join(_text_object(block.get("text"), "header.text").split())
        return f"### {title}" if title else ""
    if kind == "section":
        parts = [_text_object(block.get("text"), "section.text")]
        parts += [_text_object(f, "section.fields")
                  for f in _items(block.get("fields"), MAX_ITEMS, "section.fields")]
        parts.append(_accessory(block.get("accessory")))
        return _joined(parts)
    if kind == "context":
        shown = []
        for element in _items(block.get("elements"), MAX_ITEMS, "context.elements"):
            if element.get("type") == "image":
                shown.append(_image(element.get("image_url"), element.get("alt_text")))
            else:
                shown.append(_text_object(element, "context.elements"))
        return " · ".join(" ".join(s.split("\n")) for s in shown if s.strip())
    if kind == "divider":
        return "---"
    if kind == "image":
        title = block.get("title")
        label = _string(title.get("text") if isinstance(title, dict) else None, "image.title")
        return _image(block.get("image_url"), label or block.get("alt_text"))
    return ""  # actions, input, rich_text, file, video...: not shown


def _accessory(value: object) -> str:
    if not isinstance(value, dict):
        return ""
    if value.get("type") == "image":
        return _image(value.get("image_url"), value.get("alt_text"))
    if value.get("type") == "button" and value.get("url"):
        label = value.get("text")
        shown = _string(label.get("text") if isinstance(label, dict) else None, "button.text")
        return link(shown, _string(value.get("url"), "button.url"))
    return ""


def _image(url: object, alt: object) -> str:
    """A picture as a link to it (the chat shows no pictures from other hosts)."""
    address = _string(url, "image_url")
    if not address:
        return ""
    return "🖼 " + link(_string(alt, "alt_text") or "image", address)


# --------------------------------------------------------------------------- attachments


def color_marker(color: object) -> str:
    """The circle emoji standing for an attachment's ``color`` ("" when none or unreadable)."""
    if not isinstance(color, str) or not color.strip():
        return ""
    name = color.strip().lower()
    if name in COLORS:
        return COLORS[name]
    digits = name.lstrip("#")
    if len(digits) == 3:
        digits = "".join(d * 2 for d in digits)
    if not re.fullmatch(r"[0-9a-f]{6}", digits):
        return ""
    red, green, blue = (int(digits[i:i + 2], 16) / 255 for i in (0, 2, 4))
    hue, saturation, value = colorsys.rgb_to_hsv(red, green, blue)
    if saturation < 0.2 or value < 0.2:
        return "⚫" if value < 0.5 else "⚪"
    degrees = hue * 360
    for upto, marker in ((15, "🔴"), (45, "🟠"), (70, "🟡"), (170, "🟢"), (260, "🔵"),
                         (330, "🟣")):
        if degrees < upto:
            return marker
    return "🔴"


def _attachment(attachment: dict) -> str:
    """Pretext, then the attachment as a quote block led by its colour."""
    def text(name: str) -> str:
        return _string(attachment.get(name), f"attachments.{name}")

    parts = []
    author = text("author_name")
    if author:
        author_link = text("author_link")
        parts.append(link(author, author_link) if author_link else _escaped(author))
    title = text("title")
    if title:
        title_link = text("title_link")
        parts.append("**" + (link(title, title_link) if title_link else _escaped(title)) + "**")
    parts.append(mrkdwn(text("text")))
    for field in _items(attachment.get("fields"), MAX_ITEMS, "attachments.fields"):
        name = _string(field.get("title"), "fields.title")
        value = mrkdwn(_string(field.get("value"), "fields.value"))
        parts.append("\n".join(p for p in (f"**{_escaped(name)}**" if name else "", value) if p))
    image = text("image_url")
    if image:
        parts.append(_image(image, text("fallback") or "image"))
    parts += _blocks(attachment.get("blocks"))
    footer = _footer(mrkdwn(text("footer")), attachment.get("ts"))
    if footer:
        parts.append(footer)
    body = _joined(parts)
    if not body:
        body = mrkdwn(text("fallback")).strip("\n")
    pretext = mrkdwn(text("pretext"))
    if not body:
        return pretext
    marker = color_marker(attachment.get("color"))
    if marker:
        starts_block = re.match(r"\s*(#|```|---|>|[-+*] |\d+[.)] )", body)
        body = f"{marker}\n\n{body}" if starts_block else f"{marker} {body}"
    quoted = "\n".join(f"> {line}" if line else ">" for line in body.split("\n"))
    return _joined([pretext, quoted])


def _footer(footer: str, ts: object) -> str:
    when = ""
    if isinstance(ts, int | float | str) and not isinstance(ts, bool):
        try:
            when = datetime.fromtimestamp(float(ts), UTC).strftime("%Y-%m-%d %H:%M UTC")
        except (ValueError, OverflowError, OSError):
            when = ""
    return " · ".join(p for p in (footer.strip(), when) if p)
