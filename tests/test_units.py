"""Unit tests of the small pieces: message ids, rate parsing and limiting, the memory cache."""

import time
import uuid
from datetime import UTC

import pytest

from simplechat.infra.cache import ALL, PARTIAL, MemoryRecentCache
from simplechat.infra.ids import message_id_time, new_message_id, parse_message_id
from simplechat.infra.ratelimit import MemoryRateLimiter, Rate, parse_rate
from simplechat.messaging.send import clean_text


def test_message_ids_are_uuid7_and_strictly_increasing():
    ids = [new_message_id() for _ in range(5000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert all(uuid.UUID(i).version == 7 for i in ids)


def test_message_id_time_is_close_to_now():
    from datetime import datetime

    now = datetime.now(UTC).replace(tzinfo=None)
    assert abs((message_id_time(new_message_id()) - now).total_seconds()) < 2


# A version-4 UUID, fixed: parameters are the same in every pytest-xdist worker.
@pytest.mark.parametrize("value", [None, 7, "", "x" * 36, "9be077f8-1836-445a-8e9b-885f18354e63",
                                   ["a"], {"a": 1}])
def test_parse_message_id_refuses_anything_but_uuid7(value):
    assert parse_message_id(value) is None


def test_parse_message_id_accepts_uuid7_in_any_case():
    mid = new_message_id()
    assert parse_message_id(mid.upper()) == mid


@pytest.mark.parametrize("text,expected", [
    ("1/2s", Rate(1, 2.0)), ("5/10s", Rate(5, 10.0)), ("30/minute", Rate(30, 60.0)),
    ("2/h", Rate(2, 3600.0)), ("1/0.5s", Rate(1, 0.5)),
])
def test_parse_rate(text, expected):
    assert parse_rate(text) == expected


@pytest.mark.parametrize("text", ["off", "0", ""])
def test_parse_rate_off(text):
    assert parse_rate(text) is None


@pytest.mark.parametrize("text", ["fast", "1/2parsecs", "0/2s", "-1/2s", "1/0s"])
def test_parse_rate_refuses_nonsense(text):
    with pytest.raises(ValueError):
        parse_rate(text)


def test_memory_limiter_allows_one_per_period_per_key():
    limiter = MemoryRateLimiter(Rate(1, 0.3))
    assert limiter.hit("a") == 0.0
    wait = limiter.hit("a")
    assert 0 < wait <= 0.3
    assert limiter.hit("b") == 0.0
    time.sleep(wait + 0.02)
    assert limiter.hit("a") == 0.0


def test_memory_limiter_allows_a_burst_of_count():
    limiter = MemoryRateLimiter(Rate(3, 10))
    assert [limiter.hit("a") == 0.0 for _ in range(4)] == [True, True, True, False]


def _payload(n):
    return {"id": new_message_id(), "message": f"m{n}", "conversation_id": 1}


def test_memory_cache_trims_and_marks_partial():
    cache = MemoryRecentCache(size=3, dedupe_ttl=60)
    sent = [_payload(i) for i in range(5)]
    for p in sent:
        cache.push(1, p, None)
    items, state = cache.recent(1)
    assert [m["id"] for m in items] == [p["id"] for p in sent[-3:]]
    assert state == PARTIAL


def test_memory_cache_state_is_unknown_until_warmed():
    cache = MemoryRecentCache(size=3, dedupe_ttl=60)
    cache.push(1, _payload(0), None)
    assert cache.recent(1)[1] is None
    merged = cache.rewarm(1, [], complete=True)
    assert len(merged) == 1 and cache.recent(1)[1] == ALL


def test_memory_cache_returns_original_for_a_known_client_id():
    cache = MemoryRecentCache(size=3, dedupe_ttl=60)
    first = _payload(0)
    assert cache.push(1, first, "7:abc") is None
    assert cache.push(1, _payload(1), "7:abc") == first
    assert len(cache.recent(1)[0]) == 1


@pytest.mark.parametrize("raw,clean", [
    ("  hi  ", "hi"), ("a\r\nb", "a\nb"), ("a\x00b\x07c", "abc"), ("tab\there", "tab\there"),
])
def test_clean_text(raw, clean):
    assert clean_text(raw) == clean
