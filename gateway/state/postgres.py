"""A node's state in PostgreSQL, shared by all its replicas and kept across restarts.

One database per node. `PostgresState` owns the connection pool, creates the schema (under
an advisory lock, so replicas starting together do not race) and claims the database for its
node. The replay guards and the idempotency store below are the `ReplayGuard` and
`IdempotencyStore` of gateway/state; the audit log is gateway/audit/postgres_log.py.

Every driver or pool failure becomes Unavailable here: the node fails closed (nothing is
released without its state) and says the failure is temporary, and health follows the probe.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import psycopg
import structlog
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from gateway.config import ConfigError
from gateway.errors import IdempotencyConflict, RateLimited, Unavailable
from gateway.state import Answered

log = structlog.get_logger("concordat.state")

# Any constant works: it only has to be the same for every replica of every node.
_SCHEMA_LOCK = 0x636F6E63
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS seen_ids (
    scope TEXT NOT NULL,
    id TEXT NOT NULL,
    forget_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (scope, id)
);
CREATE INDEX IF NOT EXISTS seen_ids_by_forget_at ON seen_ids (forget_at);
CREATE TABLE IF NOT EXISTS idempotency (
    owner TEXT NOT NULL,
    key TEXT NOT NULL,
    digest TEXT NOT NULL,
    exchange_id TEXT NOT NULL,
    response BYTEA,
    lease_until DOUBLE PRECISION NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (owner, key)
);
CREATE INDEX IF NOT EXISTS idempotency_by_expiry ON idempotency (expires_at);
CREATE TABLE IF NOT EXISTS rate_buckets (
    scope TEXT NOT NULL,
    who TEXT NOT NULL,
    level DOUBLE PRECISION NOT NULL,
    at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (scope, who)
);
"""
# How often a waiting repeat looks again for the answer of a claim another replica holds.
_ANSWER_POLL_SECONDS = 0.02


class StateStoreRefused(ConfigError):
    """The database cannot serve as this node's state: it belongs to another node (the
    configuration names the wrong database, and the node refuses to start)."""


def unreachable(exc: BaseException) -> Unavailable:
    """What a driver or pool failure becomes: temporary, retryable, with nothing released."""
    error = Unavailable("the node's state store is unreachable; retry shortly")
    error.__cause__ = exc
    return error


