"""Tamper-evident audit: every request that reaches a node leaves exactly one entry."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from gateway.audit.chain import AuditPosition, ChainHead, ExchangeHash, WitnessSignature

if TYPE_CHECKING:
    from gateway.audit.reader import RecordedEvent


class AuditLog(Protocol):
    """Appends entries durably; `append` returns only once the entry is on disk."""

    async def append(self, event: Mapping[str, Any]) -> int:
        """Stores one event (a JSON-serialisable mapping) and returns its sequence number."""
        ...

    # Evidence peers hold the node to (issue 18, docs/evidence.md).
    async def append_entry(self, event: Mapping[str, Any]) -> AuditPosition:
        """Stores one event like `append`; returns its place in the chain (seq, hash, time)."""
        ...

    async def head(self) -> AuditPosition | None:
        """The last committed entry's position; None while the log is empty."""
        ...

    async def entry_hashes(self, first_seq: int, last_seq: int) -> list[str]:
        """The chain hashes of entries first_seq..last_seq, in order (fewer if any are gone)."""
        ...

    async def exchange_hashes(
        self, counterparty: str, after_exchange_id: str, limit: int
    ) -> list[ExchangeHash]:
        """Entries of exchanges with `counterparty` (as requesting or providing node), ordered
        by exchange id then seq, for exchange ids after `after_exchange_id`; at most `limit`."""
        ...

    async def witnessed_head(self, node: str) -> WitnessSignature | None:
        """The last head of `node` this node signed as its witness."""
        ...

    async def record_witnessed_head(self, signature: WitnessSignature) -> None:
        """Keeps a head this node signed as witness (durably, before the signature leaves)."""
        ...

    async def add_witness_signature(self, signature: WitnessSignature) -> None:
        """Keeps a peer's signature over one of this node's own heads."""
        ...

    async def witness_signatures(self) -> list[WitnessSignature]:
        """Every witness signature this node holds over its own heads, oldest first."""
        ...

    # Citizens' lookups (gateway/citizen, docs/citizens.md).
    async def exchanges_about(self, subject_hashes: Sequence[str]) -> list[RecordedEvent]:
        """The committed entries about any of these subjects (by keyed hash), newest first."""
        ...

    async def close(self) -> None: ...


__all__ = ["AuditLog", "AuditPosition", "ChainHead", "ExchangeHash", "WitnessSignature"]
