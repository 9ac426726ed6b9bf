"""Budgets of socket events, so that one user cannot keep a worker busy with cheap events:
``join`` (CHAT_SOCKET_JOIN_RATE), ``typing`` (CHAT_SOCKET_TYPING_RATE), and every other event
but sends, changes and reactions, which have per-user limits of their own in Redis
(CHAT_SOCKET_EVENT_RATE: ``heartbeat``, ``presence``, ``read``, ``leave``, group management,
unknown names).

Each budget is a GCRA schedule, as in infra/ratelimit.py, kept in this process's memory and
shared by the user's sockets on this process: a socket that reconnects, or a user's next
socket, does not start with a fresh burst. Nothing is sent to Redis for it; with several web
processes a user has a budget on each.
"""

from __future__ import annotations

import math
import threading
import time

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
        rate = self.rates[budget]
        if rate is None:
            return 0.0
        now = time.monotonic_ns() // 1_000_000
        key = (user_id, budget)
        with self._lock:
            tat = max(self._tat.get(key, now), now)
            allow_at = tat - rate.tolerance_ms
            if now < allow_at:
                return float(max(math.ceil((allow_at - now) / 1000), 1))
            self._tat[key] = tat + rate.interval_ms
            if len(self._tat) > SWEEP_AT:
                self._tat = {k: t for k, t in self._tat.items() if t > now}
        return 0.0


def event_budgets() -> EventBudgets:
    """This app's budgets, their rates read from the settings once."""
    return built_once("simplechat.event_budgets", lambda app: EventBudgets(
        {name: parse_rate(app.config[setting]) for name, setting in BUDGETS.items()}))


def spend(user_id: int, budget: str) -> float:
    return event_budgets().spend(user_id, budget)
