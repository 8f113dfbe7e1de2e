"""What a caller is told was withheld: both decisions of this node and a peer's, by rule."""

from __future__ import annotations

from concordat.exchange.v1 import exchange_pb2
from gateway.domain import Decision
from gateway.exchange import Exchange
from gateway.pipeline.respond import Respond, take_peer_withheld, withheld_from_proto, withheld_of


def exchange_with(
    *, egress: dict[str, str] | None = None, ingress: dict[str, str] | None = None
) -> Exchange:
    exchange = Exchange(
        rpc="GetRecord", role="requester", request=None, metadata=(), deadline_seconds=None
    )
    exchange.fields = ("nino", "benefit", "address_line", "status")
    if egress is not None:
        exchange.egress = Decision(True, "e1", "x.egress.allow", withheld=egress)
    if ingress is not None:
        exchange.ingress = Decision(True, "i1", "x.ingress.allow", withheld=ingress)
    return exchange


def test_both_decisions_withholdings_are_merged_by_field_name() -> None:
    exchange = exchange_with(
        egress={"status": "x.not_agreed"},
        ingress={"address_line": "x.not_agreed", "status": "y.other"},
    )
    assert list(withheld_of(exchange).items()) == [
        ("address_line", "x.not_agreed"),
        ("status", "x.not_agreed"),
    ]


async def test_the_answer_names_each_withheld_field_with_its_rule() -> None:
    exchange = exchange_with(egress={"status": "x.not_agreed"}, ingress={"nino": "x.identifying"})
    await Respond()(exchange)
    assert [(w.field, w.rule) for w in exchange.response.withheld] == [
        ("nino", "x.identifying"),
        ("status", "x.not_agreed"),
    ]


async def test_a_peer_s_withholdings_reach_the_caller_beside_this_node_s() -> None:
    exchange = exchange_with(egress={"status": "x.not_agreed"})
    peer_answer = exchange_pb2.GetRecordResponse(
        released_fields=["nino"],
        withheld=[exchange_pb2.WithheldField(field="benefit", rule="peer.not_agreed")],
    )
    take_peer_withheld(exchange, peer_answer)
    expected = {"benefit": "peer.not_agreed", "status": "x.not_agreed"}
    assert withheld_from_proto(peer_answer.withheld) == expected
    await Respond()(exchange)
    assert withheld_from_proto(exchange.response.withheld) == expected


def test_a_peer_cannot_name_a_field_the_caller_did_not_ask_for() -> None:
    exchange = exchange_with()
    batch = exchange_pb2.StreamRecordsResponse(
        withheld=[
            exchange_pb2.WithheldField(field="benefit", rule="peer.not_agreed"),
            exchange_pb2.WithheldField(field="date_of_death", rule="peer.made_up"),
        ]
    )
    take_peer_withheld(exchange, batch)
    assert withheld_from_proto(batch.withheld) == {"benefit": "peer.not_agreed"}
    assert withheld_of(exchange) == {"benefit": "peer.not_agreed"}
