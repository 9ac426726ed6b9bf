"""Budgets of socket events, so that one user cannot keep a worker busy with cheap events:
``join`` (CHAT_SOCKET_JOIN_RATE), ``typing`` (CHAT_SOCKET_TYPING_RATE), and every other event
but sends, changes and reactions, which have per-user limits of their own in Redis
(CHAT_SOCKET_EVENT_RATE: ``heartbeat``, ``presence``, ``read``, ``leave``, group management,
unknown names).

Each budget is a GCRA schedule, as in infra/ratelimit.py, kept in this process's memory and
shared by the user's sockets on this process: a socket that reconnects, or a user's next
socket, does not start with a fresh burst. Nothing is sent to Redis for it; with several web
processes a user has a budget on each.

And turns (``Turns``) for the work a reconnect storm piles up: at most CHAT_CONNECT_CONCURRENCY
socket connects and joins run at once in a process; the others wait in line, before they take
anything.

A restarted web process, or one whose clients all come back after a network blip, gets every
socket's connect and join in the same second. Each waits on Redis several times. Started all
together, a handler whose reply has arrived waits behind every other runnable one before the
loop resumes it, holding its pooled Redis connection meanwhile: the pool runs dry, the others
give up after its timeout and fall back on SQL, which costs more still. In turns, each handler
holds its connection for a round trip and the line moves at the speed of the work itself.

Nothing else waits here: messages, reads and the heartbeats of sockets already connected go on
while a line forms.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from simplechat.infra.ratelimit import Rate, parse_rate
from simplechat.infra.services import built_once

BUDGETS = {
    "events": "CHAT_SOCKET_EVENT_RATE",
    "join": "CHAT_SOCKET_JOIN_RATE",
    "typing": "CHAT_SOCKET_TYPING_RATE",
}
SWEEP_AT = 10_000  # schedules kept before those in the past are dropped


class EventBudgets:
    """The schedules of every user's budgets on this process."""

    def __init__(self, rates: dict[str, Rate | None]):
        self.rates = rates
        self._tat: dict[tuple[int, str], int] = {}
        self._lock = threading.Lock()

    def spend(self, user_id: int, budget: str) -> float:
        """Take one event from the user's ``budget``: 0.0 when allowed, else the whole seconds
        (at least 1) to wait before the next one is."""
        wait_ms = self.spend_ms(user_id, budget)
        return float(max(math.ceil(wait_ms / 1000), 1)) if wait_ms else 0.0

    def spend_ms(self, user_id: int, budget: str) -> int:
        """``spend``, its wait in exact milliseconds (0 when allowed)."""
        rate = self.rates[budget]
        if rate is None:
            return 0
        now = time.monotonic_ns() // 1_000_000
        key = (user_id, budget)
        with self._lock:
            tat = max(self._tat.get(key, now), now)
            allow_at = tat - rate.tolerance_ms
            if now < allow_at:
                return allow_at - now
            self._tat[key] = tat + rate.interval_ms
            if len(self._tat) > SWEEP_AT:
                self._tat = {k: t for k, t in self._tat.items() if t > now}
        return 0


def event_budgets() -> EventBudgets:
    """This app's budgets, their rates read from the settings once."""
    return built_once("simplechat.event_budgets", lambda app: EventBudgets(
        {name: parse_rate(app.config[setting]) for name, setting in BUDGETS.items()}))


def spend(user_id: int, budget: str) -> float:
    return event_budgets().spend(user_id, budget)


def spend_ms(user_id: int, budget: str) -> int:
    return event_budgets().spend_ms(user_id, budget)


