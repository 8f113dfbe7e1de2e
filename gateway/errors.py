"""The closed set of errors a node raises on purpose.

Every error a caller can see is one of these; anything else is a bug and becomes a generic
INTERNAL status (gateway/api/status.py is the only place that maps errors to gRPC)::

    ConcordatError
    ├── Unauthenticated        the caller or peer could not be authenticated
    ├── InvalidRequest         the request is malformed; nothing was evaluated
    ├── PolicyDenied           a policy decision denied the request (names its rule)
    ├── NotYourSubject         a citizen asked about an identifier their token does not carry
    ├── PeerRejected           a peer node's identity, assertion or receipt failed checks
    ├── NoRoute                no node in the directory serves this record for this subject
    ├── RecordNotFound         the providing system holds no such record
    ├── IdempotencyConflict    an idempotency key was reused for a different request
    ├── WitnessRefused         a witness will not sign a chain head that does not extend its last
    ├── RateLimited            a citizen asked more often than the lookup limit allows
    ├── Unavailable            a peer or local system cannot be reached now; retryable
    ├── DeadlineExceeded       the caller's deadline ran out
    ├── LocalDataInvalid       the local system returned data we cannot turn into a record
    └── InternalError          a fault of ours; details stay in our logs

Each class has a stable `code`, used in logs, metrics, audit entries and gRPC error details.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

# What an error message may repeat of a caller's input: a few values, each cut short.
QUOTED_VALUES = 3
QUOTED_WIDTH = 40


def quoted(values: Sequence[str]) -> str:
    """A few of `values` for an error message, each truncated, and how many more there were.

    Messages travel in gRPC trailers, which clients cap (16 KiB by default): a message that
    echoed a 10,000-entry field mask would never reach the caller who needs to read it.
    """
    shown = [
        value if len(value) <= QUOTED_WIDTH else value[: QUOTED_WIDTH - 1] + "…"
        for value in values[:QUOTED_VALUES]
    ]
    # Control and other unprintable characters are shown escaped, never sent as they are.
    text = ", ".join(value if value.isprintable() else ascii(value) for value in shown)
    more = len(values) - len(shown)
    return f"{text} (and {more:,} more)" if more else text


class ConcordatError(Exception):
    """Base of every error a node raises on purpose."""

    code = "error"

    def __init__(self, message: str, *, metadata: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.metadata: dict[str, str] = dict(metadata or {})


class Unauthenticated(ConcordatError):
    code = "unauthenticated"


class InvalidRequest(ConcordatError):
    code = "invalid-request"


class PolicyDenied(ConcordatError):
    code = "policy-denied"


class NotYourSubject(ConcordatError):
    code = "not-your-subject"


class PeerRejected(ConcordatError):
    code = "peer-rejected"


class NoRoute(ConcordatError):
    code = "no-route"


class RecordNotFound(ConcordatError):
    code = "record-not-found"


class IdempotencyConflict(ConcordatError):
    code = "idempotency-conflict"


class WitnessRefused(ConcordatError):
    """A peer's chain head does not extend the last one this node signed as its witness."""

    code = "witness-refused"


class RateLimited(ConcordatError):
    code = "rate-limited"


class Unavailable(ConcordatError):
    """Retryable: nothing was released, so the same request may be sent again."""

    code = "unavailable"


class DeadlineExceeded(ConcordatError):
    code = "deadline-exceeded"


class LocalDataInvalid(ConcordatError):
    code = "local-data-invalid"


class InternalError(ConcordatError):
    code = "internal"
