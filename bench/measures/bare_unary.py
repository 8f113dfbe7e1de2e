"""The bare gRPC limit for unary GetRecord: one hop, and the two-process relay chain."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench import bare, report
from bench.clients import measure_unary
from bench.memory import peak_rss_mb

PATHS = {"one_hop": "bare one hop", "relay_chain": "bare relay chain"}


def run(smoke: bool, workdir: Path) -> dict[str, Any]:
    with (
        bare.one_hop(workdir, stream_records=0, batch_size=0) as hop,
        bare.relay_chain(workdir, stream_records=0, batch_size=0) as chain,
    ):
        endpoints = {"one_hop": hop, "relay_chain": chain}
        figures = measure_unary(endpoints, smoke)
        rss = {name: [peak_rss_mb(pid) for pid in e.pids] for name, e in endpoints.items()}
    summary = [
        report.row(f"{PATHS[name]}, c={c}", baseline=latency_cell(figures[name][f"c{c}"]))
        for name in PATHS
        for c in (1, 32)
    ]
    return {**figures, "peak_rss_mb": rss, **bare.payload_sizes(), "summary": summary}


def latency_cell(figures: dict[str, Any]) -> str:
    return (
        f"{report.rate(figures['throughput'], 'calls/s')}; "
        f"p50 {figures['p50_ms']:.2f} ms, p99 {figures['p99_ms']:.2f} ms"
    )
