"""Answers a repeated request (same caller, same idempotency key) once, in this process.

The first request with a key claims it; repeats wait for its outcome and get the same
answer, without a second exchange. A key reused for a different request is a conflict.
A failed exchange releases its key, since nothing was released and a retry is legitimate.
Entries live in memory for a bounded time and number: a restart forgets them, and replicas
do not share them (gateway/state/postgres.py does both).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from gateway.errors import IdempotencyConflict
from gateway.state import Answered


@dataclass(slots=True)
class _Entry:
    digest: str
    exchange_id: str
    outcome: asyncio.Future[Any]
    expires: float


class IdempotencyCache:
    """An `IdempotencyStore` in process memory."""

    def __init__(self, *, max_entries: int, ttl_seconds: float) -> None:
        self._entries: OrderedDict[tuple[str, str], _Entry] = OrderedDict()
        self._max_entries = max_entries
        self._ttl = ttl_seconds

    def __len__(self) -> int:
        """Keys remembered now, answered or still in flight (expired ones go at the next claim)."""
        return len(self._entries)

    async def claim(self, owner: str, key: str, digest: str, exchange_id: str) -> Answered | None:
        while True:
            self._evict(time.monotonic())
            existing = self._entries.get((owner, key))
            if existing is None:
                break
            if existing.digest != digest:
                raise IdempotencyConflict(
                    "idempotency_key was already used for a different request"
                )
            response = await existing.outcome
            if response is not None:
                return Answered(existing.exchange_id, response)
        if self._max_entries:
            future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            self._entries[(owner, key)] = _Entry(
                digest, exchange_id, future, time.monotonic() + self._ttl
            )
        return None

    async def complete(self, owner: str, key: str, exchange_id: str, response: Any) -> None:
        entry = self._entries.get((owner, key))
        if entry is not None and entry.exchange_id == exchange_id and not entry.outcome.done():
            entry.outcome.set_result(response)

    async def release(self, owner: str, key: str, exchange_id: str) -> None:
        entry = self._entries.get((owner, key))
        if entry is None or entry.exchange_id != exchange_id:
            return
        del self._entries[(owner, key)]
        if not entry.outcome.done():
            entry.outcome.set_result(None)

    def _evict(self, now: float) -> None:
        while self._entries:
            key, oldest = next(iter(self._entries.items()))
            if oldest.expires > now and len(self._entries) < self._max_entries:
                return
            del self._entries[key]
            if not oldest.outcome.done():
                oldest.outcome.set_result(None)
