"""A small client for departmental systems (and the CLI, tests and benchmarks)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import grpc

from concordat.exchange.v1 import exchange_pb2, exchange_pb2_grpc

TokenSource = Callable[[], str]


def secure_channel(
    address: str, ca_cert: Path, *, server_name: str | None = None
) -> grpc.aio.Channel:
    options: list[tuple[str, int | str]] = [("grpc.max_receive_message_length", 16 * 1024 * 1024)]
    if server_name:
        options.append(("grpc.ssl_target_name_override", server_name))
    credentials = grpc.ssl_channel_credentials(root_certificates=ca_cert.read_bytes())
    return grpc.aio.secure_channel(address, credentials, options=options)


class ExchangeClient:
    """Calls one node's exchange API; a fresh token per call, as single-use tokens require."""

    def __init__(self, channel: grpc.aio.Channel, token: TokenSource) -> None:
        self._channel = channel
        self._stub = exchange_pb2_grpc.ExchangeServiceStub(channel)
        self._token = token

    def _metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self._token()}"),)

    async def get_record(
        self, request: exchange_pb2.GetRecordRequest, *, timeout: float = 10.0
    ) -> exchange_pb2.GetRecordResponse:
        # The generated stub is untyped, so the responses' types are stated here.
        response: exchange_pb2.GetRecordResponse = await self._stub.GetRecord(
            request, metadata=self._metadata(), timeout=timeout
        )
        return response

    def stream_records(
        self, request: exchange_pb2.StreamRecordsRequest, *, timeout: float = 600.0
    ) -> AsyncIterator[exchange_pb2.StreamRecordsResponse]:
        responses: AsyncIterator[exchange_pb2.StreamRecordsResponse] = self._stub.StreamRecords(
            request, metadata=self._metadata(), timeout=timeout
        )
        return responses

    async def close(self) -> None:
        await self._channel.close()
