"""The requesting node's side of a federated exchange: relay, retry, verify the receipt.

Retries happen only for failures that released nothing (the peer was unreachable, or
answered UNAVAILABLE), with jittered backoff inside the caller's deadline; while a peer keeps
failing its circuit breaker answers UNAVAILABLE at once.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from functools import partial
from typing import Any, NamedTuple

import grpc
import structlog
from google.protobuf.message import DecodeError

from concordat.exchange.v1 import exchange_pb2
from concordat.federation.v1 import federation_pb2
from gateway import errors, records, wire
from gateway.api.status import STATUS_FOR_ERROR, error_for_reason, error_info
from gateway.domain import merge_obligations
from gateway.exchange import Exchange, PeerEvidence
from gateway.federation.assertions import (
    DIGEST_KEY_METADATA,
    AssertionSigner,
    ReceiptVerifier,
    encoded_digest,
    keyed_request_digest,
    new_digest_key,
    request_digest,
)
from gateway.federation.breaker import call_retrying
from gateway.federation.peers import Peer, PeerClients
from gateway.pipeline.respond import obligations_from_proto, take_peer_withheld

log = structlog.get_logger("concordat.relay")

_RETRYABLE_CODES = {grpc.StatusCode.UNAVAILABLE}
_BREAKER_CODES = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}


# A peer's error, by the reason its edge gave (the status table's codes): passed on to our
# caller as the same kind of error, or, when the peer refused this node, as PeerRejected.
_PASSED_ON: frozenset[type[errors.ConcordatError]] = frozenset(
    {
        errors.PolicyDenied,
        errors.RecordNotFound,
        errors.InvalidRequest,
        errors.Unavailable,
        errors.DeadlineExceeded,
    }
)
_REFUSED_THIS_NODE: frozenset[type[errors.ConcordatError]] = frozenset(
    {errors.Unauthenticated, errors.PeerRejected}
)
_PEER_METADATA = ("rule", "decision_id", "agreement_id", "node", "reason")

# What goes with each call to a peer besides the request: the W3C trace context when the
# node traces (gateway/observability/tracing.py), nothing when it does not.
PeerMetadata = Callable[[], tuple[tuple[str, str], ...]]


def no_peer_metadata() -> tuple[tuple[str, str], ...]:
    return ()


# How much of a peer's own message is repeated to our caller.
_PEER_MESSAGE_WIDTH = 300


def remote_error(error: grpc.aio.AioRpcError, peer: str) -> errors.ConcordatError:
    """Translates a peer's status into our error tree by the status table.

    A status that carries a Concordat ErrorInfo whose reason agrees with its code is the
    peer's edge speaking: its rule, reason and (bounded) message are passed on. Anything
    else came from the transport (a refused connection, a TLS failure, a proxy): the caller
    learns the peer's name and that nothing was released; the detail goes to our log only.
    """
    code = error.code()
    info = error_info(error)
    metadata = {k: v for k, v in info.items() if k in _PEER_METADATA}
    metadata["peer"] = peer
    kind = error_for_reason(info.get("reason", ""))
    if kind is None or STATUS_FOR_ERROR[kind] != code:
        return _transport_error(error, peer, metadata)
    detail = (error.details() or code.name)[:_PEER_MESSAGE_WIDTH]
    if kind in _REFUSED_THIS_NODE:
        return errors.PeerRejected(f"{peer} refused this node: {detail}", metadata=metadata)
    if kind is errors.InvalidRequest:
        return errors.InvalidRequest(f"{peer} refused the request: {detail}", metadata=metadata)
    if kind is errors.DeadlineExceeded:
        return errors.DeadlineExceeded(
            f"{peer} did not answer within the deadline", metadata=metadata
        )
    if kind is errors.Unavailable:
        return errors.Unavailable(f"{peer} is unavailable: {detail}", metadata=metadata)
    if kind in _PASSED_ON:
        return kind(detail, metadata=metadata)
    # The peer failed after it may have done work (internal, local data, ...): never retried.
    return errors.Unavailable(
        f"{peer} could not complete the exchange ({kind.code})",
        metadata={**metadata, "released": "true"},
    )


def _transport_error(
    error: grpc.aio.AioRpcError, peer: str, metadata: dict[str, str]
) -> errors.ConcordatError:
    code = error.code()
    log.warning(
        "peer_call_failed",
        peer=peer,
        status=code.name,
        detail=(error.details() or "")[:_PEER_MESSAGE_WIDTH],
    )
    if code in _RETRYABLE_CODES:
        return errors.Unavailable(
            f"{peer} is unavailable; nothing was released; retry later", metadata=metadata
        )
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return errors.DeadlineExceeded(
            f"{peer} did not answer within the deadline", metadata=metadata
        )
    if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
        return errors.PeerRejected(f"{peer} refused this node ({code.name})", metadata=metadata)
    return errors.Unavailable(
        f"{peer} could not complete the exchange ({code.name})",
        metadata={**metadata, "released": "true"},
    )


class Relay:
    """Sends the exchange to the providing node and takes back records and a signed receipt."""

    def __init__(
        self,
        *,
        peers: PeerClients,
        signer: AssertionSigner,
        receipts: ReceiptVerifier,
        attempts: int,
        peer_metadata: PeerMetadata = no_peer_metadata,
    ) -> None:
        self._peers = peers
        self._signer = signer
        self._receipts = receipts
        self._attempts = attempts
        self._peer_metadata = peer_metadata

    async def __call__(self, exchange: Exchange) -> None:
        peer = self._peers.get(exchange.providing_node)
        request = relayed_request(exchange)
        digest_key = new_digest_key()
        digest = keyed_request_digest(digest_key, request)
        deadline_at = time.monotonic() + remaining_seconds(exchange)
        reply = await call_retrying(
            partial(self._call_once, exchange, peer, request, (digest, digest_key), deadline_at),
            deadline_at,
            self._attempts,
        )
        response = reply.response
        response_digest = request_digest(response)
        self._receipts.verify(
            reply.receipt,
            provider_node=peer.node,
            exchange_id=exchange.exchange_id,
            response_digest=response_digest,
        )
        allowed = set(exchange.released_fields)
        if not set(response.released_fields) <= allowed:
            raise errors.PeerRejected(f"{peer.node} released fields this node did not ask for")
        exchange.records = list(response.records)
        exchange.record_count = len(exchange.records)
        exchange.bytes_released = records.size_of(exchange.records)
        exchange.released_fields = tuple(response.released_fields)
        exchange.obligations = merge_obligations(
            exchange.obligations, obligations_from_proto(response.obligations)
        )
        exchange.peer_ingress_decision_id = response.ingress_decision_id
        take_peer_withheld(exchange, response)
        exchange.peer_evidence = PeerEvidence(
            peer=peer.node,
            receipt=reply.receipt,
            response_digest=response_digest,
            ingress_decision_id=response.ingress_decision_id,
        )

    async def _call_once(
        self,
        exchange: Exchange,
        peer: Peer,
        request: exchange_pb2.GetRecordRequest,
        keyed_digest: tuple[str, bytes],
        deadline_at: float,
    ) -> federation_pb2.RelayResponse:
        peer.breaker.before_call()
        remaining = deadline_at - time.monotonic()
        if remaining <= 0:
            raise errors.DeadlineExceeded("the call's deadline ran out before the relay")
        digest, digest_key = keyed_digest
        assertion = sign_assertion(self._signer, exchange, peer.node, digest, remaining)
        try:
            # The generated stub is untyped; the reply's type is stated here.
            reply: federation_pb2.RelayResponse = await peer.stub.Relay(
                federation_pb2.RelayRequest(
                    exchange_id=exchange.exchange_id, assertion=assertion, request=request
                ),
                timeout=remaining,
                metadata=(*self._peer_metadata(), (DIGEST_KEY_METADATA, digest_key)),
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() in _BREAKER_CODES:
                peer.breaker.record_failure()
            else:
                peer.breaker.record_success()
            raise remote_error(exc, peer.node) from exc
        peer.breaker.record_success()
        return reply


def relayed_request(exchange: Exchange) -> Any:
    """The caller's request as relayed: narrowed to the fields our egress policy released."""
    request = type(exchange.request)()
    request.CopyFrom(exchange.request)
    del request.field_mask.paths[:]
    request.field_mask.paths.extend(exchange.released_fields)
    request.provider_node = exchange.providing_node
    return request


