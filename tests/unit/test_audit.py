"""The SQLite audit log and its verifier, on real files with real Ed25519 keys."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from structlog.testing import capture_logs

from gateway.audit.chain import entry_hash, seal_message
from gateway.audit.sqlite_log import AuditLogRefused, SqliteAuditLog
from gateway.audit.subjects import subject_hash
from gateway.audit.verify import LOG_WIDE, Problem, VerifyReport, verify_log
from gateway.errors import InternalError

SUBJECT_KEY = b"k" * 32


def an_event(number: int, *, subject: str = "QQ123456C") -> dict[str, Any]:
    return {
        "exchange_id": f"ex-{number}",
        "subject_hash": subject_hash(SUBJECT_KEY, "nino", subject),
        "outcome": "allowed",
        "record_type": "BENEFIT_AWARD",
        "purpose": "FRAUD",
        "agreement_id": "agr-dwp-hmrc-7",
    }


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "audit.db"


@pytest.fixture
async def log(path: Path, key: Ed25519PrivateKey) -> AsyncIterator[SqliteAuditLog]:
    audit = await SqliteAuditLog.open(path, node="holyrood", signing_key=key)
    yield audit
    await audit.close()


async def write_log(path: Path, key: Ed25519PrivateKey, count: int) -> None:
    """Appends `count` events one at a time, so each entry gets a seal of its own."""
    audit = await SqliteAuditLog.open(path, node="holyrood", signing_key=key)
    for number in range(1, count + 1):
        await audit.append(an_event(number))
    await audit.close()


@pytest.fixture
def raw(path: Path) -> Iterator[sqlite3.Connection]:
    """A plain connection for playing the attacker with direct writes to the file."""
    with closing(sqlite3.connect(path, isolation_level=None)) as connection:
        yield connection


def problem_at(report: VerifyReport, seq: int, words: str) -> bool:
    return any(p.seq == seq and words in p.what for p in report.problems)


async def test_appended_entries_verify_ok(log: SqliteAuditLog, path: Path) -> None:
    seqs = [await log.append(an_event(number)) for number in range(1, 6)]

    report = verify_log(path)

    assert seqs == [1, 2, 3, 4, 5]
    assert report == VerifyReport(ok=True, entries=5, sealed_upto=5, problems=[])


async def test_concurrent_appends_get_consecutive_seqs_and_share_seals(
    log: SqliteAuditLog, path: Path
) -> None:
    seqs = await asyncio.gather(*(log.append(an_event(number)) for number in range(500)))

    with closing(sqlite3.connect(path)) as connection:
        (seals,) = connection.execute("SELECT count(*) FROM seals").fetchone()
    assert sorted(seqs) == list(range(1, 501))
    assert seals < 500
    assert verify_log(path).ok


async def test_append_returns_only_after_the_entry_and_its_seal_are_committed(
    log: SqliteAuditLog, path: Path
) -> None:
    seq = await log.append(an_event(1))

    with closing(sqlite3.connect(path)) as connection:
        entry = connection.execute("SELECT exchange_id FROM entries WHERE seq = ?", (seq,))
        seal = connection.execute("SELECT count(*) FROM seals WHERE upto_seq >= ?", (seq,))
        assert entry.fetchone() == ("ex-1",)
        assert seal.fetchone() == (1,)


async def test_reopened_log_continues_the_chain_and_verifies(
    path: Path, key: Ed25519PrivateKey
) -> None:
    await write_log(path, key, 3)

    audit = await SqliteAuditLog.open(path, node="holyrood", signing_key=key)
    seq = await audit.append(an_event(4))
    await audit.close()

    assert seq == 4
    assert verify_log(path, key.public_key()) == VerifyReport(
        ok=True, entries=4, sealed_upto=4, problems=[]
    )


async def test_opening_another_nodes_log_is_refused(path: Path, key: Ed25519PrivateKey) -> None:
    await write_log(path, key, 1)

    with pytest.raises(AuditLogRefused, match="'holyrood', not 'stormont'"):
        await SqliteAuditLog.open(path, node="stormont", signing_key=key)


async def test_opening_a_log_with_another_signing_key_seals_with_it_as_a_rotation(
    path: Path, key: Ed25519PrivateKey
) -> None:
    await write_log(path, key, 1)
    rotated = Ed25519PrivateKey.generate()

    audit = await SqliteAuditLog.open(path, node="holyrood", signing_key=rotated)
    await audit.append(an_event(2))
    await audit.close()

    assert verify_log(path, [key.public_key(), rotated.public_key()]).ok


async def test_altered_event_is_reported_at_its_seq(
    path: Path, key: Ed25519PrivateKey, raw: sqlite3.Connection
) -> None:
    await write_log(path, key, 5)
    raw.execute("UPDATE entries SET event = replace(event, 'allowed', 'denied') WHERE seq = 3")

    report = verify_log(path)

    assert not report.ok
    assert report.problems[0] == Problem(
        3, "hash does not match the entry's content: entry altered"
    )
    # The altered outcome no longer adds up to what the meter billed.
    assert [p.seq for p in report.problems[1:]] == [LOG_WIDE]
    assert "meter for" in report.problems[1].what


async def test_deleted_middle_entry_is_reported_where_it_was(
    path: Path, key: Ed25519PrivateKey, raw: sqlite3.Connection
) -> None:
    await write_log(path, key, 5)
    raw.execute("DELETE FROM entries WHERE seq = 3")

    report = verify_log(path)

    assert not report.ok
    assert problem_at(report, 3, "entry 3 is missing")


async def test_renumbered_entries_after_a_deletion_break_the_links(
    path: Path, key: Ed25519PrivateKey, raw: sqlite3.Connection
) -> None:
    await write_log(path, key, 5)
    raw.execute("DELETE FROM entries WHERE seq = 3")
    raw.execute("UPDATE entries SET seq = seq - 1 WHERE seq > 3")

    report = verify_log(path)

    assert problem_at(report, 3, "prev_hash does not match the hash of entry 2")


async def test_swapped_entries_are_detected_at_both_places(
    path: Path, key: Ed25519PrivateKey, raw: sqlite3.Connection
) -> None:
    await write_log(path, key, 5)
    # Swapping the keys of two rows swaps everything else they hold.
    raw.execute("UPDATE entries SET seq = -1 WHERE seq = 2")
    raw.execute("UPDATE entries SET seq = 2 WHERE seq = 4")
    raw.execute("UPDATE entries SET seq = 4 WHERE seq = -1")

    report = verify_log(path)

    assert problem_at(report, 2, "prev_hash does not match")
    assert problem_at(report, 2, "entry altered")
    assert problem_at(report, 4, "entry altered")


async def test_rewritten_chain_without_the_key_is_caught_by_the_seals(
    path: Path, key: Ed25519PrivateKey, raw: sqlite3.Connection
) -> None:
    await write_log(path, key, 4)
    rows = raw.execute("SELECT seq, recorded_at, event FROM entries ORDER BY seq").fetchall()
    prev_hash = raw.execute("SELECT prev_hash FROM entries WHERE seq = 2").fetchone()[0]
    for seq, recorded_at, event_json in rows[1:]:
        forged_event = event_json.replace("allowed", "denied")
        forged_hash = entry_hash(prev_hash, seq, recorded_at, forged_event)
        raw.execute(
            "UPDATE entries SET event = ?, prev_hash = ?, hash = ? WHERE seq = ?",
            (forged_event, prev_hash, forged_hash, seq),
        )
        prev_hash = forged_hash

    report = verify_log(path)

    assert [p.seq for p in report.problems if "seal does not match" in p.what] == [2, 3, 4]
    assert report.sealed_upto == 1


async def test_deleting_the_last_seal_reports_the_unsealed_tail(
    path: Path, key: Ed25519PrivateKey, raw: sqlite3.Connection
) -> None:
    await write_log(path, key, 3)
    raw.execute("DELETE FROM seals WHERE upto_seq = 3")

    report = verify_log(path)

    assert report.sealed_upto == 2
    assert report.problems == [Problem(3, "entry 3 is not covered by a seal")]


async def test_unsealed_tail_names_every_entry_it_spans(
    path: Path, key: Ed25519PrivateKey, raw: sqlite3.Connection
) -> None:
    await write_log(path, key, 5)
    raw.execute("DELETE FROM seals WHERE upto_seq > 2")

    assert verify_log(path).problems == [Problem(3, "entries 3..5 are not covered by a seal")]


async def test_seal_signed_with_another_key_is_detected(
    path: Path, key: Ed25519PrivateKey, raw: sqlite3.Connection
) -> None:
    await write_log(path, key, 3)
    upto, chain_hash, sealed_at = raw.execute(
        "SELECT upto_seq, hash, sealed_at FROM seals WHERE upto_seq = 2"
    ).fetchone()
    forged = Ed25519PrivateKey.generate().sign(
        seal_message("holyrood", upto, chain_hash, sealed_at)
    )
    raw.execute("UPDATE seals SET signature = ? WHERE upto_seq = 2", (forged.hex(),))

    report = verify_log(path, key.public_key())

    assert report.problems == [Problem(2, "seal signature does not verify")]


async def test_seal_over_a_different_hash_is_detected_even_if_validly_signed(
    path: Path, key: Ed25519PrivateKey, raw: sqlite3.Connection
) -> None:
    await write_log(path, key, 3)
    sealed_at = raw.execute("SELECT sealed_at FROM seals WHERE upto_seq = 2").fetchone()[0]
    other_hash = "ab" * 32
    signature = key.sign(seal_message("holyrood", 2, other_hash, sealed_at)).hex()
    raw.execute(
        "UPDATE seals SET hash = ?, signature = ? WHERE upto_seq = 2", (other_hash, signature)
    )

    report = verify_log(path)

    assert report.problems == [Problem(2, "seal does not match the chain hash at its entry")]


async def test_wrong_public_key_supplied_is_reported(path: Path, key: Ed25519PrivateKey) -> None:
    await write_log(path, key, 2)

    report = verify_log(path, Ed25519PrivateKey.generate().public_key())

    assert not report.ok
    assert report.sealed_upto == 0
    assert Problem(0, "public key in the log does not match the one supplied") in report.problems
    assert problem_at(report, 2, "seal signature does not verify")


async def test_index_column_that_disagrees_with_its_event_is_reported(
    path: Path, key: Ed25519PrivateKey, raw: sqlite3.Connection
) -> None:
    await write_log(path, key, 3)
    raw.execute("UPDATE entries SET subject_hash = 'hidden' WHERE seq = 2")

    assert verify_log(path).problems == [
        Problem(2, "exchange_id or subject_hash column does not match the event")
    ]


async def test_truncated_tail_with_its_seals_is_betrayed_by_the_meter(
    path: Path, key: Ed25519PrivateKey, raw: sqlite3.Connection
) -> None:
    await write_log(path, key, 5)
    raw.execute("DELETE FROM entries WHERE seq > 3")
    raw.execute("DELETE FROM seals WHERE upto_seq > 3")

    report = verify_log(path)

    assert not report.ok
    assert report.sealed_upto == 3
    assert [p.seq for p in report.problems] == [LOG_WIDE]
    assert "the entries say [3," in report.problems[0].what


async def test_truncated_tail_with_its_seals_and_meter_shows_only_in_sealed_upto(
    path: Path, key: Ed25519PrivateKey, raw: sqlite3.Connection
) -> None:
    await write_log(path, key, 5)
    raw.execute("DELETE FROM entries WHERE seq > 3")
    raw.execute("DELETE FROM seals WHERE upto_seq > 3")
    raw.execute("UPDATE meter SET exchanges = 3")

    report = verify_log(path)

    # The file alone cannot show this: compare sealed_upto with a peer's receipt.
    assert report.ok
    assert report.sealed_upto == 3


async def test_deleting_sealed_tail_entries_is_reported_by_their_seal(
    path: Path, key: Ed25519PrivateKey, raw: sqlite3.Connection
) -> None:
    await write_log(path, key, 5)
    raw.execute("DELETE FROM entries WHERE seq > 3")

    report = verify_log(path)

    assert problem_at(report, 5, "seal names an entry that is missing")


def test_subject_hash_is_stable_and_depends_on_the_key() -> None:
    first = subject_hash(b"key-one", "nino", "QQ123456C")

    assert first == subject_hash(b"key-one", "nino", "QQ123456C")
    assert first != subject_hash(b"key-two", "nino", "QQ123456C")
    assert first != subject_hash(b"key-one", "chi_number", "QQ123456C")
    assert "QQ123456C" not in first


async def test_write_failure_fails_pending_appends_and_refuses_later_ones(
    log: SqliteAuditLog, path: Path, key: Ed25519PrivateKey, raw: sqlite3.Connection
) -> None:
    await log.append(an_event(0))
    raw.execute(
        "CREATE TRIGGER disk_on_fire BEFORE INSERT ON seals"
        " BEGIN SELECT RAISE(ABORT, 'disk on fire'); END"
    )

    results = await asyncio.gather(
        *(log.append(an_event(number)) for number in range(1, 51)), return_exceptions=True
    )
    raw.execute("DROP TRIGGER disk_on_fire")

    assert all(isinstance(result, InternalError) for result in results)
    with pytest.raises(InternalError, match="refuses appends until it is reopened"):
        await log.append(an_event(51))
    await log.close()
    reopened = await SqliteAuditLog.open(path, node="holyrood", signing_key=key)
    assert await reopened.append(an_event(52)) == 2
    await reopened.close()
    assert verify_log(path).ok


async def test_connection_closed_underneath_fails_closed(log: SqliteAuditLog) -> None:
    await log.append(an_event(1))
    await log._on_writer(log._writing().close)

    with pytest.raises(InternalError):
        await log.append(an_event(2))
    with pytest.raises(InternalError):
        await log.append(an_event(3))


async def test_event_that_is_not_json_fails_only_its_own_append(
    log: SqliteAuditLog, path: Path
) -> None:
    with pytest.raises(TypeError):
        await log.append({"exchange_id": "ex-1", "when": object()})

    assert await log.append(an_event(2)) == 1
    assert verify_log(path).ok


async def test_closed_log_refuses_appends(log: SqliteAuditLog) -> None:
    await log.close()

    with pytest.raises(InternalError, match="closed"):
        await log.append(an_event(1))


async def test_close_writes_appends_still_queued(path: Path, key: Ed25519PrivateKey) -> None:
    audit = await SqliteAuditLog.open(path, node="holyrood", signing_key=key)
    pending = [asyncio.ensure_future(audit.append(an_event(n))) for n in range(20)]
    await asyncio.sleep(0)

    await audit.close()

    assert sorted(await asyncio.gather(*pending)) == list(range(1, 21))
    assert verify_log(path).entries == 20


async def test_entries_are_found_by_exchange_and_by_subject_newest_first(
    log: SqliteAuditLog,
) -> None:
    await log.append(an_event(1, subject="QQ123456C"))
    await log.append(an_event(2, subject="AB123456D"))
    await log.append({**an_event(3, subject="QQ123456C"), "exchange_id": "ex-1"})

    by_exchange = log.entries_for_exchange("ex-1")
    by_subject = log.entries_for_subject(subject_hash(SUBJECT_KEY, "nino", "QQ123456C"))

    assert [entry["seq"] for entry in by_exchange] == [1, 3]
    assert [entry["seq"] for entry in by_subject] == [3, 1]
    assert by_subject[1]["event"] == an_event(1)


async def test_each_entry_is_logged_briefly_with_its_seq_and_hash(log: SqliteAuditLog) -> None:
    with capture_logs() as logs:
        seq = await log.append({**an_event(1), "event": "renamed", "seq": 99})
        # The writer logs a batch after answering its callers, and before its next task.
        await log.head()

    (line,) = [entry for entry in logs if entry["event"] == "audit"]
    stored = log.entries_for_exchange("ex-1")[0]
    assert line["seq"] == seq
    assert line["hash"] == stored["hash"]
    assert line["outcome"] == "allowed"
    assert line["exchange_id"] == "ex-1"
    # The event's own fields never override the line's, and the rest stays in the log file.
    assert "subject_hash" not in line
