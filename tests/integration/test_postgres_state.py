"""The PostgreSQL state store: what one replica remembers, every replica and restart sees."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from concordat.exchange.v1 import exchange_pb2
from gateway.audit.chain import ChainHead, WitnessSignature
from gateway.audit.grouping import AppendsDue, GroupCommit
from gateway.audit.meter import read_meter
from gateway.audit.postgres_log import SCHEMA as AUDIT_SCHEMA
from gateway.audit.postgres_log import PostgresAuditLog, export_to_sqlite
from gateway.audit.reader import read_events
from gateway.audit.verify import verify_log
from gateway.errors import IdempotencyConflict, RateLimited
from gateway.keys import SigningKeys
from gateway.state import Answered
from gateway.state.postgres import (
    PostgresIdempotency,
    PostgresRateLimiter,
    PostgresReplayGuard,
    PostgresState,
    StateStoreRefused,
)
from tests.support.postgres import fresh_database

pytestmark = pytest.mark.postgres


@pytest.fixture
def database() -> Iterator[str]:
    with fresh_database() as url:
        yield url


async def open_state(url: str, node: str = "whitehall") -> PostgresState:
    return await PostgresState.open(
        url, node=node, pool_size=2, statement_timeout_seconds=2, schema=AUDIT_SCHEMA
    )


@pytest.fixture
async def replicas(database: str) -> AsyncIterator[tuple[PostgresState, PostgresState]]:
    """Two replicas of one node: two pools on one database, opened together."""
    first, second = await asyncio.gather(open_state(database), open_state(database))
    try:
        yield first, second
    finally:
        await first.close()
        await second.close()


def idempotency(state: PostgresState, *, lease_seconds: float = 15) -> PostgresIdempotency:
    return PostgresIdempotency(
        state,
        ttl_seconds=600,
        lease_seconds=lease_seconds,
        decode=exchange_pb2.GetRecordResponse.FromString,
    )


async def test_a_token_id_used_at_one_replica_is_refused_at_the_other_and_after_a_restart(
    database: str, replicas: tuple[PostgresState, PostgresState]
) -> None:
    first, second = (PostgresReplayGuard(r, scope="caller", leeway_seconds=30) for r in replicas)
    expires = 4_000_000_000.0

    assert await first.first_use("jti-1", expires)
    assert not await second.first_use("jti-1", expires)
    restarted = await open_state(database)
    try:
        guard = PostgresReplayGuard(restarted, scope="caller", leeway_seconds=30)
        assert not await guard.first_use("jti-1", expires)
        # Callers' tokens and peers' assertions are remembered apart.
        assert await PostgresReplayGuard(restarted, scope="peer", leeway_seconds=5).first_use(
            "jti-1", expires
        )
    finally:
        await restarted.close()


async def test_expired_token_ids_are_deleted_and_cannot_block_a_new_token(
    replicas: tuple[PostgresState, PostgresState],
) -> None:
    state = replicas[0]
    guard = PostgresReplayGuard(state, scope="caller", leeway_seconds=0)
    assert await guard.first_use("old", 1.0)
    assert await guard.first_use("live", 4_000_000_000.0)

    await state.forget_expired()

    async with state.connection() as conn:
        cursor = await conn.execute("SELECT id FROM seen_ids ORDER BY id")
        assert [row[0] for row in await cursor.fetchall()] == ["live"]


async def test_racing_replicas_accept_a_token_id_exactly_once(
    replicas: tuple[PostgresState, PostgresState],
) -> None:
    guards = [PostgresReplayGuard(r, scope="caller", leeway_seconds=30) for r in replicas]

    outcomes = await asyncio.gather(
        *(guards[i % 2].first_use("contested", 4_000_000_000.0) for i in range(20))
    )

    assert outcomes.count(True) == 1


async def test_an_idempotency_key_is_answered_once_across_replicas(
    replicas: tuple[PostgresState, PostgresState],
) -> None:
    first, second = (idempotency(r) for r in replicas)
    answer = exchange_pb2.GetRecordResponse(exchange_id="e1", released_fields=["nino"])

    assert await first.claim("dwp", "key-1", "digest", "e1") is None
    waiting = asyncio.create_task(second.claim("dwp", "key-1", "digest", "e2"))
    await asyncio.sleep(0.1)
    assert not waiting.done()
    await first.complete("dwp", "key-1", "e1", answer)

    assert await waiting == Answered("e1", answer)
    with pytest.raises(IdempotencyConflict):
        await second.claim("dwp", "key-1", "another digest", "e3")


async def test_a_released_key_is_claimed_afresh_by_the_replica_waiting_on_it(
    replicas: tuple[PostgresState, PostgresState],
) -> None:
    first, second = (idempotency(r) for r in replicas)
    assert await first.claim("dwp", "key-2", "digest", "e1") is None
    waiting = asyncio.create_task(second.claim("dwp", "key-2", "digest", "e2"))
    await asyncio.sleep(0.05)

    await first.release("dwp", "key-2", "e1")

    assert await waiting is None


async def test_a_claim_whose_replica_died_is_free_once_its_lease_ends(
    replicas: tuple[PostgresState, PostgresState],
) -> None:
    dead, alive = idempotency(replicas[0], lease_seconds=0.2), idempotency(replicas[1])
    assert await dead.claim("dwp", "key-3", "digest", "e1") is None

    assert await asyncio.wait_for(alive.claim("dwp", "key-3", "digest", "e2"), 5) is None


async def test_a_database_claimed_by_one_node_is_refused_to_another(database: str) -> None:
    state = await open_state(database, "whitehall")
    await state.close()

    with pytest.raises(StateStoreRefused, match="belongs to node 'whitehall', not 'holyrood'"):
        await open_state(database, "holyrood")


async def test_replicas_appending_together_make_one_chain_that_verifies_with_its_meter(
    database: str, replicas: tuple[PostgresState, PostgresState], tmp_path: Path
) -> None:
    key = Ed25519PrivateKey.generate()
    logs = [
        PostgresAuditLog(
            url=database,
            node="whitehall",
            signing_key=SigningKeys.fixed(key),
            max_batch=8,
            reads=replica,
        )
        for replica in replicas
    ]
    events = [
        {
            "exchange_id": f"{i:032x}",
            "role": "local",
            "outcome": "released" if i % 3 else "denied",
            "requester": {"organisation": "dwp", "administration": "whitehall"},
            "agreement_id": "cr-dwp-gro-deaths-2026",
            "records": 1,
            "bytes": 10 + i,
        }
        for i in range(200)
    ]
    try:
        positions = await asyncio.gather(
            *(logs[i % 2].append(event) for i, event in enumerate(events))
        )
    finally:
        for log in logs:
            await log.close()
    exported = tmp_path / "export.db"

    assert export_to_sqlite(database, exported, public_key=key.public_key()) == 200
    report = verify_log(exported)
    assert report.ok, report.problems
    assert report.sealed_upto == 200
    assert sorted(p if isinstance(p, int) else p.seq for p in positions) == list(range(1, 201))
    assert sorted(e.event["exchange_id"] for e in read_events(exported)) == sorted(
        e["exchange_id"] for e in events
    )
    (row,) = read_meter(exported)
    assert (row.exchanges, row.released, row.denied) == (200, 133, 67)


async def test_entries_of_exchanges_under_way_share_one_batch_on_postgresql(
    database: str, replicas: tuple[PostgresState, PostgresState]
) -> None:
    due = AppendsDue()
    log = PostgresAuditLog(
        url=database,
        node="whitehall",
        signing_key=SigningKeys.fixed(Ed25519PrivateKey.generate()),
        max_batch=8,
        reads=replicas[0],
        # A minute: a writer that waited when nobody was left to come would hang the test.
        grouping=GroupCommit(delay_seconds=60.0, siblings=1),
        appends_due=due,
    )
    try:
        due.expect()
        due.expect()
        first = asyncio.ensure_future(log.append({"exchange_id": "a" * 32}))
        await asyncio.sleep(0.05)
        assert not first.done()  # waiting for the two exchanges still under way
        due.arrived()
        second = asyncio.ensure_future(log.append({"exchange_id": "b" * 32}))
        await asyncio.sleep(0.05)
        assert not second.done()
        due.arrived()
        third = await asyncio.wait_for(log.append({"exchange_id": "c" * 32}), 20)
        assert sorted([await first, await second, third]) == [1, 2, 3]
        assert log.commits.batches == 1
        # Nobody under way: the next append commits at once, in a batch of its own.
        assert await asyncio.wait_for(log.append({"exchange_id": "d" * 32}), 20) == 4
        assert log.commits.batches == 2
    finally:
        await asyncio.wait_for(log.close(), 20)


async def test_the_evidence_reads_see_every_replicas_entries_and_keep_witness_signatures(
    database: str, replicas: tuple[PostgresState, PostgresState]
) -> None:
    keys = SigningKeys.fixed(Ed25519PrivateKey.generate())
    first, second = (
        PostgresAuditLog(url=database, node="whitehall", signing_key=keys, max_batch=8, reads=r)
        for r in replicas
    )
    try:
        assert await first.head() is None
        one = await first.append_entry(
            {"exchange_id": "a" * 32, "providing_node": "holyrood", "subject_hash": "s1"}
        )
        two = await second.append_entry(
            {"exchange_id": "b" * 32, "requesting_node": "stormont", "subject_hash": "s2"}
        )

        assert await first.head() == two
        assert await second.entry_hashes(1, 2) == [one.hash, two.hash]
        with_holyrood = await second.exchange_hashes("holyrood", "", 10)
        assert [(e.exchange_id, e.seq) for e in with_holyrood] == [("a" * 32, 1)]
        about = await first.exchanges_about(["s2", "s9"])
        assert [(e.seq, e.event["exchange_id"]) for e in about] == [(2, "b" * 32)]

        head = ChainHead("whitehall", two.seq, two.hash, "c0ffee", two.recorded_at)
        signed = WitnessSignature("holyrood", "holyrood-1", head, "2026-12-05T00:00:00Z", "ab")
        await first.add_witness_signature(signed)
        assert await second.witness_signatures() == [signed]
        seen = WitnessSignature("whitehall", "whitehall-1", head, "2026-12-05T00:00:00Z", "cd")
        await second.record_witnessed_head(seen)
        assert await first.witnessed_head("whitehall") == seen
    finally:
        await first.close()
        await second.close()


async def test_replicas_share_one_lookup_budget_per_citizen(
    replicas: tuple[PostgresState, PostgresState],
) -> None:
    first, second = (
        PostgresRateLimiter(r, scope="citizen-lookups", per_hour=1, burst=3) for r in replicas
    )
    await first.take("citizen-1")
    await second.take("citizen-1")
    await first.take("citizen-1")

    with pytest.raises(RateLimited, match="try again in"):
        await second.take("citizen-1")
    await second.take("citizen-2")
    async with replicas[0].connection() as conn:
        cursor = await conn.execute("SELECT who FROM rate_buckets")
        assert "citizen-1" not in {row[0] for row in await cursor.fetchall()}
