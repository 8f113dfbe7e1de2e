"""Routing on a node that is not federated: itself alone, and a relay that refuses."""

from __future__ import annotations

import pytest

from gateway.errors import NoRoute
from gateway.exchange import Exchange
from gateway.pipeline.routing import NotFederated, OnlyThisNode


def _exchange(record_type: str) -> Exchange:
    exchange = Exchange(
        rpc="GetRecord", role="local", request=None, metadata=(), deadline_seconds=None
    )
    exchange.record_type = record_type
    exchange.providing_node = "holyrood"
    return exchange


def test_a_node_that_is_not_federated_serves_only_what_its_sources_hold() -> None:
    providers = OnlyThisNode("whitehall", frozenset({"PERSON"}))
    assert providers(_exchange("PERSON")) == ["whitehall"]
    assert providers(_exchange("BIRTH_REGISTRATION")) == []


async def test_the_relay_of_a_node_that_is_not_federated_refuses_rather_than_sends() -> None:
    relay = NotFederated()
    with pytest.raises(NoRoute, match="not federated"):
        await relay(_exchange("PERSON"))
    with pytest.raises(NoRoute, match="not federated"):
        async for _ in relay.batches(_exchange("PERSON")):
            pass
