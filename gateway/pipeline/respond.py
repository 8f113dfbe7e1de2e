"""Building the answers a caller receives."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from concordat.exchange.v1 import exchange_pb2
from gateway.domain import Obligation, merge_withheld
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


def withheld_to_proto(withheld: Mapping[str, str]) -> list[exchange_pb2.WithheldField]:
    return [exchange_pb2.WithheldField(field=name, rule=rule) for name, rule in withheld.items()]


def withheld_from_proto(messages: Iterable[exchange_pb2.WithheldField]) -> dict[str, str]:
    return merge_withheld({m.field: m.rule for m in messages})


def withheld_of(exchange: Exchange) -> dict[str, str]:
    """Each field asked for and not released, by rule: this node's decisions' and a peer's."""
    return merge_withheld(
        exchange.egress.withheld if exchange.egress else {},
        exchange.ingress.withheld if exchange.ingress else {},
        exchange.peer_withheld,
    )


def take_peer_withheld(
    exchange: Exchange,
    answer: exchange_pb2.GetRecordResponse | exchange_pb2.StreamRecordsResponse,
) -> None:
    """Keeps what a peer's answer says it withheld, and adds this node's withholdings to it.

    Only fields the caller asked for are kept: a peer cannot write anything else into our
    answer or our audit log. Call it after the answer's receipt is verified.
    """
    asked = set(exchange.fields)
    exchange.peer_withheld = {
        name: rule for name, rule in withheld_from_proto(answer.withheld).items() if name in asked
    }
    del answer.withheld[:]
    answer.withheld.extend(withheld_to_proto(withheld_of(exchange)))


class Respond:
    """The final stage of a GetRecord: the records, what was released, and why."""

    async def __call__(self, exchange: Exchange) -> None:
        exchange.response = exchange_pb2.GetRecordResponse(
            exchange_id=exchange.exchange_id,
            records=exchange.records,
            released_fields=list(exchange.released_fields),
            withheld=withheld_to_proto(withheld_of(exchange)),
            obligations=obligations_to_proto(exchange.obligations),
            egress_decision_id=exchange.egress.decision_id if exchange.egress else "",
            ingress_decision_id=(
                exchange.ingress.decision_id
                if exchange.ingress
                else exchange.peer_ingress_decision_id
            ),
            provider_node=exchange.providing_node,
        )
