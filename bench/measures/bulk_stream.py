"""Bulk StreamRecords across two nodes, minimised per record, against the bare two-hop stream."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench import bare, concordat_paths, report
from bench.clients import measure_stream
from bench.measures.bare_stream import stream_records
from bench.memory import peak_rss_mb
from gateway.config import LimitsConfig

TARGET_RATE, TARGET_RATIO = 200_000, 0.5


def run(smoke: bool, workdir: Path) -> dict[str, Any]:
    if reason := concordat_paths.unavailable(concordat_paths.BULK_ASK):
        return {"skipped": reason}
    records, batch = stream_records(smoke), LimitsConfig().stream_batch_size
    with (
        bare.relay_chain(workdir, stream_records=records, batch_size=batch) as chain,
        concordat_paths.bulk_exchange(workdir, rows=records) as path,
    ):
        figures = measure_stream({"bare": chain, "concordat": path.endpoint}, smoke)
        rss = {name: peak_rss_mb(node.pid) for name, node in path.nodes.items()}
    rate, bare_rate = figures["concordat"]["records_per_s"], figures["bare"]["records_per_s"]
    summary = [
        report.row(
            "bulk extract across two nodes",
            concordat=report.rate(rate, "records/s"),
            baseline=report.rate(bare_rate, "records/s"),
            ratio=rate / bare_rate,
            target=f"≥ {TARGET_RATE:,} records/s and ≥ {TARGET_RATIO}x bare",
            met=rate >= TARGET_RATE and rate / bare_rate >= TARGET_RATIO,
        ),
        report.rss_row("bulk extract", rss),
    ]
    return {**figures, "batch_size": batch, "node_peak_rss_mb": rss, "summary": summary}
