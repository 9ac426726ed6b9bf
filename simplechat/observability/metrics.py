"""Prometheus metrics: the exporter bound in ``create_app`` (``/metrics``, default HTTP metrics)
and the ``simplechat_*`` chat metrics, with the small hooks the chat code calls.

With ``PROMETHEUS_MULTIPROC_DIR`` set (several gunicorn workers), every process writes its
figures to files there and ``/metrics`` adds them up; see docs/METRICS.md.

``/metrics`` asks for ``Authorization: Bearer <METRICS_TOKEN>``; with no token set it is open in
development and testing and answers 404 in production (``METRICS_OPEN_WITHOUT_TOKEN``),
whatever the address asking: a proxy in front would make every request look local.
"""

from __future__ import annotations

import functools
import hmac
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime

from flask import Flask, Response, abort, current_app, request
from prometheus_client import Counter, Gauge, Histogram
from prometheus_flask_exporter import PrometheusMetrics

SEND_OUTCOMES = ("ok", "rate_limited", "forbidden", "invalid", "error")
# Error codes of the send path, folded into the few outcomes a dashboard needs.
_SEND_OUTCOME = {
    "rate_limited": "rate_limited",
    "forbidden": "forbidden",
    "unauthorized": "forbidden",
    "not_found": "forbidden",
    "invalid": "invalid",
    "too_long": "invalid",
    "empty": "invalid",
}

SOCKETS_CONNECTED = Gauge(
    "simplechat_sockets_connected", "Socket.IO connections open on the /chat namespace",
    multiprocess_mode="livesum",
)
MESSAGES_SENT = Counter(
    "simplechat_messages_sent", "send_message calls, by outcome", ["outcome"],
)
SEND_SECONDS = Histogram(
    "simplechat_send_duration_seconds", "Time spent in the send path (validate to ack)",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
LIMIT_REFUSALS = Counter(
    "simplechat_limit_refusals",
    "Requests, events and connections refused by a limit, by limit (docs/SECURITY.md)",
    ["limit"],
)
JOINS = Counter("simplechat_joins", "join events, by outcome", ["outcome"])
HISTORY_READS = Counter(
    "simplechat_history_reads", "History reads, by where they were served from", ["source"],
)
WRITE_LAG = Histogram(
    "simplechat_message_write_lag_seconds",
    "Time from a message's id timestamp to its row being written by Celery",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0),
)
WRITE_FAILURES = Counter(
    "simplechat_message_write_failures",
    "Failed message writes: refused (dropped for good) or database (retried)", ["reason"],
)

# Children bound once: the hot path does a dict lookup, not a label resolution, and every
# series exists at 0 from the start, so rate() works before the first event.
_sent = {outcome: MESSAGES_SENT.labels(outcome) for outcome in SEND_OUTCOMES}
_joins = {outcome: JOINS.labels(outcome) for outcome in ("ok", "forbidden", "invalid")}
_history = {source: HISTORY_READS.labels(source) for source in ("cache", "sql")}
# The limits of docs/SECURITY.md that count their refusals (docs/METRICS.md lists them).
LIMITS = ("held_rate_limited", "held_forbidden", "socket_events_rate", "socket_join_rate",
          "socket_typing_rate", "socket_events_in_flight", "max_sockets_per_user",
          "namespace_connect_timeout", "socket_queue_max", "upload_rate_limited",
          "upload_too_many", "upload_unavailable", "login_failures", "login_successes",
          "cpu_pool_full")
for _limit in LIMITS:
    LIMIT_REFUSALS.labels(_limit)
for _reason in ("refused", "database"):
    WRITE_FAILURES.labels(_reason)


