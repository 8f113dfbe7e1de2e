"""The properties every target checks, written apart from the code they check.

A refusal must be a ConcordatError whose status is bounded and names no Python class; what
passes must be what the refusals' own messages promise. A failed property raises
PropertyViolation; anything else escaping the gateway is reported as Unmapped.
"""

from __future__ import annotations

import builtins
import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from concordat.exchange.v1 import exchange_pb2
from gateway import records
from gateway.api.status import MAX_MESSAGE, STATUS_FOR_ERROR, to_grpc_status
from gateway.config import ADMINISTRATIONS
from gateway.errors import ConcordatError
from gateway.exchange import Exchange
from gateway.identifiers import validate_subject

T = TypeVar("T")

# The status the edge answers with carries this id; any fixed one will do.
STATUS_EXCHANGE_ID = "0" * 32

# What a message that leaks an exception looks like: a class repr, a traceback, or the name
# of a built-in exception class (gateway's own error classes are not named in messages either).
_LEAK = re.compile(
    r"<class '|Traceback \(most recent call last\)|\b(?:"
    + "|".join(
        sorted(
            name
            for name, value in vars(builtins).items()
            if isinstance(value, type) and issubclass(value, BaseException) and len(name) > 6
        )
    )
    + r")\b"
)
# The canonical spelling of each identifier once validated (docs/departmental-developers).
_CANONICAL = {
    "nino": re.compile(r"[A-Z]{2}[0-9]{6}[A-D]", re.ASCII),
    "nhs_number": re.compile(r"[0-9]{10}", re.ASCII),
    "chi_number": re.compile(r"[0-9]{10}", re.ASCII),
    "hc_number": re.compile(r"3[0-9]{9}", re.ASCII),
    "uprn": re.compile(r"[1-9][0-9]{0,11}", re.ASCII),
    "registration_id": re.compile(r"[A-Z]{2,4}-[BDM]-[0-9]{4}-[0-9]{6}", re.ASCII),
}
_SEPARATORS = {"nhs_number": " -", "chi_number": " -", "hc_number": " -"}
_ASCII_UPPER = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_AGREEMENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}", re.ASCII)
_RECORD_TYPES = frozenset(
    name.removeprefix("RECORD_TYPE_")
    for name in exchange_pb2.RecordType.keys()
    if name != "RECORD_TYPE_UNSPECIFIED"
)


class PropertyViolation(AssertionError):
    """An input the gateway answered wrongly: accepted what it must refuse, or said too much."""


class Unmapped(AssertionError):
    """An exception other than a ConcordatError escaped where the edge expects only those."""


@contextmanager
def only_concordat_errors(where: str) -> Iterator[None]:
    """Lets ConcordatError through; anything else becomes Unmapped, chained to the original."""
    try:
        yield
    except ConcordatError:
        raise
    except Exception as exc:
        raise Unmapped(f"{type(exc).__name__} escaped {where}: {exc!s:.200}") from exc


def never_raises(where: str, function: Callable[..., T], *args: Any) -> T:
    """Calls a function the edge calls outside any error mapping (decode): it must not raise."""
    try:
        return function(*args)
    except Exception as exc:
        raise Unmapped(f"{type(exc).__name__} escaped {where}: {exc!s:.200}") from exc


def check_refusal(error: ConcordatError, data: bytes) -> None:
    """The refusal maps to its status; the status is bounded and leaks no exception."""
    if type(error) not in STATUS_FOR_ERROR:
        raise PropertyViolation(f"{type(error).__name__} has no status in the status table")
    with only_concordat_errors("to_grpc_status"):
        status = to_grpc_status(error, STATUS_EXCHANGE_ID)
    # grpc.Status declares no fields; the one grpc_status makes carries code and details.
    message: str = status.details  # type: ignore[attr-defined]
    if len(message) > MAX_MESSAGE:
        raise PropertyViolation(f"status message is {len(message):,} characters")
    if len(error.message) > MAX_MESSAGE:
        # The status table cuts it, but the audit entry and the log keep the whole message.
        raise PropertyViolation(f"error message is {len(error.message):,} characters")
    # A caller's own text may be quoted back (cut short); only what the input did not say counts.
    said = data.decode("utf-8", "replace") + data.decode("latin-1")
    for leaked in _leaks(error):
        if leaked not in said:
            raise PropertyViolation(f"status message names {leaked!r}: {message!r:.300}")


