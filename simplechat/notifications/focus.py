"""Who is looking at which conversation: a socket in a conversation's room counts as looking
at it unless it said ``focus {"conversation_id": null}`` (its page hidden or blurred); and which
conversations were pushed to a user since they last read them (so a read clears them on their
other devices). In Redis when there is one (the Celery workers read it), else in this process.

A user's entry is one hash: ``r:<sid>:<conversation id>`` for each room a socket is in,
``b:<sid>`` while that socket is blurred (its value: when it was blurred, in seconds since the
epoch), ``p:<conversation id>`` for a conversation pushed and not read since (its value: when it
was last pushed). A message is decided after it is stored, which can be seconds after it was
sent: a socket blurred since the message was sent was looking when it came, and counts so. It lives
LOOK_TTL after its last change, so the sockets of a process that died without saying goodbye
stop counting within that time.

Pushes of one conversation to one user are merged (``claim``): within WEBPUSH_COALESCE_SECONDS
of the last push, a message is held instead (one hash per conversation, the newest message per
user), and one push of the newest held message goes out when the window ends, unless the user
read the conversation meanwhile. A burst of messages makes two pushes, not one each. Deciding
is merged the same way, before any task is queued (``defer_deciding``): the first stored batch
of a conversation in a window is decided at once, what follows within the window waits for one
decision at its end.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable

from flask import Flask

from simplechat.answers import error
from simplechat.infra.membership import valid_conversation_id
from simplechat.infra.redis_client import commands
from simplechat.infra.services import built_once, services
from simplechat.notifications.push import push_configured

log = logging.getLogger(__name__)

LOOK_TTL = 6 * 3600
PUSHED = "p:"

# KEYS: a conversation's held hash. ARGV: its ttl, then (user id, "<message id> <entry json>")
# pairs. Keeps each user's newest entry (message ids sort in time order); returns 1 when the
# hash was empty (a push of it must be arranged), else 0.
_HOLD = """
local first = redis.call('EXISTS', KEYS[1]) == 0
for i = 2, #ARGV, 2 do
  local held = redis.call('HGET', KEYS[1], ARGV[i])
  if not held or string.sub(held, 1, 36) < string.sub(ARGV[i + 1], 1, 36) then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  end
