"""Mentions: ``@username`` of a participant, and ``@all`` in a group, resolved to user ids.

Participants come from the membership cache (infra.membership), which holds ids only. Names are
resolved by a small map in each process (the directory below): username -> user id, and
conversation -> whether it is a group, filled from SQL on a miss (one query for all the names
of a message that are not known yet) and kept for ``TTL`` seconds, names that match nobody
included. So a send runs no SQL for names seen in the last minute, and a renamed or new user is
resolved within a minute on every process. A message with no "@" costs nothing; one naming a
known user reads the members once (one Redis round trip, only then).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable

from sqlalchemy import func, select

from simplechat.extensions import db
from simplechat.infra.services import built_once
from simplechat.messaging.formatting import mention_candidates
from simplechat.models import Conversation, User

ALL = "all"
TTL = 60.0
MAX_ENTRIES = 50_000


class Directory:
    """Usernames to user ids and conversations to "is a group", cached in this process."""

    def __init__(self, ttl: float = TTL, max_entries: int = MAX_ENTRIES):
        self._ttl, self._max = ttl, max_entries
        self._names: dict[str, tuple[float, int | None]] = {}
        self._groups: dict[int, bool] = {}  # a conversation never changes kind
        self._lock = threading.Lock()

    def user_ids(self, names: Iterable[str]) -> dict[str, int]:
        """The ids of the active users with these (lower-cased) names; unknown names left out."""
        now, found, missing = time.monotonic(), {}, []
        with self._lock:
            for name in names:
                entry = self._names.get(name)
                if entry is None or entry[0] < now:
                    missing.append(name)
                elif entry[1] is not None:
                    found[name] = entry[1]
        if missing:
            loaded = dict(db.session.execute(
                select(func.lower(User.username), User.id)
                .where(func.lower(User.username).in_(missing), User.is_active.is_(True))
            ).all())
            with self._lock:
                if len(self._names) + len(missing) > self._max:
                    self._names.clear()
                for name in missing:
                    self._names[name] = (now + self._ttl, loaded.get(name))
            found.update(loaded)
        return found

    def is_group(self, conversation_id: int) -> bool:
        with self._lock:
            known = self._groups.get(conversation_id)
        if known is None:
            known = bool(db.session.scalar(
                select(Conversation.is_group).where(Conversation.id == conversation_id)))
            with self._lock:
                if len(self._groups) >= self._max:
                    self._groups.clear()
                self._groups[conversation_id] = known
        return known


def directory() -> Directory:
    return built_once("simplechat.mention_directory", lambda app: Directory())


def resolve_mentions(text: str, conversation_id: int, sender_id: int,
                     members: Callable[[], Iterable[int]]) -> tuple[list[int], dict[str, int]]:
    """The ids ``text`` mentions (participants only, in order; ``@all`` in a group is everyone
    but the sender) and, for rendering, each mentioned name's user id (0 for ``@all``).
    ``members`` is called only when some name could be a mention."""
    candidates = mention_candidates(text)
    if not candidates:
        return [], {}
    names = directory().user_ids([c for c in candidates if c != ALL])
    everyone = ALL in candidates and ALL not in names and directory().is_group(conversation_id)
    if not names and not everyone:
        return [], {}
    present = list(members())
    rendered = {name: uid for name, uid in names.items() if uid in present}
    ids = list(dict.fromkeys(rendered[c] for c in candidates if c in rendered))
    if everyone:
        rendered[ALL] = 0
        ids = list(dict.fromkeys([*ids, *(uid for uid in present if uid != sender_id)]))
    return ids, rendered
