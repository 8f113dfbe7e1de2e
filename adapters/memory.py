"""An in-memory record source, for tests and examples: rows given as plain dicts."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from adapters.base import AdapterError, Batch, Row


class MemorySource:
    """Serves rows keyed by record type; each row names its subject identifiers.

    `pseudonym_subjects` names, per record type, the subject kind research extracts key
    pseudonyms on; a record type without one cannot be streamed with subjects.
    """

    def __init__(
        self,
        rows: Mapping[str, Sequence[Mapping[str, Any]]],
        *,
        pseudonym_subjects: Mapping[str, str] | None = None,
    ) -> None:
        self._rows = {record_type: list(items) for record_type, items in rows.items()}
        self._pseudonym_subjects = dict(pseudonym_subjects or {})
        self.record_types = frozenset(self._rows)
        # The fields each fetch asked for, so tests can prove minimisation happens at the source.
        self.reads: list[tuple[str, tuple[str, ...]]] = []

    async def fetch(
        self, record_type: str, subject_kind: str, subject_value: str, fields: Sequence[str]
    ) -> list[Row]:
        self.reads.append((record_type, tuple(fields)))
        return [
            {f: row[f] for f in fields if f in row}
            for row in self._rows.get(record_type, [])
            if str(row.get(subject_kind)) == subject_value
        ]

    async def stream(
        self,
        record_type: str,
        fields: Sequence[str],
        *,
        batch_size: int,
        after: str | None,
        with_subjects: bool = False,
    ) -> AsyncIterator[Batch]:
        rows = self._rows.get(record_type, [])
        kind = self._pseudonym_subjects.get(record_type)
        if with_subjects and kind is None:
            raise AdapterError(f"{record_type} maps no subject to key pseudonyms on")
        start = int(after) if after else 0
        for offset in range(start, len(rows), batch_size):
            chunk = rows[offset : offset + batch_size]
            subjects = []
            if with_subjects and kind is not None:
                subjects = [(kind, str(row[kind])) if row.get(kind) else None for row in chunk]
            yield Batch(
                rows=[{f: row[f] for f in fields if f in row} for row in chunk],
                cursor=str(offset + len(chunk)),
                subjects=subjects,
            )

    async def close(self) -> None:
        return None
