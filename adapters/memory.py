"""An in-memory record source, for tests and examples: rows given as plain dicts."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from adapters.base import Batch, Row


class MemorySource:
    """Serves rows keyed by record type; each row names its subject identifiers."""

    def __init__(self, rows: Mapping[str, Sequence[Mapping[str, Any]]]) -> None:
        self._rows = {record_type: list(items) for record_type, items in rows.items()}
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
        self, record_type: str, fields: Sequence[str], *, batch_size: int, after: str | None
    ) -> AsyncIterator[Batch]:
        rows = self._rows.get(record_type, [])
        start = int(after) if after else 0
        for offset in range(start, len(rows), batch_size):
            chunk = rows[offset : offset + batch_size]
            yield Batch(
                rows=[{f: row[f] for f in fields if f in row} for row in chunk],
                cursor=str(offset + len(chunk)),
            )

    async def close(self) -> None:
        return None
