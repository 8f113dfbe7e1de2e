"""The bare baselines: the same processes, hops, TLS and payloads as Concordat, and nothing else.

No authentication, policy, audit or minimisation: a one-hop ExchangeService answering a fixed
response, and a relay chain (caller -> relay -> provider) whose relay forwards over mutual TLS
to a FederationService, re-streaming bulk batches as they arrive. Each server is a child
process started as `python -m bench.bare --role ...`; the parent side is `one_hop` and
`relay_chain`.

Those resend one prebuilt batch, so they measure gRPC. `reading_chain` is the fair bulk
baseline, what a department would write without Concordat: the same relay chain, whose
provider reads the same table with the same batching (keyset pages read a page ahead on a
thread, through a plain DB-API cursor) and builds the same records, with no policy, audit,
resume-token MAC or signatures.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import sys
import threading
from collections.abc import AsyncIterator, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import grpc
import uvloop

from bench.children import ready_port, spawned
from bench.clients import Endpoint
from concordat.exchange.v1 import exchange_pb2, exchange_pb2_grpc
from concordat.federation.v1 import federation_pb2, federation_pb2_grpc
from concordat.records.v1 import records_pb2
from gateway.dev.pki import NodeMaterial, ensure_node_material

FIRST_NODE, SECOND_NODE = "whitehall", "holyrood"
# The same limits as the node's own server (gateway/api/server.py), which this module cannot import
# without the whole gateway.
SERVER_OPTIONS = (
    ("grpc.max_receive_message_length", 4 * 1024 * 1024),
    ("grpc.max_send_message_length", 16 * 1024 * 1024),
    ("grpc.so_reuseport", 0),
)
CHANNEL_OPTIONS = (("grpc.max_receive_message_length", 16 * 1024 * 1024),)

PERSON_FIELDS = list(records_pb2.Person.DESCRIPTOR.fields_by_name)
REQUEST = exchange_pb2.GetRecordRequest(
    record_type=exchange_pb2.RECORD_TYPE_PERSON,
    subject=exchange_pb2.SubjectIdentifier(nino="ZX481736C"),
    purpose=exchange_pb2.PURPOSE_PUBLIC_SERVICE_DELIVERY,
    agreement_id="agr-dwp-sg-psd-2025-01",
    field_mask={"paths": PERSON_FIELDS},
    case_reference="SSS-CASE-2025-004817",
)
RESPONSE = exchange_pb2.GetRecordResponse(
    exchange_id="01JC8Z4K7W3T9V5Q2M6N8P0R4S",
    records=[
        records_pb2.Record(
            person=records_pb2.Person(
                nino="ZX481736C",
                given_name="Catriona",
                family_name="MacLennan-Fraser",
                date_of_birth="1984-07-19",
                uprn=906700012345,
                address_line="Flat 3/2, 117 Great Western Road, Hillhead, Glasgow",
                postcode="G12 8HX",
            )
        )
    ],
    released_fields=PERSON_FIELDS,
    obligations=[
        exchange_pb2.Obligation(
            code="retain-max-days",
            description="Delete the records within the agreement's retention period.",
            parameters={"days": "90"},
        )
    ],
    egress_decision_id="dec-5f0c8a52-3c1e-4f7a-9d2b-7e4a1c9b6d30",
    ingress_decision_id="dec-a91e4b7c-2d3f-4e5a-8b6c-0f1d2e3a4b5c",
    provider_node=FIRST_NODE,
)
STREAM_RECORD = records_pb2.Record(
    benefit_award=records_pb2.BenefitAward(
        award_id="SSS-000481736",
        nino="ZX481736C",
        benefit="Adult Disability Payment",
        weekly_amount_pence=10855,
        start_date="2024-03-11",
        end_date="2026-03-10",
        status="live",
        administration=SECOND_NODE,
    )
)
# The statistics release of a death registration (bench.concordat_paths.DEATHS_BULK_ASK), a
# little under the average size of the bulk rows gateway.dev.demo seeds for it (about 210 bytes).
DEATH_STREAM_RECORD = records_pb2.Record(
    death_registration=records_pb2.DeathRegistration(
        registration_district="Lisburn",
        date_of_death="2023-06-14",
        place_of_death="Lisburn Royal Infirmary, Church Road, Lisburn",
        cause_of_death=(
            "I(a) bronchopneumonia; I(b) chronic obstructive pulmonary disease; "
            "II type 2 diabetes mellitus, atrial fibrillation"
        ),
        registered_on="2023-06-19",
    )
)
STREAM_RECORDS = {"benefit_award": STREAM_RECORD, "death_registration": DEATH_STREAM_RECORD}
# A resume token as long as the node's (a signed, base64-encoded cursor).
# Not a secret: only its length matters.
RESUME_TOKEN = "eyJjIjogIjEwMDAwMCIsICJyIjogIjBmM2E5YzJkNGU1YjZhNzgifQ==.q9Zx1bV2c3N4m5L6k7J8hQ=="  # noqa: S105


def stream_request(batch_size: int) -> exchange_pb2.StreamRecordsRequest:
    return exchange_pb2.StreamRecordsRequest(
        record_type=exchange_pb2.RECORD_TYPE_BENEFIT_AWARD,
        purpose=exchange_pb2.PURPOSE_STATISTICS,
        agreement_id="agr-ons-sss-benefits-2025",
        field_mask={"paths": list(records_pb2.BenefitAward.DESCRIPTOR.fields_by_name)},
        batch_size=batch_size,
    )


@contextmanager
def one_hop(workdir: Path, *, stream_records: int, batch_size: int) -> Iterator[Endpoint]:
    """A bare ExchangeService over server TLS, in a child process."""
    first, _ = _material(workdir)
    with ExitStack() as stack:
        pid, port = _start(stack, workdir, "exchange", stream_records)
        yield Endpoint(
            address=f"127.0.0.1:{port}",
            ca_cert=first.ca_cert,
            pids=(pid,),
            request=REQUEST,
            stream_request=stream_request(batch_size),
        )


@contextmanager
def relay_chain(
    workdir: Path, *, stream_records: int, batch_size: int, stream_record: str = "benefit_award"
) -> Iterator[Endpoint]:
    """Caller -> relay (server TLS) -> provider (mutual TLS), each hop its own child process.

    Extracts stream `stream_records` copies of `STREAM_RECORDS[stream_record]`.
    """
    first, _ = _material(workdir)
    with ExitStack() as stack:
        provider_pid, provider_port = _start(
            stack, workdir, "provider", stream_records, "--stream-record", stream_record
        )
        relay_pid, relay_port = _start(
            stack, workdir, "relay", stream_records, "--upstream", f"127.0.0.1:{provider_port}"
        )
        yield Endpoint(
            address=f"127.0.0.1:{relay_port}",
            ca_cert=first.ca_cert,
            pids=(relay_pid, provider_pid),
            request=REQUEST,
            stream_request=stream_request(batch_size),
        )


@contextmanager
def reading_chain(
    workdir: Path,
    *,
    database: Path,
    table: str,
    key: str,
    fields: Mapping[str, str],
    record: str,
    stream_request: exchange_pb2.StreamRecordsRequest,
) -> Iterator[Endpoint]:
    """Caller -> relay -> a provider reading `table` of the SQLite file `database`.

    Each record is `Record(<record>=<field: value of its column>)` for `fields` (field name to
    column), in `key` order, in pages of the request's batch size. The provider sends each
    batch serialised once and the relay hands those bytes on unparsed, as a Concordat
    requesting node does; a relay that parsed and re-serialised every batch would cost the
    baseline more than Concordat's path and flatter the ratio.
    """
    first, _ = _material(workdir)
    columns = [f"--field={field}={column}" for field, column in fields.items()]
    with ExitStack() as stack:
        provider_pid, provider_port = _start(
            stack,
            workdir,
            f"reading-provider-{record}",
            0,
            "--database",
            str(database),
            "--table",
            table,
            "--key",
            key,
            "--stream-record",
            record,
            *columns,
            role="reading-provider",
        )
        relay_pid, relay_port = _start(
            stack,
            workdir,
            f"reading-relay-{record}",
            0,
            "--upstream",
            f"127.0.0.1:{provider_port}",
            role="passthrough-relay",
        )
        yield Endpoint(
            address=f"127.0.0.1:{relay_port}",
            ca_cert=first.ca_cert,
            pids=(relay_pid, provider_pid),
            request=REQUEST,
            stream_request=stream_request,
        )


def payload_sizes() -> dict[str, int]:
    return {
        "request_bytes": REQUEST.ByteSize(),
        "response_bytes": RESPONSE.ByteSize(),
        "stream_record_bytes": STREAM_RECORD.ByteSize(),
        "death_stream_record_bytes": DEATH_STREAM_RECORD.ByteSize(),
    }


def _material(workdir: Path) -> tuple[NodeMaterial, NodeMaterial]:
    # Made here, before any child starts, so two children never race to create the same key.
    state_dir = workdir / "bare-pki"
    return ensure_node_material(state_dir, FIRST_NODE), ensure_node_material(state_dir, SECOND_NODE)


def _start(
    stack: ExitStack,
    workdir: Path,
    name: str,
    stream_records: int,
    *extra: str,
    role: str | None = None,
) -> tuple[int, int]:
    """Starts `python -m bench.bare --role <role or name>`, logging to bare-<name>.log."""
    log = workdir / f"bare-{name}.log"
    argv = [
        sys.executable,
        "-m",
        "bench.bare",
        "--role",
        role or name,
        "--state-dir",
        str(workdir / "bare-pki"),
        "--stream-records",
        str(stream_records),
        *extra,
    ]
    process = stack.enter_context(spawned(argv, log, ready_line=True))
    return process.pid, ready_port(process, log)


class FixedExchange(exchange_pb2_grpc.ExchangeServiceServicer):
    """Answers every GetRecord with the same response and every extract with the same batches."""

    def __init__(self, stream_records: int, stream_record: records_pb2.Record) -> None:
        self._stream_records = stream_records
        self._stream_record = stream_record

    async def GetRecord(
        self, request: exchange_pb2.GetRecordRequest, context: grpc.aio.ServicerContext
    ) -> exchange_pb2.GetRecordResponse:
        return RESPONSE

    async def StreamRecords(
        self, request: exchange_pb2.StreamRecordsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[exchange_pb2.StreamRecordsResponse]:
        for batch in _batches(self._stream_records, request.batch_size, self._stream_record):
            yield batch


class FixedProvider(federation_pb2_grpc.FederationServiceServicer):
    """The providing end of the relay chain: the same fixed answers, wrapped for federation."""

    def __init__(self, stream_records: int, stream_record: records_pb2.Record) -> None:
        self._stream_records = stream_records
        self._stream_record = stream_record

    async def Relay(
        self, request: federation_pb2.RelayRequest, context: grpc.aio.ServicerContext
    ) -> federation_pb2.RelayResponse:
        return federation_pb2.RelayResponse(response=RESPONSE)

    async def RelayStream(
        self, request: federation_pb2.RelayStreamRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[federation_pb2.RelayStreamResponse]:
        for batch in _batches(
            self._stream_records, request.request.batch_size, self._stream_record
        ):
            yield federation_pb2.RelayStreamResponse(batch=batch)


class TableReader:
    """Pages of one SQLite table in key order through a plain DB-API cursor, on one thread.

    sqlite3 connections belong to the thread that opened them, so each reading thread opens
    its own, read-only.
    """

    def __init__(self, database: Path, table: str, key: str, columns: list[str]) -> None:
        self._database = database
        listed = ", ".join(map(_quoted, [key, *columns]))
        # Quoted names from the bench's own mapping; values are always bound parameters.
        source = f"SELECT {listed} FROM {_quoted(table)}"  # noqa: S608
        order = f"ORDER BY {_quoted(key)} LIMIT ?"
        self._first = f"{source} {order}"
        self._after = f"{source} WHERE {_quoted(key)} > ? {order}"
        self._local = threading.local()

    def page(self, after: Any, size: int) -> tuple[list[tuple[Any, ...]], Any]:
        """Up to `size` rows after key `after` (None: from the start), and the last key."""
        connection = getattr(self._local, "connection", None)
        if connection is None:
            uri = f"{self._database.resolve().as_uri()}?mode=ro"
            connection = self._local.connection = sqlite3.connect(uri, uri=True)
        if after is None:
            rows = connection.execute(self._first, (size,)).fetchall()
        else:
            rows = connection.execute(self._after, (after, size)).fetchall()
        return rows, rows[-1][0] if rows else after


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class ReadingProvider(federation_pb2_grpc.FederationServiceServicer):
    """The fair bulk baseline's provider: reads the table page by page, one page ahead."""

    def __init__(self, reader: TableReader, record: str, fields: list[str]) -> None:
        self._reader = reader
        self._record = record
        self._fields = fields
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bare-read")

    async def RelayStream(
        self, request: federation_pb2.RelayStreamRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[federation_pb2.RelayStreamResponse]:
        size = request.request.batch_size or 1000
        loop = asyncio.get_running_loop()
        ahead: asyncio.Future[tuple[list[tuple[Any, ...]], Any]] | None = loop.run_in_executor(
            self._pool, self._reader.page, None, size
        )
        try:
            while ahead is not None:
                rows, last = await ahead
                full = len(rows) == size
                ahead = (
                    loop.run_in_executor(self._pool, self._reader.page, last, size)
                    if full
                    else None
                )
                if rows:
                    encoded = self._batch(rows, last).SerializeToString()
                    yield federation_pb2.RelayStreamResponse(encoded_batch=encoded)
        finally:
            if ahead is not None:
                ahead.cancel()

    def _batch(self, rows: list[tuple[Any, ...]], last: Any) -> exchange_pb2.StreamRecordsResponse:
        record, fields = self._record, self._fields
        # A NULL column is an absent field, as the node's SQL source leaves it.
        records = [
            {record: {f: v for f, v in zip(fields, row[1:], strict=True) if v is not None}}
            for row in rows
        ]
        return exchange_pb2.StreamRecordsResponse(
            exchange_id=RESPONSE.exchange_id,
            records=records,
            provider_node=SECOND_NODE,
            resume_token=str(last),
        )


class ForwardingRelay(exchange_pb2_grpc.ExchangeServiceServicer):
    """The requesting end: forwards each call over one reused mutual-TLS channel."""

    def __init__(self, provider: federation_pb2_grpc.FederationServiceStub) -> None:
        self._provider = provider

    async def GetRecord(
        self, request: exchange_pb2.GetRecordRequest, context: grpc.aio.ServicerContext
    ) -> exchange_pb2.GetRecordResponse:
        reply = await self._provider.Relay(federation_pb2.RelayRequest(request=request))
        return reply.response

    async def StreamRecords(
        self, request: exchange_pb2.StreamRecordsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[exchange_pb2.StreamRecordsResponse]:
        async for reply in self._provider.RelayStream(
            federation_pb2.RelayStreamRequest(request=request)
        ):
            yield reply.batch


_EXCHANGE_SERVICE = "concordat.exchange.v1.ExchangeService"
_RELAY_STREAM = "/concordat.federation.v1.FederationService/RelayStream"


def passthrough_handler(upstream: grpc.aio.Channel) -> grpc.GenericRpcHandler:
    """StreamRecords relayed as bytes: each batch the provider encoded goes on unparsed."""
    relay_stream = upstream.unary_stream(
        _RELAY_STREAM,
        request_serializer=federation_pb2.RelayStreamRequest.SerializeToString,
        response_deserializer=federation_pb2.RelayStreamResponse.FromString,
    )

    async def stream_records(
        request: exchange_pb2.StreamRecordsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[bytes]:
        async for reply in relay_stream(federation_pb2.RelayStreamRequest(request=request)):
            yield reply.encoded_batch

    return grpc.method_handlers_generic_handler(
        _EXCHANGE_SERVICE,
        {
            "StreamRecords": grpc.unary_stream_rpc_method_handler(
                stream_records,
                request_deserializer=exchange_pb2.StreamRecordsRequest.FromString,
                # The bytes are already a serialised StreamRecordsResponse.
                response_serializer=None,
            )
        },
    )


def _batches(
    total: int, batch_size: int, record: records_pb2.Record
) -> Iterator[exchange_pb2.StreamRecordsResponse]:
    """`total` records in messages of `batch_size`: built once, serialised per send as usual."""
    size = batch_size or 1000
    full = exchange_pb2.StreamRecordsResponse(
        exchange_id=RESPONSE.exchange_id,
        records=[record] * size,
        provider_node=SECOND_NODE,
        resume_token=RESUME_TOKEN,
    )
    whole, rest = divmod(total, size)
    for _ in range(whole):
        yield full
    if rest:
        last = exchange_pb2.StreamRecordsResponse()
        last.CopyFrom(full)
        del last.records[rest:]
        yield last


def _trust(*materials: NodeMaterial) -> bytes:
    # Each administration runs its own CA, so a node that talks to another trusts both.
    return b"".join(m.ca_cert.read_bytes() for m in materials)


async def _serve(arguments: argparse.Namespace) -> None:
    first = ensure_node_material(arguments.state_dir, FIRST_NODE)
    second = ensure_node_material(arguments.state_dir, SECOND_NODE)
    own = second if arguments.role in ("provider", "reading-provider") else first
    server = grpc.aio.server(options=SERVER_OPTIONS)
    upstream = None
    if arguments.role == "exchange":
        exchange_pb2_grpc.add_ExchangeServiceServicer_to_server(
            FixedExchange(arguments.stream_records, STREAM_RECORDS[arguments.stream_record]),
            server,
        )
    elif arguments.role == "provider":
        federation_pb2_grpc.add_FederationServiceServicer_to_server(
            FixedProvider(arguments.stream_records, STREAM_RECORDS[arguments.stream_record]),
            server,
        )
    elif arguments.role == "reading-provider":
        fields = dict(pair.split("=", 1) for pair in arguments.field)
        reader = TableReader(arguments.database, arguments.table, arguments.key, [*fields.values()])
        federation_pb2_grpc.add_FederationServiceServicer_to_server(
            ReadingProvider(reader, arguments.stream_record, [*fields]), server
        )
    else:
        upstream = grpc.aio.secure_channel(
            arguments.upstream,
            grpc.ssl_channel_credentials(
                root_certificates=_trust(first, second),
                private_key=first.tls_key.read_bytes(),
                certificate_chain=first.tls_cert.read_bytes(),
            ),
            options=CHANNEL_OPTIONS,
        )
        if arguments.role == "passthrough-relay":
            server.add_generic_rpc_handlers((passthrough_handler(upstream),))
        else:
            exchange_pb2_grpc.add_ExchangeServiceServicer_to_server(
                ForwardingRelay(federation_pb2_grpc.FederationServiceStub(upstream)), server
            )
    mutual = arguments.role in ("provider", "reading-provider")
    credentials = grpc.ssl_server_credentials(
        [(own.tls_key.read_bytes(), own.tls_cert.read_bytes())],
        root_certificates=_trust(first, second) if mutual else None,
        require_client_auth=mutual,
    )
    port = server.add_secure_port("127.0.0.1:0", credentials)
    await server.start()
    print(f"READY {port}", flush=True)
    # The parent closes our stdin to stop us; it also closes when the parent dies.
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.buffer.read)
    await server.stop(0)
    if upstream is not None:
        await upstream.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--role",
        choices=("exchange", "provider", "reading-provider", "relay", "passthrough-relay"),
        required=True,
    )
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--stream-records", type=int, default=0)
    parser.add_argument("--stream-record", choices=tuple(STREAM_RECORDS), default="benefit_award")
    parser.add_argument("--upstream", help="the provider's host:port (relay only)")
    parser.add_argument("--database", type=Path, help="the SQLite file (reading-provider only)")
    parser.add_argument("--table", help="the table to read (reading-provider only)")
    parser.add_argument("--key", help="the table's key column (reading-provider only)")
    parser.add_argument(
        "--field", action="append", default=[], help="<record field>=<column>, repeatable"
    )
    arguments = parser.parse_args()
    if arguments.role in ("relay", "passthrough-relay") and not arguments.upstream:
        parser.error(f"--role {arguments.role} needs --upstream")
    if arguments.role == "reading-provider" and not (
        arguments.database and arguments.table and arguments.key and arguments.field
    ):
        parser.error("--role reading-provider needs --database, --table, --key and --field")
    # The nodes' own event loop (`[node] event_loop`, uvloop by default), so a ratio measures
    # what Concordat adds and not which loop each side runs on.
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(_serve(arguments))


if __name__ == "__main__":
    main()
