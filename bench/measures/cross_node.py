"""Cross-node exchange (caller -> requesting node -> providing node -> adapter) against the bare
relay chain of the same processes, hops, TLS and payload; with the least that the path's
signatures and durable commits must add on this machine (bench/floor.py).

An independent load generator, ghz (bench/ghz.py), drives the same call in the same rounds,
interleaved with the Python generator's, to confirm its figures.
"""

from __future__ import annotations

import os
import re
import statistics
import threading
import urllib.request
from collections.abc import Iterable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from bench import bare, concordat_paths, floor, ghz, report
from bench.children import python_module, ready_port, spawned
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
# Tracing (issue 17): the same path untraced, and tracing this share of exchanges.
TRACING = {"untraced": None, "traced_1pct": 0.01, "traced_100pct": 1.0}
# Tracing 1% of exchanges may cost at most this share of the untraced throughput at c=32.
TRACING_COST = 0.03
# Metrics (issue 17) may cost at most this share of the throughput at c=32 without them.
METRICS_COST = 0.03
# The metrics pair is scraped this often while it is measured: deploy/prometheus scrapes every
# 15 s, so this costs the nodes more scrapes than Prometheus would.
SCRAPE_SECONDS = 5.0


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
    result: dict[str, Any] = {
        **figures,
        "floor": least,
        "node_peak_rss_mb": rss,
        "targets": report.prefixed(
            "cross_node", report.cross_node_targets(figures["bare"], figures["concordat"])
        ),
    }
    if ghz_missing is None:
        result["ghz"] = _ghz_comparison(figures["concordat"], rounds, ghz_rounds)
        summary += _ghz_rows(result["ghz"], figures["concordat"])
    else:
        result["ghz_missing"] = ghz_missing
        summary.append(
            report.row("cross-node exchange, ghz", concordat=f"not measured: {ghz_missing}")
        )
    # On nodes of their own, started once the nodes above have stopped.
    result["tracing"] = _tracing(smoke, workdir)
    summary += _tracing_rows(result["tracing"])
    result["metrics"] = _metrics(smoke, workdir)
    summary += _metrics_rows(result["metrics"])
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


def _tracing(smoke: bool, workdir: Path) -> dict[str, Any]:
    """The path untraced, and tracing 1% and 100% of its exchanges, on three pairs of nodes.

    Spans go to a real OTLP/gRPC collector (tests/support/otlp_receiver.py), a process of its
    own on the same two cores, as an agent beside the node would be. The rounds of the three
    pairs are interleaved. No call sends a trace context, so each node samples by its ratio.
    """
    log = workdir / "otlp-receiver.log"
    argv = python_module("tests.support.otlp_receiver")
    with spawned(argv, log, ready_line=True) as collector:
        otlp = f"http://127.0.0.1:{ready_port(collector, log)}"
        with ExitStack() as stack:
            endpoints = {
                name: stack.enter_context(
                    _cross_node_with(
                        workdir / name,
                        tracing=(
                            None
                            if ratio is None
                            else {"otlp_endpoint": otlp, "sample_ratio": ratio}
                        ),
                    )
                )
                for name, ratio in TRACING.items()
            }
            rounds = [measure_unary(endpoints, smoke, rounds=1) for _ in range(plan(smoke).rounds)]
        # Stopping a node exports the spans it still held: all are in by now.
        assert collector.stdin is not None and collector.stdout is not None
        collector.stdin.close()
        spans = int(collector.stdout.readline().split()[1])
    figures = {
        name: {f"c{c}": medians([r[name][f"c{c}"] for r in rounds]) for c in CONCURRENCIES}
        for name in TRACING
    }
    # Each traced pair against the untraced one in the same round, c=32: paired, so that a
    # host whose load drifts between rounds moves both sides of each ratio alike.
    paired = {
        name: [r[name]["c32"]["throughput"] / r["untraced"]["c32"]["throughput"] for r in rounds]
        for name in TRACING
        if name != "untraced"
    }
    chosen = plan(smoke)
    calls = chosen.rounds * sum(chosen.warmup + chosen.calls[c] for c in CONCURRENCIES)
    return {
        **figures,
        "c32_ratio_per_round": paired,
        "spans_received": spans,
        "calls_per_pair": calls,
    }


