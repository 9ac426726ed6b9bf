"""Socket.IO's namespace and the names of its rooms: one per conversation, one per user
(their personal room: every socket of theirs, on every page), and one per user for the sockets
that asked for that user's presence (``presence_subscribe``)."""

from __future__ import annotations

NAMESPACE = "/chat"


def room(conversation_id: int) -> str:
    return f"conversation:{conversation_id}"


def user_room(user_id: int) -> str:
    return f"user:{user_id}"


PRESENCE_ROOM_PREFIX = "presence:"


def presence_room(user_id: int) -> str:
    """The sockets that subscribed to this user's presence."""
    return f"{PRESENCE_ROOM_PREFIX}{user_id}"
