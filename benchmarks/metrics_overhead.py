"""What the send-path instrumentation costs per call, in the mode this process runs in.

    .venv/bin/python benchmarks/metrics_overhead.py
    PROMETHEUS_MULTIPROC_DIR=$(mktemp -d) .venv/bin/python benchmarks/metrics_overhead.py
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from simplechat.observability.metrics import count_history_source, observe_send  # noqa: E402

CALLS = 200_000


def per_call(function) -> float:
    start = time.perf_counter()
    for _ in range(CALLS):
        function()
    return (time.perf_counter() - start) / CALLS


def main() -> None:
    def send():
        return {"ok": True}

    def read():
        return [], False, "cache"

    mode = "multiprocess" if os.environ.get("PROMETHEUS_MULTIPROC_DIR") else "single process"
    for label, plain, wrapped in (("observe_send", send, observe_send(send)),
                                  ("count_history_source", read, count_history_source(read))):
        cost = per_call(wrapped) - per_call(plain)
        print(f"{label:<22} {cost * 1e6:6.2f} us per call ({mode})")


if __name__ == "__main__":
    main()
