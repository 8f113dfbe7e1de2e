"""Tamper-evident audit: every request that reaches a node leaves exactly one entry."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from gateway.audit.reader import RecordedEvent


class AuditLog(Protocol):
    """Appends entries durably; `append` returns only once the entry is on disk."""

    async def append(self, event: Mapping[str, Any]) -> int:
        """Stores one event (a JSON-serialisable mapping) and returns its sequence number."""
        ...

    # Citizens' lookups (gateway/citizen, docs/citizens.md).
    async def exchanges_about(self, subject_hashes: Sequence[str]) -> list[RecordedEvent]:
        """The committed entries about any of these subjects (by keyed hash), newest first."""
        ...

    async def close(self) -> None: ...
