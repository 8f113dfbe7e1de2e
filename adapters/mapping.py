"""Declarative mappings from a local system to record fields, and the value rules they obey.

An operator's node config says, per record type, where each record field lives in a local
system: a column (SQL) or a JSON path (REST). The models here check that shape when the config
is loaded; adapters check it against the live system when they open. Field names and types
come from the record contracts in records.proto, so there is no second list to keep in step.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from string import Formatter
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from adapters.base import AdapterError, SourceDataInvalid
from concordat.records.v1 import records_pb2

SubjectKind = Literal["nino", "nhs_number", "chi_number", "hc_number", "uprn", "registration_id"]
FieldKind = Literal["string", "int64", "uint64", "repeated_string"]

MAX_TEXT_BYTES = 64 * 1024
MAX_LIST_ITEMS = 1_000


class SourceMisconfigured(AdapterError):
    """The source's configuration cannot work: a missing secret or an unusable mapping."""


class MappingMismatch(SourceMisconfigured):
    """The mapping names a table, column or join that the live local system does not have."""


def _record_fields() -> dict[str, dict[str, FieldKind]]:
    # Record types are the upper-cased names of the `Record.kind` oneof members
    # (birth_registration -> BIRTH_REGISTRATION), which is how the exchange API names them.
    kinds: dict[str, dict[str, FieldKind]] = {}
    for member in records_pb2.Record.DESCRIPTOR.oneofs_by_name["kind"].fields:
        if member.message_type is None:
            raise TypeError(f"Record.{member.name} is not a message field")
        fields: dict[str, FieldKind] = {}
        for field in member.message_type.fields:
            fields[field.name] = _field_kind(member.name, field)
        kinds[member.name.upper()] = fields
    return kinds


def _field_kind(record: str, field: Any) -> FieldKind:
    descriptor = type(field)
    if field.type == descriptor.TYPE_STRING:
        return "repeated_string" if field.is_repeated else "string"
    if field.type == descriptor.TYPE_INT64 and not field.is_repeated:
        return "int64"
    if field.type == descriptor.TYPE_UINT64 and not field.is_repeated:
        return "uint64"
    raise TypeError(f"records.proto field {record}.{field.name} has a type adapters cannot fill")


RECORD_FIELDS: Mapping[str, Mapping[str, FieldKind]] = _record_fields()


Converter = Callable[[Any], Any]
_INT64 = (-(2**63), 2**63 - 1)
_UINT64 = (0, 2**64 - 1)
# Text this short cannot exceed the byte limit however it encodes, so needs no encoding.
SHORT_TEXT_CHARS = MAX_TEXT_BYTES // 4


def value_converter(
    record_type: str, field: str, *, list_separator: str | None = None
) -> Converter:
    """A function from a raw local value to the field's record value (None: leave it out).

    It raises SourceDataInvalid naming the record type and field, never the value. Bulk
    extracts call it for every value, so each kind takes a fast path for the common case.
    """
    kind = RECORD_FIELDS[record_type][field]
    if kind == "string":

        def text(value: Any) -> Any:
            if value is None or (type(value) is str and len(value) <= SHORT_TEXT_CHARS):
                return value
            if type(value) is date:
                return value.isoformat()
            return _as_text(record_type, field, value)

        return text
    if kind == "repeated_string":

        def texts(value: Any) -> Any:
            if value is None:
                return None
            return _as_text_list(record_type, field, value, list_separator)

        return texts
    low, high = _UINT64 if kind == "uint64" else _INT64

    def integer(value: Any) -> Any:
        if value is None or (type(value) is int and low <= value <= high):
            return value
        return _as_integer(record_type, field, value, low=low, high=high)

    return integer


def _invalid(record_type: str, field: str, problem: str) -> SourceDataInvalid:
    return SourceDataInvalid(f"{record_type}.{field} {problem}")


def _as_text(record_type: str, field: str, value: Any) -> str:
    if isinstance(value, str):
        text = value
    elif isinstance(value, datetime | date):
        text = value.isoformat()
    elif isinstance(value, int) and not isinstance(value, bool):
        # Reference numbers are often integer columns; their decimal form is the value.
        text = str(value)
    else:
        raise _invalid(record_type, field, "holds a value that is not text")
    if len(text) > SHORT_TEXT_CHARS and len(text.encode()) > MAX_TEXT_BYTES:
        raise _invalid(record_type, field, f"holds text over {MAX_TEXT_BYTES // 1024} KiB")
    return text


def _as_integer(record_type: str, field: str, value: Any, *, low: int, high: int) -> int:
    if isinstance(value, Decimal) and value.is_finite() and value == value.to_integral_value():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise _invalid(record_type, field, "holds a value that is not an integer")
    if not low <= value <= high:
        raise _invalid(record_type, field, "holds an integer out of range")
    return value


