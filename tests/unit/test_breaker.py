"""The per-peer circuit breaker and the retry policy for relays."""

from __future__ import annotations

import time

import pytest

from gateway.errors import PolicyDenied, Unavailable
from gateway.federation.breaker import CircuitBreaker, call_retrying, retrying


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def breaker(clock: Clock) -> CircuitBreaker:
    return CircuitBreaker("holyrood", failure_threshold=3, reset_after_seconds=2.0, clock=clock)


def fail(breaker: CircuitBreaker, times: int) -> None:
    for _ in range(times):
        breaker.before_call()
        breaker.record_failure()


def test_the_circuit_opens_after_consecutive_failures(breaker: CircuitBreaker) -> None:
    fail(breaker, 2)
    assert breaker.state == "closed"

    fail(breaker, 1)

    assert breaker.state == "open"


def test_a_success_resets_the_failure_count(breaker: CircuitBreaker) -> None:
    fail(breaker, 2)
    breaker.record_success()
    fail(breaker, 2)

    assert breaker.state == "closed"


def test_an_open_circuit_refuses_fast_saying_when_it_retries(
    breaker: CircuitBreaker, clock: Clock
) -> None:
    fail(breaker, 3)
    clock.now += 0.5

    with pytest.raises(Unavailable) as caught:
        breaker.before_call()
    assert caught.value.message == "holyrood is unavailable (circuit open; retrying in 1.5s)"


def test_half_open_lets_one_trial_through_and_refuses_the_rest(
    breaker: CircuitBreaker, clock: Clock
) -> None:
    fail(breaker, 3)
    clock.now += 2.0

    breaker.before_call()

    assert breaker.state == "half_open"
    with pytest.raises(Unavailable, match="trial in progress"):
        breaker.before_call()


def test_a_successful_trial_closes_the_circuit(breaker: CircuitBreaker, clock: Clock) -> None:
    fail(breaker, 3)
    clock.now += 2.0
    breaker.before_call()

    breaker.record_success()

    assert breaker.state == "closed"
    breaker.before_call()


def test_a_failed_trial_reopens_the_circuit_for_another_period(
    breaker: CircuitBreaker, clock: Clock
) -> None:
    fail(breaker, 3)
    clock.now += 2.0
    breaker.before_call()

    breaker.record_failure()

    assert breaker.state == "open"
    with pytest.raises(Unavailable, match=r"retrying in 2\.0s"):
        breaker.before_call()


def test_a_trial_that_never_reports_back_does_not_lock_the_peer_out(
    breaker: CircuitBreaker, clock: Clock
) -> None:
    fail(breaker, 3)
    clock.now += 2.0
    breaker.before_call()
    clock.now += 2.0

    breaker.before_call()

    assert breaker.state == "half_open"


class Calls:
    def __init__(self, error: Exception | None) -> None:
        self.error = error
        self.count = 0

    async def __call__(self) -> str:
        self.count += 1
        if self.error is not None:
            raise self.error
        return "ok"


async def run(calls: Calls, deadline_at: float, attempts: int = 3) -> str:
    # As relays call: the first attempt outside tenacity, any retry through `retrying`.
    return await call_retrying(calls, deadline_at, attempts)


async def test_a_call_that_succeeds_first_time_is_made_once() -> None:
    calls = Calls(None)

    assert await run(calls, time.monotonic() + 30) == "ok"
    assert calls.count == 1


async def test_a_peer_that_recovers_after_a_first_failure_answers_on_retry() -> None:
    calls = Calls(Unavailable("holyrood is unavailable"))

    async def then_recover() -> str:
        if calls.count == 1:
            calls.error = None
        return await calls()

    assert await call_retrying(then_recover, time.monotonic() + 30) == "ok"
    assert calls.count == 2


async def test_a_single_allowed_attempt_raises_its_own_failure() -> None:
    failure = Unavailable("holyrood is unavailable")
    calls = Calls(failure)

    with pytest.raises(Unavailable) as caught:
        await run(calls, time.monotonic() + 30, attempts=1)

    assert caught.value is failure
    assert calls.count == 1


async def test_unavailable_is_retried_up_to_the_attempt_limit() -> None:
    calls = Calls(Unavailable("holyrood is unavailable"))

    with pytest.raises(Unavailable):
        await run(calls, time.monotonic() + 30)

    assert calls.count == 3


async def test_a_recovered_peer_answers_on_retry() -> None:
    calls = Calls(Unavailable("holyrood is unavailable"))

    async def then_recover() -> str:
        if calls.count == 1:
            calls.error = None
        return await calls()

    async for attempt in retrying(time.monotonic() + 30):
        with attempt:
            result = await then_recover()

    assert result == "ok"
    assert calls.count == 2


async def test_no_retry_is_made_past_the_deadline() -> None:
    calls = Calls(Unavailable("holyrood is unavailable"))

    with pytest.raises(Unavailable):
        await run(calls, time.monotonic())

    assert calls.count == 1


async def test_retries_stop_before_the_deadline_however_many_attempts_are_allowed() -> None:
    calls = Calls(Unavailable("holyrood is unavailable"))
    deadline_at = time.monotonic() + 0.3

    with pytest.raises(Unavailable):
        await run(calls, deadline_at, attempts=1000)

    assert time.monotonic() < deadline_at + 0.05
    assert 1 < calls.count < 1000


async def test_a_policy_denial_is_not_retried() -> None:
    calls = Calls(PolicyDenied("denied by rule health.caldicott"))

    with pytest.raises(PolicyDenied):
        await run(calls, time.monotonic() + 30)

    assert calls.count == 1


async def test_an_unavailable_after_data_was_released_is_not_retried() -> None:
    calls = Calls(Unavailable("receipt lost", metadata={"released": "true"}))

    with pytest.raises(Unavailable):
        await run(calls, time.monotonic() + 30)

    assert calls.count == 1
