"""Rate limits (GCRA) shared by every process through Redis: sends per user, logins per account
and per client address (failed and successful), registrations per client address, conversations
started per user. ``hit`` takes one; ``wait`` only looks, for a refusal before costly work."""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass

_UNITS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600}


@dataclass(frozen=True)
class Rate:
    count: int
    period: float  # seconds

    @property
    def interval_ms(self) -> int:
        return max(1, round(self.period * 1000 / self.count))

    @property
    def tolerance_ms(self) -> int:
        """How far ahead of now the schedule may run: the burst allowance."""
        return round(self.period * 1000) - self.interval_ms


def parse_rate(text: str) -> Rate | None:
    """Parse ``"1/2s"``, ``"5/10s"`` or ``"30/minute"``; ``"0"``, ``"off"``, ``""``: no limit."""
    text = (text or "").strip().lower()
    if text in ("", "0", "off", "none"):
        return None
    match = re.fullmatch(r"(\d+)\s*/\s*(\d*(?:\.\d+)?)\s*([a-z]+)", text)
    if not match or match.group(3) not in _UNITS or int(match.group(1)) < 1:
        raise ValueError(f"invalid rate limit {text!r}; expected e.g. '1/2s' or '30/minute'")
    amount = float(match.group(2)) if match.group(2) else 1.0
    period = amount * _UNITS[match.group(3)]
    if period <= 0:
        raise ValueError(f"invalid rate limit {text!r}: the period must be positive")
    return Rate(int(match.group(1)), period)


# Lua, for this limiter and the send script (infra.intake): takes one hit on ``rl_key``'s
# schedule (``rl_interval`` and ``rl_tolerance`` in ms) by the server clock, so every process
# agrees on "now". Sets ``rl_wait`` to 0 when allowed, else to the milliseconds to wait.
GCRA_STEP = """
do
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local tat = tonumber(redis.call('GET', rl_key) or now)
  if tat < now then tat = now end
  local allow_at = tat - rl_tolerance
  if now < allow_at then
    rl_wait = allow_at - now
  else
    rl_wait = 0
    local new_tat = tat + rl_interval
    redis.call('SET', rl_key, new_tat, 'PX', new_tat - now)
  end
end
"""

# KEYS[1] = the user's key; ARGV = interval_ms, tolerance_ms.
# Returns {1, 0} when allowed, {0, retry_after_ms} when refused.
_GCRA = """
local rl_key, rl_interval, rl_tolerance = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2])
local rl_wait
""" + GCRA_STEP + """
if rl_wait > 0 then return {0, rl_wait} end
return {1, 0}
"""


# The same schedule, read without taking anything (for the send script's admission check,
# infra.intake, too): sets ``rl_wait`` to 0 when a hit on ``rl_key`` would be allowed now, else
# to the milliseconds to wait.
GCRA_PEEK_STEP = """
do
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local tat = tonumber(redis.call('GET', rl_key) or now)
  local allow_at = tat - rl_tolerance
  if now < allow_at then rl_wait = allow_at - now else rl_wait = 0 end
end
"""

# KEYS[1] = the key; ARGV = tolerance_ms. Returns 0, or the milliseconds to wait.
_GCRA_PEEK = """
local rl_key, rl_tolerance = KEYS[1], tonumber(ARGV[1])
local rl_wait
""" + GCRA_PEEK_STEP + """
return rl_wait
"""


class RedisRateLimiter:
    def __init__(self, redis, rate: Rate | None, prefix: str):
        self.rate = rate
        self._prefix = prefix
        self._script = redis.register_script(_GCRA)
        self._peek = redis.register_script(_GCRA_PEEK)

    def key(self, name: str) -> str:
        return f"{self._prefix}rl:{name}"

    def wait(self, key: str) -> float:
        """The seconds until ``key`` may be hit again (0.0: now), without taking a hit."""
        if self.rate is None:
            return 0.0
        wait_ms = int(self._peek(keys=[self.key(key)], args=[self.rate.tolerance_ms]))
        return wait_ms / 1000 if wait_ms > 0 else 0.0

    def hit(self, key: str) -> float:
        """Take one send for ``key``: 0.0 if allowed, else the seconds to wait before retrying."""
        if self.rate is None:
            return 0.0
        allowed, wait_ms = self._script(
            keys=[self.key(key)],
            args=[self.rate.interval_ms, self.rate.tolerance_ms],
        )
        return 0.0 if allowed else max(int(wait_ms), 1) / 1000


