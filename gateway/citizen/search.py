"""One node's search of its own audit log for the exchanges about a person."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from concordat.exchange.v1 import exchange_pb2
from concordat.transparency.v1 import transparency_pb2
from gateway.audit import AuditLog
from gateway.audit.subjects import subject_hash
from gateway.citizen.disclosure import Disclosure
from gateway.citizen.register import RegisterSource, agreement_in, body_name, register_of, text
from gateway.domain import Subject

# What a person is shown: exchanges of records, whoever made them; never a citizen's own
# lookups or another node's searches, which carry no subject hash anyway.
_EXCHANGE_RPCS = frozenset({"GetRecord", "StreamRecords"})
# A relaying node records its side as `caller` (`requester` in older entries).
_EXCHANGE_ROLES = frozenset({"local", "caller", "requester", "provider"})


@dataclass
class Found:
    """What a search found: what may be shown, and the ids of exchanges held back."""

    exchanges: list[transparency_pb2.ExchangeAboutYou] = field(default_factory=list)
    withheld: set[str] = field(default_factory=set)


class LogSearch:
    """Searches this node's log by its own keyed hashes of the identifiers."""

    def __init__(
        self,
        *,
        audit: AuditLog,
        subject_key: bytes,
        register: RegisterSource,
        disclosure: Disclosure,
    ) -> None:
        self._audit = audit
        self._subject_key = subject_key
        self._register = register
        self._disclosure = disclosure

    def hashes(self, subjects: Sequence[Subject]) -> list[str]:
        return sorted({subject_hash(self._subject_key, s.kind, s.value) for s in subjects})

    async def search(self, subjects: Sequence[Subject]) -> Found:
        entries = await self._audit.exchanges_about(self.hashes(subjects))
        register = register_of(self._register())
        found = Found()
        seen: set[str] = set()
        # Every entry is read and judged the same way, shown or not: how long a search takes
        # follows the size of the person's history, not what is held back.
        for recorded in entries:
            event = recorded.event
            exchange_id = str(event.get("exchange_id") or "")
            if not exchange_id or exchange_id in seen or not _released(event):
                continue
            seen.add(exchange_id)
            if self._disclosure.disclosed(event, register):
                found.exchanges.append(exchange_about_you(event, register))
            else:
                found.withheld.add(exchange_id)
        return found


def _released(event: Mapping[str, Any]) -> bool:
    """An exchange that gave a body data: released, or a stream that sent batches first."""
    return (
        event.get("rpc") in _EXCHANGE_RPCS
        and event.get("role") in _EXCHANGE_ROLES
        and not event.get("replay_of")
        and (event.get("outcome") == "released" or int(event.get("records") or 0) > 0)
    )


def exchange_about_you(
    event: Mapping[str, Any], register: Mapping[str, Any]
) -> transparency_pb2.ExchangeAboutYou:
    agreement_id = str(event.get("agreement_id") or "")
    agreement = agreement_in(register, agreement_id) or {}
    requester = event.get("requester") if isinstance(event.get("requester"), Mapping) else {}
    assert isinstance(requester, Mapping)  # noqa: S101 - narrowed just above
    asking = f"{requester.get('organisation', '')}@{requester.get('administration', '')}"
    providing = text(agreement, "provider") or f"@{event.get('providing_node', '')}"
    return transparency_pb2.ExchangeAboutYou(
        exchange_id=str(event["exchange_id"]),
        at=_timestamp(str(event.get("at") or "")),
        requester=_body(register, asking),
        provider=_body(register, providing),
        purpose=_enum(exchange_pb2.Purpose, "PURPOSE_", event.get("purpose")),
        record_type=_enum(exchange_pb2.RecordType, "RECORD_TYPE_", event.get("record_type")),
        agreement=register_entry(agreement_id, agreement),
        fields_released=[str(f) for f in event.get("fields_released") or ()],
    )


def register_entry(agreement_id: str, entry: Mapping[str, Any]) -> transparency_pb2.RegisterEntry:
    return transparency_pb2.RegisterEntry(
        id=agreement_id,
        name=text(entry, "name", "title"),
        legal_power=text(entry, "legal_power", "power"),
        purpose=text(entry, "purpose_description", "purpose"),
        start_date=text(entry, "start_date", "start"),
        end_date=text(entry, "end_date", "end"),
        review_date=text(entry, "review_date", "review"),
        status=text(entry, "status"),
        contact=text(entry, "contact"),
    )


def _body(register: Mapping[str, Any], body: str) -> transparency_pb2.Body:
    organisation, _, administration = body.partition("@")
    return transparency_pb2.Body(
        id=organisation, name=body_name(register, body), administration=administration
    )


def _enum(enum: Any, prefix: str, name: object) -> str:
    """The enum value's full name (protobuf takes a name), UNSPECIFIED for one it lacks."""
    full = prefix + str(name)
    return full if full in enum.keys() else prefix + "UNSPECIFIED"


def _timestamp(at: str) -> Timestamp:
    stamp = Timestamp()
    try:
        stamp.FromDatetime(datetime.fromisoformat(at))
    except ValueError:
        pass
    return stamp