@contextmanager
def _cross_node_with(
    workdir: Path,
    *,
    tracing: Mapping[str, Any] | None = None,
    metrics: Mapping[str, str] | None = None,
) -> Iterator[Endpoint]:
    """concordat_paths.cross_node_exchange, with `[tracing]` in both nodes' configs when given,
    and `[metrics]` listening where `metrics` says for each node.

    Assembled from that module's own parts, as its running_nodes takes no extra section.
    """
    from gateway.dev.state import prepare_node
    from gateway.testing import node_config_dict

    paths = concordat_paths
    ask = paths.CROSS_NODE_ASK
    names = [ask.provider, ask.node]
    state_dir = paths._state_dir(workdir)
    states = {name: prepare_node(state_dir, name) for name in names}
    extra = {} if tracing is None else {"tracing": dict(tracing)}
    configs = {
        name: node_config_dict(
            state,
            state_dir,
            node={"listen": f"127.0.0.1:{paths._free_port()}"},
            **paths._federation_section(state_dir, name, names),
            **extra,
            **({} if metrics is None else {"metrics": {"listen": metrics[name]}}),
        )
        for name, state in states.items()
    }
    paths._write_directory(state_dir, configs)
    with ExitStack() as stack:
        nodes = {
            name: stack.enter_context(paths._running_node(state_dir, states[name], configs[name]))
            for name in names
        }
        yield paths._endpoint(nodes, ask, subject=paths._demo_subject(nodes, ask))


def _tracing_rows(tracing: dict[str, Any]) -> list[dict[str, Any]]:
    untraced = tracing["untraced"]
    rows = []
    for name, label in (("traced_1pct", "1%"), ("traced_100pct", "100%")):
        traced = tracing[name]
        per_round = tracing["c32_ratio_per_round"][name]
        ratio = statistics.median(per_round)
        judged = name == "traced_1pct"
        rows.append(
            report.row(
                f"cross-node exchange tracing {label} of exchanges (OTLP export): throughput, c=32 "
                "(ratio: median of each round's)",
                concordat=report.rate(traced["c32"]["throughput"], "calls/s")
                + f" (rounds: {', '.join(f'{r:.2f}' for r in per_round)}x)",
                baseline=report.rate(untraced["c32"]["throughput"], "calls/s") + " (untraced)",
                ratio=ratio,
                target=f"≥ {1 - TRACING_COST:.2f}x untraced" if judged else report.NOT_APPLICABLE,
                met=ratio >= 1 - TRACING_COST if judged else None,
            )
        )
        # CPU per call holds steadier than throughput on a host others share.
        cpu, base_cpu = (
            figures["servers_cpu_ms_per_call"] + figures["client_cpu_ms_per_call"]
            for figures in (traced["c32"], untraced["c32"])
        )
        rows.append(
            report.row(
                f"cross-node exchange tracing {label} of exchanges: CPU per call, c=32",
                concordat=f"{cpu:.2f} ms (caller and both nodes)",
                baseline=f"{base_cpu:.2f} ms (untraced)",
                ratio=cpu / base_cpu,
            )
        )
        added = traced["c1"]["p50_ms"] - untraced["c1"]["p50_ms"]
        rows.append(
            report.row(
                f"cross-node exchange tracing {label} of exchanges: p50 latency, c=1",
                concordat=f"{traced['c1']['p50_ms']:.2f} ms ({added:+.2f})",
                baseline=f"{untraced['c1']['p50_ms']:.2f} ms (untraced)",
                ratio=traced["c1"]["p50_ms"] / untraced["c1"]["p50_ms"],
            )
        )
    # Each traced exchange is 20 spans: the exchange and 9 stages on each node.
    rows.append(
        report.row(
            "cross-node tracing: spans the OTLP collector received (both traced pairs)",
            concordat=f"{tracing['spans_received']:,}",
            baseline=f"{tracing['calls_per_pair'] * 20:,} for every call of the 100% pair",
        )
    )
    return rows


