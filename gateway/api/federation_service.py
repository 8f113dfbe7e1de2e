"""The federation API's servicer: the providing node's side, which peers call over mutual TLS.

Thin, like the exchange API's: it decodes the relay (gateway/api/edge.py), names the exchange
and hands it to the provider's pipeline; the checks are stages (gateway/pipeline/peer.py).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

from concordat.federation.v1 import federation_pb2
from gateway.api.edge import Call, decode, server_stream, unary
from gateway.exchange import Exchange, Rpc
from gateway.pipeline.peer import SignedBatches
from gateway.pipeline.run import Pipeline

_EXCHANGE_ID = re.compile(r"^[0-9a-f]{32}$")


def _provider_exchange(
    rpc: Rpc,
    relay_request: federation_pb2.RelayRequest | federation_pb2.RelayStreamRequest | None,
    call: Call,
) -> Exchange:
    """The exchange a relay starts; one whose bytes did not decode is refused by the pipeline,
    after the peer is named from its certificate, so that its audit entry says who sent it."""
    certificate = next(iter(call.context.auth_context().get("x509_pem_cert", ())), None)
    if relay_request is not None and _EXCHANGE_ID.match(relay_request.exchange_id):
        call.exchange_id = relay_request.exchange_id
    return Exchange(
        rpc=rpc,
        role="provider",
        request=relay_request.request if relay_request is not None else None,
        # The peer's metadata carries no credentials (its assertion is in the request); the
        # trace context it sends is read from it when this node traces.
        metadata=tuple(call.context.invocation_metadata() or ()),
        deadline_seconds=call.context.time_remaining(),
        exchange_id=call.exchange_id,
        peer_certificate=certificate,
        assertion=relay_request.assertion if relay_request is not None else "",
        exchange_id_invalid=(
            relay_request is not None and relay_request.exchange_id != call.exchange_id
        ),
    )


class FederationService:
    def __init__(
        self,
        *,
        get_pipeline: Pipeline,
        stream_pipeline: Pipeline,
        stream_batches: SignedBatches,
    ) -> None:
        self._get = get_pipeline
        self._stream = stream_pipeline
        self._batches = stream_batches

    @unary
    async def Relay(self, call: Call) -> federation_pb2.RelayResponse:
        exchange = _provider_exchange(
            "GetRecord", decode(federation_pb2.RelayRequest, call.request), call
        )
        response = await self._get.run(exchange)
        return federation_pb2.RelayResponse(response=response, receipt=exchange.receipt)

    @server_stream
    async def RelayStream(self, call: Call) -> AsyncIterator[federation_pb2.RelayStreamResponse]:
        request = decode(federation_pb2.RelayStreamRequest, call.request)
        exchange = _provider_exchange("StreamRecords", request, call)
        exchange.peer_accepts_encoded_batch = request is not None and request.accepts_encoded_batch
        async for response in self._stream.stream(exchange, self._batches):
            yield response
