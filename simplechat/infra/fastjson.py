"""JSON for Socket.IO packets and the Redis payloads: orjson, with the standard library's
behaviour kept for what orjson refuses.

python-socketio and python-engineio call ``dumps(data, separators=...)`` and ``loads(text)``;
orjson takes no ``separators`` (its output is compact already) and returns bytes.
"""

from __future__ import annotations

import json

import orjson

_OPTIONS = orjson.OPT_NON_STR_KEYS


def dumps(obj: object, **_ignored) -> str:
    try:
        return orjson.dumps(obj, option=_OPTIONS).decode()
    except TypeError:  # lone surrogates, integers beyond 64 bits: what the standard library does
        return json.dumps(obj, separators=(",", ":"))


def loads(text: str | bytes, **_ignored) -> object:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:  # NaN, lone surrogates: as the standard library reads them
        return json.loads(text)