def _metrics(smoke: bool, workdir: Path) -> dict[str, Any]:
    """The path with metrics off and on, on two pairs of nodes, their rounds interleaved and
    each pair first in every other round (an even number of rounds).

    While it runs, both nodes of the metrics pair are scraped every SCRAPE_SECONDS (and once
    more at the end), as Prometheus would; the last scrape of the requesting node says how
    many exchanges its metrics counted.
    """
    ask = concordat_paths.CROSS_NODE_ASK
    listen = {
        name: f"127.0.0.1:{concordat_paths._free_port()}" for name in (ask.provider, ask.node)
    }
    with (
        _cross_node_with(workdir / "metrics_off") as off,
        _cross_node_with(workdir / "metrics_on", metrics=listen) as on,
        _Scraper(listen.values(), SCRAPE_SECONDS) as scraper,
    ):
        pairs = {"metrics_off": off, "metrics_on": on}
        chosen = plan(smoke)
        rounds = [
            # Each pair goes first in every other round: the second of two back-to-back runs
            # came out up to 3% faster with both pairs alike (metrics off on both).
            measure_unary(dict(sorted(pairs.items(), reverse=bool(i % 2))), smoke, rounds=1)
            for i in range(chosen.rounds + chosen.rounds % 2)
        ]
    figures = {
        name: {f"c{c}": medians([r[name][f"c{c}"] for r in rounds]) for c in CONCURRENCIES}
        for name in pairs
    }
    requesting = scraper.last[listen[ask.node]]
    counted = sum(
        float(value)
        for value in re.findall(
            r'^concordat_exchanges_total\{[^}]*outcome="released"[^}]*\} (\S+)$', requesting, re.M
        )
    )
    calls = len(rounds) * sum(chosen.warmup + chosen.calls[c] for c in CONCURRENCIES)
    return {
        **figures,
        "scrapes": scraper.scrapes,
        "exposition_bytes": len(requesting.encode()),
        "released_counted": counted,
        "calls": calls,
    }


class _Scraper:
    """Scrapes each address's /metrics every `seconds` from a thread, and once more on exit."""

    def __init__(self, addresses: Iterable[str], seconds: float) -> None:
        self._addresses = list(addresses)
        self._seconds = seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-scraper", daemon=True)
        self.scrapes = 0
        self.last: dict[str, str] = {}

    def __enter__(self) -> _Scraper:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()
        self._scrape()

    def _run(self) -> None:
        while not self._stop.wait(self._seconds):
            self._scrape()

    def _scrape(self) -> None:
        for address in self._addresses:
            url = f"http://{address}/metrics"
            with urllib.request.urlopen(url, timeout=10) as answer:
                self.last[address] = answer.read().decode()
            self.scrapes += 1


def _metrics_rows(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    off, on = metrics["metrics_off"], metrics["metrics_on"]
    ratio = on["c32"]["throughput"] / off["c32"]["throughput"]
    added = on["c1"]["p50_ms"] - off["c1"]["p50_ms"]
    scraped = f"scraped every {SCRAPE_SECONDS:g} s"
    return [
        report.row(
            f"cross-node exchange with metrics on ({scraped}): throughput, c=32",
            concordat=report.rate(on["c32"]["throughput"], "calls/s"),
            baseline=report.rate(off["c32"]["throughput"], "calls/s") + " (metrics off)",
            ratio=ratio,
            target=f"≥ {1 - METRICS_COST:.2f}x metrics off",
            met=ratio >= 1 - METRICS_COST,
        ),
        report.row(
            "cross-node exchange with metrics on: p50 latency, c=1",
            concordat=f"{on['c1']['p50_ms']:.2f} ms ({added:+.2f})",
            baseline=f"{off['c1']['p50_ms']:.2f} ms (metrics off)",
            ratio=on["c1"]["p50_ms"] / off["c1"]["p50_ms"],
        ),
        report.row(
            "cross-node metrics: released exchanges the requesting node's metrics counted",
            concordat=(
                f"{metrics['released_counted']:,.0f} in {metrics['scrapes']} scrapes "
                f"({metrics['exposition_bytes']:,} bytes each)"
            ),
            baseline=f"{metrics['calls']:,} calls made",
        ),
    ]
