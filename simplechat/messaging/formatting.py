"""A message's ``html``: its text rendered from CommonMark (markdown-it-py, bare URLs linked by
linkify-it-py) and sanitized by an allow-list (nh3), once, when it is sent or edited.

Raw HTML in the text is shown as text, never passed on; images are not rendered (a picture is an
attachment); links keep only ``http``, ``https`` and ``mailto`` and get
``rel="noopener noreferrer nofollow"``. ``@username`` of a mentioned participant becomes
``<span class="mention" data-user-id="7">@username</span>`` (``@all``: no user id).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from html.parser import HTMLParser

import nh3
from markdown_it import MarkdownIt
from markdown_it.common.utils import escapeHtml
from markdown_it.token import Token

ALLOWED_TAGS = {
    "p", "br", "strong", "em", "code", "pre", "blockquote", "ul", "ol", "li", "a", "hr",
    "h1", "h2", "h3", "h4", "h5", "h6", "span",
}
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "ol": {"start"}, "span": {"data-user-id"}}
ALLOWED_CLASSES = {"span": {"mention"}}
URL_SCHEMES = {"http", "https", "mailto"}
LINK_REL = "noopener noreferrer nofollow"

# What can be a mention: "@" not inside a word, then a username (auth.forms.USERNAME_RE) or
# "all". A trailing "." is sentence punctuation, not part of the name.
MENTION = re.compile(r"(?<![\w@.])@([A-Za-z0-9._-]{1,32})")


def mention_candidates(text: str) -> list[str]:
    """The lower-cased names after "@" in ``text``, in order, each once."""
    if "@" not in text:
        return []
    return list(dict.fromkeys(m.rstrip(".").lower() for m in MENTION.findall(text)
                              if m.rstrip(".")))


def _mention_rule(state) -> None:
    """Split text tokens (not code, not link text) at the mentions ``env`` names."""
    names: dict[str, int] = state.env.get("mentions") or {}
    if not names:
        return
    for block in state.tokens:
        if block.type != "inline" or not block.children or "@" not in block.content:
            continue
        children, in_link = [], 0
        for token in block.children:
            if token.type == "link_open":
                in_link += 1
            elif token.type == "link_close":
                in_link -= 1
            if token.type != "text" or in_link or "@" not in token.content:
                children.append(token)
                continue
            children.extend(_split_mentions(token.content, names))
        block.children = children


def _split_mentions(content: str, names: dict[str, int]) -> list[Token]:
    out, start = [], 0
    for match in MENTION.finditer(content):
        name = match.group(1).rstrip(".")
        user_id = names.get(name.lower())
        if user_id is None:
            continue
        end = match.start() + 1 + len(name)
        if match.start() > start:
            out.append(_text(content[start:match.start()]))
        span = Token("mention", "span", 0)
        span.content, span.meta = content[match.start():end], {"user_id": user_id}
        out.append(span)
        start = end
    if start < len(content):
        out.append(_text(content[start:]))
    return out


def _text(content: str) -> Token:
    token = Token("text", "", 0)
    token.content = content
    return token


def _render_mention(self, tokens, idx, options, env) -> str:
    token = tokens[idx]
    user_id = int(token.meta["user_id"])  # 0: @all
    attribute = f' data-user-id="{user_id}"' if user_id else ""
    return f'<span class="mention"{attribute}>{escapeHtml(token.content)}</span>'



def _link_pretest(pretest: Callable[[str], bool]) -> Callable[[str], bool]:
    """linkify-it's pretest, after a plain substring check: without fuzzy domains a link needs
    "//", "mailto:" or "@", and its pretest regex costs milliseconds on a long message."""

    def quick(text: str) -> bool:
        return ("//" in text or "@" in text or "mailto:" in text.lower()) and pretest(text)

    return quick


@functools.cache
def _parser() -> MarkdownIt:
    # CommonMark without raw HTML; a single newline is a line break, as people type in a chat.
    md = MarkdownIt("commonmark", {"html": False, "linkify": True, "breaks": True})
    md.enable("linkify")
    # Bare URLs with their scheme and e-mail addresses become links; a bare domain does not
    # ("notes.md", "setup.py" are file names more often than hosts), which also lets most text
    # skip the link search (linkify-it's pretest), the costly part of rendering a long message.
    md.linkify.set({"fuzzy_link": False})
    md.linkify.pretest = _link_pretest(md.linkify.pretest)
    md.disable("image")  # ![alt](url) reads as "!" and a link: no pictures from other hosts
    md.core.ruler.push("mentions", _mention_rule)
    md.add_render_rule("mention", _render_mention)
    return md


def sanitize(html: str) -> str:
    return nh3.clean(html, tags=ALLOWED_TAGS, attributes=ALLOWED_ATTRIBUTES,
                     allowed_classes=ALLOWED_CLASSES, url_schemes=URL_SCHEMES, link_rel=LINK_REL,
                     strip_comments=True)


# What can make CommonMark (or linkify, or a mention) read a line as more than one paragraph of
# its own characters: inline syntax, entities, escapes, and line breaks anywhere; list items,
# headings, quotes, thematic breaks and indented code at the start; links and mentions.
_SYNTAX = frozenset("`*_[]<>&#!~|\\\t\n\r")
_SYNTAX_AT_START = frozenset("-+=0123456789 ")
_LINK_HINTS = ("//", "@", "mailto:")


def _plain_paragraph(text: str) -> str | None:
    """The rendering of a message that is one line of plain words, without the parser: what it
    would give (``<p>`` and the text, which needs no escaping), or None for anything else."""
    if (text[0] in _SYNTAX_AT_START or text[-1] == " " or not text.isprintable()
            or not _SYNTAX.isdisjoint(text)):
        return None
    lowered = text.lower()
    if any(hint in lowered for hint in _LINK_HINTS):
        return None
    return f"<p>{text}</p>"


def plain_html(text: str) -> str | None:
    """The HTML of ``text`` when it needs no parser (a line of plain words, or nothing), at the
    cost of one look at each character; None when only ``render_html`` can tell."""
    return _plain_paragraph(text) if text else ""


def render_html(text: str, mentions: dict[str, int] | None = None) -> str:
    """The sanitized HTML of ``text``; ``mentions`` maps lower-cased names to user ids.

    Most chat lines are plain words: those skip markdown-it-py and nh3 (77 µs a line of 40
    characters, the send path's largest cost after Redis), which would give the same. The rest
    can cost far more (4,000 ``[`` take some 70 ms): the send path checks membership and the
    rate limit first, and calls this on the CPU pool (infra.offload), off the event loop."""
    plain = plain_html(text)
    if plain is not None:
        return plain
    return sanitize(_parser().render(text, {"mentions": mentions or {}})).rstrip("\n")



# How much of a message a preview reads: enough for any preview, never a whole long message.
PREVIEW_SOURCE = 2000
_BLOCKS = frozenset({"p", "br", "pre", "blockquote", "ul", "ol", "li", "hr",
                     "h1", "h2", "h3", "h4", "h5", "h6"})


class _TextOf(HTMLParser):
    """The text of sanitized HTML, blocks and line breaks as spaces."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_starttag(self, tag: str, attrs) -> None:
        if tag in _BLOCKS:
            self.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in _BLOCKS:
            self.parts.append(" ")

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def plain_text(text: str, html: str | None = None, limit: int = 120) -> str:
    """What a message reads as once rendered, as one line of plain text of at most ``limit``
    characters, for previews (the conversation list): its words, link texts, mentions and code
    without Markdown's syntax, blocks and line breaks as single spaces.

    Read from ``html``, the rendering made (off the event loop) when it was sent, with an HTML
    parser; a line of plain words is its own preview. A message stored without its rendering
    (from before rendering existed) is rendered here, its first PREVIEW_SOURCE characters."""
    if not text:
        return ""
    if plain_html(text[:PREVIEW_SOURCE]) is not None:
        return text[:limit]
    if html is None:
        html = render_html(text[:PREVIEW_SOURCE])
    reader = _TextOf()
    reader.feed(html[:PREVIEW_SOURCE * 2])
    reader.close()
    return " ".join("".join(reader.parts).split())[:limit]
