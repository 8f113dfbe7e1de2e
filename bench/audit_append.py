"""Durable audit appends per second through SqliteAuditLog, against bare SQLite inserts.

The baseline stores the same number of pre-encoded rows in the same tables with plain
`executemany`, one fsynced transaction per batch of the size the log itself formed, so the
ratio shows what chaining, sealing, logging and the asyncio hand-off cost on top of SQLite.

    python bench/audit_append.py --entries 20000 --concurrency 256
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import statistics
import sys
import tempfile
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

# Run as a script, Python puts bench/ on the path rather than the checkout holding `gateway`.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.audit.sqlite_log import SqliteAuditLog
from gateway.audit.subjects import subject_hash
from gateway.audit.verify import verify_log
from gateway.logs import configure_logging

SUBJECT_KEY = b"bench-subject-key-32-bytes-long!"


def realistic_event(number: int) -> dict[str, Any]:
    """An event shaped like the gateway's evidence entries, with no identifier in clear."""
    return {
        "exchange_id": f"01J{number:023d}",
        "at": "2025-11-03T10:15:42.123456+00:00",
        "node": "holyrood",
        "role": "providing",
        "rpc": "GetRecord",
        "requester": {
            "organisation": "dwp",
            "system": "fraud-referrals",
            "administration": "whitehall",
        },
        "requesting_node": "whitehall",
        "providing_node": "holyrood",
        "record_type": "BENEFIT_AWARD",
        "subject_kind": "nino",
        "subject_hash": subject_hash(SUBJECT_KEY, "nino", f"QQ{number % 1_000_000:06d}C"),
        "purpose": "FRAUD",
        "agreement_id": "agr-dwp-sg-fraud-2025-07",
        "fields_released": ["award_type", "start_date", "weekly_amount"],
        "ingress": {
            "decision_id": f"dec-{number}",
            "allow": True,
            "rule": "holyrood.fraud.allow_listed_body",
            "reasons": [],
        },
        "outcome": "released",
        "records": 1,
        "duration_ms": 3.217,
    }


def run(entries: int, concurrency: int, directory: Path) -> dict[str, Any]:
    """Measures the log and the bare baseline in `directory`; returns rates and their ratio."""
    events = [realistic_event(number) for number in range(entries)]
    with (directory / "audit-bench.log.jsonl").open("wb") as log_lines:
        log_result = _with_json_logs(
            log_lines, lambda: _measure_log(events, concurrency, directory)
        )
    batch = max(1, round(entries / log_result["seals"]))
    baseline_rate = _measure_baseline(events, batch, directory)
    return {
        "entries": entries,
        "concurrency": concurrency,
        **log_result,
        "baseline_batch": batch,
        "baseline_entries_per_s": round(baseline_rate),
        "ratio": round(log_result["entries_per_s"] / baseline_rate, 3),
    }


def _with_json_logs(sink: Any, measure: Any) -> dict[str, Any]:
    """Runs `measure` with the node's own log configuration, writing JSON lines to `sink`."""
    previous = structlog.get_config()
    configure_logging("INFO", sink=sink)
    # Not cached: the audit module's logger must follow the configuration restored below.
    structlog.configure(cache_logger_on_first_use=False)
    try:
        return measure()
    finally:
        structlog.configure(**previous)


def _measure_log(events: list[dict[str, Any]], concurrency: int, directory: Path) -> dict[str, Any]:
    path = directory / "audit-bench.db"
    path.unlink(missing_ok=True)
    key = Ed25519PrivateKey.generate()
    latencies, elapsed = asyncio.run(_append_all(path, key, events, concurrency))
    with closing(sqlite3.connect(path)) as connection:
        (seals,) = connection.execute("SELECT count(*) FROM seals").fetchone()
    started = time.perf_counter()
    report = verify_log(path, key.public_key())
    verify_seconds = time.perf_counter() - started
    latencies.sort()
    return {
        "entries_per_s": round(len(events) / elapsed),
        "seals": seals,
        "mean_batch": round(len(events) / seals, 1),
        "append_latency_ms": {
            "p50": round(statistics.median(latencies) * 1000, 2),
            "p99": round(latencies[int(len(latencies) * 0.99)] * 1000, 2),
        },
        "verified": report.ok,
        "verify_entries_per_s": round(len(events) / verify_seconds),
    }


async def _append_all(
    path: Path, key: Ed25519PrivateKey, events: list[dict[str, Any]], concurrency: int
) -> tuple[list[float], float]:
    log = await SqliteAuditLog.open(path, node="holyrood", signing_key=key)
    latencies: list[float] = []

    async def client(share: list[dict[str, Any]]) -> None:
        for event in share:
            started = time.perf_counter()
            await log.append(event)
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(client(events[i::concurrency]) for i in range(concurrency)))
    elapsed = time.perf_counter() - started
    await log.close()
    return latencies, elapsed


def _measure_baseline(events: list[dict[str, Any]], batch: int, directory: Path) -> float:
    path = directory / "baseline-bench.db"
    path.unlink(missing_ok=True)
    # Opening a log once creates exactly the tables and indexes the log writes to.
    asyncio.run(_create_schema(path))
    rows = [
        (
            seq,
            event["exchange_id"],
            event["subject_hash"],
            "2025-11-03T10:15:42.123456Z",
            json.dumps(event),
            "0" * 64,
            "f" * 64,
        )
        for seq, event in enumerate(events, start=1)
    ]
    with closing(sqlite3.connect(path, isolation_level=None)) as connection:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=FULL")
        started = time.perf_counter()
        for first in range(0, len(rows), batch):
            connection.execute("BEGIN IMMEDIATE")
            connection.executemany(
                "INSERT INTO entries"
                " (seq, exchange_id, subject_hash, recorded_at, event, prev_hash, hash)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows[first : first + batch],
            )
            connection.execute("COMMIT")
        elapsed = time.perf_counter() - started
    return len(rows) / elapsed


async def _create_schema(path: Path) -> None:
    log = await SqliteAuditLog.open(path, node="baseline", signing_key=Ed25519PrivateKey.generate())
    await log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--directory", type=Path, help="where the files go (default: a temp dir)")
    arguments = parser.parse_args()
    if arguments.directory is not None:
        arguments.directory.mkdir(parents=True, exist_ok=True)
        result = run(arguments.entries, arguments.concurrency, arguments.directory)
    else:
        with tempfile.TemporaryDirectory(prefix="concordat-audit-bench-") as directory:
            result = run(arguments.entries, arguments.concurrency, Path(directory))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
