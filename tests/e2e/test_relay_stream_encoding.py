"""A providing node sends each relayed batch as signed bytes, or as a message to a peer that
did not ask for bytes (an earlier release), and one receipt digest fits both."""

from __future__ import annotations

import grpc
import pytest

from concordat.exchange.v1 import exchange_pb2
from concordat.federation.v1 import federation_pb2, federation_pb2_grpc
from gateway.domain import Requester
from gateway.exchange import new_exchange_id
from gateway.federation.assertions import (
    DIGEST_KEY_METADATA,
    AssertionSigner,
    ReceiptVerifier,
    encoded_digest,
    keyed_request_digest,
    request_digest,
)
from gateway.federation.directory import public_key_kid
from gateway.federation.peers import peer_server_name
from gateway.keys import load_signing_key
from tests.e2e.conftest import Federation

pytestmark = pytest.mark.slow

DWP = Requester(organisation="dwp", system="e2e", administration="whitehall")


def _bulk_request() -> exchange_pb2.StreamRecordsRequest:
    request = exchange_pb2.StreamRecordsRequest(
        record_type=exchange_pb2.RECORD_TYPE_BENEFIT_AWARD,
        purpose=exchange_pb2.PURPOSE_FRAUD,
        agreement_id="fraud-dwp-dfc-benefits-2026",
        batch_size=50,
        provider_node="stormont",
    )
    request.field_mask.paths.extend(["award_id", "benefit"])
    return request


# The one-exchange key of the relay's request digest (gateway/federation/assertions.py).
DIGEST_KEY = b"e2e request digest key, 32 bytes"


async def _relay_stream(
    federation: Federation, *, accepts_encoded_batch: bool
) -> tuple[str, list[federation_pb2.RelayStreamResponse]]:
    """Whitehall's own relay of the bulk extract to stormont, with its genuine assertion."""
    material = federation.states["whitehall"].material
    key = load_signing_key(material.signing_key)
    signer = AssertionSigner("whitehall", key, public_key_kid("whitehall", key.public_key()))
    request, exchange_id = _bulk_request(), new_exchange_id()
    assertion = signer.sign(
        exchange_id=exchange_id,
        audience_node="stormont",
        requester=DWP,
        request_digest=keyed_request_digest(DIGEST_KEY, request),
    )
    credentials = grpc.ssl_channel_credentials(
        root_certificates=federation.states["stormont"].material.ca_cert.read_bytes(),
        private_key=material.tls_key.read_bytes(),
        certificate_chain=material.tls_cert.read_bytes(),
    )
    async with grpc.aio.secure_channel(
        federation.federation_address("stormont"),
        credentials,
        options=(("grpc.ssl_target_name_override", peer_server_name("stormont")),),
    ) as channel:
        stub = federation_pb2_grpc.FederationServiceStub(channel)
        call = stub.RelayStream(
            federation_pb2.RelayStreamRequest(
                exchange_id=exchange_id,
                assertion=assertion,
                request=request,
                accepts_encoded_batch=accepts_encoded_batch,
            ),
            timeout=10,
            metadata=((DIGEST_KEY_METADATA, DIGEST_KEY),),
        )
        return exchange_id, [item async for item in call]


def _stormont_receipts(federation: Federation) -> ReceiptVerifier:
    public_key = load_signing_key(federation.states["stormont"].material.signing_key).public_key()
    return ReceiptVerifier(lambda node, kid: public_key)


async def test_batches_go_as_the_signed_bytes_to_a_peer_that_accepts_them(
    federation: Federation,
) -> None:
    exchange_id, items = await _relay_stream(federation, accepts_encoded_batch=True)
    receipts = _stormont_receipts(federation)

    assert len(items) > 1
    for item in items:
        assert not item.HasField("batch") and item.encoded_batch
        claims = receipts.verify(
            item.receipt,
            provider_node="stormont",
            exchange_id=exchange_id,
            response_digest=encoded_digest(item.encoded_batch),
        )
        batch = exchange_pb2.StreamRecordsResponse.FromString(item.encoded_batch)
        assert claims["record_count"] == len(batch.records) > 0


async def test_batches_go_as_messages_to_a_peer_of_the_earlier_release_under_the_same_digest(
    federation: Federation,
) -> None:
    exchange_id, items = await _relay_stream(federation, accepts_encoded_batch=False)
    receipts = _stormont_receipts(federation)

    assert len(items) > 1
    for item in items:
        assert item.HasField("batch") and not item.encoded_batch
        # What a requesting node of the earlier release checks the receipt against.
        receipts.verify(
            item.receipt,
            provider_node="stormont",
            exchange_id=exchange_id,
            response_digest=request_digest(item.batch),
        )