def _as_text_list(
    record_type: str, field: str, value: Any, separator: str | None
) -> list[str] | None:
    if isinstance(value, str):
        if separator is not None:
            items: Any = [part.strip() for part in value.split(separator) if part.strip()]
        else:
            try:
                items = json.loads(value)
            except ValueError:
                raise _invalid(record_type, field, "holds text that is not a JSON list") from None
    else:
        items = value
    if not isinstance(items, list | tuple):
        raise _invalid(record_type, field, "holds a value that is not a list")
    if len(items) > MAX_LIST_ITEMS:
        raise _invalid(record_type, field, f"holds more than {MAX_LIST_ITEMS} items")
    texts = [_as_text(record_type, field, item) for item in items if item is not None]
    # An empty repeated field and an absent one are the same record; leave it out.
    return texts or None


_FROZEN = ConfigDict(frozen=True, extra="forbid")
_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_IDENTIFIER = re.compile(_NAME)
_COLUMN_REF = re.compile(rf"(?:({_NAME})\.)?({_NAME})")
_STEP = rf"{_NAME}(?:\[(?:\*|[0-9]+)\])?"
_JSON_PATH = re.compile(rf"{_STEP}(?:\.{_STEP})*")


def split_column_ref(ref: str) -> tuple[str | None, str]:
    """("join", "column") for "join.column", (None, "column") for a main-table column."""
    match = _COLUMN_REF.fullmatch(ref)
    if match is None:
        raise ValueError(f"{ref!r} is not a column reference ('column' or 'join.column')")
    return match.group(1), match.group(2)


def _check_identifier(value: str) -> str:
    if not _IDENTIFIER.fullmatch(value):
        raise ValueError(f"{value!r} is not a plain SQL identifier")
    return value


def _check_column_ref(value: str) -> str:
    split_column_ref(value)
    return value


Identifier = Annotated[str, AfterValidator(_check_identifier)]
ColumnRef = Annotated[str, AfterValidator(_check_column_ref)]


def _field_source_shorthand(value: Any) -> Any:
    return {"column": value} if isinstance(value, str) else value


class FieldSource(BaseModel):
    """Where one record field is read: a column ref, and for a repeated field held as
    delimited text, the delimiter (otherwise such text is read as a JSON array)."""

    model_config = _FROZEN

    column: ColumnRef
    list_separator: str | None = Field(default=None, min_length=1)


class Join(BaseModel):
    """A table joined to the main table on equal columns.

    Column refs name it by `alias` (the table name when unset). A `many` join is one-to-many:
    it feeds repeated fields only, read in a second query so main rows are not multiplied.
    """

    model_config = _FROZEN

    table: Identifier
    on: dict[Identifier, Identifier] = Field(min_length=1)
    alias: Identifier | None = None
    many: bool = False

    @property
    def name(self) -> str:
        return self.alias or self.table

    @model_validator(mode="after")
    def _many_joins_have_one_link(self) -> Join:
        if self.many and len(self.on) != 1:
            raise ValueError(f"join {self.name!r} is one-to-many and must join on one column")
        return self


class SqlRecordMapping(BaseModel):
    """Where one record type lives in a SQL database."""

    model_config = _FROZEN

    table: Identifier
    # Unique column giving rows a stable order; bulk extracts page and resume on it.
    key: Identifier
    subjects: dict[SubjectKind, ColumnRef] = Field(default_factory=dict)
    fields: dict[str, Annotated[FieldSource, BeforeValidator(_field_source_shorthand)]]
    joins: tuple[Join, ...] = ()
    # The subject a research extract's pseudonyms are keyed on; one of `subjects`. Unset: the
    # first subject listed. GetRecord keys on the identifier asked for, so a researcher who
    # asks by this kind gets the same pseudonym in both.
    pseudonym_subject: SubjectKind | None = None

    @property
    def pseudonym_kind(self) -> str | None:
        """The subject kind pseudonyms are keyed on, or None when no subject is mapped."""
        return self.pseudonym_subject or next(iter(self.subjects), None)

    @model_validator(mode="after")
    def _refs_name_declared_joins(self) -> SqlRecordMapping:
        if self.pseudonym_subject is not None and self.pseudonym_subject not in self.subjects:
            raise ValueError(
                f"pseudonym_subject {self.pseudonym_subject!r} is not one of the mapped subjects"
            )
        names = [join.name for join in self.joins]
        if len(set(names)) != len(names) or self.table in names:
            raise ValueError("joins need distinct aliases, none equal to the main table")
        for field, source in self.fields.items():
            _join_of(f"field {field!r}", source.column, self.joins)
        for kind, ref in self.subjects.items():
            join = _join_of(f"subject {kind!r}", ref, self.joins)
            if join is not None and join.many:
                raise ValueError(
                    f"subject {kind!r} cannot be looked up through one-to-many join {join.name!r}"
                )
        return self


def _join_of(use: str, ref: str, joins: tuple[Join, ...]) -> Join | None:
    prefix, _ = split_column_ref(ref)
    if prefix is None:
        return None
    for join in joins:
        if join.name == prefix:
            return join
    raise ValueError(f"{use} refers to {prefix!r}, which is not a declared join")


