"""Tamper-evident audit: every request that reaches a node leaves exactly one entry."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol


class AuditLog(Protocol):
    """Appends entries durably; `append` returns only once the entry is on disk."""

    async def append(self, event: Mapping[str, Any]) -> int:
        """Stores one event (a JSON-serialisable mapping) and returns its sequence number."""
        ...

    async def close(self) -> None: ...
