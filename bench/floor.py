"""The least a cross-node call must add: its signatures and durable commits, timed in this run.

Whatever else a gateway does, the issue's path has to, per GetRecord:
- verify three Ed25519 signatures: the caller's token (requesting node), the on-behalf-of
  assertion (providing node) and the providing node's receipt (requesting node);
- make four: the assertion, the receipt, and one audit seal per node (at concurrency 1 every
  entry is its own batch; under load the seals are shared by a batch and cost almost nothing);
- commit one audit entry durably on each node: a fsynced SQLite WAL transaction on this disk.

At concurrency 1 all of it lies on the call's critical path, one step after another, so its sum
is a floor under the added p50 latency. Under load the signatures are CPU that a 2-core machine
cannot spend on anything else, so they cap the throughput ratio against a bare chain that spends
`bare_cpu_ms` per call: `bare / (bare + signature CPU)`. Both are measured with the primitives
alone (cryptography's Ed25519, sqlite3), without the JWT library, JSON or any Concordat code.
"""

from __future__ import annotations

import sqlite3
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

VERIFIES_PER_CALL = 3
SIGNATURES_PER_CALL_ALONE = 4  # at concurrency 1: assertion, receipt, two audit seals
SIGNATURES_PER_CALL_LOADED = 2  # under load: assertion and receipt; the seals are shared
COMMITS_PER_CALL = 2
# About the size of what is signed (a token's header and claims) and of one audit entry.
SIGNED_BYTES = 700
ENTRY_BYTES = 1_500


def measure(workdir: Path, smoke: bool) -> dict[str, Any]:
    """Median cost of one verify, one signature and one durable commit, and what they add up to."""
    rounds = 20 if smoke else 400
    key = Ed25519PrivateKey.generate()
    public_key = key.public_key()
    message = b"m" * SIGNED_BYTES
    signature = key.sign(message)
    verify_us = _median_us(lambda: public_key.verify(signature, message), rounds)
    sign_us = _median_us(lambda: key.sign(message), rounds)
    commit_us = _durable_commit_us(workdir / "floor-commits.sqlite", rounds // 2)
    return {
        "verify_us": round(verify_us, 1),
        "sign_us": round(sign_us, 1),
        "durable_commit_us": round(commit_us, 1),
        "c1_floor_ms": round(
            (
                VERIFIES_PER_CALL * verify_us
                + SIGNATURES_PER_CALL_ALONE * sign_us
                + COMMITS_PER_CALL * commit_us
            )
            / 1000,
            3,
        ),
        "loaded_signature_cpu_ms": round(
            (VERIFIES_PER_CALL * verify_us + SIGNATURES_PER_CALL_LOADED * sign_us) / 1000, 3
        ),
    }


def throughput_ceiling(bare_cpu_ms: float, floor: dict[str, Any]) -> float:
    """The best c=32 ratio against the bare chain if the signatures were all a node added."""
    return bare_cpu_ms / (bare_cpu_ms + floor["loaded_signature_cpu_ms"])


def _median_us(operation: Callable[[], object], rounds: int) -> float:
    timings = []
    for _ in range(rounds):
        started = time.perf_counter_ns()
        operation()
        timings.append(time.perf_counter_ns() - started)
    return statistics.median(timings) / 1000


def _durable_commit_us(path: Path, rounds: int) -> float:
    """One row per transaction, WAL and synchronous=FULL: how each node's audit log commits."""
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=FULL")
        connection.execute("CREATE TABLE IF NOT EXISTS entry (seq INTEGER PRIMARY KEY, body BLOB)")
        body = b"e" * ENTRY_BYTES
        timings = []
        for _ in range(max(rounds, 1)):
            started = time.perf_counter_ns()
            connection.execute("BEGIN IMMEDIATE")
            connection.execute("INSERT INTO entry (body) VALUES (?)", (body,))
            connection.execute("COMMIT")
            timings.append(time.perf_counter_ns() - started)
    finally:
        connection.close()
    return statistics.median(timings) / 1000