class Refusals:
    """Refusals that hold for a while, answered again without running the event.

    A user past a limit keeps sending: each event would cost a request context, a session
    check and, for a send, a Redis round trip, only to be refused again (a flood of refused
    sends was a third of the event loop's time under benchmarks/hostile_all.py). Once an event
    of a user has been refused ``rate_limited`` until a known time (its budget here, or the
    per-user send limit in Redis, which refuses every send until then), or a send to a
    conversation ``forbidden``, the same event from any of the user's sockets on this process
    is answered from here until that time, as the packet arrives (realtime/packet_guard.py):
    no green thread, no request context, no Redis.

    What it answers is what the event would have answered, with two simplifications, both
    bounded in time: a retry of a message already acknowledged, sent while its user is rate
    limited, is told ``rate_limited`` instead of getting its original (the client retries
    after ``retry_after`` and gets it then: nothing is lost or sent twice); and a user added to
    a conversation within FORBIDDEN_MEMO seconds of a send refused there is refused once more
    until that second is over (on the process that made the change, at once).
    """

    FORBIDDEN_MEMO = 1.0  # seconds a conversation's ``forbidden`` is repeated without a look
    SWEEP_AT = 10_000  # refusals kept before those past their time are dropped

    def __init__(self) -> None:
        self._users: dict[str, int] = {}  # Socket.IO sid -> user id
        self._until: dict[tuple[int, str, int | None], tuple[float, str, bool]] = {}

    def remember(self, sid: str, user_id: int, event: str, answer: dict, seconds: float,
                 conversation_id: int | None = None, whole_seconds: bool = False) -> None:
        """``answer`` (refused) holds for ``seconds``: for every ``event`` of the user, or with
        ``conversation_id`` only for those naming it. ``whole_seconds``: its retry_after is
        given in whole seconds (at least 1), as the budgets give it."""
        if seconds <= 0 or answer.get("ok") is not False:
            return
        now = time.monotonic()
        if len(self._until) > self.SWEEP_AT:
            self._until = {k: v for k, v in self._until.items() if v[0] > now}
        self._users[sid] = user_id
        self._until[(user_id, event, conversation_id)] = (
            now + seconds, answer["error"], whole_seconds)

    def members_changed(self, conversation_ids: list[int], user_ids: list[int]) -> None:
        """Who takes part in these conversations changed on this process: their held
        ``forbidden`` answers end now (another process's end within FORBIDDEN_MEMO)."""
        conversations, users = set(conversation_ids), set(user_ids)
        for key in [k for k in list(self._until) if k[2] in conversations and k[0] in users]:
            self._until.pop(key, None)

    def attach(self, sid: str, user_id: int) -> None:
        """A socket of the user connected."""
        self._users[sid] = user_id

    def forget(self, sid: str) -> None:
        """The socket closed."""
        self._users.pop(sid, None)

    def answer(self, sid: str, event: str, payload: object) -> dict | None:
        """The refusal still holding for this event of this socket's user, else None."""
        user_id = self._users.get(sid)
        if user_id is None:
            return None
        now = time.monotonic()
        held = self._until.get((user_id, event, None))
        if held is None or held[0] <= now:
            conversation_id = payload.get("conversation_id") if isinstance(payload, dict) else None
            if type(conversation_id) is not int:
                return None
            held = self._until.get((user_id, event, conversation_id))
            if held is None or held[0] <= now:
                return None
        until, code, whole = held
        if code != "rate_limited":
            return {"ok": False, "error": code}
        left = until - now
        wait = float(max(math.ceil(left), 1)) if whole else max(round(left, 3), 0.001)
        return {"ok": False, "error": code, "retry_after": wait}


def held_refusals() -> Refusals:
    """This app's refusals that hold (realtime/server.py hands them to the packet guard)."""
    return built_once("simplechat.refusals", lambda app: Refusals())


# --------------------------------------------------------------------------- turns

TURNS = "simplechat.connect_turns"  # the app's Turns, in app.extensions


class Turns:
    """At most ``limit`` holders at once (0: no bound); the others wait.

    The semaphore is made at the first turn, in the process that serves: the eventlet and
    gevent workers patch ``threading`` after the app may have been imported, and a lock made
    before that would block the whole loop instead of one green thread."""

    def __init__(self, limit: int):
        self.limit = limit
        self._slots: threading.Semaphore | None = None
        self._made = threading.Lock() if limit > 0 else None
        self.waiting = 0  # asked and not yet let in

    @contextmanager
    def turn(self) -> Iterator[None]:
        if self.limit <= 0:
            yield
            return
        slots = self._slots
        if slots is None:
            slots = self._make()
        self.waiting += 1
        try:
            slots.acquire()
        finally:
            self.waiting -= 1
        try:
            yield
        finally:
            slots.release()

    def _make(self) -> threading.Semaphore:
        with self._made:
            if self._slots is None:
                self._slots = threading.BoundedSemaphore(self.limit)
            return self._slots
