"""The requesting node hands on a relayed batch only once its receipt signs exactly those bytes.

A scripted providing peer on loopback gRPC sends batches and receipts, genuine or bent; the
requesting node's RemoteBatches reads them over a real channel.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from concordat.exchange.v1 import exchange_pb2
from concordat.federation.v1 import federation_pb2, federation_pb2_grpc
from concordat.records.v1 import records_pb2
from gateway import records
from gateway.domain import Requester
from gateway.errors import PeerRejected
from gateway.exchange import Exchange
from gateway.federation.assertions import (
    AssertionSigner,
    ReceiptSigner,
    ReceiptVerifier,
    encoded_digest,
)
from gateway.federation.breaker import CircuitBreaker
from gateway.federation.peers import Peer
from gateway.pipeline.relay import RemoteBatches
from gateway.wire import EncodedResponse, serialize_response

PROVIDER, REQUESTER_NODE = "stormont", "whitehall"
DWP = Requester(organisation="dwp", system="fraud", administration=REQUESTER_NODE)
Script = Callable[[str, ReceiptSigner], list[federation_pb2.RelayStreamResponse]]


def a_batch(exchange_id: str, *award_ids: str) -> exchange_pb2.StreamRecordsResponse:
    return exchange_pb2.StreamRecordsResponse(
        exchange_id=exchange_id,
        records=[
            records_pb2.Record(benefit_award=records_pb2.BenefitAward(award_id=award_id))
            for award_id in award_ids
        ],
        provider_node=PROVIDER,
    )


def signed(
    receipts: ReceiptSigner, exchange_id: str, batch: exchange_pb2.StreamRecordsResponse
) -> tuple[bytes, str]:
    """The batch's encoding and the provider's genuine receipt over it."""
    encoded = batch.SerializeToString(deterministic=True)
    receipt = receipts.sign(
        exchange_id=exchange_id,
        requesting_node=REQUESTER_NODE,
        response_digest=encoded_digest(encoded),
        record_count=len(batch.records),
        released_fields=list(batch.released_fields),
        ingress_decision_id=batch.ingress_decision_id,
    )
    return encoded, receipt


def encoded_item(
    receipts: ReceiptSigner, exchange_id: str, batch: exchange_pb2.StreamRecordsResponse
) -> federation_pb2.RelayStreamResponse:
    encoded, receipt = signed(receipts, exchange_id, batch)
    return federation_pb2.RelayStreamResponse(encoded_batch=encoded, receipt=receipt)


@dataclass
class ScriptedProvider(federation_pb2_grpc.FederationServiceServicer):
    """Answers RelayStream with whatever the test scripted, signed with the provider's key."""

    receipts: ReceiptSigner
    script: Script = field(default=lambda exchange_id, receipts: [])
    requests: list[federation_pb2.RelayStreamRequest] = field(default_factory=list)

    async def RelayStream(
        self, request: federation_pb2.RelayStreamRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[federation_pb2.RelayStreamResponse]:
        self.requests.append(request)
        for item in self.script(request.exchange_id, self.receipts):
            yield item


class OnePeer:
    """PeerClients for one peer reached over a plain loopback channel."""

    def __init__(self, peer: Peer) -> None:
        self._peer = peer

    def get(self, node: str) -> Peer:
        assert node == self._peer.node
        return self._peer


@dataclass
class Relayed:
    provider: ScriptedProvider
    batches: RemoteBatches


@pytest.fixture
def provider_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
async def relayed(provider_key: Ed25519PrivateKey) -> AsyncIterator[Relayed]:
    provider = ScriptedProvider(ReceiptSigner(PROVIDER, provider_key, "stormont-1"))
    server = grpc.aio.server()
    federation_pb2_grpc.add_FederationServiceServicer_to_server(provider, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")

    def directory_keys(node: str, kid: str) -> Ed25519PublicKey:
        if (node, kid) != (PROVIDER, "stormont-1"):
            raise PeerRejected(f"no key {kid} for {node}")
        return provider_key.public_key()

    peer = Peer(
        node=PROVIDER,
        channel=channel,
        stub=federation_pb2_grpc.FederationServiceStub(channel),
        breaker=CircuitBreaker(PROVIDER),
    )
    batches = RemoteBatches(
        peers=OnePeer(peer),  # type: ignore[arg-type]
        signer=AssertionSigner(REQUESTER_NODE, Ed25519PrivateKey.generate(), "whitehall-1"),
        receipts=ReceiptVerifier(directory_keys),
    )
    try:
        yield Relayed(provider, batches)
    finally:
        await channel.close()
        await server.stop(grace=None)


def an_exchange() -> Exchange:
    request = exchange_pb2.StreamRecordsRequest(
        record_type=exchange_pb2.RECORD_TYPE_BENEFIT_AWARD,
        purpose=exchange_pb2.PURPOSE_FRAUD,
        agreement_id="fraud-dwp-dfc-benefits-2026",
        provider_node=PROVIDER,
    )
    request.field_mask.paths.append("award_id")
    return Exchange(
        rpc="StreamRecords",
        role="local",
        request=request,
        metadata=(),
        deadline_seconds=5,
        requester=DWP,
        providing_node=PROVIDER,
        released_fields=("award_id",),
    )


async def handed_on_until_refused(
    batches: RemoteBatches, exchange: Exchange
) -> tuple[list[exchange_pb2.StreamRecordsResponse | EncodedResponse], PeerRejected | None]:
    """What the requesting node handed its caller, as it did, and the refusal that ended the
    stream, if any."""
    received: list[exchange_pb2.StreamRecordsResponse | EncodedResponse] = []
    try:
        async for batch in batches(exchange):
            received.append(batch)
    except PeerRejected as refusal:
        return received, refusal
    return received, None


async def read_until_refused(
    batches: RemoteBatches, exchange: Exchange
) -> tuple[list[exchange_pb2.StreamRecordsResponse], PeerRejected | None]:
    """The batches handed on, as the caller parses them, and the refusal, if any."""
    received, refusal = await handed_on_until_refused(batches, exchange)
    return [as_caller_reads(batch) for batch in received], refusal


def as_caller_reads(
    batch: exchange_pb2.StreamRecordsResponse | EncodedResponse,
) -> exchange_pb2.StreamRecordsResponse:
    """What the caller parses from the bytes gRPC sends for `batch`."""
    return exchange_pb2.StreamRecordsResponse.FromString(serialize_response(batch))


def award_ids(batches: Sequence[exchange_pb2.StreamRecordsResponse]) -> Iterator[str]:
    return (record.benefit_award.award_id for batch in batches for record in batch.records)


async def test_signed_batch_bytes_are_handed_on_with_this_exchanges_ids(relayed: Relayed) -> None:
    relayed.provider.script = lambda exchange_id, receipts: [
        encoded_item(receipts, exchange_id, a_batch(exchange_id, "AW1", "AW2")),
        encoded_item(receipts, exchange_id, a_batch(exchange_id, "AW3")),
    ]
    exchange = an_exchange()

    received, refusal = await read_until_refused(relayed.batches, exchange)

    assert refusal is None
    assert relayed.provider.requests[0].accepts_encoded_batch
    assert list(award_ids(received)) == ["AW1", "AW2", "AW3"]
    assert all(batch.exchange_id == exchange.exchange_id for batch in received)
    assert exchange.record_count == 3
    assert exchange.bytes_released == sum(records.size_of(b.records) for b in received)
    assert exchange.peer_evidence is not None and exchange.peer_evidence.receipts == 2


async def test_batch_bytes_changed_after_signing_are_refused_and_never_handed_on(
    relayed: Relayed,
) -> None:
    def script(
        exchange_id: str, receipts: ReceiptSigner
    ) -> list[federation_pb2.RelayStreamResponse]:
        genuine = encoded_item(receipts, exchange_id, a_batch(exchange_id, "AW000001"))
        encoded, receipt = signed(receipts, exchange_id, a_batch(exchange_id, "AW000002"))
        # Same length, still a well-formed batch: only the digest can tell.
        tampered = encoded.replace(b"AW000002", b"AW999999")
        return [
            genuine,
            federation_pb2.RelayStreamResponse(encoded_batch=tampered, receipt=receipt),
        ]

    relayed.provider.script = script

    received, refusal = await read_until_refused(relayed.batches, an_exchange())

    assert list(award_ids(received)) == ["AW000001"]
    assert refusal is not None
    assert "receipt does not match the records received" in refusal.message


async def test_a_receipt_over_other_bytes_is_refused_for_the_first_batch_too(
    relayed: Relayed,
) -> None:
    def script(
        exchange_id: str, receipts: ReceiptSigner
    ) -> list[federation_pb2.RelayStreamResponse]:
        _, receipt = signed(receipts, exchange_id, a_batch(exchange_id, "AW1"))
        other = a_batch(exchange_id, "AW1", "AW2").SerializeToString(deterministic=True)
        return [federation_pb2.RelayStreamResponse(encoded_batch=other, receipt=receipt)]

    relayed.provider.script = script
    exchange = an_exchange()

    received, refusal = await read_until_refused(relayed.batches, exchange)

    assert received == [] and exchange.record_count == 0
    assert refusal is not None and "does not match" in refusal.message


async def test_signed_bytes_that_are_not_a_batch_are_refused(relayed: Relayed) -> None:
    def script(
        exchange_id: str, receipts: ReceiptSigner
    ) -> list[federation_pb2.RelayStreamResponse]:
        garbage = b"\xff\xff\xff"
        receipt = receipts.sign(
            exchange_id=exchange_id,
            requesting_node=REQUESTER_NODE,
            response_digest=encoded_digest(garbage),
            record_count=0,
            released_fields=[],
            ingress_decision_id="",
        )
        return [federation_pb2.RelayStreamResponse(encoded_batch=garbage, receipt=receipt)]

    relayed.provider.script = script

    received, refusal = await read_until_refused(relayed.batches, an_exchange())

    assert received == []
    assert refusal is not None and "signed a batch that does not parse" in refusal.message


async def test_a_batch_message_from_a_provider_of_the_earlier_release_is_verified(
    relayed: Relayed,
) -> None:
    def script(
        exchange_id: str, receipts: ReceiptSigner
    ) -> list[federation_pb2.RelayStreamResponse]:
        genuine = a_batch(exchange_id, "AW1")
        _, receipt = signed(receipts, exchange_id, genuine)
        bent = a_batch(exchange_id, "AW2")
        _, bent_receipt = signed(receipts, exchange_id, bent)
        bent.records[0].benefit_award.award_id = "AW9"  # changed after signing
        return [
            federation_pb2.RelayStreamResponse(batch=genuine, receipt=receipt),
            federation_pb2.RelayStreamResponse(batch=bent, receipt=bent_receipt),
        ]

    relayed.provider.script = script

    received, refusal = await read_until_refused(relayed.batches, an_exchange())

    assert list(award_ids(received)) == ["AW1"]
    assert refusal is not None and "does not match" in refusal.message


async def test_batches_after_the_first_are_handed_on_as_the_bytes_the_provider_signed(
    relayed: Relayed,
) -> None:
    first = a_batch("", "AW1")
    first.released_fields.append("award_id")
    first.ingress_decision_id = "dec-provider"
    signed_bytes: list[bytes] = []

    def script(
        exchange_id: str, receipts: ReceiptSigner
    ) -> list[federation_pb2.RelayStreamResponse]:
        first.exchange_id = exchange_id
        items = [
            encoded_item(receipts, exchange_id, first),
            encoded_item(receipts, exchange_id, a_batch(exchange_id, "AW2", "AW3")),
        ]
        signed_bytes.extend(item.encoded_batch for item in items)
        return items

    relayed.provider.script = script
    exchange = an_exchange()

    received, refusal = await handed_on_until_refused(relayed.batches, exchange)

    assert refusal is None
    opening, later = received
    # The first batch says what was released: this node reads it and records it.
    assert isinstance(opening, exchange_pb2.StreamRecordsResponse)
    assert exchange.peer_ingress_decision_id == "dec-provider"
    # A later one goes on unparsed: the provider's signed bytes, then this exchange's id.
    assert isinstance(later, EncodedResponse)
    assert later.data.startswith(signed_bytes[1])
    assert as_caller_reads(later).exchange_id == exchange.exchange_id
    assert [r.benefit_award.award_id for r in as_caller_reads(later).records] == ["AW2", "AW3"]
    assert exchange.record_count == 3
    assert exchange.bytes_released == sum(
        records.size_of(as_caller_reads(b).records) for b in received
    )


async def test_a_batch_handed_on_carries_this_exchanges_id_whatever_the_provider_put_there(
    relayed: Relayed,
) -> None:
    relayed.provider.script = lambda exchange_id, receipts: [
        encoded_item(receipts, exchange_id, a_batch("some-other-exchange", "AW1")),
    ]
    exchange = an_exchange()

    received, refusal = await read_until_refused(relayed.batches, exchange)

    assert refusal is None
    assert [batch.exchange_id for batch in received] == [exchange.exchange_id]
