"""Traces: one trace per exchange, from the caller's `traceparent` through both nodes.

Whitehall and Stormont run in this process as federated nodes (real mTLS between them, the
signed directory of tests/e2e/conftest.py's `build_federation`), each exporting its spans over
OTLP/gRPC to a real receiver on loopback (tests/support/otlp_receiver.py); stopping a node
flushes its spans. The test is the departmental caller: it sends a `traceparent` it made up.
The nodes' own sample ratio is 0, so every span below is there because the caller asked for
its trace to be sampled (parent-based sampling).
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import secrets
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import grpc
import pytest
import structlog

from concordat.exchange.v1 import exchange_pb2, exchange_pb2_grpc
from gateway.api.client import secure_channel
from gateway.api.status import error_info
from gateway.config import ConfigError, parse_config
from gateway.dev.demo import demo_subjects
from gateway.dev.state import REPO_ROOT, audience
from gateway.node import Node, build_node
from gateway.testing import TEST_CLOCK, get_request
from tests.e2e.conftest import Federation, build_federation

if TYPE_CHECKING:
    # Imported by the fixture only: the untraced node's test imports this module in a fresh
    # interpreter and must find no OpenTelemetry module loaded but the node's own.
    from tests.support.otlp_receiver import OtlpReceiver, ReceivedSpan

REQUESTER, PROVIDER = "whitehall", "stormont"
AGREEMENT = "fraud-dwp-dfc-benefits-2026"
FIELDS = ("award_id", "nino", "benefit", "weekly_amount_pence", "status")
CASE = "CASE-TRACE-0042"
# OTLP's span flags: the parent's context came from another process.
PARENT_IS_REMOTE = 0x200
EXCHANGE_SERVICE = "concordat.exchange.v1.ExchangeService"
FEDERATION_SERVICE = "concordat.federation.v1.FederationService"


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Federation:
    return build_federation(tmp_path_factory.mktemp("traced"))


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    from tests.support.otlp_receiver import OtlpReceiver

    with OtlpReceiver() as running:
        yield running


@dataclass
class Caller:
    """The departmental system: DWP's fraud team at Whitehall, with a trace of its own."""

    federation: Federation
    channel: grpc.aio.Channel

    def metadata(self, traceparent: str | None) -> tuple[tuple[str, str], ...]:
        token = self.federation.states[REQUESTER].issuer.mint(
            audience=audience(REQUESTER), organisation="dwp", system="fraud-referrals"
        )
        bearer = ("authorization", f"Bearer {token}")
        return (bearer,) if traceparent is None else (bearer, ("traceparent", traceparent))

    @property
    def stub(self) -> exchange_pb2_grpc.ExchangeServiceStub:
        return exchange_pb2_grpc.ExchangeServiceStub(self.channel)


