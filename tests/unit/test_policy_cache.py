"""The decision cache: the same answer for the same input, never a stale or shared one."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

import pytest

from gateway.domain import Decision, Direction
from gateway.policy.bundle import PolicyBundle
from gateway.policy.cache import CachingEngine
from gateway.policy.decision import ENGINE_ERROR_RULE, deny
from gateway.policy.embedded import EmbeddedEngine
from gateway.policy.reloading import stricter
from tests.unit.test_policy_engines import policy_input, whitehall, without_id

__all__ = ["whitehall"]  # the module-scoped bundle fixture, shared with the engine tests


class CountingEngine:
    """Wraps a real engine to count how often the cache lets a decision through."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.calls = 0

    @property
    def revision(self) -> str:
        return str(self.engine.revision)

    async def decide(self, direction: Direction, policy_input: Mapping[str, Any]) -> Decision:
        self.calls += 1
        return await self.engine.decide(direction, policy_input)  # type: ignore[no-any-return]

    async def close(self) -> None:
        await self.engine.close()


@pytest.fixture
def counted(whitehall: PolicyBundle) -> CountingEngine:
    return CountingEngine(EmbeddedEngine.compile(whitehall))


async def test_an_identical_input_is_answered_from_the_cache_with_a_fresh_decision_id(
    counted: CountingEngine,
) -> None:
    cache = CachingEngine(counted)
    first = await cache.decide("egress", policy_input())
    second = await cache.decide("egress", policy_input())
    assert first.allow
    assert without_id(first) == without_id(second)
    assert first.decision_id != second.decision_id
    assert counted.calls == 1
    assert (cache.hits, cache.misses) == (1, 1)


async def test_any_difference_in_the_input_is_decided_afresh(counted: CountingEngine) -> None:
    cache = CachingEngine(counted)
    allowed = await cache.decide("egress", policy_input())
    other_day = await cache.decide("egress", policy_input(today=date(2031, 1, 1)))
    other_org = await cache.decide(
        "egress", policy_input(requester={**policy_input()["requester"], "organisation": "hmrc"})
    )
    assert allowed.allow
    assert not other_day.allow
    assert not other_org.allow
    assert counted.calls == 3


async def test_the_oldest_decision_is_forgotten_beyond_the_limit(counted: CountingEngine) -> None:
    cache = CachingEngine(counted, max_entries=2)
    for day in (21, 22, 23, 21):
        await cache.decide("egress", policy_input(today=date(2026, 11, day)))
    assert counted.calls == 4


async def test_engine_failures_are_never_remembered() -> None:
    class Failing:
        revision = "r1"
        calls = 0

        async def decide(self, direction: Direction, policy_input: Mapping[str, Any]) -> Decision:
            self.calls += 1
            return deny("d", ENGINE_ERROR_RULE, "the policy engine failed to evaluate")

        async def close(self) -> None:
            pass

    failing = Failing()
    cache = CachingEngine(failing)
    await cache.decide("egress", policy_input())
    await cache.decide("egress", policy_input())
    assert failing.calls == 2


class Recording:
    """An engine that allows everything and remembers each input it was asked about."""

    revision = "r1"

    def __init__(self) -> None:
        self.asked: list[Mapping[str, Any]] = []

    async def decide(self, direction: Direction, policy_input: Mapping[str, Any]) -> Decision:
        self.asked.append(policy_input)
        return Decision(True, "d", "r.allow", "ag", ())

    async def close(self) -> None:
        pass


async def test_inputs_equal_only_as_text_or_number_are_decided_apart() -> None:
    engine = Recording()
    cache = CachingEngine(engine)
    variants: list[Any] = [True, 1, 1.0, -0.0, 0.0, "1", "true", ["1"], ("1",), {"1": 1}]
    for value in variants:
        await cache.decide("egress", {**policy_input(), "bulk": value})
    for value in variants:
        await cache.decide("egress", {**policy_input(), "bulk": value})
    assert len(engine.asked) == len(variants) - 1  # a list and a tuple are one JSON array
    assert (cache.hits, cache.misses) == (len(variants) + 1, len(variants) - 1)


async def test_the_order_of_an_objects_names_does_not_matter_but_a_lists_order_does() -> None:
    engine = Recording()
    cache = CachingEngine(engine)
    asked = policy_input()
    await cache.decide("egress", asked)
    await cache.decide("egress", dict(reversed(list(asked.items()))))
    await cache.decide("egress", {**asked, "fields": list(reversed(asked["fields"]))})
    await cache.decide("ingress", asked)
    assert len(engine.asked) == 3


async def test_an_input_no_json_document_could_hold_is_never_remembered() -> None:
    engine = Recording()
    cache = CachingEngine(engine)
    odd = {**policy_input(), "today": date(2026, 11, 21)}
    await cache.decide("egress", odd)
    await cache.decide("egress", odd)
    assert len(engine.asked) == 2


def test_the_stricter_of_two_decisions_denies_if_either_denies_and_intersects_fields() -> None:
    allow_all = Decision(True, "a", "r.allow", "ag", ("nino", "benefit", "amount"))
    allow_less = Decision(True, "b", "r.allow", "ag", ("nino", "amount"), pseudonymise=True)
    denial = deny("c", "r.suspended", "suspended")
    assert stricter(allow_all, denial) is denial
    assert stricter(denial, allow_all) is denial
    both = stricter(allow_all, allow_less)
    assert both.allow
    assert both.released_fields == ("nino", "amount")
    assert both.pseudonymise


def test_the_stricter_of_two_decisions_withholds_what_either_withholds() -> None:
    running = Decision(
        True, "a", "r.allow", "ag", ("nino", "benefit"), withheld={"address": "r.not_agreed"}
    )
    tentative = Decision(
        True,
        "b",
        "r.allow",
        "ag",
        ("nino",),
        withheld={"benefit": "r.not_agreed", "address": "r.other"},
    )
    both = stricter(running, tentative)
    assert both.released_fields == ("nino",)
    assert both.withheld == {"address": "r.not_agreed", "benefit": "r.not_agreed"}
    assert stricter(running, deny("c", "r.suspended", "suspended")).withheld == {}
