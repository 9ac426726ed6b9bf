"""Per-socket budgets of events, so that one socket cannot keep its worker busy with cheap
events: ``join`` (CHAT_SOCKET_JOIN_RATE), ``typing`` (CHAT_SOCKET_TYPING_RATE), and every other
event but sends, changes and reactions, which have per-user limits of their own
(CHAT_SOCKET_EVENT_RATE: ``heartbeat``, ``presence``, ``read``, ``leave``, group management,
unknown names).

The schedule is GCRA, as in infra/ratelimit.py, kept in the socket's registry entry: a socket
lives on one process, so nothing is shared and nothing is sent to Redis.
"""

from __future__ import annotations

import math
import time

from simplechat.infra.ratelimit import Rate, parse_rate
from simplechat.infra.services import built_once
from simplechat.realtime.sockets import SocketUser

BUDGETS = {
    "events": "CHAT_SOCKET_EVENT_RATE",
    "join": "CHAT_SOCKET_JOIN_RATE",
    "typing": "CHAT_SOCKET_TYPING_RATE",
}


def budget_rates() -> dict[str, Rate | None]:
    """Each budget's rate (None: no limit), read from the settings once per app."""
    return built_once("simplechat.socket_event_rates",
                      lambda app: {name: parse_rate(app.config[setting])
                                   for name, setting in BUDGETS.items()})


def spend(user: SocketUser, budget: str) -> float:
    """Take one event from this socket's ``budget``: 0.0 when allowed, else the whole seconds
    (at least 1) to wait before the next one is."""
    rate = budget_rates()[budget]
    if rate is None:
        return 0.0
    now = time.monotonic_ns() // 1_000_000
    tat = max(user.spent.get(budget, now), now)
    allow_at = tat - rate.tolerance_ms
    if now < allow_at:
        return float(max(math.ceil((allow_at - now) / 1000), 1))
    user.spent[budget] = tat + rate.interval_ms
    return 0.0
