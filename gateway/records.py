"""Record types as the node sees them: their fields, sensitivity, and safe construction.

Minimisation happens here by construction: a record message is built from the released
fields only, so a field the decision did not release cannot leave the node even if a local
system returned it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from google.protobuf.descriptor import FieldDescriptor

from concordat.exchange.v1 import exchange_pb2
from concordat.records.v1 import options_pb2, records_pb2
from gateway.errors import InvalidRequest, LocalDataInvalid

_MESSAGE_FOR_TYPE = {
    "PERSON": "person",
    "BIRTH_REGISTRATION": "birth_registration",
    "DEATH_REGISTRATION": "death_registration",
    "MARRIAGE_REGISTRATION": "marriage_registration",
    "BENEFIT_AWARD": "benefit_award",
    "COUNCIL_TAX_ACCOUNT": "council_tax_account",
    "HEALTH_SUMMARY": "health_summary",
}
_MAX_STRING = 64 * 1024
_MAX_LIST = 1000


@dataclass(frozen=True, slots=True)
class RecordShape:
    """What the node knows about one record type's fields, read from the descriptors."""

    record_type: str
    oneof_field: str
    message_class: type
    fields: Mapping[str, FieldDescriptor]
    sensitivity: Mapping[str, str]
    identifying: frozenset[str]


def record_type_name(value: int) -> str:
    """The record type's name without prefix ('BENEFIT_AWARD'), or InvalidRequest."""
    if (
        value == exchange_pb2.RECORD_TYPE_UNSPECIFIED
        or value not in exchange_pb2.RecordType.values()
    ):
        raise InvalidRequest("record_type must name a known record type")
    return exchange_pb2.RecordType.Name(value).removeprefix("RECORD_TYPE_")


def purpose_name(value: int) -> str:
    if value == exchange_pb2.PURPOSE_UNSPECIFIED or value not in exchange_pb2.Purpose.values():
        raise InvalidRequest("purpose must name one of the Digital Economy Act purposes")
    return exchange_pb2.Purpose.Name(value).removeprefix("PURPOSE_")


@cache
def shape(record_type: str) -> RecordShape:
    oneof_field = _MESSAGE_FOR_TYPE[record_type]
    descriptor = records_pb2.Record.DESCRIPTOR.fields_by_name[oneof_field].message_type
    fields = dict(descriptor.fields_by_name)
    sensitivity = {
        name: options_pb2.Sensitivity.Name(
            f.GetOptions().Extensions[options_pb2.sensitivity]
        ).removeprefix("SENSITIVITY_")
        for name, f in fields.items()
    }
    identifying = frozenset(
        name for name, f in fields.items() if f.GetOptions().Extensions[options_pb2.identifying]
    )
    message_class = getattr(records_pb2, descriptor.name)
    return RecordShape(record_type, oneof_field, message_class, fields, sensitivity, identifying)


def validate_field_mask(record_type: str, paths: Sequence[str]) -> tuple[str, ...]:
    """The requested fields, checked against the record type; at least one is required."""
    if not paths:
        raise InvalidRequest(
            "field_mask must list the fields you need (minimum necessary); it is empty"
        )
    known = shape(record_type).fields
    unknown = sorted({p for p in paths if p not in known})
    if unknown:
        raise InvalidRequest(
            f"field_mask names fields that {record_type} does not have: {', '.join(unknown)}"
        )
    return tuple(dict.fromkeys(paths))


def build_record(
    record_type: str, row: Mapping[str, Any], released: Iterable[str], *, pseudonym: str = ""
) -> records_pb2.Record:
    """A Record carrying only the released fields of one row; bad values are LocalDataInvalid."""
    record_shape = shape(record_type)
    values: dict[str, Any] = {}
    for name in released:
        value = row.get(name)
        if value is None:
            continue
        values[name] = _checked(record_type, record_shape.fields[name], value)
    record = records_pb2.Record(pseudonym=pseudonym)
    try:
        getattr(record, record_shape.oneof_field).CopyFrom(record_shape.message_class(**values))
    except (TypeError, ValueError) as exc:
        raise LocalDataInvalid(f"the local system returned an invalid {record_type}") from exc
    return record


def _checked(record_type: str, field: FieldDescriptor, value: Any) -> Any:
    where = f"{record_type}.{field.name}"
    if field.is_repeated:
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise LocalDataInvalid(f"the local system returned a non-list value for {where}")
        if len(value) > _MAX_LIST or any(len(v) > _MAX_STRING for v in value):
            raise LocalDataInvalid(f"the local system returned an oversized value for {where}")
        return list(value)
    if field.type == FieldDescriptor.TYPE_STRING:
        if not isinstance(value, str):
            raise LocalDataInvalid(f"the local system returned a non-text value for {where}")
        if len(value) > _MAX_STRING:
            raise LocalDataInvalid(f"the local system returned an oversized value for {where}")
        return value
    if isinstance(value, bool) or not isinstance(value, int):
        raise LocalDataInvalid(f"the local system returned a non-integer value for {where}")
    unsigned = field.type in (FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_UINT32)
    if (unsigned and value < 0) or not -(2**63) <= value < 2**64:
        raise LocalDataInvalid(f"the local system returned an out-of-range value for {where}")
    return value