class MemoryRateLimiter:
    """The same schedule kept in this process, for the single-process embedded default."""

    def __init__(self, rate: Rate | None):
        self.rate = rate
        self._tat: dict[str, int] = {}
        self._lock = threading.Lock()

    def wait(self, key: str) -> float:
        if self.rate is None:
            return 0.0
        now = time.monotonic_ns() // 1_000_000
        with self._lock:
            allow_at = self._tat.get(key, now) - self.rate.tolerance_ms
        return (allow_at - now) / 1000 if now < allow_at else 0.0

    def hit(self, key: str) -> float:
        if self.rate is None:
            return 0.0
        now = time.monotonic_ns() // 1_000_000
        with self._lock:
            tat = max(self._tat.get(key, now), now)
            allow_at = tat - self.rate.tolerance_ms
            if now < allow_at:
                return max(allow_at - now, 1) / 1000
            self._tat[key] = tat + self.rate.interval_ms
            if len(self._tat) > 100_000:
                self._tat = {k: v for k, v in self._tat.items() if v > now}
        return 0.0


class LoginLimiter:
    """Logins, limited per account and per client address: failures, and successes too.

    Failures are counted per typed name (not per the account it finds), so a refusal looks the
    same for a name that has an account and one that does not; a success neither clears nor
    refunds them, so a correct password from one address does not give another address fresh
    attempts. Successes are counted per account (its id) and per address: each one costs a
    password hash and starts a session, and a script holding a password must not log in
    without end."""

    def __init__(self, per_account, per_ip, ok_per_account=None, ok_per_ip=None):
        # RedisRateLimiter or MemoryRateLimiter each; the last two may be None (no limit).
        self._account = per_account
        self._ip = per_ip
        self._ok_account = ok_per_account
        self._ok_ip = ok_per_ip

    def wait(self, account: str, ip: str) -> float:
        """Seconds until this name may be tried again from this address for its failures
        (0.0: now), taking nothing."""
        return max(self._account.wait(f"login-account:{account}"),
                   self._ip.wait(f"login-ip:{ip}"))

    def success_wait(self, ip: str, user_id: int | None) -> float:
        """Seconds until a correct password would be let in again from this address, for the
        account a name finds (``user_id``; None: it finds none), taking nothing."""
        waits = [0.0]
        if self._ok_ip is not None:
            waits.append(self._ok_ip.wait(f"login-ok-ip:{ip}"))
        if self._ok_account is not None and user_id is not None:
            waits.append(self._ok_account.wait(f"login-ok-user:{user_id}"))
        return max(waits)

    def failed(self, account: str, ip: str) -> None:
        self._account.hit(f"login-account:{account}")
        self._ip.hit(f"login-ip:{ip}")

    def succeeded(self, user_id: int, ip: str) -> float:
        """Count a correct password: 0.0, or the seconds to wait when another login took the
        last one allowed since ``wait`` was asked (then this one is refused too)."""
        waits = [0.0]
        if self._ok_account is not None:
            waits.append(self._ok_account.hit(f"login-ok-user:{user_id}"))
        if self._ok_ip is not None:
            waits.append(self._ok_ip.hit(f"login-ok-ip:{ip}"))
        return max(waits)


class RegisterLimiter:
    """Registration attempts per client address, counted whether they succeed or not."""

    def __init__(self, per_ip):
        self._ip = per_ip  # RedisRateLimiter or MemoryRateLimiter

    def hit(self, ip: str) -> float:
        """Take one attempt for this address: 0.0 if allowed, else the seconds to wait."""
        return self._ip.hit(f"register-ip:{ip}")


class ResetLimiter:
    """Password reset requests, per typed e-mail address and per client address, counted
    whether the address has an account or not (so a refusal tells nothing about it)."""

    def __init__(self, per_email, per_ip):
        self._email = per_email  # RedisRateLimiter or MemoryRateLimiter each
        self._ip = per_ip

    def hit(self, email: str, ip: str) -> float:
        """Take one request: 0.0 if allowed, else the seconds to wait. The client's limit is
        taken first; one refused there does not use up the address's."""
        wait = self._ip.hit(f"reset-ip:{ip}")
        if wait:
            return wait
        return self._email.hit(f"reset-email:{email.strip().lower()}")