@dataclass(frozen=True)
class CallerSpan:
    trace_id: str
    span_id: str

    @classmethod
    def new(cls) -> CallerSpan:
        return cls(secrets.token_hex(16), secrets.token_hex(8))

    @property
    def traceparent(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-01"


@asynccontextmanager
async def traced_nodes(
    federation: Federation, receiver: OtlpReceiver, names: Sequence[str] = (PROVIDER, REQUESTER)
) -> AsyncIterator[Caller]:
    """The nodes in this process, tracing to `receiver`; stopped (so flushed) on exit."""
    nodes: list[Node] = []
    try:
        for name in names:
            raw = {
                **federation.configs[name],
                "tracing": {"otlp_endpoint": receiver.endpoint, "sample_ratio": 0.0},
            }
            node = await build_node(parse_config(raw, base=federation.state_dir), clock=TEST_CLOCK)
            await node.start()
            nodes.append(node)
        channel = secure_channel(
            federation.address(REQUESTER), federation.states[REQUESTER].material.ca_cert
        )
        try:
            yield Caller(federation, channel)
        finally:
            await channel.close()
    finally:
        for node in reversed(nodes):
            await node.stop(grace=0.5)


def benefit_award_subject(federation: Federation) -> str:
    found = demo_subjects(f"sqlite:///{federation.states[PROVIDER].demo_db}", PROVIDER)
    return str(next(value for kind, value in found["BENEFIT_AWARD"] if kind == "nino"))


def get_award(nino: str, *, purpose: str = "FRAUD") -> exchange_pb2.GetRecordRequest:
    request = get_request(
        "BENEFIT_AWARD",
        purpose=purpose,
        agreement_id=AGREEMENT,
        fields=FIELDS,
        case_reference=CASE,
        nino=nino,
    )
    request.provider_node = PROVIDER
    return request


def of_trace(spans: Sequence[ReceivedSpan], trace_id: str) -> list[ReceivedSpan]:
    return sorted(
        (s for s in spans if s.trace_id == trace_id), key=lambda s: s.span.start_time_unix_nano
    )


def children(spans: Sequence[ReceivedSpan], parent: ReceivedSpan) -> list[str]:
    """The names of a span's children, in the order they started."""
    return [s.name for s in spans if s.parent_span_id == parent.span_id]


def one(spans: Sequence[ReceivedSpan], service: str, name: str) -> ReceivedSpan:
    found = [s for s in spans if s.service == service and s.name == name]
    assert len(found) == 1, [(s.service, s.name) for s in spans]
    return found[0]


def assert_no_value_of_the_request_or_records(
    spans: Sequence[ReceivedSpan], secrets_seen: Sequence[str]
) -> None:
    values = [json.dumps(value) for span in spans for value in span.attributes.values()] + [
        span.name for span in spans
    ]
    leaked = [(secret, v) for secret in secrets_seen for v in values if secret in v]
    assert not leaked


async def test_one_trace_runs_from_the_caller_through_both_nodes_and_every_stage_in_order(
    federation: Federation, receiver: OtlpReceiver
) -> None:
    nino = benefit_award_subject(federation)
    caller_span, denied_span = CallerSpan.new(), CallerSpan.new()
    async with traced_nodes(federation, receiver) as caller:
        response = await caller.stub.GetRecord(
            get_award(nino), metadata=caller.metadata(caller_span.traceparent), timeout=10
        )
        # Whitehall's egress policy refuses a purpose the agreement does not give.
        with pytest.raises(grpc.aio.AioRpcError) as denied:
            await caller.stub.GetRecord(
                get_award(nino, purpose="RESEARCH"),
                metadata=caller.metadata(denied_span.traceparent),
                timeout=10,
            )
        # No trace context from the caller, and the nodes sample nothing of their own; a
        # caller's decision not to sample, or a malformed traceparent, changes nothing.
        unsampled = CallerSpan.new().traceparent.removesuffix("01") + "00"
        for traceparent in (None, unsampled, "00-not-a-trace-01"):
            await caller.stub.GetRecord(get_award(nino), metadata=caller.metadata(traceparent))
    spans = receiver.spans()

    assert response.records
    trace = of_trace(spans, caller_span.trace_id)
    requester = one(trace, "concordat-whitehall", f"{EXCHANGE_SERVICE}/GetRecord")
    provider = one(trace, "concordat-stormont", f"{FEDERATION_SERVICE}/Relay")
    relay = one(trace, "concordat-whitehall", "relay")
    # The caller's span is the requesting node's parent; the relay's, the providing node's.
    assert requester.parent_span_id == caller_span.span_id
    assert provider.parent_span_id == relay.span_id
    # Each learnt its parent from the gRPC metadata it was sent, not from this process.
    assert requester.span.flags & PARENT_IS_REMOTE and provider.span.flags & PARENT_IS_REMOTE
    assert children(trace, requester) == [
        "require_decoded",
        "authenticate",
        "validate_request",
        "deduplicate",
        "route",
        "decide_egress",
        "relay",
        "respond",
        "audit",
    ]
    assert children(trace, provider) == [
        "authenticate_peer",
        "validate_request",
        "route_to_self",
        "decide_ingress",
        "fetch",
        "minimise",
        "respond",
        "sign_receipt",
        "audit",
    ]
    assert len(trace) == 2 + 9 + 9
    exchange_id = response.exchange_id
    for span in (requester, provider):
        assert span.attributes["concordat.exchange_id"] == exchange_id
        assert span.attributes["concordat.outcome"] == "ok"
        assert span.attributes["concordat.agreement_id"] == AGREEMENT
        assert span.attributes["concordat.record_type"] == "BENEFIT_AWARD"
        assert span.attributes["concordat.purpose"] == "FRAUD"
        assert span.attributes["concordat.providing_node"] == PROVIDER
        assert span.attributes["rpc.grpc.status_code"] == grpc.StatusCode.OK.value[0]
    assert requester.attributes["concordat.role"] == "local"
    assert provider.attributes["concordat.role"] == "provider"

    refused = of_trace(spans, denied_span.trace_id)
    assert {s.service for s in refused} == {"concordat-whitehall"}
    refused_exchange = one(refused, "concordat-whitehall", f"{EXCHANGE_SERVICE}/GetRecord")
    decide = one(refused, "concordat-whitehall", "decide_egress")
    for span in (refused_exchange, decide):
        assert span.attributes["concordat.outcome"] == "policy-denied"
        assert span.attributes["concordat.rule"] == error_info(denied.value)["rule"]
        code = grpc.StatusCode.PERMISSION_DENIED.value[0]
        assert span.attributes["rpc.grpc.status_code"] == code
        # A denial is the node's answer, not its failure.
        assert span.span.status.code != span.span.status.STATUS_CODE_ERROR
    assert children(refused, refused_exchange)[-2:] == ["decide_egress", "audit"]

    assert {s.trace_id for s in spans} == {caller_span.trace_id, denied_span.trace_id}
    record_values = [
        str(value)
        for record in response.records
        for _, value in record.benefit_award.ListFields()
        if len(str(value)) > 3
    ]
    assert_no_value_of_the_request_or_records(
        spans, [nino, nino.lower(), CASE, denied.value.details() or "?", *record_values]
    )


async def test_a_relayed_stream_is_one_trace_with_its_batches_relayed_under_it(
    federation: Federation, receiver: OtlpReceiver
) -> None:
    caller_span = CallerSpan.new()
    request = exchange_pb2.StreamRecordsRequest(
        record_type="RECORD_TYPE_BENEFIT_AWARD",
        purpose="PURPOSE_FRAUD",
        agreement_id=AGREEMENT,
        provider_node=PROVIDER,
        batch_size=1,
    )
    request.field_mask.paths.extend(FIELDS)
    async with traced_nodes(federation, receiver) as caller:
        batches = [
            batch
            async for batch in caller.stub.StreamRecords(
                request, metadata=caller.metadata(caller_span.traceparent), timeout=10
            )
        ]
        # A caller who walks away after the first batch: its spans still end, once.
        abandoned = CallerSpan.new()
        call = caller.stub.StreamRecords(
            request, metadata=caller.metadata(abandoned.traceparent), timeout=10
        )
        await call.read()
        call.cancel()
        await asyncio.sleep(0.2)
    spans = receiver.spans()

    assert len(batches) > 1
    trace = of_trace(spans, caller_span.trace_id)
    requester = one(trace, "concordat-whitehall", f"{EXCHANGE_SERVICE}/StreamRecords")
    provider = one(trace, "concordat-stormont", f"{FEDERATION_SERVICE}/RelayStream")
    relayed = one(trace, "concordat-whitehall", "batches")
    assert requester.parent_span_id == caller_span.span_id
    assert provider.parent_span_id == relayed.span_id
    assert children(trace, requester) == [
        "require_decoded",
        "authenticate",
        "validate_request",
        "route",
        "decide_egress",
        "batches",
        "audit",
    ]
    assert children(trace, provider) == [
        "authenticate_peer",
        "validate_request",
        "route_to_self",
        "decide_ingress",
        "batches",
        "audit",
    ]
    for span in (requester, provider):
        assert span.attributes["concordat.outcome"] == "ok"
        assert span.attributes["concordat.record_count"] == len(batches)
    # Each span of the abandoned stream was exported once, ended.
    cut = of_trace(spans, abandoned.trace_id)
    assert len({s.span_id for s in cut}) == len(cut)
    assert one(cut, "concordat-whitehall", f"{EXCHANGE_SERVICE}/StreamRecords")


async def test_log_lines_written_inside_an_exchange_carry_its_trace_and_span_ids(
    federation: Federation, receiver: OtlpReceiver
) -> None:
    from gateway.logs import configure_logging

    previous = structlog.get_config()
    sink = io.BytesIO()
    caller_span = CallerSpan.new()
    configure_logging("INFO", sink=sink)
    # Module-level loggers stay uncached here, as other tests capture their lines.
    structlog.configure(cache_logger_on_first_use=False)
    # Bound before the node joins log lines to traces, as a logger cached on first use is.
    early = structlog.get_logger("concordat.test").bind()
    early.info("before_tracing")
    try:
        # Stormont is not started: Whitehall's relay logs each refused connection.
        async with traced_nodes(federation, receiver, [REQUESTER]) as caller:
            with pytest.raises(grpc.aio.AioRpcError):
                await caller.stub.GetRecord(
                    get_award(benefit_award_subject(federation)),
                    metadata=caller.metadata(caller_span.traceparent),
                    timeout=10,
                )
            early.info("after_tracing")
            with _inside(caller_span):
                early.info("inside_a_span")
        spans = receiver.spans()
    finally:
        structlog.configure(**previous)
    lines = [json.loads(line) for line in sink.getvalue().splitlines()]
    relay = one(of_trace(spans, caller_span.trace_id), "concordat-whitehall", "relay")
    failed = [line for line in lines if line["event"] == "peer_call_failed"]
    assert failed
    assert {(line["trace_id"], line["span_id"]) for line in failed} == {
        (caller_span.trace_id, relay.span_id)
    }
    by_event = {line["event"]: line for line in lines}
    # Outside any span a line carries no ids; the early logger was joined all the same.
    assert "trace_id" not in by_event["before_tracing"]
    assert "trace_id" not in by_event["after_tracing"]
    assert by_event["inside_a_span"]["trace_id"] == caller_span.trace_id
    assert by_event["inside_a_span"]["span_id"] == caller_span.span_id


@contextmanager
def _inside(caller_span: CallerSpan) -> Iterator[None]:
    """The caller's span made current, as a node makes an exchange's."""
    from opentelemetry import context
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    token = context.attach(
        TraceContextTextMapPropagator().extract({"traceparent": caller_span.traceparent})
    )
    try:
        yield
    finally:
        context.detach(token)


def test_a_tracing_section_is_checked_whole_before_the_node_starts(
    federation: Federation,
) -> None:
    raw = {
        **federation.configs[REQUESTER],
        "tracing": {"otlp_endpoint": "collector:4317", "sample_ratio": 1.5, "ca_cert": "ca.pem"},
    }
    with pytest.raises(ConfigError) as refused:
        parse_config(raw, base=federation.state_dir)
    message = str(refused.value)
    assert "tracing.otlp_endpoint" in message and "tracing.sample_ratio" in message
    traced = parse_config(
        {**raw, "tracing": {"otlp_endpoint": "http://127.0.0.1:4317"}},
        base=federation.state_dir,
    ).tracing
    assert traced is not None
    assert (traced.sample_ratio, traced.service(REQUESTER)) == (1.0, "concordat-whitehall")
    from gateway.observability.tracing import TracingObserver

    missing_ca = parse_config(
        {**raw, "tracing": {"otlp_endpoint": "https://collector:4317", "ca_cert": "absent.pem"}},
        base=federation.state_dir,
    ).tracing
    assert missing_ca is not None
    with pytest.raises(ConfigError, match=r"tracing\.ca_cert: .*absent\.pem cannot be read"):
        TracingObserver.start(missing_ca, REQUESTER)


def test_a_node_without_tracing_loads_no_opentelemetry_and_sends_no_trace_context(
    federation: Federation,
) -> None:
    """In a fresh interpreter: both nodes untraced, a caller sending a traceparent."""
    script = textwrap.dedent(
        f"""
        import asyncio, json, sys
        from gateway.api import federation_service
        from gateway.config import ConfigError, parse_config
        from gateway.node import build_node
        from gateway.testing import TEST_CLOCK
        from tests.e2e.conftest import build_federation
        from tests.integration.test_tracing import (
            REQUESTER, PROVIDER, Caller, CallerSpan, benefit_award_subject, get_award,
        )
        from gateway.api.client import secure_channel

        seen = []
        provider_exchange = federation_service._provider_exchange
        def spy(rpc, request, call):
            exchange = provider_exchange(rpc, request, call)
            seen.extend(key for key, _ in exchange.metadata)
            return exchange
        federation_service._provider_exchange = spy

        async def main():
            from tests.e2e.conftest import Federation
            import pathlib
            federation = build_federation(pathlib.Path({str(federation.state_dir / "plain")!r}))
            nodes = []
            for name in (PROVIDER, REQUESTER):
                config = parse_config(federation.configs[name], base=federation.state_dir)
                node = await build_node(config, clock=TEST_CLOCK)
                await node.start()
                nodes.append(node)
            channel = secure_channel(
                federation.address(REQUESTER), federation.states[REQUESTER].material.ca_cert
            )
            caller = Caller(federation, channel)
            await caller.stub.GetRecord(
                get_award(benefit_award_subject(federation)),
                metadata=caller.metadata(CallerSpan.new().traceparent),
            )
            await channel.close()
            for node in reversed(nodes):
                await node.stop(grace=0.5)

        asyncio.run(main())
        print(json.dumps({{
            "modules": sorted(m for m in sys.modules if m.startswith("opentelemetry")),
            "provider_metadata": seen,
        }}))
        """
    )
    (federation.state_dir / "plain").mkdir(exist_ok=True)
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    seen = json.loads(result.stdout.splitlines()[-1])
    assert seen["modules"] == []
    assert seen["provider_metadata"], "the relay reached the providing node"
    assert not {"traceparent", "tracestate"} & set(seen["provider_metadata"])
