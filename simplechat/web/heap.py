"""The web process's garbage collector, set for a process that holds thousands of sockets.

CPython collects its oldest generation, every tracked object of the process, once ten middle
collections have run and the objects that survived into it have grown by a quarter. A web
process tracks about 250 objects per open socket (engine.io's socket, its queues, greenlets and
websocket; the Socket.IO session; the rooms): 1.3 million with 5,000 sockets. While a reconnect
storm brings them back, the heap grows by a quarter again and again, and each time the
collector scans all of it with the event loop stopped, 0.5-1 s at that size: 13 full
collections and a quarter of the worker's CPU in the storm (benchmarks/big_room.py,
docs/PERFORMANCE.md).

``settle`` runs once, when the process has built its app:

- the objects made so far (modules, routes, the ORM's mappers, the config: about 100,000)
  live as long as the process; ``gc.freeze`` moves them out of every later collection's scan;
- ``gc.set_threshold`` with ``WEB_GC_THRESHOLDS``, by default a full collection after 100
  middle collections instead of 10 (the quarter's growth is still required too).

The youngest generations are collected as before, so cycles that die young (most of a request's
or an event's) are freed as soon as ever; a socket's objects that end in a cycle after a long
life wait for the next full collection, at most about 700,000 allocations later. An empty
setting leaves Python's own thresholds.
"""

from __future__ import annotations

import gc
import logging

log = logging.getLogger(__name__)


def thresholds(setting: str | None) -> tuple[int, int, int] | None:
    """``WEB_GC_THRESHOLDS``: three positive whole numbers ("700,10,100"), or empty for
    Python's own. Anything else raises ValueError naming the setting."""
    if setting is None or not setting.strip():
        return None
    parts = [part.strip() for part in setting.split(",")]
    if len(parts) != 3 or not all(part.isdigit() and int(part) > 0 for part in parts):
        raise ValueError(f"WEB_GC_THRESHOLDS must be three positive whole numbers such as "
                         f"700,10,100 (young, middle, old), or empty; got {setting!r}")
    young, middle, old = (int(part) for part in parts)
    return young, middle, old


def settle(setting: str | None) -> None:
    """Freeze what the process has made so far and set the collector's thresholds (see the
    module's docstring). Called once per process, after its app is built."""
    chosen = thresholds(setting)
    if chosen is None:
        return
    gc.collect()  # what startup left as garbage is freed, not frozen
    gc.freeze()
    gc.set_threshold(*chosen)
    log.debug("garbage collector: %d objects frozen, thresholds %s", gc.get_freeze_count(),
              chosen)
