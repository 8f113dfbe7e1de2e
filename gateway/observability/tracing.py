"""Traces of exchanges (OpenTelemetry, exported over OTLP/gRPC): one trace per exchange.

The trace starts at the departmental caller's W3C `traceparent` (gRPC metadata), holds a
server span for the exchange on each node and a span per stage under it, and crosses to the
providing node in the `traceparent` (and `tracestate`) the relay sends: the providing node's
exchange span is a child of the requesting node's `relay` (or `batches`) span. Sampling is
parent-based: a caller's decision is kept, and a caller who sent none is sampled at the
configured ratio; the providing node follows the requesting node.

Spans carry only what the node owns: the exchange id, RPC, role, node names, record type,
purpose, agreement, record count, outcome (the stable reason code) and a denial's rule; never
an identifier, a record value, a token or an error's message (which can quote a request), and
no exception is recorded on a span.

Only the composition root imports this module, and only for a node with `[tracing]`: a node
without it loads nothing of OpenTelemetry and sends no trace context.
"""

from __future__ import annotations

import asyncio
from contextlib import AbstractContextManager, nullcontext
from types import TracebackType

import grpc
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from gateway.api.status import STATUS_FOR_ERROR
from gateway.config import ConfigError, TracingConfig
from gateway.errors import ConcordatError, InternalError
from gateway.exchange import Exchange

