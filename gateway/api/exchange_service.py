"""The gRPC servicer of the exchange API: thin, it hands each call to the pipeline.

Both methods run inside the edge's wrappers (gateway/api/edge.py), which receive the raw
request bytes and turn whatever escapes into a status.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from concordat.exchange.v1 import exchange_pb2
from gateway.api.edge import Call, decode, server_stream, unary
from gateway.exchange import Exchange, Rpc
from gateway.pipeline.batches import CallerBatches, StreamBatch
from gateway.pipeline.run import Pipeline


def _caller_exchange(rpc: Rpc, request: object, call: Call) -> Exchange:
    return Exchange(
        rpc=rpc,
        role="local",
        request=request,
        metadata=tuple(call.context.invocation_metadata() or ()),
        deadline_seconds=call.context.time_remaining(),
        exchange_id=call.exchange_id,
    )


class ExchangeService:
    def __init__(
        self,
        *,
        get_pipeline: Pipeline,
        stream_pipeline: Pipeline,
        stream_batches: CallerBatches,
    ) -> None:
        self._get = get_pipeline
        self._stream = stream_pipeline
        self._batches = stream_batches

    @unary
    async def GetRecord(self, call: Call) -> exchange_pb2.GetRecordResponse:
        request = decode(exchange_pb2.GetRecordRequest, call.request)
        response: exchange_pb2.GetRecordResponse = await self._get.run(
            _caller_exchange("GetRecord", request, call)
        )
        return response

    @server_stream
    async def StreamRecords(self, call: Call) -> AsyncIterator[StreamBatch]:
        request = decode(exchange_pb2.StreamRecordsRequest, call.request)
        exchange = _caller_exchange("StreamRecords", request, call)
        async for response in self._stream.stream(exchange, self._batches):
            yield response
