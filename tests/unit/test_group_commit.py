"""Group commit that groups: the audit writer waits for exchanges under way, and only then.

Real SQLite logs on real files; the pipeline's counting is checked around real stages and a
real log. The waits configured here are long (a minute), so a writer that waited when it
should not have would hang the test rather than pass it slowly.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.audit.grouping import AppendsDue, GroupCommit
from gateway.audit.sqlite_log import SqliteAuditLog
from gateway.errors import InvalidRequest
from gateway.exchange import Exchange
from gateway.pipeline.evidence import EvidenceRecorder
from gateway.pipeline.run import Pipeline

A_MINUTE = GroupCommit(delay_seconds=60.0, siblings=1)
# Generous: only a writer stuck in a minute's wait gets anywhere near it.
HANG_GUARD_SECONDS = 20


def an_event(number: int) -> dict[str, Any]:
    return {"exchange_id": f"ex-{number}", "outcome": "allowed", "record_type": "BENEFIT_AWARD"}


def seals(path: Path) -> list[tuple[int, int]]:
    """(upto_seq, number of entries it sealed) for each batch, oldest first."""
    with closing(sqlite3.connect(path)) as connection:
        uptos = [row[0] for row in connection.execute("SELECT upto_seq FROM seals ORDER BY 1")]
    return [(upto, upto - before) for before, upto in zip([0, *uptos], uptos, strict=False)]


@pytest.fixture
def due() -> AppendsDue:
    return AppendsDue()


async def open_log(path: Path, due: AppendsDue, grouping: GroupCommit) -> SqliteAuditLog:
    return await SqliteAuditLog.open(
        path / "audit.db",
        node="holyrood",
        signing_key=Ed25519PrivateKey.generate(),
        grouping=grouping,
        appends_due=due,
    )


@pytest.fixture
async def log(tmp_path: Path, due: AppendsDue) -> AsyncIterator[SqliteAuditLog]:
    audit = await open_log(tmp_path, due, A_MINUTE)
    yield audit
    await audit.close()


async def test_a_lone_exchange_commits_at_once_whatever_the_delay(
    log: SqliteAuditLog, tmp_path: Path
) -> None:
    # Nobody else is under way, so nothing is worth waiting for.
    seq = await asyncio.wait_for(log.append(an_event(1)), HANG_GUARD_SECONDS)
    assert seq == 1
    assert seals(tmp_path / "audit.db") == [(1, 1)]


async def test_entries_of_exchanges_under_way_share_one_batch_and_seal(
    log: SqliteAuditLog, due: AppendsDue, tmp_path: Path
) -> None:
    for _ in range(2):
        due.expect()  # two more exchanges are still running their stages
    first = asyncio.ensure_future(log.append(an_event(1)))
    await asyncio.sleep(0.05)  # the writer has the first entry and is waiting for company
    assert not first.done()
    due.arrived()
    second = asyncio.ensure_future(log.append(an_event(2)))
    await asyncio.sleep(0.05)
    assert not first.done() and not second.done()
    due.arrived()
    # The last exchange it waited for hands in its entry: the writer stops waiting at once.
    third = await asyncio.wait_for(log.append(an_event(3)), HANG_GUARD_SECONDS)
    assert sorted([await first, await second, third]) == [1, 2, 3]
    assert seals(tmp_path / "audit.db") == [(3, 3)]
    assert log.commits.batches == 1


async def test_an_exchange_that_never_hands_in_its_entry_holds_a_batch_no_longer_than_the_delay(
    tmp_path: Path, due: AppendsDue
) -> None:
    audit = await open_log(tmp_path, due, GroupCommit(delay_seconds=0.05, siblings=1))
    try:
        due.expect()  # under way, and it will not append while this test waits
        assert await asyncio.wait_for(audit.append(an_event(1)), HANG_GUARD_SECONDS) == 1
    finally:
        await audit.close()
    assert seals(tmp_path / "audit.db") == [(1, 1)]


async def test_too_few_exchanges_under_way_do_not_make_a_batch_wait(
    tmp_path: Path, due: AppendsDue
) -> None:
    audit = await open_log(tmp_path, due, GroupCommit(delay_seconds=60.0, siblings=3))
    try:
        due.expect()
        due.expect()  # two under way: fewer than the three that make a wait worthwhile
        assert await asyncio.wait_for(audit.append(an_event(1)), HANG_GUARD_SECONDS) == 1
    finally:
        await audit.close()


async def test_a_log_closed_while_its_writer_waits_commits_what_it_was_given_and_stops(
    tmp_path: Path, due: AppendsDue
) -> None:
    audit = await open_log(tmp_path, due, A_MINUTE)
    due.expect()
    due.expect()
    waiting = asyncio.ensure_future(audit.append(an_event(1)))
    await asyncio.sleep(0.05)
    await asyncio.wait_for(audit.close(), HANG_GUARD_SECONDS)
    assert await waiting == 1
    assert seals(tmp_path / "audit.db") == [(1, 1)]


async def test_exchanges_that_end_without_an_entry_stop_the_wait_at_the_next_append(
    log: SqliteAuditLog, due: AppendsDue, tmp_path: Path
) -> None:
    due.expect()
    due.expect()
    first = asyncio.ensure_future(log.append(an_event(1)))
    await asyncio.sleep(0.05)
    due.arrived()
    due.arrived()
    # Both expected exchanges are accounted for without appending (they failed before their
    # entry, say); the next append finds nobody else coming and the writer goes on.
    await asyncio.wait_for(log.append(an_event(2)), HANG_GUARD_SECONDS)
    assert await first == 1
    assert [upto for upto, _ in seals(tmp_path / "audit.db")][-1] == 2


class _Revision:
    revision = "test-revision"


class _Watching:
    """A stage that notes how many exchanges are due while it runs, then may fail."""

    def __init__(self, due: AppendsDue, *, fail: bool) -> None:
        self.seen: list[int] = []
        self._due = due
        self._fail = fail

    async def __call__(self, exchange: Exchange) -> None:
        self.seen.append(self._due.count)
        if self._fail:
            raise InvalidRequest("refused by the test's stage")


@pytest.mark.parametrize("fail", [False, True], ids=["answered", "refused"])
async def test_the_pipeline_counts_an_exchange_due_until_its_stages_end_however_they_end(
    log: SqliteAuditLog, due: AppendsDue, fail: bool
) -> None:
    stage = _Watching(due, fail=fail)
    pipeline = Pipeline(
        stages=[stage],
        evidence=EvidenceRecorder(
            node="holyrood",
            audit=log,
            subject_key=b"k" * 32,
            policy=_Revision(),  # type: ignore[arg-type]  # only its revision is read
        ),
        default_deadline_seconds=5,
        appends_due=due,
    )
    exchange = Exchange(
        rpc="GetRecord", role="local", request=object(), metadata=(), deadline_seconds=5
    )
    if fail:
        with pytest.raises(InvalidRequest):
            await asyncio.wait_for(pipeline.run(exchange), HANG_GUARD_SECONDS)
    else:
        await asyncio.wait_for(pipeline.run(exchange), HANG_GUARD_SECONDS)
    assert stage.seen == [1]
    assert due.count == 0
    assert log.commits.entries == 1
