"""Requests from typed values, typed results from responses, and a stream's resumption.

The record type of a request is the record's own message class (`BirthRegistration`), so a
result's records come back as that class: `release.records[0].given_name` type-checks.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

from google.protobuf.message import Message

from concordat_client.contracts.exchange.v1 import exchange_pb2
from concordat_client.contracts.records.v1 import records_pb2
from concordat_client.errors import ConcordatClientError, ExchangeError, ReleaseChanged, Unavailable

R = TypeVar("R", bound=Message)

Purpose = Literal[
    "PUBLIC_SERVICE_DELIVERY",
    "CIVIL_REGISTRATION",
    "DEBT",
    "FRAUD",
    "RESEARCH",
    "STATISTICS",
]
SubjectKind = Literal["nino", "nhs_number", "chi_number", "hc_number", "uprn", "registration_id"]


def _record_kinds() -> dict[type[Message], tuple[str, str]]:
    """Each record class, with its RecordType value's name and its field in `Record`."""
    kinds: dict[type[Message], tuple[str, str]] = {}
    for field in records_pb2.Record.DESCRIPTOR.oneofs_by_name["kind"].fields:
        assert field.message_type is not None  # noqa: S101 - every record field is a message
        record_class: type[Message] = getattr(records_pb2, field.message_type.name)
        kinds[record_class] = (f"RECORD_TYPE_{field.name.upper()}", field.name)
    return kinds


RECORD_KINDS = _record_kinds()
RECORD_CLASSES: dict[str, type[Message]] = {
    name.removeprefix("RECORD_TYPE_"): record_class
    for record_class, (name, _) in RECORD_KINDS.items()
}
"""Each record class by its record type's name, e.g. "BIRTH_REGISTRATION"."""


@dataclass(frozen=True)
class Subject:
    """Who or what the records are about: `Subject("nino", "QQ123456C")`."""

    kind: SubjectKind
    value: str | int

    def to_proto(self) -> exchange_pb2.SubjectIdentifier:
        identifier = exchange_pb2.SubjectIdentifier()
        # protobuf refuses a value of the wrong type for the kind (TypeError).
        setattr(identifier, self.kind, self.value)
        return identifier


@dataclass(frozen=True)
class Withheld:
    """A field asked for and not released, and the rule that withheld it."""

    field: str
    rule: str


@dataclass(frozen=True)
class Obligation:
    """Something you must honour for as long as you hold the data."""

    code: str
    description: str
    parameters: Mapping[str, str]


@dataclass(frozen=True)
class Decisions:
    """What the policies of one exchange released, withheld and attached to the data."""

    released_fields: tuple[str, ...]
    withheld: tuple[Withheld, ...]
    obligations: tuple[Obligation, ...]
    egress_decision_id: str
    ingress_decision_id: str


@dataclass(frozen=True)
class Release(Generic[R]):
    """GetRecord's answer: the records, and the decisions they were released under."""

    exchange_id: str
    provider_node: str
    records: tuple[R, ...]
    # Each record's pseudonym, in order ("" where the release is not pseudonymised).
    pseudonyms: tuple[str, ...]
    decisions: Decisions


@dataclass(frozen=True)
class Batch(Generic[R]):
    """One batch of an extract; `decisions` comes with the first batch of each exchange (the
    extract's first, and the first after each resumption)."""

    exchange_id: str
    provider_node: str
    records: tuple[R, ...]
    pseudonyms: tuple[str, ...]
    resume_token: str
    decisions: Decisions | None


def _decisions(
    response: exchange_pb2.GetRecordResponse | exchange_pb2.StreamRecordsResponse,
) -> Decisions:
    return Decisions(
        released_fields=tuple(response.released_fields),
        withheld=tuple(Withheld(w.field, w.rule) for w in response.withheld),
        obligations=tuple(
            Obligation(o.code, o.description, dict(o.parameters)) for o in response.obligations
        ),
        egress_decision_id=response.egress_decision_id,
        ingress_decision_id=response.ingress_decision_id,
    )


def _records(
    record_class: type[R], records: Iterable[records_pb2.Record]
) -> tuple[tuple[R, ...], tuple[str, ...]]:
    expected = RECORD_KINDS[record_class][1]
    typed: list[R] = []
    pseudonyms: list[str] = []
    for record in records:
        kind = record.WhichOneof("kind")
        if kind != expected:
            raise ConcordatClientError(f"the node sent a {kind} record for a {expected} request")
        typed.append(getattr(record, expected))
        pseudonyms.append(record.pseudonym)
    return tuple(typed), tuple(pseudonyms)


