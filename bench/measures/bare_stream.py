"""The bare gRPC limit for a StreamRecords extract in the node's batch size: one and two hops."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench import bare, report
from bench.clients import measure_stream
from gateway.config import LimitsConfig

PATHS = {"one_hop": "bare stream, one hop", "relay_chain": "bare stream, two hops"}


def stream_records(smoke: bool) -> int:
    return 5_000 if smoke else 500_000


def run(smoke: bool, workdir: Path) -> dict[str, Any]:
    records, batch = stream_records(smoke), LimitsConfig().stream_batch_size
    with (
        bare.one_hop(workdir, stream_records=records, batch_size=batch) as hop,
        bare.relay_chain(workdir, stream_records=records, batch_size=batch) as chain,
    ):
        figures = measure_stream({"one_hop": hop, "relay_chain": chain}, smoke)
    summary = [
        report.row(label, baseline=report.rate(figures[name]["records_per_s"], "records/s"))
        for name, label in PATHS.items()
    ]
    return {
        **figures,
        "batch_size": batch,
        "record_bytes": bare.STREAM_RECORD.ByteSize(),
        "summary": summary,
    }
