"""Durable, signed audit appends per second (bench/audit_append.py), against bare SQLite."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench import audit_append, report

# Issue 21: at least 25,000 durable, sealed entries a second.
TARGET = 25_000


def run(smoke: bool, workdir: Path) -> dict[str, Any]:
    entries, concurrency = (500, 32) if smoke else (20_000, 256)
    rounds = [
        audit_append.run(entries, concurrency, _fresh(workdir / f"round-{n}"))
        for n in range(1 if smoke else 3)
    ]
    # The round with the median rate, so its own baseline and verification travel with it.
    result = sorted(rounds, key=lambda r: r["entries_per_s"])[len(rounds) // 2]
    rate = result["entries_per_s"]
    summary = [
        report.row(
            "audit appends, durable and sealed",
            concordat=report.rate(rate, "entries/s"),
            baseline=report.rate(result["baseline_entries_per_s"], "rows/s (bare SQLite)"),
            ratio=result["ratio"],
            target=f"≥ {TARGET:,} entries/s",
            met=rate >= TARGET and result["verified"],
        )
    ]
    targets = {
        "audit_appends_per_s": report.target(
            rate, f"≥ {TARGET:,} entries/s, verified", rate >= TARGET and result["verified"]
        )
    }
    return {**result, "rounds": len(rounds), "summary": summary, "targets": targets}


def _fresh(directory: Path) -> Path:
    # A directory per round: no SQLite WAL or shared-memory file left over from the last one.
    directory.mkdir()
    return directory
