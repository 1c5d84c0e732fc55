"""Rate limits over ``limits``: per tenant by plan (or the tenant's override), per
client IP on the token endpoint and unauthenticated routes. Redis storage when
``HUB_REDIS_URL`` is set, memory otherwise. Fixed one-minute windows, as the
``X-RateLimit-Reset`` header describes them.

Sends are paced too (``take_turn``): a moving one-second window per sender lane, so
however far behind the workers fall, catching up never exceeds the sender's rate."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import structlog
from limits import RateLimitItemPerMinute, RateLimitItemPerSecond
from limits.storage import MemoryStorage, RedisStorage, Storage
from limits.strategies import FixedWindowRateLimiter, MovingWindowRateLimiter

from hub.asgi import Headers, ResponseHeadersMiddleware, add_missing
from hub.errors import RateLimited, Unavailable
from hub.settings import Settings

log = structlog.get_logger("hub.ratelimit")


@dataclass(frozen=True)
class LimitState:
    limit: int
    remaining: int
    reset_at: float  # epoch seconds
    allowed: bool

    def headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(max(self.remaining, 0)),
            "X-RateLimit-Reset": str(math.ceil(self.reset_at)),
        }

    def retry_after(self) -> int:
        return max(1, math.ceil(self.reset_at - time.time()))


class RateLimits:
    """One per process; ``check`` raises RateLimited (429 + Retry-After) when over."""

    def __init__(self, settings: Settings) -> None:
        storage: Storage
        url = settings.rate_limit_redis_url or settings.redis_url
        if url:
            storage = RedisStorage(url, key_prefix=f"{settings.redis_prefix}rl",
                                   wrap_exceptions=True, socket_timeout=2, socket_connect_timeout=2)
        else:
            storage = MemoryStorage()
        self.storage = storage
        # Fail closed by default: a limit that stops counting is no limit, and a 503 says
        # so; fail open (HUB_RATE_LIMIT_FAIL_OPEN) trades that for availability.
        self.fail_open = settings.rate_limit_fail_open
        self._warned_at = 0.0
        self.limiter = FixedWindowRateLimiter(storage)
        self.pacer = MovingWindowRateLimiter(storage)

    def _unreachable(self, exc: Exception) -> None:
        """Fail closed (503), or, when failing open, log it (at most once a minute) and go on."""
        if not self.fail_open:
            raise Unavailable("rate limit storage unreachable", code="rate_limit_unavailable") from exc
        if time.monotonic() - self._warned_at > 60:
            self._warned_at = time.monotonic()
            log.warning("rate limit storage unreachable; requests pass unlimited (HUB_RATE_LIMIT_FAIL_OPEN)",
                        error=type(exc).__name__)

    def hit(self, bucket: str, per_minute: int) -> LimitState:
        item = RateLimitItemPerMinute(per_minute)
        try:
            allowed = self.limiter.hit(item, bucket)
            stats = self.limiter.get_window_stats(item, bucket)
        except Exception as exc:  # limits wraps every storage error in its own type
            self._unreachable(exc)
            return LimitState(per_minute, per_minute, time.time() + 60, True)
        return LimitState(per_minute, stats.remaining, stats.reset_time, allowed)

    def peek(self, bucket: str, per_minute: int) -> LimitState:
        """Where ``bucket`` stands, counting nothing: ``allowed`` when one more would pass."""
        item = RateLimitItemPerMinute(per_minute)
        try:
            allowed = self.limiter.test(item, bucket)
            stats = self.limiter.get_window_stats(item, bucket)
        except Exception as exc:  # limits wraps every storage error in its own type
            self._unreachable(exc)
            return LimitState(per_minute, per_minute, time.time() + 60, True)
        return LimitState(per_minute, stats.remaining, stats.reset_time, allowed)

    def count_in_window(self, bucket: str, window_seconds: int) -> tuple[int, int]:
        """Count one occurrence in the current fixed window of ``bucket``: (how many
        so far in this window, how many the previous window saw). Shared by every
        process through the same storage as the limits."""
        window = int(time.time() // window_seconds)
        try:
            now = self.storage.incr(f"count/{bucket}/{window}", window_seconds * 2)
            previous = self.storage.get(f"count/{bucket}/{window - 1}") if now == 1 else 0
        except Exception as exc:  # limits wraps every storage error in its own type
            self._unreachable(exc)
            return 1, 0  # as if first in its window: each occurrence is recorded, none lost
        return now, previous

    def take_turn(self, lane: str, per_second: float, *, max_wait: float) -> float | None:
        """Wait until one more send on ``lane`` stays within ``per_second`` over any
        second (or, under 1/s, one send per ``1/per_second`` seconds) and count it: None
        once counted, or the seconds still to wait when that is more than ``max_wait``.
        An unreachable storage does not hold sends back (logged by the caller)."""
        if per_second >= 1:
            item = RateLimitItemPerSecond(math.floor(per_second))
        else:
            item = RateLimitItemPerSecond(1, math.ceil(1 / per_second))
        deadline = time.monotonic() + max_wait
        while True:
            if self.pacer.hit(item, "pace", lane):
                return None
            wait = max(self.pacer.get_window_stats(item, "pace", lane).reset_time - time.time(), 0.001)
            if time.monotonic() + wait > deadline:
                return wait
            time.sleep(min(wait, 0.05))

    def check(self, scope: dict[str, Any], bucket: str, per_minute: int) -> LimitState:
        """Count one request against ``bucket``; the headers ride on the response."""
        state = self.hit(bucket, per_minute)
        scope.setdefault("state", {})["rate_limit"] = state
        if not state.allowed:
            raise RateLimited(
                f"rate limit of {per_minute} requests per minute exceeded; retry in {state.retry_after()} s",
                headers={"Retry-After": str(state.retry_after()), **state.headers()},
            )
        return state


class RateLimitHeadersMiddleware(ResponseHeadersMiddleware):
    """Adds ``X-RateLimit-*`` to every response a limit was counted for."""

    def headers_for(self, scope: dict, headers: Headers) -> Headers:
        state = scope.get("state", {}).get("rate_limit")
        return add_missing(headers, state.headers()) if state is not None else headers
