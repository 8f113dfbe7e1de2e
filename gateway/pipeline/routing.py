"""Routing checks on the providing side."""

from __future__ import annotations

from gateway.errors import NoRoute
from gateway.exchange import Exchange


class RouteToSelf:
    """A relayed request must be for records this node holds."""

    def __init__(self, node: str, record_types: frozenset[str]) -> None:
        self._node = node
        self._record_types = record_types

    async def __call__(self, exchange: Exchange) -> None:
        if exchange.record_type not in self._record_types:
            raise NoRoute(f"{self._node} does not serve {exchange.record_type} records")
