"""An OTLP/gRPC trace receiver on a free loopback port: what a collector is to a node.

It implements `opentelemetry.proto.collector.trace.v1.TraceService` (the service a node's
OTLP exporter calls) on a real gRPC server in its own threads, and keeps every span it is
sent with its resource's `service.name`, or, for a benchmark, only counts them.

`python -m tests.support.otlp_receiver` runs one that counts, as the benchmark's collector in
a process of its own: it prints `READY <port>`, and `SPANS <count>` once its stdin closes.
"""

from __future__ import annotations

import sys
import threading
from concurrent import futures
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.trace.v1 import trace_pb2


@dataclass(frozen=True)
class ReceivedSpan:
    """One span as exported, with the service that sent it and its attributes as plain values."""

    service: str
    span: trace_pb2.Span

    @property
    def name(self) -> str:
        return self.span.name

    @property
    def trace_id(self) -> str:
        return self.span.trace_id.hex()

    @property
    def span_id(self) -> str:
        return self.span.span_id.hex()

    @property
    def parent_span_id(self) -> str:
        return self.span.parent_span_id.hex()

    @property
    def attributes(self) -> dict[str, Any]:
        return {kv.key: plain(kv.value) for kv in self.span.attributes}


def plain(value: common_pb2.AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [plain(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: plain(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, kind) if kind else None


class _TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, receiver: OtlpReceiver) -> None:
        self._receiver = receiver

    def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: Any
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        self._receiver.take(request)
        return trace_service_pb2.ExportTraceServiceResponse()


class OtlpReceiver:
    """`with OtlpReceiver() as receiver:` receives at `receiver.endpoint` until exit.

    `keep=False` only counts the spans (`receiver.count`), for a benchmark's long runs.
    """

    def __init__(self, *, keep: bool = True) -> None:
        self._keep = keep
        self._lock = threading.Lock()
        self._spans: list[ReceivedSpan] = []
        self._count = 0
        self._server: grpc.Server | None = None
        self.port = 0

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def count(self) -> int:
        with self._lock:
            return self._count

    def spans(self) -> list[ReceivedSpan]:
        with self._lock:
            return list(self._spans)

    def take(self, request: trace_service_pb2.ExportTraceServiceRequest) -> None:
        received = []
        count = 0
        for resource_spans in request.resource_spans:
            service = next(
                (
                    kv.value.string_value
                    for kv in resource_spans.resource.attributes
                    if kv.key == "service.name"
                ),
                "",
            )
            for scope_spans in resource_spans.scope_spans:
                count += len(scope_spans.spans)
                if self._keep:
                    received.extend(ReceivedSpan(service, span) for span in scope_spans.spans)
        with self._lock:
            self._count += count
            self._spans.extend(received)

    def __enter__(self) -> OtlpReceiver:
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_TraceService(self), self._server)
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        self._server.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.stop(grace=None).wait(timeout=5)


def main() -> None:
    with OtlpReceiver(keep=False) as receiver:
        print(f"READY {receiver.port}", flush=True)
        sys.stdin.read()
    print(f"SPANS {receiver.count}", flush=True)


if __name__ == "__main__":
    main()