def _record_type(record_class: type[Message]) -> str:
    if record_class not in RECORD_KINDS:
        known = ", ".join(c.__name__ for c in RECORD_KINDS)
        raise TypeError(f"{record_class.__name__} is not a record type; one of {known}")
    return RECORD_KINDS[record_class][0]


def get_record_request(
    record_class: type[Message],
    subject: Subject,
    *,
    purpose: Purpose,
    agreement_id: str,
    fields: Sequence[str],
    case_reference: str = "",
    idempotency_key: str | None = None,
    provider_node: str = "",
) -> exchange_pb2.GetRecordRequest:
    """A GetRecord request; without an idempotency key the kit makes one, so that a retry of
    a call whose answer was lost returns that answer instead of a second exchange."""
    request = exchange_pb2.GetRecordRequest(
        record_type=_record_type(record_class),
        subject=subject.to_proto(),
        purpose=f"PURPOSE_{purpose}",
        agreement_id=agreement_id,
        case_reference=case_reference,
        idempotency_key=secrets.token_hex(16) if idempotency_key is None else idempotency_key,
        provider_node=provider_node,
    )
    request.field_mask.paths.extend(fields)
    return request


def stream_records_request(
    record_class: type[Message],
    *,
    purpose: Purpose,
    agreement_id: str,
    fields: Sequence[str],
    subjects: Sequence[Subject] = (),
    batch_size: int = 0,
    case_reference: str = "",
    provider_node: str = "",
    resume_token: str = "",
) -> exchange_pb2.StreamRecordsRequest:
    """A StreamRecords request (every record the agreement covers when `subjects` is empty)."""
    request = exchange_pb2.StreamRecordsRequest(
        record_type=_record_type(record_class),
        subjects=[subject.to_proto() for subject in subjects],
        purpose=f"PURPOSE_{purpose}",
        agreement_id=agreement_id,
        case_reference=case_reference,
        batch_size=batch_size,
        provider_node=provider_node,
        resume_token=resume_token,
    )
    request.field_mask.paths.extend(fields)
    return request


def release_of(record_class: type[R], response: exchange_pb2.GetRecordResponse) -> Release[R]:
    records, pseudonyms = _records(record_class, response.records)
    return Release(
        exchange_id=response.exchange_id,
        provider_node=response.provider_node,
        records=records,
        pseudonyms=pseudonyms,
        decisions=_decisions(response),
    )


class Resumption(Generic[R]):
    """One extract across the calls it takes: the request to send next (carrying the last
    batch's resume token), the time left, and whether a failure is resumed.

    A call that fails UNAVAILABLE after delivering a batch is resumed from the last batch: the
    node continues after it, with no gap and no duplicate. A call that fails before delivering
    any has had gRPC's retries already, so the failure is the caller's to see.
    """

    def __init__(
        self,
        record_class: type[R],
        request: exchange_pb2.StreamRecordsRequest,
        timeout: float | None,
    ) -> None:
        self._record_class = record_class
        self._request = request
        self._deadline = None if timeout is None else time.monotonic() + timeout
        self._released: frozenset[str] | None = None
        self._delivered = False
        self.resumptions = 0

    def next_call(self) -> tuple[exchange_pb2.StreamRecordsRequest, float | None]:
        """The request for the next call and its timeout; the first call is not a resumption."""
        self._delivered = False
        left = None if self._deadline is None else max(0.0, self._deadline - time.monotonic())
        return self._request, left

    def batch(self, response: exchange_pb2.StreamRecordsResponse) -> Batch[R]:
        """The typed batch; the request now resumes after it."""
        decisions = None
        if not self._delivered:
            decisions = _decisions(response)
            released = frozenset(decisions.released_fields)
            if self._released is None:
                self._released = released
            elif released != self._released:
                raise ReleaseChanged(
                    "the extract resumed under decisions that release "
                    f"{sorted(released)} instead of {sorted(self._released)}; "
                    "start it again from the beginning"
                )
        self._delivered = True
        self._request.resume_token = response.resume_token
        records, pseudonyms = _records(self._record_class, response.records)
        return Batch(
            exchange_id=response.exchange_id,
            provider_node=response.provider_node,
            records=records,
            pseudonyms=pseudonyms,
            resume_token=response.resume_token,
            decisions=decisions,
        )

    def resumes_after(self, error: ExchangeError) -> bool:
        if isinstance(error, Unavailable) and self._delivered:
            self.resumptions += 1
            return True
        return False