def _check_fields_of(record_type: str, fields: Mapping[str, Any]) -> Mapping[str, FieldKind]:
    known = RECORD_FIELDS.get(record_type)
    if known is None:
        raise ValueError(
            f"unknown record type {record_type!r}; known: {', '.join(sorted(RECORD_FIELDS))}"
        )
    for field in fields:
        if field not in known:
            raise ValueError(f"{record_type} has no field {field!r}")
    return known


class SqlSourceConfig(BaseModel):
    """A SQL database serving some record types; `url` is a SQLAlchemy URL."""

    model_config = _FROZEN

    kind: Literal["sql"] = "sql"
    # Kept out of repr: the URL usually carries the database password.
    url: str = Field(repr=False, min_length=1)
    pool_size: int = Field(default=5, ge=1)
    max_overflow: int = Field(default=5, ge=0)
    statement_timeout_ms: int = Field(default=5_000, ge=1)
    connect_timeout_seconds: int = Field(default=5, ge=1)
    records: dict[str, SqlRecordMapping] = Field(min_length=1)

    @model_validator(mode="after")
    def _fields_fit_their_record_types(self) -> SqlSourceConfig:
        for record_type, mapping in self.records.items():
            kinds = _check_fields_of(record_type, mapping.fields)
            for field, source in mapping.fields.items():
                repeated = kinds[field] == "repeated_string"
                join = _join_of(f"field {field!r}", source.column, mapping.joins)
                through_many = join is not None and join.many
                if source.list_separator is not None and (not repeated or through_many):
                    raise ValueError(
                        f"{record_type}.{field}: list_separator applies only to a repeated "
                        "field read from one column"
                    )
                if join is not None and join.many and not repeated:
                    raise ValueError(
                        f"{record_type}.{field} is not repeated, so it cannot come from "
                        f"one-to-many join {join.name!r}"
                    )
        return self


def _path_placeholders(template: str) -> list[str]:
    names = []
    for _, name, spec, conversion in Formatter().parse(template):
        if name is not None:
            if spec or conversion:
                raise ValueError(f"placeholder {{{name}}} takes no format spec or conversion")
            names.append(name)
    return names


def _check_json_path(value: str) -> str:
    if not _JSON_PATH.fullmatch(value):
        raise ValueError(f"{value!r} is not a JSON path like 'name.given' or 'items[*].label'")
    return value


JsonPath = Annotated[str, AfterValidator(_check_json_path)]


class RestRecordMapping(BaseModel):
    """Where one record type lives in a REST API: one GET per subject.

    The path template has one placeholder; each subject kind served names it, and the subject
    value fills it as a single percent-encoded path segment.
    """

    model_config = _FROZEN

    path_template: str
    subjects: dict[SubjectKind, Identifier] = Field(min_length=1)
    fields: dict[str, JsonPath]
    # Where the list of items sits in the answer; without it the answer is one item or a list.
    list_path: JsonPath | None = None

    @field_validator("path_template")
    @classmethod
    def _one_placeholder_in_a_path(cls, value: str) -> str:
        if not value.startswith("/") or "?" in value or "#" in value:
            raise ValueError("path_template must be an absolute path without query or fragment")
        try:
            placeholders = _path_placeholders(value)
        except ValueError as exc:
            raise ValueError(f"path_template is malformed: {exc}") from exc
        if len(placeholders) != 1 or not _IDENTIFIER.fullmatch(placeholders[0]):
            raise ValueError("path_template must hold exactly one {placeholder}")
        return value

    @property
    def placeholder(self) -> str:
        return _path_placeholders(self.path_template)[0]

    @model_validator(mode="after")
    def _subjects_name_the_placeholder(self) -> RestRecordMapping:
        for kind, name in self.subjects.items():
            if name != self.placeholder:
                raise ValueError(
                    f"subject {kind!r} names {{{name}}}, which path_template does not hold"
                )
        return self


class RestSourceConfig(BaseModel):
    """A REST API serving some record types, with an optional secret sent in a header."""

    model_config = _FROZEN

    kind: Literal["rest"] = "rest"
    base_url: str = Field(pattern=r"^https?://")
    records: dict[str, RestRecordMapping] = Field(min_length=1)
    auth_header: str = Field(default="Authorization", pattern=r"^[A-Za-z0-9-]+$")
    auth_scheme: str = "Bearer"
    secret_env: str | None = None
    secret_file: Path | None = None
    timeout_seconds: float = Field(default=2.0, gt=0)
    retries: int = Field(default=2, ge=0, le=10)

    @model_validator(mode="after")
    def _fields_fit_their_record_types(self) -> RestSourceConfig:
        if self.secret_env is not None and self.secret_file is not None:
            raise ValueError("give the REST secret as secret_env or secret_file, not both")
        for record_type, mapping in self.records.items():
            kinds = _check_fields_of(record_type, mapping.fields)
            for field, path in mapping.fields.items():
                if "[*]" in path and kinds[field] != "repeated_string":
                    raise ValueError(
                        f"{record_type}.{field} is not repeated, so its path cannot use [*]"
                    )
        return self
