"""The PostgreSQL audit log's writer: a batch in one pipelined transaction, what a failed
statement inside it leaves, and what it does after the commit."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.audit import postgres_log
from gateway.audit.postgres_log import SCHEMA as AUDIT_SCHEMA
from gateway.audit.postgres_log import PostgresAuditLog, export_to_sqlite
from gateway.audit.verify import verify_log
from gateway.errors import InternalError
from gateway.keys import SigningKeys
from gateway.state.postgres import PostgresState
from tests.support.postgres import fresh_database

pytestmark = pytest.mark.postgres

KEY = Ed25519PrivateKey.generate()


def an_event(number: int) -> dict[str, Any]:
    return {
        "exchange_id": f"{number:032x}",
        "role": "providing",
        "outcome": "released",
        "requester": {"organisation": "dwp", "administration": "whitehall"},
        "agreement_id": "cr-dwp-gro-deaths-2026",
        "records": 1,
        "bytes": 40,
    }


@pytest.fixture
def database() -> Iterator[str]:
    with fresh_database() as url:
        yield url


@pytest.fixture
async def log(database: str) -> AsyncIterator[PostgresAuditLog]:
    state = await PostgresState.open(
        database, node="whitehall", pool_size=1, statement_timeout_seconds=2, schema=AUDIT_SCHEMA
    )
    audit = PostgresAuditLog(
        url=database,
        node="whitehall",
        signing_key=SigningKeys.fixed(KEY),
        max_batch=1024,
        reads=state,
    )
    try:
        yield audit
    finally:
        await audit.close()
        await state.close()


def verified(database: str, tmp_path: Path, entries: int) -> bool:
    exported = tmp_path / "export.db"
    assert export_to_sqlite(database, exported, public_key=KEY.public_key()) == entries
    return verify_log(exported).ok


async def test_a_statement_failing_inside_a_batch_fails_that_batch_only_and_leaves_no_trace(
    log: PostgresAuditLog, database: str, tmp_path: Path
) -> None:
    assert await log.append(an_event(1)) == 1
    with psycopg.connect(database, autocommit=True) as admin:
        admin.execute(
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS"
            " $$ BEGIN RAISE EXCEPTION 'disk on fire'; END $$"
        )
        admin.execute(
            "CREATE TRIGGER disk_on_fire BEFORE INSERT ON seals"
            " FOR EACH ROW EXECUTE FUNCTION refuse()"
        )
        failed = await asyncio.gather(
            *(log.append(an_event(n)) for n in range(2, 6)), return_exceptions=True
        )
        admin.execute("DROP TRIGGER disk_on_fire ON seals")

    assert all(isinstance(result, InternalError) for result in failed)
    # The entries written before the seal failed were rolled back with it: the chain goes on.
    assert await log.append(an_event(6)) == 2
    assert log.commits.failures >= 1
    assert verified(database, tmp_path, 2)


async def test_concurrent_appends_share_batches(
    log: PostgresAuditLog, database: str, tmp_path: Path
) -> None:
    await asyncio.gather(*(log.append(an_event(n)) for n in range(100)))

    assert log.commits.entries == 100
    assert log.commits.batches < 100
    assert verified(database, tmp_path, 100)


class _BrokenSink:
    """A log sink that refuses every line, as a full disk or a closed pipe would."""

    def msg(self, message: str) -> None:
        raise OSError("no space left on the log device")

    info = error = msg


async def test_a_failing_log_sink_loses_lines_but_not_committed_appends(
    log: PostgresAuditLog, database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = structlog.wrap_logger(
        _BrokenSink(),
        processors=[structlog.processors.JSONRenderer()],
        wrapper_class=structlog.make_filtering_bound_logger(0),
    )
    monkeypatch.setattr(postgres_log, "_logger", broken)

    seqs = await asyncio.gather(*(log.append(an_event(n)) for n in range(5)))
    # A batch's lines are written once its callers have resumed, before the next batch ends.
    last = await log.append(an_event(6))

    assert sorted(seqs) == [1, 2, 3, 4, 5]
    assert last == 6
    assert log.log_line_failures >= 1
    assert not log.failing
    assert verified(database, tmp_path, 6)
