"""The one protocol every adapter implements."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

Row = Mapping[str, Any]


class AdapterError(Exception):
    """The local system failed or answered with something unusable."""


class SourceUnavailable(AdapterError):
    """The local system could not be reached or timed out; nothing was read."""


class SourceDataInvalid(AdapterError):
    """The local system answered, but a value cannot be turned into a record field."""


# A subject identifier as the local system holds it: (kind, value), e.g. ("nino", "QQ123456C").
SubjectKey = tuple[str, str]


@dataclass(frozen=True, slots=True)
class Batch:
    rows: Sequence[Row]
    # Opaque position after the last row of this batch; pass it as `after` to resume.
    cursor: str
    # When asked for (`with_subjects`), each row's subject identifier, in row order; None where
    # the local system holds none. Never released: the node keys research pseudonyms on it.
    subjects: Sequence[SubjectKey | None] = ()


class RecordSource(Protocol):
    """Reads records of the record types it serves from one local system."""

    record_types: frozenset[str]

    async def fetch(
        self, record_type: str, subject_kind: str, subject_value: str, fields: Sequence[str]
    ) -> list[Row]:
        """Rows of `record_type` about one subject, with only `fields` read."""
        ...

    def stream(
        self,
        record_type: str,
        fields: Sequence[str],
        *,
        batch_size: int,
        after: str | None,
        with_subjects: bool = False,
    ) -> AsyncIterator[Batch]:
        """Every row of `record_type` in a stable order, in batches, after `after`.

        With `with_subjects`, each batch also carries every row's subject identifier of the
        kind the source keys pseudonyms on; a source that cannot say raises AdapterError.
        """
        ...

    async def close(self) -> None: ...
