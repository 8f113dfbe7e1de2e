"""The results: `latest.json` with every figure and the machine, `latest.md` with the table."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from bench.children import REPO_ROOT

NOT_APPLICABLE = "—"

# Issue 21's targets for the cross-node exchange (this machine, full durability, every
# signature verified): throughput at c=32 against the bare relay chain, the p50 the path adds
# at c=1, and the nodes' CPU per exchange at c=32 (both nodes together; the bare chain's two
# servers spend about 0.6-0.8 ms).
CROSS_NODE_THROUGHPUT_RATIO = 0.40
CROSS_NODE_ADDED_P50_MS = 2.5
CROSS_NODE_SERVER_CPU_MS = 2.3


def row(
    measure: str,
    *,
    concordat: str = NOT_APPLICABLE,
    baseline: str = NOT_APPLICABLE,
    ratio: float | None = None,
    target: str = NOT_APPLICABLE,
    met: bool | None = None,
) -> dict[str, Any]:
    """One line of the markdown table; `ratio` is Concordat over the bare baseline."""
    return {
        "measure": measure,
        "concordat": concordat,
        "baseline": baseline,
        "ratio": None if ratio is None else round(ratio, 3),
        "target": target,
        "met": met,
    }


def rate(value: float, unit: str) -> str:
    return f"{value:,.0f} {unit}"


def machine() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "python": platform.python_version(),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        **_git(),
    }


def write(out: Path, measures: dict[str, dict[str, Any]], *, smoke: bool) -> str:
    """Writes both files into `out` and returns the markdown table."""
    out.mkdir(parents=True, exist_ok=True)
    results = {
        "machine": machine(),
        "smoke": smoke,
        "targets": targets_index(measures),
        "measures": measures,
    }
    table = markdown(results)
    _replace(out / "latest.json", json.dumps(results, indent=2) + "\n")
    _replace(out / "latest.md", table)
    return table


def target(value: float, text: str, met: bool) -> dict[str, Any]:
    """One target under its stable key: the measured value, the target as words, whether met."""
    return {"value": round(value, 3), "target": text, "met": bool(met)}


def targets_index(measures: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Every measure's targets in one place, each keyed as its measure keys it."""
    index: dict[str, dict[str, Any]] = {}
    for name, result in measures.items():
        for key, judged in result.get("targets", {}).items():
            index[key] = {**judged, "measure": name}
    return index


def markdown(results: dict[str, Any]) -> str:
    host = results["machine"]
    lines = [
        f"Measured {host['date']} on {host['platform']}, {host['cpus_usable']} CPUs, "
        f"Python {host['python']}, commit {host.get('commit', 'unknown')}"
        + (" (uncommitted changes)" if host.get("dirty") else "")
        + (" — SMOKE RUN, figures meaningless" if results["smoke"] else "")
        + ".",
        "",
        "| measure | Concordat | bare baseline | ratio | target | met? |",
        "|---|---|---|---|---|---|",
    ]
    for name, result in results["measures"].items():
        if "skipped" in result or "error" in result:
            why = result.get("skipped") or f"error: {result['error']}"
            lines.append(f"| {name} | {_cell(why)} | | | | |")
            continue
        for r in result["summary"]:
            ratio = NOT_APPLICABLE if r["ratio"] is None else f"{r['ratio']:.2f}"
            met = NOT_APPLICABLE if r["met"] is None else ("yes" if r["met"] else "**no**")
            lines.append(
                f"| {r['measure']} | {r['concordat']} | {r['baseline']} | {ratio} "
                f"| {r['target']} | {met} |"
            )
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "/").replace("\n", " ")[:200]


def _git() -> dict[str, Any]:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args],  # noqa: S607 - whichever git the developer runs
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()

    try:
        return {
            "commit": git("rev-parse", "--short", "HEAD"),
            "dirty": bool(git("status", "--porcelain")),
        }
    except (OSError, subprocess.SubprocessError):
        return {}


def _replace(path: Path, text: str) -> None:
    # Written beside and renamed, so a reader never sees half a file.
    partial = path.with_suffix(path.suffix + ".tmp")
    partial.write_text(text)
    partial.replace(path)


