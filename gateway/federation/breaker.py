"""Fail fast on a peer that keeps failing, and retry only what is safe to retry.

A breaker is per peer and used from one event loop, so its state needs no lock.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Literal, NamedTuple, TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)
from tenacity.stop import stop_base

from gateway.errors import Unavailable

BreakerState = Literal["closed", "open", "half_open"]
_T = TypeVar("_T")


class BreakerCounts(NamedTuple):
    failed_calls: int
    opened: int
    refused: int


class CircuitBreaker:
    """Opens after consecutive failures, refuses calls while open, then lets one trial through."""

    def __init__(
        self,
        peer: str,
        *,
        failure_threshold: int = 3,
        reset_after_seconds: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failure_threshold < 1 or reset_after_seconds <= 0:
            raise ValueError("failure threshold must be >= 1 and reset time > 0 seconds")
        self._peer = peer
        self._threshold = failure_threshold
        self._reset_after = reset_after_seconds
        self._clock = clock
        self._state: BreakerState = "closed"
        self._failures = 0
        self._changed_at = 0.0
        # Since start, for the node's metrics: failed calls, times opened, calls refused.
        self._failed_calls = 0
        self._opened = 0
        self._refused = 0

    @property
    def state(self) -> BreakerState:
        return self._state

    @property
    def counts(self) -> BreakerCounts:
        """Calls that failed (unreachable or late), times the breaker opened, calls it refused."""
        return BreakerCounts(self._failed_calls, self._opened, self._refused)

    def before_call(self) -> None:
        """Return if a call may go to the peer now; raise Unavailable if not."""
        if self._state == "closed":
            return
        waited = self._clock() - self._changed_at
        if waited >= self._reset_after:
            # In half-open this also covers a trial whose outcome was never recorded (say, it
            # was cancelled): without it the breaker would refuse the peer for ever.
            self._enter("half_open")
            return
        self._refused += 1
        if self._state == "half_open":
            raise Unavailable(f"{self._peer} is unavailable (circuit half-open; trial in progress)")
        raise Unavailable(
            f"{self._peer} is unavailable "
            f"(circuit open; retrying in {self._reset_after - waited:.1f}s)"
        )

    def record_success(self) -> None:
        if self._state == "closed" and self._failures == 0:
            # The common case, a healthy peer: nothing to change, so no clock read either.
            return
        self._failures = 0
        self._enter("closed")

    def record_failure(self) -> None:
        self._failed_calls += 1
        if self._state == "half_open":
            self._enter("open")
            return
        self._failures += 1
        if self._state == "closed" and self._failures >= self._threshold:
            self._enter("open")

    def _enter(self, state: BreakerState) -> None:
        if state == "open":
            self._opened += 1
        self._state = state
        self._changed_at = self._clock()


def retrying(deadline_at: float, attempts: int = 3) -> AsyncRetrying:
    """Retry our own retryable Unavailable (never one after data was released) within a deadline.

    `deadline_at` is on the `time.monotonic()` clock; no wait may carry a retry past it.
    """
    return AsyncRetrying(
        retry=retry_if_exception(_is_retryable),
        wait=wait_random_exponential(multiplier=0.05, max=0.5),
        stop=stop_after_attempt(attempts) | _StopBefore(deadline_at),
        reraise=True,
    )


async def call_retrying(
    call: Callable[[], Awaitable[_T]], deadline_at: float, attempts: int = 3
) -> _T:
    """`call()`, retried as `retrying` says; a first attempt that succeeds never enters tenacity.

    Most calls succeed first time, and tenacity's machinery (its retrying object, attempt
    objects and outcome futures) is then pure cost. A first attempt that fails retryably is
    handed to tenacity as its own first attempt, so waits, stops and the error raised are
    exactly what tenacity alone would give.
    """
    try:
        return await call()
    except Exception as exc:
        if not _is_retryable(exc):
            raise
        first_failure = exc
    replayed = False

    async def attempt() -> _T:
        nonlocal replayed
        if not replayed:
            replayed = True
            raise first_failure
        return await call()

    return await retrying(deadline_at, attempts)(attempt)


def _is_retryable(exc: BaseException) -> bool:
    # Once a peer has released data, sending the request again would be a second disclosure.
    return isinstance(exc, Unavailable) and exc.metadata.get("released") != "true"


class _StopBefore(stop_base):
    """Stops once the upcoming wait would carry the next attempt past the deadline."""

    def __init__(self, deadline_at: float) -> None:
        self._deadline_at = deadline_at

    def __call__(self, retry_state: RetryCallState) -> bool:
        # tenacity computes the upcoming wait before it asks whether to stop.
        return time.monotonic() + retry_state.upcoming_sleep >= self._deadline_at
