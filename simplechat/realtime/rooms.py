"""Socket.IO's namespace and the names of its rooms: one per conversation, one per user
(their personal room: every socket of theirs, on every page)."""

from __future__ import annotations

NAMESPACE = "/chat"


def room(conversation_id: int) -> str:
    return f"conversation:{conversation_id}"


def user_room(user_id: int) -> str:
    return f"user:{user_id}"
