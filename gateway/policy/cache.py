"""A decision cache in front of one compiled bundle revision.

A policy decision is a pure function of the bundle and the policy input, and the input is
day-granular (`today`, never the time), so identical requests within a day get identical
decisions. The cache belongs to one engine, hence to one revision: a reload builds a new
engine with an empty cache, so a suspension or any other change is never hidden by it.

Only the embedded engine is cached. An OPA server can load a new bundle without this node
knowing, so its decisions are asked for every time.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gateway.domain import Decision, Direction
from gateway.policy import PolicyEngine
from gateway.policy.decision import ENGINE_ERROR_RULE, ENGINE_UNAVAILABLE_RULE


@dataclass(slots=True)
class CacheCounts:
    """Hits and misses, which the caches of every revision a node runs may share.

    A reload starts a new cache; a shared tally keeps counting across it, so the node's
    metrics read one count that only grows.
    """

    hits: int = 0
    misses: int = 0


class CachingEngine:
    """Remembers the last `max_entries` decisions of an engine, keyed on the exact input."""

    def __init__(
        self,
        engine: PolicyEngine,
        *,
        max_entries: int = 10_000,
        counts: CacheCounts | None = None,
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._engine = engine
        self._max_entries = max_entries
        self._decisions: OrderedDict[tuple[Direction, Any], Decision] = OrderedDict()
        self._counts = counts if counts is not None else CacheCounts()

    @property
    def hits(self) -> int:
        return self._counts.hits

    @property
    def misses(self) -> int:
        return self._counts.misses

    @property
    def revision(self) -> str:
        return self._engine.revision

    @property
    def engine(self) -> PolicyEngine:
        return self._engine

    async def decide(self, direction: Direction, policy_input: Mapping[str, Any]) -> Decision:
        key = _key(direction, policy_input)
        if key is None:
            return await self._engine.decide(direction, policy_input)
        cached = self._decisions.get(key)
        if cached is not None:
            self._decisions.move_to_end(key)
            self._counts.hits += 1
            # Every decision keeps an id of its own, so audit entries never share one.
            return dataclasses.replace(cached, decision_id=uuid.uuid4().hex)
        self._counts.misses += 1
        decision = await self._engine.decide(direction, policy_input)
        if _cacheable(decision):
            self._decisions[key] = decision
            if len(self._decisions) > self._max_entries:
                self._decisions.popitem(last=False)
        return decision

    async def close(self) -> None:
        self._decisions.clear()
        await self._engine.close()


def _key(direction: Direction, policy_input: Mapping[str, Any]) -> tuple[Direction, Any] | None:
    """The input as a hashable value equal only for inputs equal in value and in type.

    Built instead of a JSON text, at under half its cost: a text is a string, any other value is
    a tuple tagged with its kind, so `True`, `1`, `"1"`, `["a"]` and `{"a": ...}` all differ.
    An input holding anything else (no JSON type) is not cached.
    """
    try:
        return direction, _frozen(policy_input)
    except _Unkeyable:
        return None


class _Unkeyable(Exception):
    """A value a policy input document cannot hold."""


def _frozen(value: Any) -> Any:
    kind = type(value)
    if kind is str:
        return value
    if kind is dict or isinstance(value, Mapping):
        items = []
        for name, member in value.items():
            if type(name) is not str:
                raise _Unkeyable
            items.append((name, member if type(member) is str else _frozen(member)))
        # Names are distinct, so sorting never compares the values.
        items.sort()
        return (dict, tuple(items))
    if kind is list or kind is tuple:
        if all(type(member) is str for member in value):
            return (list, tuple(value))
        return (list, tuple(map(_frozen, value)))
    if kind is bool or kind is int:
        return (kind, value)
    if kind is float:
        # The exact bits: 0.0 and -0.0 are equal as numbers but not as inputs.
        return (float, value.hex())
    if value is None:
        return None
    raise _Unkeyable


def _cacheable(decision: Decision) -> bool:
    # An engine failure is a denial of the moment, not of the input: never remember it.
    return decision.rule not in (ENGINE_ERROR_RULE, ENGINE_UNAVAILABLE_RULE)
