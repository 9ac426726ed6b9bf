"""The websocket unmasking that replaces eventlet's gives its result byte for byte."""

from __future__ import annotations

import os
import warnings

import pytest

with warnings.catch_warnings():  # eventlet says it is in bug-fix mode on import; we know
    warnings.simplefilter("ignore")
    from eventlet.websocket import RFC6455WebSocket

from simplechat.realtime.ws_mask import apply_mask

# eventlet's own function, read before anything replaces it
EVENTLET_APPLY_MASK = RFC6455WebSocket.__dict__["_apply_mask"].__func__


@pytest.mark.parametrize("size", [0, 1, 3, 4, 5, 125, 126, 4000, 65_536 + 7])
@pytest.mark.parametrize("offset", [0, 1, 2, 3, 6])
def test_unmasking_matches_eventlets_for_every_length_and_offset(size, offset):
    assert EVENTLET_APPLY_MASK.__module__ == "eventlet.websocket"  # not ours, installed already
    data, mask = os.urandom(size), os.urandom(4)
    assert apply_mask(data, mask, offset=offset) == EVENTLET_APPLY_MASK(data, mask, offset=offset)
    cut = size // 2
    assert (apply_mask(data, mask, cut, offset)
            == EVENTLET_APPLY_MASK(data, mask, cut, offset))