# An export that cannot reach the collector gives up after this long, so that a node whose
# collector is down still stops promptly (its last spans are lost, never its exchanges).
EXPORT_TIMEOUT_SECONDS = 5
_PROPAGATOR = TraceContextTextMapPropagator()
_TRACE_HEADERS = frozenset(_PROPAGATOR.fields)
_NOTHING: AbstractContextManager[None] = nullcontext()
# The span name, gRPC service and method an exchange came in by: (at a provider?, rpc) ->.
_RPC_NAMES = {
    (provider, rpc): (f"{service}/{method}", service, method)
    for provider, service, methods in (
        (False, "concordat.exchange.v1.ExchangeService", ("GetRecord", "StreamRecords")),
        (True, "concordat.federation.v1.FederationService", ("Relay", "RelayStream")),
    )
    for rpc, method in zip(("GetRecord", "StreamRecords"), methods, strict=True)
}
# The stages that call the providing node: client spans, parents of its server span.
_PEER_CALLS = frozenset({"relay", "batches"})
# gRPC codes that say the server failed (OpenTelemetry's RPC conventions); a denial, a refusal
# or a record not found is an answer, not a failure of the node.
_SERVER_FAILURES = frozenset(
    {
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)


class TracingObserver:
    """Watches a node's exchanges as spans, gives its relays the trace context to send, and
    flushes what is left when the node stops."""

    def __init__(self, provider: TracerProvider, node: str) -> None:
        self._provider = provider
        self._tracer = provider.get_tracer("concordat.gateway")
        self._node = node
        # Each open sampled exchange's context (its span), by the exchange object's identity:
        # stages are parented here, not on whatever context is current when a stream is
        # closed late.
        self._open: dict[int, otel_context.Context] = {}

    @classmethod
    def start(cls, config: TracingConfig, node: str) -> TracingObserver:
        """A tracer exporting in batches to the configured collector, from a background thread."""
        credentials = None
        if config.ca_cert is not None:
            try:
                credentials = grpc.ssl_channel_credentials(config.ca_cert.read_bytes())
            except OSError as exc:
                raise ConfigError(
                    f"tracing.ca_cert: {config.ca_cert} cannot be read ({exc.strerror or exc})"
                ) from exc
        exporter = OTLPSpanExporter(
            endpoint=config.otlp_endpoint,
            insecure=config.otlp_endpoint.startswith("http://"),
            credentials=credentials,
            timeout=EXPORT_TIMEOUT_SECONDS,
        )
        provider = TracerProvider(
            sampler=ParentBased(TraceIdRatioBased(config.sample_ratio)),
            resource=Resource.create(
                {"service.name": config.service(node), "service.namespace": "concordat"}
            ),
            shutdown_on_exit=False,
        )
        provider.add_span_processor(
            BatchSpanProcessor(exporter, export_timeout_millis=EXPORT_TIMEOUT_SECONDS * 1000)
        )
        return cls(provider, node)

    def exchange(self, exchange: Exchange) -> AbstractContextManager[None]:
        return _ExchangeSpan(self, exchange)

    def stage(self, exchange: Exchange, name: str) -> AbstractContextManager[None]:
        parent = self._open.get(id(exchange))
        if parent is None:  # not sampled: parent-based sampling would drop its stages' spans
            return _NOTHING
        kind = SpanKind.CLIENT if name in _PEER_CALLS else SpanKind.INTERNAL
        span = self._tracer.start_span(name, context=parent, kind=kind)
        return _StageSpan(span, parent, across_yields=name == "batches")

    def peer_metadata(self) -> tuple[tuple[str, str], ...]:
        """The current trace context as gRPC metadata for a call to a peer node."""
        carrier: dict[str, str] = {}
        _PROPAGATOR.inject(carrier)
        return tuple(carrier.items())

    def shutdown(self) -> None:
        """Exports the spans still queued (bounded by the export timeout), then stops."""
        self._provider.shutdown()

    def open_exchange(self, exchange: Exchange) -> _CurrentSpan:
        """The exchange's server span, current until `close_exchange`."""
        parent = _incoming_context(exchange.metadata)
        across_yields = exchange.rpc == "StreamRecords"
        if parent is not None:
            sent = trace.get_current_span(parent)
            sent_context = sent.get_span_context()
            if sent_context.is_valid and not sent_context.trace_flags.sampled:
                # Not sampled upstream, so not here (parent-based): the context is kept as it
                # came, for the relay to send on and the log lines to carry, and nothing is
                # asked of the SDK, which would record nothing either.
                return _CurrentSpan(sent, parent, across_yields=across_yields)
        name, service, method = _RPC_NAMES[exchange.role == "provider", exchange.rpc]
        span = self._tracer.start_span(name, context=parent, kind=SpanKind.SERVER)
        own = trace.set_span_in_context(span, parent)
        if span.is_recording():
            self._open[id(exchange)] = own
            span.set_attributes(
                {
                    "rpc.system": "grpc",
                    "rpc.service": service,
                    "rpc.method": method,
                    "concordat.node": self._node,
                    "concordat.exchange_id": exchange.exchange_id,
                    "concordat.rpc": exchange.rpc,
                    "concordat.role": exchange.role,
                }
            )
        # Current even when not sampled: the relay sends its trace id and decision on.
        return _CurrentSpan(span, own, across_yields=across_yields)

    def close_exchange(self, exchange: Exchange, current: _CurrentSpan) -> None:
        """Ends the exchange's span with what its stages learnt and how it ended."""
        if self._open.pop(id(exchange), None) is not None:
            current.span.set_attributes(_outcome_attributes(exchange))
        current.finish(exchange.error)


class _CurrentSpan:
    """A span made current for the code inside it, and ended when that code is done.

    A stream's spans stay current across its yields: grpc.aio drives a stream in one task, so
    the context is restored in the task it was set in. A stream its consumer abandoned is
    closed later from another task (the event loop's async-generator finaliser), where that
    context no longer exists: there the span is only ended. Only a span `across_yields`
    notes its task; any other starts and ends within one await.
    """

    __slots__ = ("_task", "_token", "span")

    def __init__(self, span: Span, context: otel_context.Context, *, across_yields: bool) -> None:
        self.span = span
        self._token = otel_context.attach(context)
        self._task = _current_task() if across_yields else None

    def finish(self, error: ConcordatError | None) -> None:
        if self._task is None or _current_task() is self._task:
            otel_context.detach(self._token)
        if error is not None:
            _mark(self.span, error)
        self.span.end()


class _StageSpan:
    __slots__ = ("_current",)

    def __init__(self, span: Span, parent: otel_context.Context, *, across_yields: bool) -> None:
        self._current = _CurrentSpan(
            span, trace.set_span_in_context(span, parent), across_yields=across_yields
        )

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        error = None
        if isinstance(exc, ConcordatError):
            error = exc
        elif isinstance(exc, Exception):
            # A bug: said as the pipeline answers it, never by its text.
            error = InternalError("")
        self._current.finish(error)


class _ExchangeSpan:
    """The server span of one exchange, a child of the caller's (or requesting node's) span."""

    __slots__ = ("_current", "_exchange", "_observer")

    def __init__(self, observer: TracingObserver, exchange: Exchange) -> None:
        self._observer = observer
        self._exchange = exchange
        self._current: _CurrentSpan | None = None

    def __enter__(self) -> None:
        self._current = self._observer.open_exchange(self._exchange)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._current is not None:
            self._observer.close_exchange(self._exchange, self._current)


def _incoming_context(metadata: tuple[tuple[str, object], ...]) -> otel_context.Context | None:
    """The caller's (or the requesting node's) trace context from its metadata, if it sent one."""
    carrier = {key: value for key, value in metadata if key in _TRACE_HEADERS}
    if not carrier:
        return None
    return _PROPAGATOR.extract(carrier)


def _outcome_attributes(exchange: Exchange) -> dict[str, str | int]:
    """What the stages learnt, all of it values the node owns or has validated."""
    error = exchange.error
    attributes: dict[str, str | int] = {
        "concordat.outcome": "ok" if error is None else error.code,
        "concordat.record_count": exchange.record_count,
    }
    if error is None:
        attributes["rpc.grpc.status_code"] = grpc.StatusCode.OK.value[0]
    for key, value in (
        ("concordat.record_type", exchange.record_type),
        ("concordat.purpose", exchange.purpose),
        ("concordat.agreement_id", exchange.agreement_id),
        ("concordat.requesting_node", exchange.requesting_node),
        ("concordat.providing_node", exchange.providing_node),
        ("concordat.replay_of", exchange.replay_of),
    ):
        if value:
            attributes[key] = value
    return attributes


def _mark(span: Span, error: ConcordatError) -> None:
    """The error's stable code and status on the span; never its message, which can quote."""
    if not span.is_recording():
        return
    code = STATUS_FOR_ERROR.get(type(error), grpc.StatusCode.INTERNAL)
    span.set_attribute("concordat.outcome", error.code)
    span.set_attribute("rpc.grpc.status_code", code.value[0])
    rule = error.metadata.get("rule")
    if rule:
        span.set_attribute("concordat.rule", rule)
    if code in _SERVER_FAILURES:
        span.set_status(Status(StatusCode.ERROR, error.code))


def _current_task() -> asyncio.Task[object] | None:
    try:
        return asyncio.current_task()
    except RuntimeError:  # no event loop in this thread
        return None
