"""How the SQLite audit log's writer batches appends and what it does after a commit."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.audit import sqlite_log
from gateway.audit.chain import canonical_json, event_json
from gateway.audit.sqlite_log import SqliteAuditLog
from gateway.audit.verify import verify_log


def an_event(number: int) -> dict[str, Any]:
    return {
        "exchange_id": f"ex-{number}",
        "outcome": "released",
        "record_type": "BENEFIT_AWARD",
        "purpose": "FRAUD",
        "agreement_id": "agr-dwp-hmrc-7",
        "requester": {"organisation": "dwp", "administration": "whitehall"},
        "duration_ms": 1.25,
        "name": "Siân",
    }


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "audit.db"


@pytest.fixture
async def log(path: Path) -> AsyncIterator[SqliteAuditLog]:
    audit = await SqliteAuditLog.open(
        path, node="holyrood", signing_key=Ed25519PrivateKey.generate()
    )
    yield audit
    await audit.close()


async def test_appends_queued_while_a_batch_commits_go_out_together_in_the_next_batch(
    log: SqliteAuditLog, path: Path
) -> None:
    await log.append(an_event(0))
    before = log.commits
    with closing(sqlite3.connect(path, isolation_level=None, timeout=30)) as other:
        # Another writer holds the file: the log's next batch waits for it, as for an fsync.
        other.execute("BEGIN IMMEDIATE")
        appends = asyncio.gather(*(log.append(an_event(n)) for n in range(1, 65)))
        await asyncio.sleep(0)  # every append is queued before the file is let go
        other.execute("COMMIT")
        seqs = await appends

    after = log.commits
    assert sorted(seqs) == list(range(2, 66))
    assert after.entries - before.entries == 64
    # The first batch took what had arrived when the writer woke (at least one append);
    # everything queued behind it while it waited shared one seal and one commit.
    assert after.batches - before.batches <= 2
    assert verify_log(path).ok


async def test_concurrent_appends_share_batches(log: SqliteAuditLog, path: Path) -> None:
    before = log.commits

    await asyncio.gather(*(log.append(an_event(n)) for n in range(200)))

    after = log.commits
    assert after.entries - before.entries == 200
    assert after.batches - before.batches < 200
    assert verify_log(path).ok


class _BrokenSink:
    """A log sink that refuses every line, as a full disk or a closed pipe would."""

    def msg(self, message: str) -> None:
        raise OSError("no space left on the log device")

    info = error = msg


async def test_a_failing_log_sink_loses_lines_but_not_committed_appends(
    log: SqliteAuditLog, path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = structlog.wrap_logger(
        _BrokenSink(),
        processors=[structlog.processors.JSONRenderer()],
        wrapper_class=structlog.make_filtering_bound_logger(0),
    )
    monkeypatch.setattr(sqlite_log, "_logger", broken)

    seqs = await asyncio.gather(*(log.append(an_event(n)) for n in range(5)))
    await log.head()  # the lines are written after the callers hear, before the next task

    assert sorted(seqs) == [1, 2, 3, 4, 5]
    assert log.log_line_failures >= 1
    assert not log.failing
    assert await log.append(an_event(6)) == 6
    assert verify_log(path).ok


def test_an_entry_is_stored_as_the_canonical_json_of_its_event() -> None:
    event = {**an_event(1), "nested": {"b": [1, None, True], "a": 2**40}, "empty": {}}

    assert event_json(event) == canonical_json(event)


def test_what_the_fast_encoder_refuses_is_encoded_or_refused_as_before() -> None:
    assert event_json({"big": 2**70}) == canonical_json({"big": 2**70})
    with pytest.raises(TypeError):
        event_json({"when": object()})
