"""A node's start-up time until its health check says SERVING, and its peak RSS under load."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from bench import concordat_paths, report
from bench.clients import measure_unary
from bench.memory import peak_rss_mb

TARGET_STARTUP_S, TARGET_RSS_MB = 2.0, 150.0


def run(smoke: bool, workdir: Path) -> dict[str, Any]:
    if reason := concordat_paths.unavailable(concordat_paths.LOCAL_ASK):
        return {"skipped": reason}
    startups: list[float] = []
    for attempt in range(1 if smoke else 3):
        # A fresh state folder each time, so no start-up finds another's files warm.
        with concordat_paths.local_exchange(workdir / f"start-{attempt}") as path:
            (node,) = path.nodes.values()
            startups.append(node.startup_seconds)
            if attempt == 0:
                idle_rss = peak_rss_mb(node.pid)
                measure_unary({"concordat": path.endpoint}, smoke, rounds=1)
                loaded_rss = peak_rss_mb(node.pid)
    startup = statistics.median(startups)
    summary = [
        report.row(
            f"{node.name} start-up to SERVING",
            concordat=f"{startup:.2f} s",
            target=f"< {TARGET_STARTUP_S:g} s",
            met=startup < TARGET_STARTUP_S,
        ),
        report.row(
            f"{node.name} peak RSS after c=1 and c=32 load",
            concordat=f"{loaded_rss:.0f} MB (idle {idle_rss:.0f} MB)",
            target=f"< {TARGET_RSS_MB:g} MB",
            met=loaded_rss < TARGET_RSS_MB,
        ),
    ]
    return {
        "startup_seconds": startups,
        "startup_seconds_median": startup,
        "idle_peak_rss_mb": idle_rss,
        "loaded_peak_rss_mb": loaded_rss,
        "summary": summary,
        "targets": {
            "node_startup_s": report.target(
                startup, f"< {TARGET_STARTUP_S:g} s", startup < TARGET_STARTUP_S
            ),
            "node_peak_rss_mb": report.target(
                loaded_rss, f"< {TARGET_RSS_MB:g} MB", loaded_rss < TARGET_RSS_MB
            ),
        },
    }