end
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[1]))
if first then return 1 end
return 0
"""


class FocusStore:
    """The hashes above, in Redis or in a dict of this process."""

    def __init__(self, redis, prefix: str):
        self._redis = redis
        self._prefix = prefix
        self._local: dict[int, dict[str, str]] = {}
        self._held: dict[int, dict[int, dict]] = {}  # without Redis: conversation -> held
        self._hold = None
        self._defer = None
        self._decided: dict[int, float] = {}  # without Redis: conversation -> last decided
        self._pending: dict[int, list[dict]] = {}  # without Redis: waiting to be decided
        self._lock = threading.Lock()

    def _key(self, user_id: int) -> str:
        return f"{self._prefix}notify:{user_id}"

    def _set(self, user_id: int, add: Iterable[str] = (), drop: Iterable[str] = (),
             value: str = "1") -> None:
        add, drop = list(add), list(drop)
        if self._redis is None:
            with self._lock:
                entry = self._local.setdefault(user_id, {})
                for field in drop:
                    entry.pop(field, None)
                entry.update(dict.fromkeys(add, value))
                if not entry:
                    self._local.pop(user_id, None)
            return
        key = self._key(user_id)
        steps = [("HDEL", key, *drop)] if drop else []
        if add:
            steps.append(("HSET", key, *(x for field in add for x in (field, value))))
        commands(self._redis, *steps, ("EXPIRE", key, LOOK_TTL))

    # ------------------------------------------------------------------ sockets
    def joined(self, user_id: int, sid: str, conversation_id: int) -> None:
        self._set(user_id, add=[f"r:{sid}:{conversation_id}"])

    def left(self, user_id: int, sid: str, conversation_id: int) -> None:
        self._set(user_id, drop=[f"r:{sid}:{conversation_id}"])

    def focused(self, user_id: int, sid: str, on: bool) -> None:
        """The socket's page shown again (``on``) or hidden/blurred (when is kept)."""
        if on:
            self._set(user_id, drop=[f"b:{sid}"])
        else:
            self._set(user_id, add=[f"b:{sid}"], value=repr(time.time()))

    def gone(self, user_id: int, sid: str) -> None:
        """A socket closed: it looks at nothing any more."""
        fields = self._entries([user_id])[0]
        mine = [f for f in fields if f == f"b:{sid}" or f.startswith(f"r:{sid}:")]
        if mine:
            self._set(user_id, drop=mine)

    def _entries(self, user_ids: list[int]) -> list[dict[str, str]]:
        """Each user's hash: field -> value."""
        if self._redis is None:
            with self._lock:
                return [dict(self._local.get(uid, {})) for uid in user_ids]
        if not user_ids:
            return []
        replies = commands(self._redis, *(("HGETALL", self._key(uid)) for uid in user_ids))
        return [{_text(f): _text(v) for f, v in fields.items()} for fields in replies]

    def looking(self, user_ids: list[int], conversation_id: int,
                since: float | None = None) -> set[int]:
        """Those of ``user_ids`` with a socket in the conversation's room that is not blurred,
        or was blurred after ``since`` (seconds since the epoch: when the message was sent)."""
        found = set()
        suffix = f":{conversation_id}"
        for uid, fields in zip(user_ids, self._entries(user_ids), strict=True):
            for field in fields:
                if field.startswith("r:") and field.endswith(suffix):
                    blurred = fields.get(f"b:{field[2:-len(suffix)]}")
                    if blurred is None or (since is not None and _seconds(blurred) > since):
                        found.add(uid)
                        break
        return found

    # ------------------------------------------------------------------ pushed, not read
    def pushed(self, user_ids: Iterable[int], conversation_id: int,
               now: float | None = None) -> None:
        stamp = repr(time.time() if now is None else now)
        for uid in user_ids:
            self._set(uid, add=[f"{PUSHED}{conversation_id}"], value=stamp)

    def pushed_at(self, user_ids: list[int], conversation_id: int) -> list[float | None]:
        """When each user was last pushed the conversation, if not read since."""
        field = f"{PUSHED}{conversation_id}"
        if self._redis is None:
            with self._lock:
                values = [self._local.get(uid, {}).get(field) for uid in user_ids]
        else:
            pipe = self._redis.pipeline(transaction=False)
            for uid in user_ids:
                pipe.hget(self._key(uid), field)
            values = pipe.execute()
        return [_seconds(v) for v in values]

    def claim(self, user_ids: list[int], conversation_id: int, window: float,
              now: float | None = None) -> tuple[list[int], list[int]]:
        """Split ``user_ids`` into those to push the conversation to now (recorded as pushed
        now) and those pushed it less than ``window`` seconds ago and not read since (hold)."""
        now = time.time() if now is None else now
        push, hold = [], []
        for uid, at in zip(user_ids, self.pushed_at(user_ids, conversation_id), strict=True):
            (hold if at is not None and now - at < window else push).append(uid)
        if push:
            self.pushed(push, conversation_id, now)
        return push, hold

    # ------------------------------------------------------------------ held, to push later
    def _held_key(self, conversation_id: int) -> str:
        return f"{self._prefix}notify-held:{conversation_id}"

    def hold(self, conversation_id: int, messages: dict[int, dict], window: float) -> bool:
        """Keep each user's newest message (``{"at": when held, "message": ...}``) to push
        when the window ends, unless a newer one is held already (decisions run side by side:
        ids are in time order); whether a later push must be arranged (none is yet)."""
        if self._redis is None:
            with self._lock:
                held = self._held.setdefault(conversation_id, {})
                first = not held
                for uid, entry in messages.items():
                    if uid not in held or held[uid]["message"]["id"] < entry["message"]["id"]:
                        held[uid] = entry
                return first
        args = [max(60, int(window * 10))]
        for uid, entry in messages.items():
            args += [str(uid), f"{entry['message']['id']} {json.dumps(entry)}"]
        return bool(self._hold_script()(keys=[self._held_key(conversation_id)], args=args))

    def _hold_script(self):
        if self._hold is None:
            self._hold = self._redis.register_script(_HOLD)
        return self._hold

    def take_held(self, conversation_id: int) -> dict[int, dict]:
        """The held messages of the conversation, by user, forgotten: the next hold arranges
        anew."""
        if self._redis is None:
            with self._lock:
                return self._held.pop(conversation_id, {})
        key = self._held_key(conversation_id)
        pipe = self._redis.pipeline(transaction=True)
        pipe.hgetall(key)
        pipe.delete(key)
        return {int(uid): json.loads(value.split(b" ", 1)[1])
                for uid, value in pipe.execute()[0].items()}

    # ------------------------------------------------------------------ deciding, merged
    def defer_deciding(self, conversation_id: int, messages: list[dict],
                       window: float) -> str:
        """'now': decide ``messages`` now (nothing of the conversation was decided within
        ``window`` seconds); else they wait for one decision at the window's end: 'later'
        (arrange it) or 'queued' (arranged already)."""
        if self._redis is None:
            with self._lock:
                now = time.monotonic()
                if now - self._decided.get(conversation_id, -window) >= window:
                    self._decided[conversation_id] = now
                    return "now"
                pending = self._pending.setdefault(conversation_id, [])
                pending.extend(messages)
                return "later" if len(pending) == len(messages) else "queued"
        if self._defer is None:
            self._defer = self._redis.register_script(_DEFER)
        key = f"{self._prefix}notify-deciding:{conversation_id}"
        answer = self._defer(keys=[key, key + ":pending"],
                             args=[max(1, int(window * 1000)), max(60, int(window * 10)),
                                   *(json.dumps(m) for m in messages)])
        return answer.decode() if isinstance(answer, bytes) else answer

    def take_pending(self, conversation_id: int) -> list[dict]:
        """The messages waiting for the conversation's merged decision, forgotten."""
        if self._redis is None:
            with self._lock:
                return self._pending.pop(conversation_id, [])
        key = f"{self._prefix}notify-deciding:{conversation_id}:pending"
        pipe = self._redis.pipeline(transaction=True)
        pipe.lrange(key, 0, -1)
        pipe.delete(key)
        return [json.loads(m) for m in pipe.execute()[0]]

    def take_pushed(self, user_id: int, conversation_id: int) -> bool:
        """Whether a push of the conversation waits unread (and forget it)."""
        field = f"p:{conversation_id}"
        if self._redis is None:
            with self._lock:
                entry = self._local.get(user_id, {})
                return entry.pop(field, None) is not None
        return bool(self._redis.hdel(self._key(user_id), field))


