"""The Redis-backed parts of the app (or their in-process stand-ins), built once per app."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import redis as redis_lib
from flask import Flask, current_app

from simplechat.infra.cache import MemoryRecentCache, RecentCache, RedisRecentCache
from simplechat.infra.liveness import LivenessStore, MemoryLiveness, RedisLiveness
from simplechat.infra.ratelimit import (
    LoginLimiter,
    MemoryRateLimiter,
    RedisRateLimiter,
    RegisterLimiter,
    ResetLimiter,
    parse_rate,
)
from simplechat.infra.redis_client import Sentinels, redis_from_url, share_round_trips

RateLimiter = RedisRateLimiter | MemoryRateLimiter
T = TypeVar("T")
CACHE_TTL = 7 * 24 * 3600  # an idle conversation's recent list is dropped after a week


@dataclass
class Services:
    redis: redis_lib.Redis | None
    cache: RecentCache
    limiter: RateLimiter  # sends (CHAT_RATE_LIMIT)
    change_limiter: RateLimiter  # edits and deletes (CHAT_CHANGE_RATE_LIMIT)
    login_limiter: LoginLimiter
    liveness: LivenessStore  # which sessions are live, and their sockets
    register_limiter: RegisterLimiter
    react_limiter: RateLimiter  # reactions (CHAT_REACT_RATE_LIMIT)
    upload_limiter: RateLimiter  # attachment uploads (CHAT_UPLOAD_RATE_LIMIT)
    conversation_limiter: RateLimiter  # conversations started (CHAT_CONVERSATION_RATE_LIMIT)
    reset_limiter: ResetLimiter  # password reset mails asked for (RESET_RATE_LIMIT_*)

    @property
    def embedded(self) -> bool:
        return self.redis is None


def init_services(app: Flask) -> Services:
    size = app.config["CHAT_RECENT_MESSAGES"]
    rate = parse_rate(app.config["CHAT_RATE_LIMIT"])
    change_rate = parse_rate(app.config["CHAT_CHANGE_RATE_LIMIT"])
    # Failures per typed name and per address, then successes per account and per address.
    login_rates = (parse_rate(app.config["LOGIN_RATE_LIMIT_ACCOUNT"]),
                   parse_rate(app.config["LOGIN_RATE_LIMIT_IP"]),
                   parse_rate(app.config["LOGIN_SUCCESS_RATE_LIMIT_ACCOUNT"]),
                   parse_rate(app.config["LOGIN_SUCCESS_RATE_LIMIT_IP"]))
    register_rate = parse_rate(app.config["REGISTER_RATE_LIMIT"])
    react_rate = parse_rate(app.config["CHAT_REACT_RATE_LIMIT"])
    upload_rate = parse_rate(app.config["CHAT_UPLOAD_RATE_LIMIT"])
    conversation_rate = parse_rate(app.config["CHAT_CONVERSATION_RATE_LIMIT"])
    reset_rates = (parse_rate(app.config["RESET_RATE_LIMIT_EMAIL"]),
                   parse_rate(app.config["RESET_RATE_LIMIT_IP"]))
    prefix = app.config["REDIS_KEY_PREFIX"]
    dedupe_ttl = app.config["CHAT_DEDUPE_WINDOW"]
    url = app.config.get("REDIS_URL")
    if url:
        # connects lazily, on first use (to the primary the sentinels name, if any)
        client = share_round_trips(
            redis_from_url(url, app.config["REDIS_MAX_CONNECTIONS"],
                           Sentinels.from_config(app.config)),
            app.config["REDIS_BATCH_LANES"])
        services = Services(
            redis=client,
            cache=RedisRecentCache(client, size, prefix, CACHE_TTL, dedupe_ttl),
            limiter=RedisRateLimiter(client, rate, prefix),
            change_limiter=RedisRateLimiter(client, change_rate, prefix),
            login_limiter=LoginLimiter(*(RedisRateLimiter(client, r, prefix)
                                         for r in login_rates)),
            liveness=RedisLiveness(client, prefix, app.config["SESSION_CACHE_SECONDS"]),
            register_limiter=RegisterLimiter(RedisRateLimiter(client, register_rate, prefix)),
            react_limiter=RedisRateLimiter(client, react_rate, prefix),
            upload_limiter=RedisRateLimiter(client, upload_rate, prefix),
            conversation_limiter=RedisRateLimiter(client, conversation_rate, prefix),
            reset_limiter=ResetLimiter(*(RedisRateLimiter(client, r, prefix)
                                         for r in reset_rates)),
        )
    else:
        services = Services(
            redis=None,
            cache=MemoryRecentCache(size, dedupe_ttl),
            limiter=MemoryRateLimiter(rate),
            change_limiter=MemoryRateLimiter(change_rate),
            login_limiter=LoginLimiter(*(MemoryRateLimiter(r) for r in login_rates)),
            liveness=MemoryLiveness(),
            register_limiter=RegisterLimiter(MemoryRateLimiter(register_rate)),
            react_limiter=MemoryRateLimiter(react_rate),
            upload_limiter=MemoryRateLimiter(upload_rate),
            conversation_limiter=MemoryRateLimiter(conversation_rate),
            reset_limiter=ResetLimiter(*(MemoryRateLimiter(r) for r in reset_rates)),
        )
    app.extensions["simplechat"] = services
    return services


def services() -> Services:
    return current_app.extensions["simplechat"]


def built_once(name: str, build: Callable[[Flask], T]) -> T:
    """This app's ``name``, made by ``build(app)`` on first use and kept in ``app.extensions``
    (should two greenlets build it at once, both get the one kept first)."""
    app = current_app._get_current_object()
    found = app.extensions.get(name)
    if found is None:
        found = app.extensions.setdefault(name, build(app))
    return found
