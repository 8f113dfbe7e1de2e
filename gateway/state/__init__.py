"""A node's shared state behind small protocols: replay guards and idempotency keys.

Each has two implementations: in memory (the embedded default, one process) and PostgreSQL
(gateway/state/postgres.py), where every replica of a node and every restart see the same
state. The audit log, the third piece of state, has its own protocol in gateway/audit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


class ReplayGuard(Protocol):
    """Remembers token ids until their tokens expire, so each id is accepted once."""

    async def first_use(self, token_id: str, expires_at: float) -> bool:
        """True the first time `token_id` is seen; False for a replay.

        Raises Unavailable when it cannot tell (the store is unreachable or full): a guard
        that cannot remember must not let a token through.
        """
        ...


@dataclass(frozen=True, slots=True)
class Answered:
    """The answer an earlier exchange with the same idempotency key gave."""

    exchange_id: str
    response: Any


class RateLimiter(Protocol):
    """How often one party may do something: a token bucket each, shared by replicas if stored."""

    async def take(self, who: str) -> None:
        """Uses one of `who`'s tokens; raises RateLimited (saying when to retry) if none is left."""
        ...


class IdempotencyStore(Protocol):
    """Answers a repeated request (same owner, same key) once, across replicas if shared."""

    async def claim(self, owner: str, key: str, digest: str, exchange_id: str) -> Answered | None:
        """Claims the key for this exchange (None), or waits for the earlier claim's answer.

        Raises IdempotencyConflict when the key was used for a request with another digest.
        An earlier claim that is released while waited on is claimed afresh.
        """
        ...

    async def complete(self, owner: str, key: str, exchange_id: str, response: Any) -> None:
        """Stores the answer of the exchange that holds the claim."""
        ...

    async def release(self, owner: str, key: str, exchange_id: str) -> None:
        """Gives up a claim whose exchange failed: nothing was released, a retry is fresh."""
        ...
