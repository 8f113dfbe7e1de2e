"""Responses sent in wire form: what a caller parses is what the node meant to send."""

from __future__ import annotations

from concordat.exchange.v1 import exchange_pb2, exchange_pb2_grpc
from concordat.records.v1 import records_pb2
from gateway.api.server import EXCHANGE_SERVICE, exchange_handlers
from gateway.wire import EncodedResponse, serialize_response


def a_batch(exchange_id: str) -> exchange_pb2.StreamRecordsResponse:
    return exchange_pb2.StreamRecordsResponse(
        exchange_id=exchange_id,
        records=[records_pb2.Record(benefit_award=records_pb2.BenefitAward(award_id="AW1"))],
        provider_node="stormont",
    )


def test_an_appended_field_replaces_the_value_the_encoded_message_held() -> None:
    encoded = a_batch("provider-chose-this").SerializeToString()
    # Long enough that its length takes two varint bytes.
    replacement = "exchange-" + "x" * 200

    appended = exchange_pb2.StreamRecordsResponse(exchange_id=replacement).SerializeToString()

    parsed = exchange_pb2.StreamRecordsResponse.FromString(encoded + appended)

    assert parsed.exchange_id == replacement
    assert parsed.records[0].benefit_award.award_id == "AW1"
    assert parsed.provider_node == "stormont"


def test_an_encoded_response_is_sent_as_its_bytes_and_a_message_is_serialised() -> None:
    batch = a_batch("01JC8Z4K7W3T9V5Q2M6N8P0R4S")
    data = batch.SerializeToString()

    assert serialize_response(EncodedResponse(data)) is data
    assert serialize_response(batch) == data


def test_the_exchange_server_registers_exactly_the_api_methods() -> None:
    service = exchange_pb2.DESCRIPTOR.services_by_name["ExchangeService"]

    handlers = exchange_handlers(exchange_pb2_grpc.ExchangeServiceServicer())  # type: ignore[arg-type]

    assert EXCHANGE_SERVICE == service.full_name
    assert set(handlers) == {method.name for method in service.methods}
    for method in service.methods:
        assert handlers[method.name].response_streaming == method.server_streaming