def sign_assertion(
    signer: AssertionSigner, exchange: Exchange, peer: str, digest: str, expires_in: float
) -> str:
    """The on-behalf-of assertion for one relay: who asks, which exchange, which request."""
    assert exchange.requester is not None  # noqa: S101 - authenticated before routing
    return signer.sign(
        exchange_id=exchange.exchange_id,
        audience_node=peer,
        requester=exchange.requester,
        request_digest=digest,
        expires_in=expires_in,
    )


class _PassedOn(NamedTuple):
    """A verified batch handed on as the bytes its receipt signs, and its records' view."""

    view: federation_pb2.RelayedBatchView
    encoded: bytes


def remaining_seconds(exchange: Exchange) -> float:
    """What is left of the exchange's deadline (the caller's, or the node's configured one)."""
    budget = exchange.deadline_seconds or 0.0
    return max(0.0, budget - (time.monotonic() - exchange.started))


class RemoteBatches:
    """Relays a bulk extract from the providing node, batch by batch, checking each receipt.

    Each batch is pulled from the peer only after the previous one was handed to our caller,
    so a slow caller slows the provider (gRPC flow control end to end).
    """

    def __init__(
        self,
        *,
        peers: PeerClients,
        signer: AssertionSigner,
        receipts: ReceiptVerifier,
        peer_metadata: PeerMetadata = no_peer_metadata,
    ) -> None:
        self._peers = peers
        self._signer = signer
        self._receipts = receipts
        self._peer_metadata = peer_metadata

    async def __call__(
        self, exchange: Exchange
    ) -> AsyncIterator[exchange_pb2.StreamRecordsResponse | wire.EncodedResponse]:
        peer = self._peers.get(exchange.providing_node)
        request = relayed_request(exchange)
        digest_key = new_digest_key()
        digest = keyed_request_digest(digest_key, request)
        peer.breaker.before_call()
        assertion = sign_assertion(
            self._signer, exchange, peer.node, digest, remaining_seconds(exchange)
        )
        call = peer.stub.RelayStream(
            federation_pb2.RelayStreamRequest(
                exchange_id=exchange.exchange_id,
                assertion=assertion,
                request=request,
                accepts_encoded_batch=True,
            ),
            timeout=remaining_seconds(exchange) or None,
            metadata=(*self._peer_metadata(), (DIGEST_KEY_METADATA, digest_key)),
        )
        receipts = 0
        # Appended to each batch handed on as it was signed: a parser keeps the last value of
        # a singular field, so the caller sees this exchange's id whatever the batch carried.
        exchange_id_field = exchange_pb2.StreamRecordsResponse(
            exchange_id=exchange.exchange_id
        ).SerializeToString()
        try:
            async for item in call:
                verified = self._verified(item, peer.node, exchange.exchange_id)
                receipts += 1
                exchange.peer_evidence = PeerEvidence(
                    peer=peer.node, receipts=receipts, last_receipt=item.receipt
                )
                if isinstance(verified, _PassedOn):
                    records_signed = verified.view.records
                    exchange.record_count += len(records_signed)
                    exchange.bytes_released += sum(map(len, records_signed))
                    yield wire.EncodedResponse(verified.encoded + exchange_id_field)
                    continue
                batch = verified
                exchange.record_count += len(batch.records)
                exchange.bytes_released += records.size_of(batch.records)
                if batch.released_fields:
                    exchange.released_fields = tuple(batch.released_fields)
                    exchange.peer_ingress_decision_id = batch.ingress_decision_id
                    # After the receipt check: only verified batches say what a peer withheld.
                    take_peer_withheld(exchange, batch)
                batch.exchange_id = exchange.exchange_id
                if batch.released_fields:
                    batch.egress_decision_id = (
                        exchange.egress.decision_id if exchange.egress else ""
                    )
                yield batch
        except grpc.aio.AioRpcError as exc:
            if exc.code() in _BREAKER_CODES:
                peer.breaker.record_failure()
            raise remote_error(exc, peer.node) from exc
        peer.breaker.record_success()

    def _verified(
        self, item: federation_pb2.RelayStreamResponse, provider: str, exchange_id: str
    ) -> exchange_pb2.StreamRecordsResponse | _PassedOn:
        """The batch `item` carries, once its receipt is shown to sign exactly these records.

        The digest is taken over the bytes as received, before they are parsed: nothing the
        provider did not sign is parsed, and the batch is never serialised again to check it.
        A batch that says what was released (the first) is read whole, as this node records
        it; any other is only viewed, to count its records, and handed on as its bytes.
        """
        if item.HasField("batch"):
            # A providing node of an earlier release sends the batch as a message.
            self._check_receipt(item.receipt, provider, exchange_id, request_digest(item.batch))
            return item.batch
        encoded = item.encoded_batch
        self._check_receipt(item.receipt, provider, exchange_id, encoded_digest(encoded))
        try:
            view = federation_pb2.RelayedBatchView.FromString(encoded)
            if not view.released_fields:
                return _PassedOn(view, encoded)
            return exchange_pb2.StreamRecordsResponse.FromString(encoded)
        except DecodeError as exc:
            raise errors.PeerRejected(f"{provider} signed a batch that does not parse") from exc

    def _check_receipt(self, receipt: str, provider: str, exchange_id: str, digest: str) -> None:
        self._receipts.verify(
            receipt, provider_node=provider, exchange_id=exchange_id, response_digest=digest
        )