def _leaks(error: ConcordatError) -> Iterator[str]:
    yield from (match.group(0) for match in _LEAK.finditer(error.message))
    for cause in _causes(error):
        if not isinstance(cause, ConcordatError):
            for text in (type(cause).__name__, f"{type(cause).__module__}.", str(cause)):
                if len(text) >= 6 and text in error.message:
                    yield text.strip("'\"")


def _causes(error: BaseException) -> Iterator[BaseException]:
    """The exceptions behind `error`, as a traceback would show them (`from None` hides)."""
    cause = error.__cause__ or (None if error.__suppress_context__ else error.__context__)
    for _ in range(8):
        if cause is None:
            return
        yield cause
        cause = cause.__cause__ or (None if cause.__suppress_context__ else cause.__context__)


def check_identifier(kind: str, raw: str | int, value: str) -> None:
    """A passing identifier is ASCII, canonical, a fixed point of validation, and the input's
    own spelling less ASCII spaces (and hyphens in the numbers) with ASCII letters upper-cased.
    """
    if not value.isascii():
        raise PropertyViolation(f"{kind} {value!r} passed with non-ASCII characters")
    if not _CANONICAL[kind].fullmatch(value):
        raise PropertyViolation(f"{kind} {value!r} passed but is not in canonical form")
    again = validate_subject(kind, int(value) if kind == "uprn" else value)
    if again.value != value:
        raise PropertyViolation(f"{kind} {value!r} re-validates as {again.value!r}")
    if isinstance(raw, str):
        spelling = raw
        for separator in _SEPARATORS.get(kind, " "):
            spelling = spelling.replace(separator, "")
        if spelling.translate(_ASCII_UPPER) != value:
            raise PropertyViolation(
                f"{kind} {raw!r} passed as {value!r}: more than ASCII spaces, hyphens and case "
                "was changed"
            )


def _printable_ascii(value: str, limit: int = 128) -> bool:
    return len(value) <= limit and value.isascii() and value.isprintable()


def check_validated(exchange: Exchange, *, max_batch_size: int) -> None:
    """What ValidateRequest let through is what its refusals promise."""
    request = exchange.request
    if exchange.record_type not in _RECORD_TYPES:
        raise PropertyViolation(f"record_type {exchange.record_type!r} passed")
    known = records.shape(exchange.record_type).fields
    fields = exchange.fields
    if not fields or len(fields) != len(set(fields)) or not set(fields) <= set(known):
        raise PropertyViolation(f"field mask {fields!r:.200} passed")
    if not _AGREEMENT_ID.fullmatch(exchange.agreement_id):
        raise PropertyViolation(f"agreement_id {exchange.agreement_id!r:.200} passed")
    for name in ("case_reference", "idempotency_key"):
        if not _printable_ascii(getattr(exchange, name)):
            raise PropertyViolation(f"{name} {getattr(exchange, name)!r:.200} passed")
    if request.provider_node not in ("", *ADMINISTRATIONS):
        raise PropertyViolation(f"provider_node {request.provider_node!r:.200} passed")
    if exchange.rpc == "GetRecord":
        if exchange.subject is None:
            raise PropertyViolation("a GetRecord without a subject passed")
        pairs = [(request.subject, exchange.subject)]
    else:
        if request.batch_size > max_batch_size or len(request.resume_token) > 4096:
            raise PropertyViolation("an oversized batch or resume token passed")
        pairs = list(zip(request.subjects, exchange.subjects, strict=True))
    for message, subject in pairs:
        kind = message.WhichOneof("identifier")
        if subject.kind != kind:
            raise PropertyViolation(f"a {kind} passed as a {subject.kind}")
        check_identifier(kind, getattr(message, kind), subject.value)


def check_policy_input(document: dict[str, Any], exchange: Exchange) -> None:
    """The policy input is plain JSON and names the subject's kind, never its identifier."""
    try:
        json.dumps(document, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise PropertyViolation(f"policy input is not JSON: {exc}") from exc
    identifiers = {s.value for s in (exchange.subject, *exchange.subjects) if s is not None}
    for key, value in document.items():
        # The agreement id is the caller's own text, which may happen to spell an identifier.
        if key != "agreement_id" and isinstance(value, str) and value in identifiers:
            raise PropertyViolation(f"policy input carries the subject's identifier as {key}")
