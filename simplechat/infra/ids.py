"""Message ids: UUIDv7, time-ordered and unique across processes without a central counter."""

from __future__ import annotations

import os
import threading
import time
import uuid
from datetime import UTC, datetime

_lock = threading.Lock()
_last_ms = 0
_counter = 0


def new_message_id() -> str:
    """A UUIDv7 string. Within one process ids are strictly increasing, even in one millisecond."""
    global _last_ms, _counter
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms <= _last_ms:
            # Same (or an earlier, after a clock step) millisecond: keep order with the counter.
            ms = _last_ms
            _counter += 1
            if _counter > 0xFFF:
                ms += 1
                _counter = int.from_bytes(os.urandom(2), "big") & 0x3FF
        else:
            _counter = int.from_bytes(os.urandom(2), "big") & 0x3FF
        _last_ms = ms
        counter = _counter
    rand_b = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
    value = (ms << 80) | (0x7 << 76) | (counter << 64) | (0b10 << 62) | rand_b
    return str(uuid.UUID(int=value))


def parse_message_id(value: object) -> str | None:
    """The canonical form of a message id given by a client, or None if it is not a UUIDv7."""
    if not isinstance(value, str) or len(value) != 36:
        return None
    try:
        parsed = uuid.UUID(value)
    except ValueError:
        return None
    if parsed.version != 7:
        return None
    return str(parsed)


def message_id_time(message_id: str) -> datetime:
    """The UTC instant (naive, millisecond precision) encoded in a UUIDv7 message id."""
    ms = uuid.UUID(message_id).int >> 80
    return datetime.fromtimestamp(ms / 1000, tz=UTC).replace(tzinfo=None)