class PostgresState:
    """The pool every replica of one node shares its state through."""

    def __init__(self, pool: AsyncConnectionPool[Any], url: str, node: str) -> None:
        self._pool = pool
        self.url = url
        self.node = node

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        node: str,
        pool_size: int,
        statement_timeout_seconds: float,
        schema: str,
    ) -> PostgresState:
        """Connects, creates `schema` (this module's and the audit log's) and claims the database.

        Raises Unavailable when the database cannot be reached within the statement timeout.
        """
        pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            url,
            min_size=1,
            max_size=pool_size,
            open=False,
            timeout=statement_timeout_seconds,
            kwargs={
                "autocommit": True,
                "connect_timeout": max(1, round(statement_timeout_seconds)),
                # Commits on these connections do not wait for the WAL flush (0.2 ms an insert
                # instead of 3 ms here): a replay id or a claim is durable before any answer
                # leaves all the same, because the exchange's audit entry commits after it with
                # a flush, and the WAL is flushed in order. What must be durable on its own
                # commits with `durable()`.
                "options": (
                    f"-c statement_timeout={round(statement_timeout_seconds * 1000)}"
                    " -c synchronous_commit=off"
                ),
            },
            name=f"concordat-{node}",
        )
        try:
            await pool.open(wait=True, timeout=statement_timeout_seconds * 2)
            async with pool.connection() as conn, conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
                await conn.execute(SCHEMA + schema)
                await _claim(conn, node)
        except (psycopg.Error, PoolTimeout) as exc:
            await pool.close()
            raise unreachable(exc) from exc
        except BaseException:
            await pool.close()
            raise
        return cls(pool, url, node)

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """A pooled connection (autocommit); driver failures become Unavailable."""
        try:
            async with self._pool.connection() as conn:
                yield conn
        except (psycopg.Error, PoolTimeout) as exc:
            raise unreachable(exc) from exc

    @asynccontextmanager
    async def durable(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """A pooled connection in a transaction that commits only once it is on disk."""
        async with self.connection() as conn, conn.transaction():
            await conn.execute("SET LOCAL synchronous_commit TO on")
            yield conn

    async def reachable(self) -> bool:
        """Whether the store answers now (the node's health follows this)."""
        try:
            async with self.connection() as conn:
                await conn.execute("SELECT 1")
        except Unavailable:
            return False
        return True

    async def forget_expired(self) -> None:
        """Deletes replay ids and idempotency keys whose time is over (any replica may)."""
        async with self.connection() as conn:
            await conn.execute(
                "DELETE FROM seen_ids WHERE forget_at < extract(epoch from clock_timestamp())"
            )
            await conn.execute(
                "DELETE FROM idempotency WHERE expires_at < extract(epoch from clock_timestamp())"
            )

    async def close(self) -> None:
        await self._pool.close()


async def _claim(conn: psycopg.AsyncConnection[Any], node: str) -> None:
    await conn.execute(
        "INSERT INTO meta (key, value) VALUES ('node', %s) ON CONFLICT (key) DO NOTHING", (node,)
    )
    cursor = await conn.execute("SELECT value FROM meta WHERE key = 'node'")
    row = await cursor.fetchone()
    if row is None or row[0] != node:
        raise StateStoreRefused(
            f"the state database belongs to node {row[0] if row else '?'!r}, not {node!r}"
        )


# Times are compared on the database's clock, so replicas whose clocks differ still agree on
# what has expired.


class PostgresReplayGuard:
    """A `ReplayGuard` every replica shares: an id inserted once is refused everywhere after."""

    def __init__(self, state: PostgresState, *, scope: str, leeway_seconds: float) -> None:
        self._state = state
        self._scope = scope
        self._leeway = leeway_seconds

    async def first_use(self, token_id: str, expires_at: float) -> bool:
        async with self._state.connection() as conn:
            # An id whose time is over but not yet deleted may be taken again: its token is
            # expired, so only a new token can carry it.
            cursor = await conn.execute(
                "INSERT INTO seen_ids (scope, id, forget_at) VALUES (%s, %s, %s)"
                " ON CONFLICT (scope, id) DO UPDATE SET forget_at = EXCLUDED.forget_at"
                " WHERE seen_ids.forget_at < extract(epoch from clock_timestamp())",
                (self._scope, token_id, expires_at + self._leeway),
            )
            return cursor.rowcount == 1


class PostgresIdempotency:
    """An `IdempotencyStore` every replica shares; answers are stored as protobuf bytes.

    A claim holds a lease: if its replica dies before answering, the key can be claimed
    again once the lease ends, so a retry is not blocked until the key expires.
    """

    def __init__(
        self,
        state: PostgresState,
        *,
        ttl_seconds: float,
        lease_seconds: float,
        decode: Callable[[bytes], Any],
    ) -> None:
        self._state = state
        self._ttl = ttl_seconds
        self._lease = lease_seconds
        self._decode = decode

    async def claim(self, owner: str, key: str, digest: str, exchange_id: str) -> Answered | None:
        while True:
            async with self._state.connection() as conn:
                cursor = await conn.execute(
                    "INSERT INTO idempotency"
                    " (owner, key, digest, exchange_id, response, lease_until, expires_at)"
                    " VALUES (%s, %s, %s, %s, NULL, extract(epoch from clock_timestamp()) + %s,"
                    " extract(epoch from clock_timestamp()) + %s)"
                    " ON CONFLICT (owner, key) DO UPDATE SET digest = EXCLUDED.digest,"
                    " exchange_id = EXCLUDED.exchange_id, response = NULL,"
                    " lease_until = EXCLUDED.lease_until, expires_at = EXCLUDED.expires_at"
                    " WHERE idempotency.expires_at < extract(epoch from clock_timestamp())"
                    " OR (idempotency.response IS NULL"
                    " AND idempotency.lease_until < extract(epoch from clock_timestamp()))",
                    (owner, key, digest, exchange_id, self._lease, self._ttl),
                )
                if cursor.rowcount == 1:
                    return None
                cursor = await conn.execute(
                    "SELECT digest, exchange_id, response FROM idempotency"
                    " WHERE owner = %s AND key = %s",
                    (owner, key),
                )
                row = await cursor.fetchone()
            if row is None:
                continue  # released between the two statements: claim it afresh
            earlier_digest, earlier_id, response = row
            if earlier_digest != digest:
                raise IdempotencyConflict(
                    "idempotency_key was already used for a different request"
                )
            if response is not None:
                return Answered(earlier_id, self._decode(bytes(response)))
            # Another exchange (on this replica or another) holds the claim: wait for its answer
            # or its release, within the caller's deadline (the pipeline's timeout ends the wait).
            await asyncio.sleep(_ANSWER_POLL_SECONDS)

    async def complete(self, owner: str, key: str, exchange_id: str, response: Any) -> None:
        # Durable before the call returns: an answer lost to a crash would be given twice.
        async with self._state.durable() as conn:
            await conn.execute(
                "UPDATE idempotency SET response = %s"
                " WHERE owner = %s AND key = %s AND exchange_id = %s",
                (response.SerializeToString(), owner, key, exchange_id),
            )

    async def release(self, owner: str, key: str, exchange_id: str) -> None:
        async with self._state.connection() as conn:
            await conn.execute(
                "DELETE FROM idempotency"
                " WHERE owner = %s AND key = %s AND exchange_id = %s AND response IS NULL",
                (owner, key, exchange_id),
            )


class PostgresRateLimiter:
    """A `RateLimiter` every replica shares: `burst` at once, refilled at `per_hour`.

    One statement refills and takes under the row's lock, so replicas racing for the last
    token give it to one of them. `who` is stored as a SHA-256, never as given.
    """

    def __init__(self, state: PostgresState, *, scope: str, per_hour: float, burst: int) -> None:
        self._state = state
        self._scope = scope
        self._rate = per_hour / 3600.0
        self._burst = float(burst)

    async def take(self, who: str) -> None:
        key = hashlib.sha256(who.encode()).hexdigest()
        async with self._state.connection() as conn:
            cursor = await conn.execute(
                "INSERT INTO rate_buckets AS b (scope, who, level, at)"
                " VALUES (%(scope)s, %(who)s, %(burst)s - 1,"
                " extract(epoch from clock_timestamp()))"
                " ON CONFLICT (scope, who) DO UPDATE SET"
                " level = LEAST(%(burst)s, b.level"
                " + (extract(epoch from clock_timestamp()) - b.at) * %(rate)s) - 1,"
                " at = extract(epoch from clock_timestamp())"
                " WHERE LEAST(%(burst)s, b.level"
                " + (extract(epoch from clock_timestamp()) - b.at) * %(rate)s) >= 1"
                " RETURNING level",
                {"scope": self._scope, "who": key, "burst": self._burst, "rate": self._rate},
            )
            if cursor.rowcount == 1:
                return
            cursor = await conn.execute(
                "SELECT LEAST(%(burst)s, level"
                " + (extract(epoch from clock_timestamp()) - at) * %(rate)s)"
                " FROM rate_buckets WHERE scope = %(scope)s AND who = %(who)s",
                {"scope": self._scope, "who": key, "burst": self._burst, "rate": self._rate},
            )
            row = await cursor.fetchone()
        level = float(row[0]) if row else 0.0
        wait = (1.0 - level) / self._rate if self._rate else 3600.0
        raise RateLimited(f"too many lookups; try again in {max(1, round(wait))} seconds")
