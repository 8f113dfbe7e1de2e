"""Bulk StreamRecords from PostgreSQL through one node and across two, and from SQLite across
two, minimised per record, against two baselines in the same batch size.

Every path streams the provider's whole table of its record type: its demo rows plus N bulk
rows (1,000,000 by default, a few thousand in smoke mode; set BENCH_BULK_ROWS to choose). Each
PostgreSQL path reads a database of its own, created and seeded here and dropped at the end.
The BENEFIT_AWARD paths release records of about 80 bytes; the DEATH_REGISTRATION path
releases records of about 200 bytes, the size issue 6's target names.

The baselines: the bare two-hop stream, which resends one prebuilt batch (gRPC's limit), and
the fair bare stream (issue 21), the same relay chain whose provider reads the same SQLite
table with the same batching and builds the same records, with no policy, audit or
signatures: what a department would run instead. The two-node SQLite paths' targets are
against the fair one.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from bench import bare, concordat_paths, report
from bench.clients import Endpoint, measure_stream
from bench.memory import peak_rss_mb
from gateway.config import LimitsConfig

# Issue 21: across two nodes, at least 0.8x the fair bare stream for both record sizes, and
# at least 150,000 records/s for the ~80-byte records.
TARGET_RATE, TARGET_FAIR_RATIO = 150_000, 0.8
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
# Each SQLite path's fair bare stream, reading the very file its providing node reads.
FAIR_FOR = {"two_nodes_sqlite": "fair_bare", "two_nodes_sqlite_deaths": "fair_bare_deaths"}
# Paths whose records are the ~80-byte ones the rate target names.
RATE_TARGETED = ("two_nodes_sqlite", "two_nodes_postgres")


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
            fair_streams = {
                fair: stack.enter_context(_fair_chain(workdir / fair, running[path], ask))
                for (path, fair), ask in zip(
                    FAIR_FOR.items(),
                    (concordat_paths.BULK_ASK, concordat_paths.DEATHS_BULK_ASK),
                    strict=True,
                )
            }
            bare_streams = {"bare": chain, "bare_deaths": chain_of_deaths, **fair_streams}
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
        "targets": _targets(figures),
        "summary": _summary(figures, rss),
    }


def _fair_chain(workdir: Path, path: Any, ask: concordat_paths.Ask) -> Any:
    """The fair bare stream for a SQLite path: its provider's table, fields and batch size."""
    from gateway.dev.demo import demo_source_config
    from gateway.records import shape

    endpoint: Endpoint = path.endpoint
    provider = path.nodes[ask.provider].state
    mapping = demo_source_config(f"sqlite:///{provider.demo_db}", ask.provider)["records"][
        ask.record_type
    ]
    asked = endpoint.stream_request.field_mask.paths
    return bare.reading_chain(
        workdir,
        database=provider.demo_db,
        table=mapping["table"],
        key=mapping["key"],
        fields={field: mapping["fields"][field] for field in asked if field in mapping["fields"]},
        record=shape(ask.record_type).oneof_field,
        stream_request=endpoint.stream_request,
    )


def _targets(figures: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Issue 21's bulk targets under stable keys: each measured value, its target, whether met."""
    targets: dict[str, dict[str, Any]] = {}
    for path, fair in FAIR_FOR.items():
        ratio = figures[path]["records_per_s"] / figures[fair]["records_per_s"]
        targets[f"bulk_{path}_vs_fair_bare"] = {
            "value": round(ratio, 3),
            "target": f"≥ {TARGET_FAIR_RATIO}x",
            "met": ratio >= TARGET_FAIR_RATIO,
        }
    for path in RATE_TARGETED:
        rate = figures[path]["records_per_s"]
        targets[f"bulk_{path}_records_per_s"] = {
            "value": rate,
            "target": f"≥ {TARGET_RATE:,} records/s",
            "met": rate >= TARGET_RATE,
        }
    return targets


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
        size = figures[name]["record_bytes"]
        bare_name = BARE_FOR.get(name, "bare")
        bare_rate = figures[bare_name]["records_per_s"]
        fair = FAIR_FOR.get(name)
        rate_target = name in RATE_TARGETED
        rows.append(
            report.row(
                f"{label} ({size}-byte records), against gRPC's limit",
                concordat=report.rate(rate, "records/s"),
                baseline=report.rate(
                    bare_rate, f"records/s ({figures[bare_name]['record_bytes']}-byte, bare)"
                ),
                ratio=rate / bare_rate,
                target=f"≥ {TARGET_RATE:,} records/s" if rate_target else report.NOT_APPLICABLE,
                met=rate >= TARGET_RATE if rate_target else None,
            )
        )
        if fair is not None:
            fair_rate = figures[fair]["records_per_s"]
            rows.append(
                report.row(
                    f"{label} ({size}-byte records), against the fair bare stream",
                    concordat=report.rate(rate, "records/s"),
                    baseline=report.rate(
                        fair_rate,
                        f"records/s ({figures[fair]['record_bytes']}-byte, fair bare)",
                    ),
                    ratio=rate / fair_rate,
                    target=f"≥ {TARGET_FAIR_RATIO}x fair bare",
                    met=rate / fair_rate >= TARGET_FAIR_RATIO,
                )
            )
        rows.append(report.rss_row(label, rss[name]))
    return rows
