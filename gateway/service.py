"""The gRPC servicer of the exchange API: thin, it hands each call to the pipeline."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from concordat.exchange.v1 import exchange_pb2, exchange_pb2_grpc
from gateway.errors import ConcordatError
from gateway.exchange import Exchange
from gateway.pipeline import Pipeline
from gateway.status import to_grpc_status
from gateway.streaming import CallerBatches, StreamBatch


class ExchangeService(exchange_pb2_grpc.ExchangeServiceServicer):
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

    async def GetRecord(
        self, request: exchange_pb2.GetRecordRequest, context: grpc.aio.ServicerContext
    ) -> exchange_pb2.GetRecordResponse:
        exchange = Exchange(
            rpc="GetRecord",
            role="local",
            request=request,
            metadata=tuple(context.invocation_metadata() or ()),
            deadline_seconds=context.time_remaining(),
        )
        try:
            return await self._get.run(exchange)
        except ConcordatError as error:
            await context.abort_with_status(to_grpc_status(error, exchange.exchange_id))
            raise  # unreachable: abort_with_status raises

    async def StreamRecords(
        self, request: exchange_pb2.StreamRecordsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[StreamBatch]:
        exchange = Exchange(
            rpc="StreamRecords",
            role="local",
            request=request,
            metadata=tuple(context.invocation_metadata() or ()),
            deadline_seconds=context.time_remaining(),
        )
        try:
            async for response in self._stream.stream(exchange, self._batches):
                yield response
        except ConcordatError as error:
            await context.abort_with_status(to_grpc_status(error, exchange.exchange_id))
