"""Which node holds an exchange's records: the directory's answer, or, on a node that is not
federated, this node alone (a null object, so no stage asks whether there is a federation)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Never, Protocol

from gateway.errors import NoRoute
from gateway.exchange import Exchange
from gateway.federation.directory import DirectoryLookup


class Providers(Protocol):
    """The nodes that serve an exchange's record type for its subject."""

    def __call__(self, exchange: Exchange) -> list[str]: ...


class DirectoryProviders:
    """The federation's answer, from the signed directory."""

    def __init__(self, directory: DirectoryLookup) -> None:
        self._directory = directory

    def __call__(self, exchange: Exchange) -> list[str]:
        subject = exchange.subject or (exchange.subjects[0] if exchange.subjects else None)
        if subject is not None:
            return self._directory.providers(exchange.record_type, subject.kind, subject.value)
        return [
            node
            for node in self._directory.nodes
            if any(
                r.record_type == exchange.record_type for r in self._directory.entry(node).serves
            )
        ]


class OnlyThisNode:
    """A node that is not federated serves what its own sources hold, and nothing else."""

    def __init__(self, node: str, record_types: frozenset[str]) -> None:
        self._node = node
        self._record_types = record_types

    def __call__(self, exchange: Exchange) -> list[str]:
        return [self._node] if exchange.record_type in self._record_types else []


class NotFederated:
    """The relay of a node that is not federated: routing never chooses a peer, so a call here
    is a fault, refused rather than sent anywhere."""

    async def __call__(self, exchange: Exchange) -> None:
        raise self._refusal(exchange)

    def batches(self, exchange: Exchange) -> AsyncIterator[Never]:
        return _Refused(self._refusal(exchange))

    @staticmethod
    def _refusal(exchange: Exchange) -> NoRoute:
        return NoRoute(f"{exchange.providing_node} cannot be reached: this node is not federated")


class _Refused:
    """An extract that fails at its first batch."""

    def __init__(self, error: NoRoute) -> None:
        self._error = error

    def __aiter__(self) -> _Refused:
        return self

    async def __anext__(self) -> Never:
        raise self._error


class RouteToSelf:
    """A relayed request must be for records this node holds."""

    def __init__(self, node: str, record_types: frozenset[str]) -> None:
        self._node = node
        self._record_types = record_types

    async def __call__(self, exchange: Exchange) -> None:
        if exchange.record_type not in self._record_types:
            raise NoRoute(f"{self._node} does not serve {exchange.record_type} records")
