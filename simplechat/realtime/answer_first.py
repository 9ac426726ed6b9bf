"""A socket event's answer before its own process's copies of a wide emit.

python-socketio delivers an emit to the sockets of the emitting process inside ``emit``, and
answers the event (its ACK) only when the handler returns: the sender of a message to a channel
of 5,000 members held by one process had its answer queued behind 5,000 copies and written after
them. Here the handler runs with its local deliveries of wide emits (more than WIDE_EMIT_ROOMS
rooms named: a message to a big channel names its room and each member's own) held back until
the answer is queued, then delivered in the order they were made. Other processes get the
publish at once, as before; emits to fewer rooms (a direct conversation, a group) are delivered
at once, unless one of the same handler's emits is held already: what one handler sends keeps
its order. A socket's answer and the copy it is sent of its own message go through that socket's
one queue, so the sender of a wide send gets its answer first (and, the handler yielding once
before it queues the copies, written before they are queued); clients already take both in
either order (the copy can come from another process first).
"""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Callable
from functools import partial
from typing import Any

from socketio import Manager

log = logging.getLogger(__name__)

WIDE_EMIT_ROOMS = 64  # an emit naming more rooms is wide (and fanout.py publishes it once)


def is_wide(rooms: object) -> bool:
    return isinstance(rooms, (list, tuple)) and len(rooms) > WIDE_EMIT_ROOMS


class AnswerFirst:
    """For a client manager: ``answer_first`` runs a socket event's handler holding the local
    delivery of its wide emits (and of what it emits after them) until it returns."""

    def answer_first(self, run: Callable[..., Any], *args: Any) -> Any:
        """``run(*args)`` (which queues the event's answer before it returns), then the local
        deliveries it held, in order."""
        local = self._answering_local()
        outer = getattr(local, "held", None)
        held = local.held = []
        try:
            return run(*args)
        finally:
            local.held = outer
            if held:
                # Let the socket's writer send the answer first: queueing 5,000 copies takes
                # this green thread tens of milliseconds, and the writer runs only when it yields.
                self.server.sleep(0)
            for deliver in held:
                try:
                    deliver()
                except Exception:
                    log.exception("a held local emit failed")

    def _answering_local(self) -> threading.local:
        local = self.__dict__.get("_answering")
        if local is None:
            local = self.__dict__.setdefault("_answering", threading.local())
        return local

    def holding(self, wide: bool) -> list | None:
        """The list to hold a local delivery in (None: deliver it now): inside a handler, a
        wide one, and any one behind something held."""
        held = getattr(self._answering_local(), "held", None)
        return held if held is not None and (wide or held) else None

    @staticmethod
    def kept(data: object) -> object:
        """``data`` as it is now: a held emit's packet is made when it is delivered."""
        return copy.deepcopy(data)


class LocalManager(AnswerFirst, Manager):
    """The in-process manager (no message queue), answering first."""

    def emit(self, event, data, namespace, room=None, skip_sid=None, callback=None, to=None,
             **kwargs):
        if callback is None:
            held = self.holding(is_wide(to or room))
            if held is not None:
                held.append(partial(super().emit, event, self.kept(data), namespace, room=room,
                                    skip_sid=skip_sid, to=to, **kwargs))
                return None
        return super().emit(event, data, namespace, room=room, skip_sid=skip_sid,
                            callback=callback, to=to, **kwargs)


def install_answer_first(server) -> None:
    """Socket events of ``server`` answered before their wide emits' local copies (a manager
    without ``answer_first``: nothing changes)."""
    manager = server.manager
    if not isinstance(manager, AnswerFirst) or getattr(
            server._handle_event_internal, "answers_first", False):
        return
    run = server._handle_event_internal

    def answered_first(*args):
        return manager.answer_first(run, *args)

    answered_first.answers_first = True
    server._handle_event_internal = answered_first