def unary_rows(
    label: str, bare: dict[str, Any], concordat: dict[str, Any], *, targets: bool
) -> list[dict[str, Any]]:
    """Concordat against its bare baseline: throughput at c=32 and c=1, p50 at c=1, p99 at c=32.

    With `targets`, issue 21's figures for the cross-node path are judged on these rows (see
    `cross_node_targets`), and a row of the nodes' CPU per exchange is added.
    """
    fast, busy = ("c1", "c32")
    judged = cross_node_targets(bare, concordat) if targets else {}
    throughput = concordat[busy]["throughput"] / bare[busy]["throughput"]
    added_p50 = concordat[fast]["p50_ms"] - bare[fast]["p50_ms"]

    def judged_as(key: str) -> dict[str, Any]:
        if key not in judged:
            return {}
        return {"target": judged[key]["target"], "met": judged[key]["met"]}

    rows = [
        row(
            f"{label}: throughput, c=32",
            concordat=rate(concordat[busy]["throughput"], "calls/s"),
            baseline=rate(bare[busy]["throughput"], "calls/s"),
            ratio=throughput,
            **judged_as("throughput_ratio_c32"),
        ),
        row(
            f"{label}: p50 latency, c=1",
            concordat=f"{concordat[fast]['p50_ms']:.2f} ms (+{added_p50:.2f})",
            baseline=f"{bare[fast]['p50_ms']:.2f} ms",
            ratio=concordat[fast]["p50_ms"] / bare[fast]["p50_ms"],
            **judged_as("added_p50_ms_c1"),
        ),
        row(
            f"{label}: throughput, c=1",
            concordat=rate(concordat[fast]["throughput"], "calls/s"),
            baseline=rate(bare[fast]["throughput"], "calls/s"),
            ratio=concordat[fast]["throughput"] / bare[fast]["throughput"],
        ),
        row(
            f"{label}: p99 latency, c=32",
            concordat=f"{concordat[busy]['p99_ms']:.2f} ms",
            baseline=f"{bare[busy]['p99_ms']:.2f} ms",
            ratio=concordat[busy]["p99_ms"] / bare[busy]["p99_ms"],
        ),
    ]
    if targets:
        ours, theirs = (f[busy]["servers_cpu_ms_per_call"] for f in (concordat, bare))
        rows.append(
            row(
                f"{label}: the nodes' CPU per exchange, c=32",
                concordat=f"{ours:.2f} ms (both nodes)",
                baseline=f"{theirs:.2f} ms (relay and provider)",
                ratio=ours / theirs,
                **judged_as("server_cpu_ms_c32"),
            )
        )
    return rows


def cross_node_targets(
    bare: dict[str, Any], concordat: dict[str, Any]
) -> dict[str, dict[str, Any]]:
    """Issue 21's cross-node targets, keyed `throughput_ratio_c32`, `added_p50_ms_c1` and
    `server_cpu_ms_c32`; a measure prefixes the keys with its path's name."""
    throughput = concordat["c32"]["throughput"] / bare["c32"]["throughput"]
    added_p50 = concordat["c1"]["p50_ms"] - bare["c1"]["p50_ms"]
    server_cpu = concordat["c32"]["servers_cpu_ms_per_call"]
    return {
        "throughput_ratio_c32": target(
            throughput,
            f"≥ {CROSS_NODE_THROUGHPUT_RATIO:.2f}x bare",
            throughput >= CROSS_NODE_THROUGHPUT_RATIO,
        ),
        "added_p50_ms_c1": target(
            added_p50,
            f"≤ bare + {CROSS_NODE_ADDED_P50_MS:g} ms",
            added_p50 <= CROSS_NODE_ADDED_P50_MS,
        ),
        "server_cpu_ms_c32": target(
            server_cpu,
            f"≤ {CROSS_NODE_SERVER_CPU_MS:g} ms",
            server_cpu <= CROSS_NODE_SERVER_CPU_MS,
        ),
    }


def prefixed(prefix: str, targets: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {f"{prefix}_{key}": judged for key, judged in targets.items()}


def rss_row(label: str, rss: dict[str, float], *, limit_mb: float = 150.0) -> dict[str, Any]:
    """Each node's peak RSS in one cell, against the per-node limit."""
    return row(
        f"{label}: each node's peak RSS",
        concordat=", ".join(f"{name} {mb:.0f} MB" for name, mb in rss.items()),
        target=f"< {limit_mb:g} MB each",
        met=all(mb < limit_mb for mb in rss.values()),
    )
