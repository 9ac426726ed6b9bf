"""Batches of concurrent callers sharing round trips to Redis (infra/redis_client.py:
SharedTrips), on a real Redis with real threads. A lane is held busy by a batch whose first
step blocks in Redis (BLPOP with a timeout on a key nobody fills), so the batches run meanwhile
must wait and go together in the next pipeline."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
import redis as redis_lib

from simplechat.infra import redis_client
from simplechat.infra.redis_client import SHARED, Batch, SharedTrips, share_round_trips


@pytest.fixture
def client(redis_url):
    if not redis_url:
        pytest.skip("TEST_REDIS_URL not set")
    client = share_round_trips(redis_client.redis_from_url(redis_url, 20), 1)
    prefix = f"simplechat-test:trips:{uuid.uuid4().hex[:8]}:"
    client.test_prefix = prefix
    yield client
    keys = list(client.scan_iter(match=prefix + "*"))
    if keys:
        client.delete(*keys)
    client.close()


def _shared(client) -> SharedTrips:
    return getattr(client, SHARED)


def _blocking_batch(client, seconds: float) -> list:
    """A batch that holds its lane for about ``seconds`` (BLPOP on an empty list)."""
    batch = Batch(client)
    batch.command("BLPOP", client.test_prefix + "nothing", seconds)
    return batch.run()


def _hold_lane(client, seconds: float) -> threading.Thread:
    holder = threading.Thread(target=_blocking_batch, args=(client, seconds))
    holder.start()
    deadline = time.monotonic() + 5
    while _shared(client)._busy < 1 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert _shared(client)._busy == 1
    return holder


def _wait_for_waiting(client, count: int) -> None:
    deadline = time.monotonic() + 5
    while len(_shared(client)._waiting) < count and time.monotonic() < deadline:
        time.sleep(0.005)
    assert len(_shared(client)._waiting) == count


def _run_in_threads(functions) -> list:
    results: list = [None] * len(functions)

    def call(i, function):
        try:
            results[i] = function()
        except BaseException as exc:  # the test reads it
            results[i] = exc

    threads = [threading.Thread(target=call, args=(i, f)) for i, f in enumerate(functions)]
    for thread in threads:
        thread.start()
    return threads, results


def test_a_lone_batch_goes_at_once_with_its_own_replies(client):
    key = client.test_prefix + "alone"
    batch = Batch(client)
    batch.command("INCRBY", key, 5)
    batch.command("GET", key)
    assert batch.run() == [5, b"5"]
    shared = _shared(client)
    assert (shared.trips, shared.batches, shared._busy) == (1, 1, 0)


def test_batches_run_while_the_lane_is_busy_share_the_next_round_trip(client):
    shared = _shared(client)
    holder = _hold_lane(client, 0.5)

    def counting(n):
        def run():
            key = f"{client.test_prefix}count:{n}"
            batch = Batch(client)
            batch.command("INCRBY", key, n)
            batch.command("INCRBY", key, n)
            batch.command("GET", key)
            return batch.run()
        return run

    threads, results = _run_in_threads([counting(n) for n in range(1, 11)])
    _wait_for_waiting(client, 10)
    holder.join(5)
    for thread in threads:
        thread.join(5)
    # Each caller has its own three replies, whatever its place in the shared pipeline.
    assert results == [[n, 2 * n, str(2 * n).encode()] for n in range(1, 11)]
    assert shared.trips == 2  # the holder's, then one for the ten
    assert shared.batches == 11
    assert (shared._busy, len(shared._waiting)) == (0, 0)


def test_a_refused_step_is_its_own_callers_reply_only(client):
    holder = _hold_lane(client, 0.3)
    wrong = client.test_prefix + "a-string"
    client.set(wrong, "x")

    def refused():
        batch = Batch(client)
        batch.command("LPUSH", wrong, "y")  # WRONGTYPE
        batch.command("GET", wrong)
        return batch.run()

    def fine():
        batch = Batch(client)
        batch.command("SET", client.test_prefix + "fine", "1")
        return batch.run()

    threads, results = _run_in_threads([refused, fine])
    _wait_for_waiting(client, 2)
    holder.join(5)
    for thread in threads:
        thread.join(5)
    assert isinstance(results[0][0], redis_lib.ResponseError)
    assert results[0][1] == b"x"
    assert results[1] == [True]
    assert _shared(client).trips == 2


def test_scripts_redis_forgot_are_loaded_again_for_every_caller(client):
    script = client.register_script("return tonumber(ARGV[1]) * 2")
    client.script_flush()
    holder = _hold_lane(client, 0.3)

    def doubled(n):
        def run():
            batch = Batch(client)
            batch.script(script, [], [n])
            return batch.run()
        return run

    threads, results = _run_in_threads([doubled(n) for n in (3, 4, 5)])
    _wait_for_waiting(client, 3)
    holder.join(5)
    for thread in threads:
        thread.join(5)
    assert results == [[6], [8], [10]]


def test_a_group_holds_at_most_group_steps_steps(client, monkeypatch):
    monkeypatch.setattr(redis_client, "GROUP_STEPS", 4)
    shared = _shared(client)
    holder = _hold_lane(client, 0.3)

    def two_steps():
        batch = Batch(client)
        batch.command("PING")
        batch.command("PING")
        return batch.run()

    threads, results = _run_in_threads([two_steps] * 5)
    _wait_for_waiting(client, 5)
    holder.join(5)
    for thread in threads:
        thread.join(5)
    assert results == [[True, True]] * 5
    assert shared.trips == 1 + 3  # the holder's, then groups of two, two and one callers
    assert (shared._busy, len(shared._waiting)) == (0, 0)


def test_a_connection_that_fails_fails_every_caller_of_its_group_and_frees_the_lane(redis_url):
    if not redis_url:
        pytest.skip("TEST_REDIS_URL not set")
    # Nothing listens on port 1: every pipeline fails to connect, as to a Redis that is gone.
    client = share_round_trips(redis_client.redis_from_url("redis://127.0.0.1:1/0", 5), 1)
    shared = _shared(client)
    def ping():
        batch = Batch(client)
        batch.command("PING")
        return batch.run()

    threads, results = _run_in_threads([ping] * 6)
    for thread in threads:
        thread.join(15)
    assert all(isinstance(r, redis_lib.ConnectionError) for r in results), results
    assert (shared._busy, len(shared._waiting)) == (0, 0)


def test_a_caller_that_gives_up_waiting_leaves_the_queue(client):
    shared = _shared(client)
    shared._wait = 0.1
    holder = _hold_lane(client, 0.6)
    with pytest.raises(redis_lib.TimeoutError):
        batch = Batch(client)
        batch.command("PING")
        batch.run()
    assert len(shared._waiting) == 0
    holder.join(5)
    assert shared._busy == 0
    batch = Batch(client)
    batch.command("PING")
    assert batch.run() == [True]  # the lane is free again


def test_a_caller_told_to_lead_as_it_gives_up_hands_the_lead_on(client):
    """The lane came back and named a waiting caller to send the next group just as that
    caller was stopped: the next caller in line leads instead, nobody is left waiting."""
    shared = _shared(client)
    shared._busy = 1  # a lane on its way
    first, second = (redis_client._Caller([(None, ("PING",))], threading.Event())
                     for _ in range(2))
    shared._make()
    shared._waiting.extend([first, second])

    class Stopped(BaseException):
        pass

    def stop_first():
        first.done.wait = _raise_after_lead(first, shared)
        with pytest.raises(Stopped):
            shared._await(first)

    def _raise_after_lead(caller, trips):
        def wait(_timeout=None):
            trips._next()  # the lane comes back: the first in line is told to lead...
            assert caller.leads
            raise Stopped  # ...and is stopped before it sends anything
        return wait

    stop_first()
    assert second.leads and second.done.is_set()  # handed on
    assert list(shared._waiting) == []
    assert shared._busy == 1  # the lane now belongs to the second caller
    shared._lead(client, second)
    assert second.answer() == [True]
    assert shared._busy == 0


def test_no_lanes_means_every_batch_its_own_round_trip(redis_url):
    if not redis_url:
        pytest.skip("TEST_REDIS_URL not set")
    client = share_round_trips(redis_client.redis_from_url(redis_url, 5), 0)
    assert getattr(client, SHARED, None) is None
    batch = Batch(client)
    batch.command("PING")
    assert batch.run() == [True]
