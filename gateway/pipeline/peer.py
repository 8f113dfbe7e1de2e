"""The providing node's stages of a federated exchange: the peer's identity and its receipt.

A peer is who its certificate says, checked against its own CA in the directory; the
request is the caller's, as the peer's signed assertion vouches. The providing node then
decides for itself, under its own policy, what to disclose.
"""

from __future__ import annotations

from gateway.errors import InvalidRequest
from gateway.exchange import Exchange, PeerEvidence
from gateway.federation.assertions import (
    AssertionVerifier,
    ReceiptSigner,
    request_digest,
)
from gateway.federation.directory import DirectoryLookup
from gateway.federation.peers import peer_identity


class AuthenticatePeer:
    """The calling peer from its certificate; the original caller from the peer's assertion."""

    def __init__(
        self, *, node: str, directory: DirectoryLookup, verifier: AssertionVerifier
    ) -> None:
        self._node = node
        self._directory = directory
        self._verifier = verifier

    async def __call__(self, exchange: Exchange) -> None:
        peer = peer_identity(exchange.peer_certificate, self._directory)
        exchange.requesting_node = peer
        exchange.providing_node = self._node
        if exchange.request is None:
            raise InvalidRequest(f"the request body is not a valid {exchange.rpc} relay message")
        if exchange.exchange_id_invalid:
            raise InvalidRequest("exchange_id must be 32 lowercase hex characters")
        exchange.requester = self._verifier.verify(
            exchange.assertion,
            peer_node=peer,
            exchange_id=exchange.exchange_id,
            request_digest=request_digest(exchange.request),
        )


class SignReceipt:
    """Signs what was released (a digest, never the data) for the requesting node to keep."""

    def __init__(self, signer: ReceiptSigner) -> None:
        self._signer = signer

    async def __call__(self, exchange: Exchange) -> None:
        response = exchange.response
        digest = request_digest(response)
        receipt = self._signer.sign(
            exchange_id=exchange.exchange_id,
            requesting_node=exchange.requesting_node,
            response_digest=digest,
            record_count=len(response.records),
            released_fields=list(response.released_fields),
            ingress_decision_id=response.ingress_decision_id,
        )
        exchange.receipt = receipt
        exchange.peer_evidence = PeerEvidence(
            peer=exchange.requesting_node,
            receipt=receipt,
            response_digest=digest,
            assertion=exchange.assertion,
        )
