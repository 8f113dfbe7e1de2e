"""How often one citizen may look: a token bucket per citizen, in this process's memory.

A node with PostgreSQL state shares the buckets between its replicas instead
(gateway/state/postgres.py, `PostgresRateLimiter`).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from gateway.errors import RateLimited


class LookupLimiter:
    """`burst` lookups at once, refilled at `per_hour`; more are refused as RateLimited.

    Buckets that have refilled are forgotten when `max_citizens` are held, so memory stays
    bounded without ever handing a citizen more than a full bucket.
    """

    def __init__(
        self,
        *,
        per_hour: float,
        burst: int,
        max_citizens: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._rate = per_hour / 3600.0
        self._burst = float(burst)
        self._max_citizens = max_citizens
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}

    async def take(self, citizen: str) -> None:
        now = self._clock()
        level, at = self._buckets.get(citizen, (self._burst, now))
        level = min(self._burst, level + (now - at) * self._rate)
        if level < 1.0:
            wait = (1.0 - level) / self._rate
            raise RateLimited(f"too many lookups; try again in {max(1, round(wait))} seconds")
        if citizen not in self._buckets and len(self._buckets) >= self._max_citizens:
            self._forget_full(now)
        self._buckets[citizen] = (level - 1.0, now)

    def _forget_full(self, now: float) -> None:
        self._buckets = {
            who: (level, at)
            for who, (level, at) in self._buckets.items()
            if level + (now - at) * self._rate < self._burst
        }
