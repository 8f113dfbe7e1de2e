"""Cross-node exchange (caller -> requesting node -> providing node -> adapter) against the bare
relay chain of the same processes, hops, TLS and payload."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench import bare, concordat_paths, report
from bench.clients import measure_unary
from bench.memory import peak_rss_mb


def run(smoke: bool, workdir: Path) -> dict[str, Any]:
    if reason := concordat_paths.unavailable(concordat_paths.CROSS_NODE_ASK):
        return {"skipped": reason}
    with (
        bare.relay_chain(workdir, stream_records=0, batch_size=0) as chain,
        concordat_paths.cross_node_exchange(workdir) as path,
    ):
        figures = measure_unary({"bare": chain, "concordat": path.endpoint}, smoke)
        rss = {name: peak_rss_mb(node.pid) for name, node in path.nodes.items()}
    summary = report.unary_rows(
        "cross-node exchange", figures["bare"], figures["concordat"], targets=True
    )
    summary.append(report.rss_row("cross-node load", rss))
    return {**figures, "node_peak_rss_mb": rss, "summary": summary}
