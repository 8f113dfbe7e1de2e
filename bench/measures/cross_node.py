"""Cross-node exchange (caller -> requesting node -> providing node -> adapter) against the bare
relay chain of the same processes, hops, TLS and payload; with the least that the path's
signatures and durable commits must add on this machine (bench/floor.py).

An independent load generator, ghz (bench/ghz.py), drives the same call in the same rounds,
interleaved with the Python generator's, to confirm its figures.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from bench import bare, concordat_paths, floor, ghz, report
from bench.clients import CONCURRENCIES, Endpoint, measure_unary, plan
from bench.load import medians
from bench.memory import peak_rss_mb

# The generators agree when ghz's median is within this fraction of the Python generator's.
# A generator's own CPU is what may fairly move a figure: each spends 0.2-0.4 ms a call, 6-10%
# of the CPU a call takes with both nodes (about 3 ms), at c=1 in series with the call and at
# c=32 taken from the two cores the nodes share. Rounds far apart on a noisy host are shown.
# Judged: throughput at both concurrencies, and p50 at c=1, where a call waits for nothing
# else. At c=32 a call mostly queues (70 ms against 3.5 ms of work), and how a generator's 32
# callers take turns shapes the median while throughput fixes the mean (Little's law): that
# p50 is shown, not judged.
AGREEMENT = 0.10
JUDGED = frozenset({("c1", "throughput"), ("c1", "p50_ms"), ("c32", "throughput")})


def run(smoke: bool, workdir: Path) -> dict[str, Any]:
    if reason := concordat_paths.unavailable(concordat_paths.CROSS_NODE_ASK):
        return {"skipped": reason}
    # Timed first, while no server runs: the primitives alone, on the nodes' disk.
    least = floor.measure(workdir, smoke)
    ghz_missing = _ghz_missing()
    with (
        bare.relay_chain(workdir, stream_records=0, batch_size=0) as chain,
        concordat_paths.cross_node_exchange(workdir) as path,
    ):
        endpoints = {"bare": chain, "concordat": path.endpoint}
        rounds: list[dict[str, dict[str, Any]]] = []
        ghz_rounds: list[dict[str, dict[str, float]]] = []
        for _ in range(plan(smoke).rounds):
            rounds.append(measure_unary(endpoints, smoke, rounds=1))
            if ghz_missing is None:
                ghz_rounds.append(_ghz_round(path.endpoint, smoke, workdir))
        rss = {name: peak_rss_mb(node.pid) for name, node in path.nodes.items()}
    figures = {
        name: {f"c{c}": medians([r[name][f"c{c}"] for r in rounds]) for c in CONCURRENCIES}
        for name in endpoints
    }
    summary = report.unary_rows(
        "cross-node exchange", figures["bare"], figures["concordat"], targets=True
    )
    summary += _floor_rows(least, figures["bare"]["c32"])
    # ghz's calls count too: their token ids stay in the replay cache until the tokens expire.
    load = "cross-node load" if ghz_missing else "cross-node load, both generators' calls"
    summary.append(report.rss_row(load, rss))
    result: dict[str, Any] = {**figures, "floor": least, "node_peak_rss_mb": rss}
    if ghz_missing is None:
        result["ghz"] = _ghz_comparison(figures["concordat"], rounds, ghz_rounds)
        summary += _ghz_rows(result["ghz"], figures["concordat"])
    else:
        result["ghz_missing"] = ghz_missing
        summary.append(
            report.row("cross-node exchange, ghz", concordat=f"not measured: {ghz_missing}")
        )
    return {**result, "summary": summary}


def _ghz_missing() -> str | None:
    """Why ghz cannot drive the path here, or None; under CI a missing ghz is an error."""
    try:
        ghz.ghz_binary()
    except ghz.GhzMissing as exc:
        if os.environ.get("CI") == "true":
            raise
        return str(exc)
    return None


def _ghz_round(endpoint: Endpoint, smoke: bool, workdir: Path) -> dict[str, dict[str, float]]:
    chosen = plan(smoke)
    return {
        f"c{c}": ghz.drive(
            endpoint,
            concurrency=c,
            calls=min(chosen.calls[c], ghz.MAX_TOKENS - chosen.warmup),
            warmup=chosen.warmup,
            workdir=workdir,
        )
        for c in CONCURRENCIES
    }


def _ghz_comparison(
    python: dict[str, dict[str, Any]],
    rounds: list[dict[str, dict[str, Any]]],
    ghz_rounds: list[dict[str, dict[str, float]]],
) -> dict[str, Any]:
    """ghz's medians over its rounds, each figure's ratio to Python's, and whether they agree."""
    comparison: dict[str, Any] = {}
    for c in (f"c{c}" for c in CONCURRENCIES):
        own = medians([r[c] for r in ghz_rounds])
        checked = {}
        for figure in ("throughput", "p50_ms"):
            python_rounds = [r["concordat"][c][figure] for r in rounds]
            ratio = own[figure] / python[c][figure]
            checked[figure] = {
                "python": python[c][figure],
                "ratio": round(ratio, 3),
                "agree": abs(ratio - 1) <= AGREEMENT if (c, figure) in JUDGED else None,
                "python_rounds": python_rounds,
                "ghz_rounds": [r[c][figure] for r in ghz_rounds],
                # How far apart the Python generator's own rounds were: this host's noise.
                "python_spread": round(max(python_rounds) / min(python_rounds) - 1, 3),
            }
        comparison[c] = {**own, "against_python": checked}
    return comparison


def _ghz_rows(
    comparison: dict[str, Any], python: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    python_cpu = {c: figures["client_cpu_ms_per_call"] for c, figures in python.items()}
    rows = []
    for c, figure, label, unit in (
        ("c32", "throughput", "throughput, c=32", "calls/s"),
        ("c1", "p50_ms", "p50 latency, c=1", "ms"),
        ("c1", "throughput", "throughput, c=1", "calls/s"),
        ("c32", "p50_ms", "p50 latency, c=32 (queueing: shown, not judged)", "ms"),
    ):
        own = comparison[c]
        checked = own["against_python"][figure]
        judged = checked["agree"] is not None
        ghz_cell = f"{_shown(own[figure], unit)} ({own['calls']:,.0f} calls a round"
        python_cell = f"{_shown(checked['python'], unit)} (Python load generator"
        if figure == "throughput":
            # What each generator spent, as its share of the two cores explains a difference.
            ghz_cell += f"; client CPU {own['client_cpu_ms_per_call']:.2f} ms a call"
            python_cell += f"; client CPU {python_cpu[c]:.2f} ms a call"
        rows.append(
            report.row(
                f"cross-node exchange, ghz load generator (Go): {label}",
                concordat=ghz_cell + ")",
                baseline=python_cell + ")",
                ratio=checked["ratio"],
                target=(
                    f"agree within ±{AGREEMENT:.0%}" + _noise(checked["python_spread"])
                    if judged
                    else report.NOT_APPLICABLE
                ),
                met=checked["agree"] if judged else None,
            )
        )
    return rows


def _noise(spread: float) -> str:
    return f" (Python's own rounds {spread:.0%} apart)" if spread > AGREEMENT else ""


def _shown(value: float, unit: str) -> str:
    return report.rate(value, unit) if unit == "calls/s" else f"{value:.2f} {unit}"


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
