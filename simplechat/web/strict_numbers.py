"""Numbers from URLs, parsed strictly: ASCII digits only, within bounds."""

from __future__ import annotations

import re

from werkzeug.exceptions import BadRequest
from werkzeug.routing import BaseConverter

MAX_ID = 2**63 - 1  # ids are positive 64-bit integers (BIGINT)

# "[0-9]", not str.isdigit or "\d": those also take "²", "٣" and other Unicode digits, which
# int() then refuses or reads as another number. 20 digits hold any bound used here.
_DIGITS = re.compile(r"[0-9]{1,20}")


def parse_int(raw: str | None, low: int, high: int) -> int | None:
    """The integer ``raw`` spells in ASCII digits (no sign, space or ``_``) if it lies in
    ``[low, high]``; None for anything else, absent included."""
    if raw is None or not _DIGITS.fullmatch(raw):
        return None
    value = int(raw)
    return value if low <= value <= high else None


class IdConverter(BaseConverter):
    """``<id:name>``: a positive 64-bit id in ASCII digits.

    Any other path segment in its place is a 400, not a silent "no such route": Werkzeug's
    ``int`` converter matches every Unicode digit, so ``/api/conversations/٣`` meant 3.
    """

    regex = r"[^/]+"

    def to_python(self, value: str) -> int:
        parsed = parse_int(value, 1, MAX_ID)
        if parsed is None:
            raise BadRequest("not a valid id")
        return parsed

    def to_url(self, value: object) -> str:
        return str(int(value))  # type: ignore[call-overload]
