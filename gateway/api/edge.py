"""The edge of the node's gRPC APIs: every servicer method runs inside one of two wrappers.

gRPC hands each method the request's raw bytes (handlers are registered without a
deserializer), so a body that does not decode reaches our code instead of grpc.aio's
default handler, which would answer `UNKNOWN "Unexpected <class ...DecodeError'>"` and leave
no audit entry. The servicer decodes with `decode`, and an undecodable request runs through
the pipeline like any other, to be refused as `invalid-request` and audited once.

`unary` and `server_stream` then map whatever escapes the method in the one place errors
meet gRPC: a ConcordatError by the status table (gateway/api/status.py), anything else to
INTERNAL with a generic message and the exchange id, its detail kept for the operator's log.
`EDGE_WRAPPED` marks a wrapped method so that an architecture test can prove every servicer
method is one.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
import structlog
from google.protobuf.message import DecodeError, Message

from gateway.api.status import internal_error, to_grpc_status
from gateway.errors import ConcordatError
from gateway.exchange import new_exchange_id
from gateway.logs import raised_at

log = structlog.get_logger("concordat.edge")

EDGE_WRAPPED = "__concordat_edge__"

M = TypeVar("M", bound=Message)
S = TypeVar("S")
R = TypeVar("R")


@dataclass(slots=True)
class Call:
    """One call as it reaches the edge: its raw request, its context, its exchange id.

    The exchange id is made here, so that even a failure before the exchange exists can be
    quoted; a servicer that learns the real id (a peer's relay names it) replaces it.
    """

    method: str
    request: bytes
    context: grpc.aio.ServicerContext[bytes, Any]
    exchange_id: str = field(default_factory=new_exchange_id)


def decode(message_type: type[M], raw: bytes) -> M | None:
    """The request decoded, or None when its bytes are not a valid message of that type."""
    try:
        return message_type.FromString(raw)
    except (DecodeError, RecursionError, ValueError):
        # DecodeError for malformed wire data and invalid UTF-8; RecursionError and
        # ValueError are what some protobuf backends raise for pathological nesting.
        return None


UnaryMethod = Callable[[S, Call], Awaitable[R]]
StreamMethod = Callable[[S, Call], AsyncIterator[R]]


def unary(
    method: UnaryMethod[S, R],
) -> Callable[[S, bytes, grpc.aio.ServicerContext[bytes, R]], Awaitable[R]]:
    """Wraps a unary servicer method: errors become statuses here and nowhere else."""

    @functools.wraps(method)
    async def guarded(self: S, request: bytes, context: grpc.aio.ServicerContext[bytes, R]) -> R:
        call = Call(method.__name__, request, context)
        try:
            return await method(self, call)
        except Exception as exc:  # noqa: BLE001 - the edge answers every failure
            await _answer_failure(call, exc)
        raise AssertionError("unreachable: abort_with_status raises")  # pragma: no cover

    setattr(guarded, EDGE_WRAPPED, True)
    return guarded


def server_stream(
    method: StreamMethod[S, R],
) -> Callable[[S, bytes, grpc.aio.ServicerContext[bytes, R]], AsyncIterator[R]]:
    """Wraps a server-streaming servicer method the same way, for failures at any batch."""

    @functools.wraps(method)
    async def guarded(
        self: S, request: bytes, context: grpc.aio.ServicerContext[bytes, R]
    ) -> AsyncIterator[R]:
        call = Call(method.__name__, request, context)
        try:
            async for response in method(self, call):
                yield response
        except Exception as exc:  # noqa: BLE001 - the edge answers every failure
            await _answer_failure(call, exc)

    setattr(guarded, EDGE_WRAPPED, True)
    return guarded


async def _answer_failure(call: Call, exc: Exception) -> None:
    """Our error by the status table; anything else, a bug, as INTERNAL that leaks nothing."""
    if isinstance(exc, grpc.aio.AbortError):
        raise exc  # already answered
    if isinstance(exc, ConcordatError):
        await call.context.abort_with_status(to_grpc_status(exc, call.exchange_id))
        return
    log.error(
        "edge_internal_error",
        method=call.method,
        exchange_id=call.exchange_id,
        error=type(exc).__name__,
        # Where it was raised, not what it said: an exception's text can quote a request.
        raised_at=raised_at(exc),
    )
    error = internal_error(call.exchange_id)
    await call.context.abort_with_status(to_grpc_status(error, call.exchange_id))


def is_wrapped(handler: Any) -> bool:
    return bool(getattr(handler, EDGE_WRAPPED, False))
