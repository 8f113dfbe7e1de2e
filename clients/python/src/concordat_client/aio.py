"""The asyncio client: the same calls as `Client`, awaited."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from types import TracebackType

import grpc

from concordat_client import channel as channels
from concordat_client.client import GET_RECORD, STREAM_RECORDS
from concordat_client.contracts.exchange.v1 import exchange_pb2
from concordat_client.errors import from_rpc_error
from concordat_client.messages import (
    Batch,
    Purpose,
    R,
    Release,
    Resumption,
    Subject,
    get_record_request,
    release_of,
    stream_records_request,
)


class AsyncClient:
    """Calls your administration's node from asyncio code; see `Client`.

    `token` is still a plain function: gRPC calls it on its own thread for every attempt.
    """

    def __init__(
        self,
        target: str,
        *,
        token: channels.TokenProvider,
        ca_cert: Path | bytes | None = None,
        server_name: str | None = None,
        retry: channels.RetryPolicy = channels.DEFAULT_RETRY,
        options: Sequence[channels.ChannelOption] = (),
    ) -> None:
        self._channel = grpc.aio.secure_channel(
            target,
            channels.credentials(token, ca_cert),
            options=channels.options(retry, server_name, options),
        )
        self._get_record = self._channel.unary_unary(
            GET_RECORD,
            request_serializer=exchange_pb2.GetRecordRequest.SerializeToString,
            response_deserializer=exchange_pb2.GetRecordResponse.FromString,
        )
        self._stream_records = self._channel.unary_stream(
            STREAM_RECORDS,
            request_serializer=exchange_pb2.StreamRecordsRequest.SerializeToString,
            response_deserializer=exchange_pb2.StreamRecordsResponse.FromString,
        )

    async def get_record(
        self,
        record_class: type[R],
        subject: Subject,
        *,
        purpose: Purpose,
        agreement_id: str,
        fields: Sequence[str],
        case_reference: str = "",
        idempotency_key: str | None = None,
        provider_node: str = "",
        timeout: float = 30.0,
    ) -> Release[R]:
        """One subject's records of `record_class` (e.g. `BirthRegistration`)."""
        request = get_record_request(
            record_class,
            subject,
            purpose=purpose,
            agreement_id=agreement_id,
            fields=fields,
            case_reference=case_reference,
            idempotency_key=idempotency_key,
            provider_node=provider_node,
        )
        try:
            response: exchange_pb2.GetRecordResponse = await self._get_record(
                request, timeout=timeout
            )
        except grpc.aio.AioRpcError as exc:
            raise from_rpc_error(exc) from exc
        return release_of(record_class, response)

    async def stream_records(
        self,
        record_class: type[R],
        *,
        purpose: Purpose,
        agreement_id: str,
        fields: Sequence[str],
        subjects: Sequence[Subject] = (),
        batch_size: int = 0,
        case_reference: str = "",
        provider_node: str = "",
        resume_token: str = "",
        timeout: float | None = None,
    ) -> AsyncIterator[Batch[R]]:
        """A bulk extract, batch by batch; it resumes by itself after a broken connection."""
        request = stream_records_request(
            record_class,
            purpose=purpose,
            agreement_id=agreement_id,
            fields=fields,
            subjects=subjects,
            batch_size=batch_size,
            case_reference=case_reference,
            provider_node=provider_node,
            resume_token=resume_token,
        )
        resumption = Resumption(record_class, request, timeout)
        while True:
            message, left = resumption.next_call()
            call = self._stream_records(message, timeout=left)
            try:
                async for response in call:
                    yield resumption.batch(response)
                return
            except grpc.aio.AioRpcError as exc:
                error = from_rpc_error(exc)
                if not resumption.resumes_after(error):
                    raise error from exc
            finally:
                call.cancel()

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()
