"""Hostile inputs for the edge, and what a clean refusal of one looks like to the caller."""

from __future__ import annotations

import grpc

from gateway.api.status import error_info

# Bodies no decoder should accept, or that decode to nothing a node can use.
HOSTILE_BODIES: dict[str, bytes] = {
    "garbage": bytes(range(255, 0, -1)),
    "truncated varint": b"\x10\x80\x80\x80",
    "truncated length": b"\x2a\x7f" + b"A" * 10,
    "wrong wire type": b"\x15\x01\x00\x00\x00\x2a\x05TEST-",
    "invalid utf-8 in agreement_id": b"\x2a\x04\xff\xfe\xfd\xfc",
    "100,000 nested groups": b"\x4b" * 100_000,
    "end group without start": b"\x4c",
    "json": b'{"record_type": "RECORD_TYPE_PERSON", "agreement_id": "TEST-FRAUD-1"}',
    "http": b"GET /concordat.exchange.v1.ExchangeService/GetRecord HTTP/1.1\r\nHost: x\r\n\r\n",
    "empty": b"",
}
# Any of these in what a caller sees means an internal has leaked.
LEAKS = ("<class", "Error parsing", "DecodeError", "Traceback", "gateway.", "Unexpected")


def assert_clean_refusal(error: grpc.aio.AioRpcError | None, what: str) -> str:
    assert error is not None, f"{what} was answered OK"
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (what, error.code(), error.details())
    info = error_info(error)
    assert info["reason"] == "invalid-request", what
    assert len(info["exchange_id"]) == 32, what
    details = error.details() or ""
    assert len(details) < 1024, (what, len(details))
    for leak in LEAKS:
        assert leak not in details, (what, details)
    return info["exchange_id"]
