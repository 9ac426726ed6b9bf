"""The pool that keeps CPU-heavy work off the event loop: results and errors come back, at most
CHAT_CPU_WORKERS run at once, and a job past the queue is refused at once."""

from __future__ import annotations

import threading
import time

import pytest

from simplechat.infra.offload import Busy, OffloadPool, offload


def test_a_job_returns_its_result_and_raises_its_error(app):
    with app.app_context():
        assert offload(pow, 2, 10) == 1024
        with pytest.raises(ZeroDivisionError):
            offload(lambda: 1 / 0)


def test_no_more_than_the_workers_run_at_once_and_a_job_past_the_queue_is_refused():
    pool = OffloadPool(workers=2, queue=1, async_mode="threading")
    running, most, gate = [0], [0], threading.Event()
    lock = threading.Lock()

    def job() -> str:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        gate.wait(10)
        with lock:
            running[0] -= 1
        return "done"

    results: list[str] = []
    callers = [threading.Thread(target=lambda: results.append(pool.run(job))) for _ in range(3)]
    for caller in callers:
        caller.start()
    deadline = time.monotonic() + 10
    while (pool.admitted < 3 or running[0] < 2) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert pool.admitted == 3 and running[0] == 2  # two running, one waiting for a slot
    with pytest.raises(Busy):
        pool.run(job)
    gate.set()
    for caller in callers:
        caller.join(10)
    assert results == ["done"] * 3 and most[0] == 2 and pool.admitted == 0
