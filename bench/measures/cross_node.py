"""Cross-node exchange (caller -> requesting node -> providing node -> adapter) against the bare
relay chain of the same processes, hops, TLS and payload; with the least that the path's
signatures and durable commits must add on this machine (bench/floor.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench import bare, concordat_paths, floor, report
from bench.clients import measure_unary
from bench.memory import peak_rss_mb


def run(smoke: bool, workdir: Path) -> dict[str, Any]:
    if reason := concordat_paths.unavailable(concordat_paths.CROSS_NODE_ASK):
        return {"skipped": reason}
    # Timed first, while no server runs: the primitives alone, on the nodes' disk.
    least = floor.measure(workdir, smoke)
    with (
        bare.relay_chain(workdir, stream_records=0, batch_size=0) as chain,
        concordat_paths.cross_node_exchange(workdir) as path,
    ):
        figures = measure_unary({"bare": chain, "concordat": path.endpoint}, smoke)
        rss = {name: peak_rss_mb(node.pid) for name, node in path.nodes.items()}
    summary = report.unary_rows(
        "cross-node exchange", figures["bare"], figures["concordat"], targets=True
    )
    summary += _floor_rows(least, figures["bare"]["c32"])
    summary.append(report.rss_row("cross-node load", rss))
    return {**figures, "floor": least, "node_peak_rss_mb": rss, "summary": summary}


def _floor_rows(least: dict[str, Any], bare_busy: dict[str, Any]) -> list[dict[str, Any]]:
    bare_cpu_ms = bare_busy["client_cpu_ms_per_call"] + bare_busy["servers_cpu_ms_per_call"]
    ceiling = floor.throughput_ceiling(bare_cpu_ms, least)
    return [
        report.row(
            "cross-node floor, c=1: signatures and durable commits alone (the least p50 can add)",
            concordat=(
                f"{least['c1_floor_ms']:.2f} ms: {floor.VERIFIES_PER_CALL} verifies of "
                f"{least['verify_us']:.0f} µs, {floor.SIGNATURES_PER_CALL_ALONE} signatures of "
                f"{least['sign_us']:.0f} µs, {floor.COMMITS_PER_CALL} fsynced commits of "
                f"{least['durable_commit_us']:.0f} µs"
            ),
        ),
        report.row(
            "cross-node ceiling, c=32: best ratio if a node added only its signatures' CPU",
            concordat=f"{ceiling:.2f}x bare",
            baseline=f"{bare_cpu_ms:.2f} ms CPU per call (caller and servers)",
        ),
    ]
