"""Building the answers a caller receives."""

from __future__ import annotations

from collections.abc import Iterable

from concordat.exchange.v1 import exchange_pb2
from gateway.domain import Obligation
from gateway.exchange import Exchange


def obligations_to_proto(obligations: Iterable[Obligation]) -> list[exchange_pb2.Obligation]:
    return [
        exchange_pb2.Obligation(
            code=o.code, description=o.description, parameters=dict(o.parameters)
        )
        for o in obligations
    ]


def obligations_from_proto(messages: Iterable[exchange_pb2.Obligation]) -> tuple[Obligation, ...]:
    return tuple(
        Obligation(code=m.code, description=m.description, parameters=dict(m.parameters))
        for m in messages
    )


class Respond:
    """The final stage of a GetRecord: the records, what was released, and why."""

    async def __call__(self, exchange: Exchange) -> None:
        exchange.response = exchange_pb2.GetRecordResponse(
            exchange_id=exchange.exchange_id,
            records=exchange.records,
            released_fields=list(exchange.released_fields),
            obligations=obligations_to_proto(exchange.obligations),
            egress_decision_id=exchange.egress.decision_id if exchange.egress else "",
            ingress_decision_id=(
                exchange.ingress.decision_id
                if exchange.ingress
                else exchange.notes.get("ingress_decision_id", "")
            ),
            provider_node=exchange.providing_node,
        )