class ChatMetrics(PrometheusMetrics):
    """The exporter, bound per app.

    The default HTTP metrics are process-wide collectors; an app built after another in the
    same process (tests build one per test) takes them over instead of running without them.
    """

    def __init__(self, **kwargs):
        super().__init__(app=None, **kwargs)
        self._default_collectors: list = []

    def init_app(self, app: Flask) -> None:
        directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if directory and not os.path.isdir(directory):
            raise RuntimeError(f"PROMETHEUS_MULTIPROC_DIR={directory} is not a directory")
        super().init_app(app)

    def export_defaults(self, *args, **kwargs):
        for collector in self._default_collectors:
            self.registry.unregister(collector)
        recorder = _RecordingRegistry(self.registry)
        self.registry = recorder
        try:
            super().export_defaults(*args, **kwargs)
        finally:
            self.registry = recorder.registry
        self._default_collectors = recorder.collectors


class _RecordingRegistry:
    """Registers into a registry and remembers what was registered."""

    def __init__(self, registry):
        self.registry = registry
        self.collectors: list = []

    def register(self, collector) -> None:
        self.registry.register(collector)
        self.collectors.append(collector)

    def __getattr__(self, name):
        return getattr(self.registry, name)


def guarded(view: Callable) -> Callable:
    """The ``/metrics`` view behind METRICS_TOKEN (see the module's docstring)."""

    @functools.wraps(view)
    def metrics_view(*args, **kwargs):
        token = current_app.config.get("METRICS_TOKEN")
        if token:
            scheme, _, given = request.headers.get("Authorization", "").strip().partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                    given.strip().encode(), token.encode()):
                return Response("unauthorized\n", 401, mimetype="text/plain",
                                headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
        elif not current_app.config.get("METRICS_OPEN_WITHOUT_TOKEN", True):
            abort(404)
        return view(*args, **kwargs)

    return metrics_view


metrics = ChatMetrics(group_by="url_rule", excluded_paths=["^/static/"],
                      metrics_decorator=guarded)


def init_metrics(app: Flask) -> None:
    metrics.init_app(app)


# --------------------------------------------------------------------------- hooks


def send_outcome(ack: dict) -> str:
    if ack.get("ok"):
        return "ok"
    return _SEND_OUTCOME.get(ack.get("error"), "error")


def observe_send(send: Callable[..., dict]) -> Callable[..., dict]:
    """Decorate the send path: its latency and the outcome of every call."""

    @functools.wraps(send)
    def timed(*args, **kwargs) -> dict:
        start = time.perf_counter()
        try:
            ack = send(*args, **kwargs)
        except BaseException:
            _sent["error"].inc()
            raise
        SEND_SECONDS.observe(time.perf_counter() - start)
        _sent[send_outcome(ack)].inc()
        return ack

    return timed


def count_join(handler: Callable[..., dict]) -> Callable[..., dict]:
    """Decorate the join handler: count its answers by outcome."""

    @functools.wraps(handler)
    def counted(*args) -> dict:
        ack = handler(*args)
        outcome = "ok" if ack.get("ok") else ack.get("error")
        _joins.get(outcome, _joins["invalid"]).inc()
        return ack

    return counted


def count_history_source(read: Callable[..., tuple]) -> Callable[..., tuple]:
    """Decorate a history read returning ``(..., source)``: count where it was served from."""

    @functools.wraps(read)
    def counted(*args, **kwargs) -> tuple:
        result = read(*args, **kwargs)
        counter = _history.get(result[-1])
        if counter is not None:
            counter.inc()
        return result

    return counted


def count_refusal(limit: str) -> None:
    """One refusal by ``limit`` (a name of docs/SECURITY.md's list, in snake case)."""
    LIMIT_REFUSALS.labels(limit).inc()


def socket_connected() -> None:
    SOCKETS_CONNECTED.inc()


def socket_disconnected() -> None:
    SOCKETS_CONNECTED.dec()


def message_written(sent_at: datetime) -> None:
    """A message row was written: observe how long after its send (naive UTC) that was."""
    now = datetime.now(UTC).replace(tzinfo=None)
    WRITE_LAG.observe(max((now - sent_at).total_seconds(), 0.0))


def message_write_failed(reason: str) -> None:
    WRITE_FAILURES.labels(reason).inc()
