"""Every input a caller can send is answered cleanly, recorded once, and the node keeps serving.

Requests are sent as raw bytes through a real channel to a real node, as a third-party or
hostile client would send them.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from concordat.exchange.v1 import exchange_pb2
from gateway.api.client import secure_channel
from gateway.api.edge import Call, server_stream, unary
from gateway.api.status import error_info
from gateway.errors import InvalidRequest, Unavailable
from gateway.testing import RunningNode, get_request
from tests.support.hostile import HOSTILE_BODIES, LEAKS, assert_clean_refusal


async def _call_raw(node: RunningNode, method: str, body: bytes) -> grpc.aio.AioRpcError | None:
    channel = secure_channel(node.node.address, node.config.tls.ca_cert)
    path = f"/concordat.exchange.v1.ExchangeService/{method}"
    metadata = (("authorization", f"Bearer {node.token(organisation='dwp')}"),)
    try:
        if method == "GetRecord":
            await channel.unary_unary(path)(body, metadata=metadata, timeout=10)
        else:
            async for _ in channel.unary_stream(path)(body, metadata=metadata, timeout=10):
                pass
    except grpc.aio.AioRpcError as exc:
        return exc
    finally:
        await channel.close()
    return None


@pytest.mark.parametrize("method", ["GetRecord", "StreamRecords"])
async def test_undecodable_bodies_are_invalid_requests_each_audited_once_and_the_node_serves_on(
    node: RunningNode, method: str, people: list[dict[str, object]]
) -> None:
    for what, body in HOSTILE_BODIES.items():
        before = len(node.audit_entries())
        error = await _call_raw(node, method, body)
        exchange_id = assert_clean_refusal(error, f"{method} with {what}")
        entries = node.audit_entries()[before:]
        assert len(entries) == 1, (what, entries)
        assert entries[0]["exchange_id"] == exchange_id
        assert entries[0]["outcome"] == "refused"
        assert entries[0]["error_code"] == "invalid-request"
    client = node.client(organisation="dwp")
    response = await client.get_record(
        get_request(
            "PERSON",
            nino=str(people[0]["nino"]),
            purpose="FRAUD",
            agreement_id="TEST-FRAUD-1",
            fields=["nino"],
        )
    )
    await client.close()
    assert list(response.released_fields) == ["nino"]


async def test_health_and_reflection_answer_hostile_bodies_without_naming_our_code(
    node: RunningNode,
) -> None:
    channel = secure_channel(node.node.address, node.config.tls.ca_cert)
    for what, body in HOSTILE_BODIES.items():
        try:
            await channel.unary_unary("/grpc.health.v1.Health/Check")(body, timeout=10)
        except grpc.aio.AioRpcError as exc:
            details = exc.details() or ""
            assert "gateway" not in details and "concordat" not in details, (what, details)
        for service in (
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
        ):
            call = channel.stream_stream(f"/{service}/ServerReflectionInfo")
            try:
                async for _ in call(iter([body]), timeout=10):
                    pass
            except grpc.aio.AioRpcError as exc:
                details = exc.details() or ""
                assert "gateway" not in details and "concordat" not in details, (what, details)
    health = health_pb2_grpc.HealthStub(channel)
    answer = await health.Check(health_pb2.HealthCheckRequest(), timeout=10)
    await channel.close()
    assert answer.status == health_pb2.HealthCheckResponse.SERVING


IDENTIFIER_KINDS = {
    "nino": "ZX123456A",
    "nhs_number": "9434765919",
    "chi_number": "2812124059",
    "hc_number": "3200000010",
}
SPOILERS = {
    "trailing newline": lambda v: v + "\n",
    "leading newline": lambda v: "\n" + v,
    "trailing tab": lambda v: v + "\t",
    "carriage return": lambda v: v + "\r",
    "embedded NUL": lambda v: v[:3] + "\x00" + v[3:],
    "vertical tab": lambda v: v[:2] + "\x0b" + v[2:],
    "full-width digits": lambda v: v.translate({ord(d): 0xFF10 + int(d) for d in "0123456789"}),
    "non-breaking space": lambda v: v[:3] + "\u00a0" + v[3:],
    "arabic-indic digit": lambda v: v[:-2] + "\u0661" + v[-1:],
    # str.upper() makes "SS" of it: a NINO prefix spelt in a letter that is not ASCII.
    "sharp s": lambda v: "\u00df" + v[2:],
}


async def test_identifiers_with_whitespace_controls_or_other_digits_are_refused_at_the_edge(
    node: RunningNode,
) -> None:
    client = node.client(organisation="dwp")
    before = len(node.audit_entries())
    refused = 0
    for kind, valid in IDENTIFIER_KINDS.items():
        for what, spoil in SPOILERS.items():
            request = get_request(
                "PERSON", purpose="FRAUD", agreement_id="TEST-FRAUD-1", fields=["nino"]
            )
            setattr(request.subject, kind, spoil(valid))
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await client.get_record(request)
            assert_clean_refusal(caught.value, f"{kind} with {what}")
            assert "subject." + kind in (caught.value.details() or ""), (kind, what)
            refused += 1
    await client.close()
    entries = node.audit_entries()[before:]
    assert len(entries) == refused
    # Refused before anything was hashed: no entry carries a subject hash.
    assert all(entry["subject_hash"] == "" for entry in entries)


async def test_oversized_inputs_are_refused_with_short_messages_a_default_client_can_read(
    node: RunningNode, people: list[dict[str, object]]
) -> None:
    nino = str(people[0]["nino"])
    many_fields = get_request(
        "PERSON",
        nino=nino,
        purpose="FRAUD",
        agreement_id="TEST-FRAUD-1",
        fields=[f"unknown_field_{i}" for i in range(10_000)],
    )
    long_path = get_request(
        "PERSON", nino=nino, purpose="FRAUD", agreement_id="TEST-FRAUD-1", fields=["x" * 3_900_000]
    )
    long_provider = get_request(
        "PERSON", nino=nino, purpose="FRAUD", agreement_id="TEST-FRAUD-1", fields=["nino"]
    )
    long_provider.provider_node = "h" * 1_000_000
    unknown_fields = get_request(
        "PERSON",
        nino=nino,
        purpose="FRAUD",
        agreement_id="TEST-FRAUD-1",
        fields=[f"unknown_{i}_" + "y" * 200 for i in range(40)],
    )
    # gRPC's default limit on received metadata (the trailers carry message and details).
    channel = grpc.aio.secure_channel(
        node.node.address,
        grpc.ssl_channel_credentials(node.config.tls.ca_cert.read_bytes()),
        options=(("grpc.max_metadata_size", 16 * 1024),),
    )
    for what, request in {
        "10,000-entry field mask": many_fields,
        "4 MB field path": long_path,
        "1 MB provider_node": long_provider,
        "40 long unknown fields": unknown_fields,
    }.items():
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await channel.unary_unary(
                "/concordat.exchange.v1.ExchangeService/GetRecord",
                request_serializer=exchange_pb2.GetRecordRequest.SerializeToString,
            )(
                request,
                metadata=(("authorization", f"Bearer {node.token(organisation='dwp')}"),),
                timeout=10,
            )
        assert_clean_refusal(caught.value, what)
        assert len(caught.value.details() or "") < 300, (what, caught.value.details())
    await channel.close()
    assert "(and 37 more)" in (caught.value.details() or "")


async def test_a_provider_node_that_names_no_administration_is_refused_as_invalid(
    node: RunningNode, people: list[dict[str, object]]
) -> None:
    client = node.client(organisation="dwp")
    request = get_request(
        "PERSON",
        nino=str(people[0]["nino"]),
        purpose="FRAUD",
        agreement_id="TEST-FRAUD-1",
        fields=["nino"],
    )
    request.provider_node = "atlantis"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await client.get_record(request)
    await client.close()
    assert_clean_refusal(caught.value, "provider_node atlantis")
    assert "atlantis" not in (caught.value.details() or "")


class _FailingServicer:
    """A servicer whose methods fail outside any pipeline, as a bug would."""

    @unary
    async def Fail(self, call: Call) -> bytes:
        raise RuntimeError("secret detail naming AB123456C")

    @server_stream
    async def FailMidStream(self, call: Call) -> AsyncIterator[bytes]:
        yield b"first"
        raise KeyError("another secret")

    @unary
    async def Refuse(self, call: Call) -> bytes:
        raise InvalidRequest("refused by the status table")


async def test_a_failure_outside_the_pipeline_is_internal_with_a_generic_message_and_an_id() -> (
    None
):
    servicer = _FailingServicer()
    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "test.Failing",
                {
                    "Fail": grpc.unary_unary_rpc_method_handler(servicer.Fail),
                    "FailMidStream": grpc.unary_stream_rpc_method_handler(servicer.FailMidStream),
                    "Refuse": grpc.unary_unary_rpc_method_handler(servicer.Refuse),
                },
            ),
        )
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    caught: dict[str, grpc.aio.AioRpcError] = {}
    for method in ("Fail", "Refuse"):
        try:
            await channel.unary_unary(f"/test.Failing/{method}")(b"", timeout=5)
        except grpc.aio.AioRpcError as exc:
            caught[method] = exc
    received = []
    try:
        async for item in channel.unary_stream("/test.Failing/FailMidStream")(b"", timeout=5):
            received.append(item)
    except grpc.aio.AioRpcError as exc:
        caught["FailMidStream"] = exc
    await channel.close()
    await server.stop(None)
    assert received == [b"first"]
    for method in ("Fail", "FailMidStream"):
        error = caught[method]
        assert error.code() == grpc.StatusCode.INTERNAL, method
        info = error_info(error)
        assert info["reason"] == "internal"
        assert info["exchange_id"] in (error.details() or "")
        for leak in ("secret", "AB123456C", "RuntimeError", "KeyError", *LEAKS):
            assert leak not in (error.details() or ""), (method, error.details())
    assert caught["Refuse"].code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(caught["Refuse"])["reason"] == "invalid-request"


async def test_reflection_v1_lists_the_exchange_api_as_current_grpcurl_and_buf_ask_first(
    node: RunningNode,
) -> None:
    from grpc_reflection.v1alpha import reflection_pb2

    channel = secure_channel(node.node.address, node.config.tls.ca_cert)
    call = channel.stream_stream(
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    answers = [
        answer
        async for answer in call(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10
        )
    ]
    await channel.close()
    listed = {service.name for service in answers[0].list_services_response.service}
    assert "concordat.exchange.v1.ExchangeService" in listed
    assert "grpc.reflection.v1.ServerReflection" in listed


async def test_text_fields_with_a_trailing_newline_are_refused_at_the_edge(
    node: RunningNode, people: list[dict[str, object]]
) -> None:
    client = node.client(organisation="dwp")
    asks = {
        "agreement_id": {"agreement_id": "TEST-FRAUD-1\n"},
        "case_reference": {"agreement_id": "TEST-FRAUD-1", "case_reference": "UC-2026-1\n"},
        "idempotency_key": {"agreement_id": "TEST-FRAUD-1", "idempotency_key": "key-7\n"},
    }
    for what, values in asks.items():
        request = get_request(
            "PERSON", nino=str(people[0]["nino"]), purpose="FRAUD", fields=["nino"], **values
        )
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await client.get_record(request)
        assert_clean_refusal(caught.value, what)
        assert what in (caught.value.details() or "")
    await client.close()


RETRY_UNAVAILABLE = json.dumps(
    {
        "methodConfig": [
            {
                "name": [{"service": "test.Flaky"}],
                "retryPolicy": {
                    "maxAttempts": 4,
                    "initialBackoff": "0.01s",
                    "maxBackoff": "0.05s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ]
    }
)


class _Unavailable:
    """Answers UNAVAILABLE every time, counting the attempts that reach it."""

    def __init__(self) -> None:
        self.attempts = {"Retryable": 0, "Released": 0}

    @unary
    async def Retryable(self, call: Call) -> bytes:
        self.attempts["Retryable"] += 1
        raise Unavailable("holyrood is unavailable; nothing was released; retry later")

    @unary
    async def Released(self, call: Call) -> bytes:
        self.attempts["Released"] += 1
        raise Unavailable(
            "holyrood could not complete the exchange (internal)", metadata={"released": "true"}
        )


async def test_a_client_retry_policy_retries_unavailable_only_when_nothing_was_released() -> None:
    servicer = _Unavailable()
    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "test.Flaky",
                {
                    name: grpc.unary_unary_rpc_method_handler(getattr(servicer, name))
                    for name in ("Retryable", "Released")
                },
            ),
        )
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(
        f"127.0.0.1:{port}",
        options=(("grpc.enable_retries", 1), ("grpc.service_config", RETRY_UNAVAILABLE)),
    )
    for method in ("Retryable", "Released"):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await channel.unary_unary(f"/test.Flaky/{method}")(b"", timeout=5)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    await channel.close()
    await server.stop(None)
    # A peer that may have released data is never asked again: that would be a second release.
    assert servicer.attempts == {"Retryable": 4, "Released": 1}
