"""The providing node's stages of a federated exchange: the peer's identity and its receipt.

A peer is who its certificate says, checked against its own CA in the directory; the
request is the caller's, as the peer's signed assertion vouches. The providing node then
decides for itself, under its own policy, what to disclose.

Receipts pin where this node's own entry of the exchange sits in its audit chain: a GetRecord's
receipt is signed once its entry is stored (the evidence recorder calls `SignReceipt.pin`), and
each batch of an extract pins the extract's opening entry, written before the first batch.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from concordat.federation.v1 import federation_pb2
from gateway.audit import AuditPosition
from gateway.errors import InvalidRequest, PeerRejected
from gateway.exchange import Exchange, PeerEvidence
from gateway.federation.assertions import (
    DIGEST_KEY_METADATA,
    AssertionVerifier,
    ReceiptSigner,
    encoded_digest,
    keyed_request_digest,
    request_digest,
)
from gateway.federation.directory import DirectoryLookup
from gateway.federation.envelope import is_envelope
from gateway.federation.peers import peer_identity
from gateway.pipeline.batches import StreamBatches
from gateway.state import ReplayGuard


class AuthenticatePeer:
    """The calling peer from its certificate; the original caller from the peer's assertion."""

    def __init__(
        self,
        *,
        node: str,
        directory: DirectoryLookup,
        verifier: AssertionVerifier,
        replay: ReplayGuard,
    ) -> None:
        self._node = node
        self._directory = directory
        self._verifier = verifier
        self._replay = replay

    async def __call__(self, exchange: Exchange) -> None:
        peer = peer_identity(exchange.peer_certificate, self._directory)
        exchange.requesting_node = peer
        exchange.providing_node = self._node
        if exchange.request is None:
            raise InvalidRequest(f"the request body is not a valid {exchange.rpc} relay message")
        if exchange.exchange_id_invalid:
            raise InvalidRequest("exchange_id must be 32 lowercase hex characters")
        requester = self._verifier.verify(
            exchange.assertion,
            peer_node=peer,
            exchange_id=exchange.exchange_id,
            request_digest=keyed_request_digest(_digest_key(exchange), exchange.request),
        )
        # Only a genuine, current assertion may use up its id, on every replica.
        if not await self._replay.first_use(requester.token_id, requester.token_expires_at):
            raise PeerRejected("assertion has already been used")
        exchange.requester = requester


def _digest_key(exchange: Exchange) -> bytes:
    """The one-exchange key of the assertion's request digest, sent beside it in metadata."""
    for key, value in exchange.metadata:
        if key == DIGEST_KEY_METADATA and isinstance(value, bytes) and len(value) >= 16:
            return value
    raise PeerRejected("the relay carries no key for its assertion's request digest")


def _asked_by_an_earlier_release(exchange: Exchange) -> bool:
    """A requesting node of an earlier release signs its assertion as a JWT and reads only a
    JWT receipt; every later one signs and reads envelopes."""
    return not is_envelope(exchange.assertion)


class SignReceipt:
    """Digests what was released (never the data) and, once the exchange's entry is stored,
    signs the receipt that pins it, for the requesting node to keep."""

    def __init__(self, signer: ReceiptSigner) -> None:
        self._signer = signer

    async def __call__(self, exchange: Exchange) -> None:
        exchange.peer_evidence = PeerEvidence(
            peer=exchange.requesting_node,
            response_digest=request_digest(exchange.response),
            assertion=exchange.assertion,
        )

    def pin(self, exchange: Exchange, position: AuditPosition) -> None:
        """Signs the receipt of an answered relay, naming where its entry was stored."""
        evidence = exchange.peer_evidence
        if exchange.role != "provider" or exchange.error is not None or evidence is None:
            return
        response = exchange.response
        exchange.receipt = self._signer.sign(
            exchange_id=exchange.exchange_id,
            requesting_node=exchange.requesting_node,
            response_digest=evidence.response_digest,
            record_count=len(response.records),
            released_fields=list(response.released_fields),
            ingress_decision_id=response.ingress_decision_id,
            log_position=(position.seq, position.hash),
            as_jwt=_asked_by_an_earlier_release(exchange),
        )


class SignedBatches:
    """A relayed extract's batches, each with a receipt over exactly the bytes sent.

    A batch is serialised once, as it is built: the receipt signs the digest of those bytes,
    and gRPC sends them as they are, instead of the batch being copied into the relay message
    and serialised again.
    """

    def __init__(self, batches: StreamBatches, signer: ReceiptSigner) -> None:
        self._batches = batches
        self._signer = signer

    async def __call__(
        self, exchange: Exchange
    ) -> AsyncIterator[federation_pb2.RelayStreamResponse]:
        as_jwt = _asked_by_an_earlier_release(exchange)
        async for batch, _, encoded in self._batches(exchange):
            receipt = self._signer.sign(
                exchange_id=exchange.exchange_id,
                requesting_node=exchange.requesting_node,
                response_digest=encoded_digest(encoded),
                record_count=len(batch.records),
                released_fields=list(batch.released_fields),
                ingress_decision_id=batch.ingress_decision_id,
                log_position=(
                    (exchange.opening.seq, exchange.opening.hash) if exchange.opening else None
                ),
                as_jwt=as_jwt,
            )
            exchange.peer_evidence = PeerEvidence(
                peer=exchange.requesting_node, last_receipt=receipt, assertion=exchange.assertion
            )
            if exchange.peer_accepts_encoded_batch:
                yield federation_pb2.RelayStreamResponse(encoded_batch=encoded, receipt=receipt)
            else:
                # A requesting node of an earlier release digests the batch message; its
                # deterministic serialisation is `encoded`, so the same receipt holds.
                yield federation_pb2.RelayStreamResponse(batch=batch, receipt=receipt)
