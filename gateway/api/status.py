"""The one place where errors become gRPC statuses.

A ConcordatError keeps its message and gains a google.rpc.ErrorInfo detail whose `reason` is
the error's stable code; anything else is a bug and becomes a bare INTERNAL status that names
only the exchange id, so nothing internal reaches a caller.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

from gateway import errors

ERROR_DOMAIN = "concordat.gov.uk"

STATUS_FOR_ERROR: dict[type[errors.ConcordatError], grpc.StatusCode] = {
    errors.Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    errors.InvalidRequest: grpc.StatusCode.INVALID_ARGUMENT,
    errors.PolicyDenied: grpc.StatusCode.PERMISSION_DENIED,
    errors.NotYourSubject: grpc.StatusCode.PERMISSION_DENIED,
    errors.PeerRejected: grpc.StatusCode.PERMISSION_DENIED,
    errors.NoRoute: grpc.StatusCode.FAILED_PRECONDITION,
    errors.RecordNotFound: grpc.StatusCode.NOT_FOUND,
    errors.IdempotencyConflict: grpc.StatusCode.ALREADY_EXISTS,
    errors.WitnessRefused: grpc.StatusCode.FAILED_PRECONDITION,
    errors.RateLimited: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.Unavailable: grpc.StatusCode.UNAVAILABLE,
    errors.DeadlineExceeded: grpc.StatusCode.DEADLINE_EXCEEDED,
    errors.LocalDataInvalid: grpc.StatusCode.INTERNAL,
    errors.InternalError: grpc.StatusCode.INTERNAL,
}


_ERROR_FOR_REASON: dict[str, type[errors.ConcordatError]] = {
    kind.code: kind for kind in STATUS_FOR_ERROR
}


def error_for_reason(reason: str) -> type[errors.ConcordatError] | None:
    """The error class whose stable code a received ErrorInfo names (None if none does)."""
    return _ERROR_FOR_REASON.get(reason)


def internal_error(exchange_id: str) -> errors.InternalError:
    """What a caller learns of a bug of ours: that it happened, and the id to quote."""
    return errors.InternalError(f"internal error; quote exchange id {exchange_id} to the operator")


# A backstop: messages quote caller input only through `errors.quoted`, which keeps them far
# shorter; gRPC clients cap trailers at 16 KiB by default, and both travel in them.
MAX_MESSAGE = 1024
MAX_METADATA_VALUE = 256


def _bounded(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def to_grpc_status(error: errors.ConcordatError, exchange_id: str) -> grpc.Status:
    code = STATUS_FOR_ERROR[type(error)]
    info = error_details_pb2.ErrorInfo(
        reason=error.code,
        domain=ERROR_DOMAIN,
        metadata={
            "exchange_id": exchange_id,
            **{key: _bounded(value, MAX_METADATA_VALUE) for key, value in error.metadata.items()},
        },
    )
    detail = any_pb2.Any()
    detail.Pack(info)
    message = status_pb2.Status(
        code=code.value[0], message=_bounded(error.message, MAX_MESSAGE), details=[detail]
    )
    trailers: tuple[tuple[str, str | bytes], ...] = ((_DETAILS_KEY, message.SerializeToString()),)
    if isinstance(error, errors.Unavailable) and error.metadata.get("released") == "true":
        # A peer may have released data: a client's gRPC retry policy must not send it again
        # (a pushback of -1 tells gRPC not to retry, whatever the policy says).
        trailers = (*trailers, ("grpc-retry-pushback-ms", "-1"))
    return _Status(code, message.message, trailers)


# Where gRPC's rich error model carries the google.rpc.Status with its details.
_DETAILS_KEY = "grpc-status-details-bin"


@dataclass(frozen=True)
class _Status(grpc.Status):
    """The status an RPC ends with, as grpc_status's own builds it, with our trailers."""

    code: grpc.StatusCode
    details: str
    trailing_metadata: tuple[tuple[str, str | bytes], ...]


def error_info(error: grpc.aio.AioRpcError) -> dict[str, str]:
    """The ErrorInfo of a received error as a flat mapping: reason, exchange_id, rule, ..."""
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin" and isinstance(value, bytes):
            status = status_pb2.Status.FromString(value)
            for detail in status.details:
                info = error_details_pb2.ErrorInfo()
                if detail.Unpack(info):
                    return {"reason": info.reason, **dict(info.metadata)}
    return {}
