"""What the kit raises: one class per stable reason code a node puts in its ErrorInfo detail.

A node answers every failure with a gRPC status and a `google.rpc.ErrorInfo` whose `reason`
is a stable code and whose metadata names the exchange (and, for a denial, the rule, the
decision, the agreement and the node that decided)::

    ConcordatClientError          anything the kit raises
    ├── ExchangeError             a node (or the transport) answered with an error status
    │   ├── Unauthenticated       unauthenticated: token missing, expired, replayed, ...
    │   ├── InvalidRequest        invalid-request: malformed; nothing was evaluated
    │   ├── PolicyDenied          policy-denied: `rule` says which rule, `node` which node
    │   ├── PeerRejected          peer-rejected: a node refused another node
    │   ├── NoRoute               no-route: no node serves that record type for the subject
    │   ├── RecordNotFound        record-not-found
    │   ├── IdempotencyConflict   idempotency-conflict
    │   ├── WitnessRefused        witness-refused: only between nodes (a chain head refused)
    │   ├── NotYourSubject        not-your-subject: a citizen asked about another's identifier
    │   ├── RateLimited           rate-limited: too many lookups; the message says when to retry
    │   ├── Unavailable           unavailable: nothing was released; the kit retries these
    │   ├── DeadlineExceeded      deadline-exceeded
    │   ├── LocalDataInvalid      local-data-invalid
    │   └── InternalError         internal: quote the exchange id
    └── ReleaseChanged            a resumed extract was released under different terms

A status without a Concordat ErrorInfo (a refused connection, a deadline that ran out in the
client) becomes the class its status code stands for, or ExchangeError itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import ClassVar

import grpc
from google.rpc import error_details_pb2, status_pb2

_STATUS_DETAILS_KEY = "grpc-status-details-bin"


class ConcordatClientError(Exception):
    """Base of everything the kit raises."""


class ExchangeError(ConcordatClientError):
    """An error status from a node, with what its ErrorInfo says about the exchange."""

    reason: ClassVar[str] = ""

    def __init__(
        self, message: str, *, status: grpc.StatusCode, metadata: Mapping[str, str]
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.metadata: dict[str, str] = dict(metadata)
        self.exchange_id = self.metadata.get("exchange_id", "")
        self.rule = self.metadata.get("rule", "")
        self.decision_id = self.metadata.get("decision_id", "")
        self.agreement_id = self.metadata.get("agreement_id", "")
        # The node whose policy decided (denials); `peer` is the node that failed, if one did.
        self.node = self.metadata.get("node", "")
        self.peer = self.metadata.get("peer", "")

    def __str__(self) -> str:
        named = ", ".join(
            f"{key} {value}"
            for key, value in (
                ("rule", self.rule),
                ("node", self.node),
                ("exchange", self.exchange_id),
            )
            if value
        )
        return f"{self.status.name}: {self.message}" + (f" ({named})" if named else "")


class Unauthenticated(ExchangeError):
    reason = "unauthenticated"


class InvalidRequest(ExchangeError):
    reason = "invalid-request"


class PolicyDenied(ExchangeError):
    reason = "policy-denied"


class PeerRejected(ExchangeError):
    reason = "peer-rejected"


class NoRoute(ExchangeError):
    reason = "no-route"


class RecordNotFound(ExchangeError):
    reason = "record-not-found"


class IdempotencyConflict(ExchangeError):
    reason = "idempotency-conflict"


class WitnessRefused(ExchangeError):
    """A node refused to witness another's chain head; nodes say this to each other only."""

    reason = "witness-refused"


class NotYourSubject(ExchangeError):
    """A citizen asked about an identifier their token does not carry (TransparencyService)."""

    reason = "not-your-subject"


class RateLimited(ExchangeError):
    """Too many lookups by one citizen; the message says when to try again."""

    reason = "rate-limited"


class Unavailable(ExchangeError):
    """Nothing was released; the same request may be sent again (the kit already did)."""

    reason = "unavailable"


class DeadlineExceeded(ExchangeError):
    reason = "deadline-exceeded"


class LocalDataInvalid(ExchangeError):
    reason = "local-data-invalid"


class InternalError(ExchangeError):
    reason = "internal"


class ReleaseChanged(ConcordatClientError):
    """A resumed extract's decisions released other fields than the ones it began with."""


ERROR_FOR_REASON: dict[str, type[ExchangeError]] = {
    kind.reason: kind for kind in ExchangeError.__subclasses__()
}
# What a status without a Concordat ErrorInfo stands for.
_ERROR_FOR_STATUS: dict[grpc.StatusCode, type[ExchangeError]] = {
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
}


def error_info(trailing_metadata: Iterable[tuple[str, str | bytes]] | None) -> dict[str, str]:
    """The ErrorInfo of a status as one mapping: `reason` and the metadata (empty if none)."""
    for key, value in trailing_metadata or ():
        if key == _STATUS_DETAILS_KEY and isinstance(value, bytes):
            for detail in status_pb2.Status.FromString(value).details:
                info = error_details_pb2.ErrorInfo()
                if detail.Unpack(info):
                    return {**info.metadata, "reason": info.reason}
    return {}


def from_rpc_error(error: grpc.RpcError) -> ExchangeError:
    """The kit's error for a failed call (grpc's sync and asyncio errors alike)."""
    call: grpc.Call = error  # type: ignore[assignment]  # grpc's errors are also its calls
    status = call.code()
    info = error_info(call.trailing_metadata())
    kind = ERROR_FOR_REASON.get(info.pop("reason", ""), _ERROR_FOR_STATUS.get(status))
    return (kind or ExchangeError)(call.details() or status.name, status=status, metadata=info)