# KEYS: a conversation's deciding marker, its pending list. ARGV: the window in ms, the list's
# ttl, then message briefs (json). 'now' when nothing was decided within the window (the
# marker is set: decide these now), else the briefs wait on the list: 'later' when it was empty
# (a decision of it must be arranged), 'queued' when one is arranged already.
_DEFER = """
if redis.call('SET', KEYS[1], '1', 'NX', 'PX', tonumber(ARGV[1])) then return 'now' end
local n = redis.call('RPUSH', KEYS[2], unpack(ARGV, 3))
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[2]))
if n == #ARGV - 2 then return 'later' end
return 'queued'
"""


def _seconds(value) -> float | None:
    """A ``p:`` field's time; one written before times were kept counts as long ago."""
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


def _build(app: Flask) -> FocusStore:
    return FocusStore(services().redis, app.config["REDIS_KEY_PREFIX"])


def focus_store() -> FocusStore:
    return built_once("simplechat.notifications.focus", _build)


# --------------------------------------------------------------------------- socket events
def _tracked() -> FocusStore | None:
    """The store while push is on (nothing to keep otherwise)."""
    return focus_store() if push_configured() else None


def socket_joined(user_id: int, sid: str, conversation_id: int) -> None:
    _quietly(lambda store: store.joined(user_id, sid, conversation_id))


def socket_left(user_id: int, sid: str, conversation_id: int) -> None:
    _quietly(lambda store: store.left(user_id, sid, conversation_id))


def socket_gone(user_id: int, sid: str) -> None:
    _quietly(lambda store: store.gone(user_id, sid))


def set_focus(user_id: int, sid: str, data: dict) -> dict:
    """``focus {"conversation_id": <id> | null}``: the socket's page shown (looking at the
    conversations whose rooms it is in) or hidden/blurred (looking at none)."""
    if set(data) != {"conversation_id"}:
        return error("invalid")
    conversation_id = data["conversation_id"]
    if conversation_id is not None and not valid_conversation_id(conversation_id):
        return error("invalid")
    _quietly(lambda store: store.focused(user_id, sid, conversation_id is not None))
    return {"ok": True}


def _quietly(change: Callable[[FocusStore], None]) -> None:
    """Who looks where is a nicety: an outage of Redis must not refuse the socket's event."""
    try:
        store = _tracked()
        if store is not None:
            change(store)
    except Exception:
        log.warning("focus not recorded", exc_info=True)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
