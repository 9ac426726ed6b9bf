"""Initials avatars: the letters and the colour class for a user (or a group), the same as the
browser's (SimpleChat.avatar in static/js/simplechat.js); the palette is in chat-ui.css."""

from __future__ import annotations

from simplechat.chat.views import bp

AVATAR_COLOURS = 12  # .avatar-c0 ... .avatar-c11


@bp.app_template_filter("initials")
def initials(name: str | None) -> str:
    """The first letters of the first and last words of a name, upper case ("?" for none)."""
    words = (name or "").split()
    if not words:
        return "?"
    letters = words[0][0] + (words[-1][0] if len(words) > 1 else "")
    return letters.upper()


@bp.app_template_filter("avatar_colour")
def avatar_colour(owner_id: int) -> str:
    """The colour class for an id: deterministic, so a person looks the same everywhere."""
    return f"avatar-c{abs(int(owner_id)) % AVATAR_COLOURS}"
