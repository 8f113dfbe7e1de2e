"""Local exchange (caller -> node -> SQLite adapter) against the bare one-hop server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench import bare, concordat_paths, report
from bench.clients import measure_unary
from bench.memory import peak_rss_mb


def run(smoke: bool, workdir: Path) -> dict[str, Any]:
    if reason := concordat_paths.unavailable(concordat_paths.LOCAL_ASK):
        return {"skipped": reason}
    with (
        bare.one_hop(workdir, stream_records=0, batch_size=0) as hop,
        concordat_paths.local_exchange(workdir) as path,
    ):
        figures = measure_unary({"bare": hop, "concordat": path.endpoint}, smoke)
        rss = {name: peak_rss_mb(node.pid) for name, node in path.nodes.items()}
    summary = report.unary_rows(
        "local exchange", figures["bare"], figures["concordat"], targets=False
    )
    return {**figures, "node_peak_rss_mb": rss, "summary": summary}
