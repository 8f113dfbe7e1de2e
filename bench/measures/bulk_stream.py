"""Bulk StreamRecords from PostgreSQL through one node and across two, and from SQLite across
two, minimised per record, against the bare two-hop stream in the same batch size.

Every path streams the provider's whole table of its record type: its demo rows plus N bulk
rows (1,000,000 by default, a few thousand in smoke mode; set BENCH_BULK_ROWS to choose). Each
PostgreSQL path reads a database of its own, created and seeded here and dropped at the end.
The BENEFIT_AWARD paths release records of about 70 bytes; the DEATH_REGISTRATION path
releases records of about 200 bytes, the size issue 6's target names, against a bare stream
of 200-byte records.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from bench import bare, concordat_paths, report
from bench.clients import measure_stream
from bench.memory import peak_rss_mb
from gateway.config import LimitsConfig

TARGET_RATE, TARGET_RATIO = 200_000, 0.5
ROWS_VARIABLE = "BENCH_BULK_ROWS"
# What each path is, in the order the table lists them; the two-node ones carry the targets.
PATHS = {
    "one_node_postgres": "bulk extract, PostgreSQL, one node",
    "two_nodes_postgres": "bulk extract, PostgreSQL, two nodes",
    "two_nodes_sqlite": "bulk extract, SQLite, two nodes",
    "two_nodes_sqlite_deaths": "bulk extract of death registrations, SQLite, two nodes",
}
# Each path's bare stream: the same number of records, of about the same size.
BARE_FOR = {"two_nodes_sqlite_deaths": "bare_deaths"}


def bulk_rows(smoke: bool) -> int:
    chosen = os.environ.get(ROWS_VARIABLE, "").strip()
    if chosen:
        rows = int(chosen.replace("_", ""))
        if rows < 1:
            raise ValueError(f"{ROWS_VARIABLE} must be a positive number of rows")
        return rows
    return 2_000 if smoke else 1_000_000


def run(smoke: bool, workdir: Path) -> dict[str, Any]:
    for ask in (
        concordat_paths.BULK_ASK,
        concordat_paths.LOCAL_BULK_ASK,
        concordat_paths.DEATHS_BULK_ASK,
    ):
        if reason := concordat_paths.unavailable(ask):
            return {"skipped": reason}
    rows, batch = bulk_rows(smoke), LimitsConfig().stream_batch_size
    try:
        with ExitStack() as stack:
            one_node_db = stack.enter_context(concordat_paths.postgres_database("holyrood"))
            two_nodes_db = stack.enter_context(concordat_paths.postgres_database("stormont"))
            chain = stack.enter_context(
                bare.relay_chain(workdir, stream_records=rows, batch_size=batch)
            )
            chain_of_deaths = stack.enter_context(
                bare.relay_chain(
                    workdir / "bare-deaths",
                    stream_records=rows,
                    batch_size=batch,
                    stream_record="death_registration",
                )
            )
            paths = {
                "one_node_postgres": concordat_paths.bulk_exchange(
                    workdir / "one-node-postgres",
                    rows=rows,
                    database_url=one_node_db,
                    ask=concordat_paths.LOCAL_BULK_ASK,
                ),
                "two_nodes_postgres": concordat_paths.bulk_exchange(
                    workdir / "two-nodes-postgres", rows=rows, database_url=two_nodes_db
                ),
                "two_nodes_sqlite": concordat_paths.bulk_exchange(
                    workdir / "two-nodes-sqlite", rows=rows
                ),
                "two_nodes_sqlite_deaths": concordat_paths.bulk_exchange(
                    workdir / "two-nodes-sqlite-deaths",
                    rows=rows,
                    ask=concordat_paths.DEATHS_BULK_ASK,
                ),
            }
            running = _enter_together(stack, paths)
            bare_streams = {"bare": chain, "bare_deaths": chain_of_deaths}
            figures = measure_stream(
                {**bare_streams, **{name: path.endpoint for name, path in running.items()}}, smoke
            )
            rss = {
                name: {node: peak_rss_mb(n.pid) for node, n in path.nodes.items()}
                for name, path in running.items()
            }
    except concordat_paths.PostgresUnavailable as exc:
        return {"skipped": str(exc)}
    return {
        **figures,
        "bulk_rows": rows,
        "batch_size": batch,
        "asks": {
            "one_node": concordat_paths.LOCAL_BULK_ASK.agreement_id,
            "two_nodes": concordat_paths.BULK_ASK.agreement_id,
            "two_nodes_deaths": concordat_paths.DEATHS_BULK_ASK.agreement_id,
        },
        "node_peak_rss_mb": rss,
        "summary": _summary(figures, rss),
    }


def _enter_together(stack: ExitStack, contexts: dict[str, Any]) -> dict[str, Any]:
    """Enters the paths side by side (seeding, then starting their nodes), each left on `stack`.

    The nodes are separate processes, so this takes about as long as the slowest path.
    """
    with ThreadPoolExecutor(max_workers=len(contexts)) as pool:
        started = {name: pool.submit(context.__enter__) for name, context in contexts.items()}
    entered, failures = {}, []
    for name, future in started.items():
        try:
            entered[name] = future.result()
        except Exception as exc:  # noqa: BLE001 - the others are stopped, then this is raised
            failures.append(exc)
        else:
            stack.push(contexts[name].__exit__)
    if failures:
        raise failures[0]
    return entered


def _summary(figures: dict[str, Any], rss: dict[str, dict[str, float]]) -> list[dict[str, Any]]:
    rows = []
    for name, label in PATHS.items():
        rate = figures[name]["records_per_s"]
        bare_rate = figures[BARE_FOR.get(name, "bare")]["records_per_s"]
        across_two = name.startswith("two_nodes")
        rows.append(
            report.row(
                f"{label} ({figures[name]['record_bytes']}-byte records)",
                concordat=report.rate(rate, "records/s"),
                baseline=report.rate(
                    bare_rate,
                    f"records/s ({figures[BARE_FOR.get(name, 'bare')]['record_bytes']}-byte)",
                ),
                ratio=rate / bare_rate,
                target=(
                    f"≥ {TARGET_RATE:,} records/s and ≥ {TARGET_RATIO}x bare"
                    if across_two
                    else report.NOT_APPLICABLE
                ),
                met=rate >= TARGET_RATE and rate / bare_rate >= TARGET_RATIO
                if across_two
                else None,
            )
        )
        rows.append(report.rss_row(label, rss[name]))
    return rows
