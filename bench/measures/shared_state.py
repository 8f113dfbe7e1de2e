"""A node's state in PostgreSQL (issue 16): what the cross-node exchange and the audit log pay.

- The cross-node exchange (cross_node's ask) on three pairs of nodes, against the bare relay
  chain, all four driven in the same interleaved rounds: both nodes on SQLite state (the
  embedded default), both on PostgreSQL state (a database each), and both on PostgreSQL with
  the providing node run as two replicas sharing its port (SO_REUSEPORT) and its database.
  CPU per exchange is the caller's and the servers' as every row records it, and for a pair
  on PostgreSQL the servers include the backends serving its databases: SQLite does that
  work inside the nodes.
- PostgresAuditLog appends, committed and sealed, per second at the audit_append measure's
  concurrency, against the same rows inserted into PostgreSQL bare in the batches the log
  formed, with the CPU each entry cost this process and the database; SqliteAuditLog in the
  same rounds (bench/audit_append.py).

Every database is created for the run and dropped after it; without PostgreSQL the measure
is skipped, saying why.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections import defaultdict
from collections.abc import Collection, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bench import audit_append, bare, concordat_paths, report
from bench.children import ChildFailed, log_tail
from bench.clients import CONCURRENCIES, measure_unary, plan
from bench.load import medians
from bench.measures.bulk_stream import _enter_together
from bench.memory import cpu_seconds, peak_rss_mb

if TYPE_CHECKING:
    from gateway.state.postgres import PostgresState

# The pairs, in the order the table lists them.
PAIRS = {
    "sqlite_state": "cross-node exchange, SQLite state",
    "postgres_state": "cross-node exchange, PostgreSQL state",
    "postgres_two_replicas": "cross-node exchange, PostgreSQL state, providing node as 2 replicas",
}
PROVIDER_REPLICAS = {"postgres_two_replicas": 2}
# Issue 21's cross-node targets are judged on both state stores (the nodes' CPU excludes
# PostgreSQL's own processes, which are reported beside it).
JUDGED = {"sqlite_state": "shared_state_sqlite", "postgres_state": "shared_state_postgres"}
# Pairs set against each other: (pair, against, label, key of their per-round c=32 ratios).
COMPARED = (
    (
        "postgres_state",
        "sqlite_state",
        "PostgreSQL state against SQLite state",
        "postgres_over_sqlite",
    ),
    (
        "postgres_two_replicas",
        "postgres_state",
        "2 providing replicas against 1 (PostgreSQL state)",
        "two_replicas_over_one",
    ),
)
# A replica sharing a port is ready once it says so: the port's health check may be
# answered by the replica already serving it.
REPLICA_START_SECONDS = 60.0
NODE_NAME = "holyrood"
BARE_INSERT = (
    "INSERT INTO entries (seq, exchange_id, subject_hash, recorded_at, event, prev_hash, hash)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s)"
)


def run(smoke: bool, workdir: Path) -> dict[str, Any]:
    if reason := concordat_paths.unavailable(concordat_paths.CROSS_NODE_ASK):
        return {"skipped": reason}
    try:
        exchange = _exchange(smoke, workdir)
        appends = _audit_appends(smoke, workdir)
    except concordat_paths.PostgresUnavailable as exc:
        return {"skipped": str(exc)}
    summary = _exchange_rows(exchange) + _append_rows(appends)
    targets = {}
    for name, prefix in JUDGED.items():
        judged = report.cross_node_targets(exchange["bare"], exchange[name])
        targets.update(report.prefixed(prefix, judged))
    return {**exchange, "audit_append": appends, "summary": summary, "targets": targets}


@dataclass
class _Spent:
    seconds: float = 0.0


def _exchange(smoke: bool, workdir: Path) -> dict[str, Any]:
    ask = concordat_paths.CROSS_NODE_ASK
    chosen = plan(smoke)
    calls = sum(chosen.warmup + chosen.calls[c] for c in CONCURRENCIES)
    with ExitStack() as stack:
        urls: dict[str, dict[str, str]] = {
            name: {
                node: stack.enter_context(
                    concordat_paths.postgres_database(f"state_{node}", scheme="postgresql")
                )
                for node in (ask.provider, ask.node)
            }
            for name in PAIRS
            if name != "sqlite_state"
        }
        chain = stack.enter_context(bare.relay_chain(workdir, stream_records=0, batch_size=0))
        pairs = _enter_together(
            stack,
            {
                name: _pair(
                    workdir / name,
                    state_urls=urls.get(name, {}),
                    provider_replicas=PROVIDER_REPLICAS.get(name, 1),
                )
                for name in PAIRS
            },
        )
        endpoints = {"bare": chain, **{name: path.endpoint for name, path in pairs.items()}}
        provider_pids = [
            node.pid
            for node in pairs["postgres_two_replicas"].nodes.values()
            if node.name == ask.provider
        ]
        replicas = {f"replica {n}": pid for n, pid in enumerate(provider_pids, start=1)}
        replicas_before = {label: cpu_seconds(pid) for label, pid in replicas.items()}
        rounds: list[dict[str, dict[str, Any]]] = []
        database_ms: dict[str, list[float]] = defaultdict(list)
        databases = {name: _database_names(urls.get(name, {}).values()) for name in endpoints}
        # A smoke-sized turn first: each node's pool grows under load to the connections it
        # then keeps, so the backends metered with a turn are all there when it starts.
        for name in () if smoke else urls:
            measure_unary({name: endpoints[name]}, True, rounds=1)
        names = list(endpoints)
        for number in range(chosen.rounds):
            # Each round starts one further along, so no path is always the first or last.
            turn = names[number % len(names) :] + names[: number % len(names)]
            measured: dict[str, dict[str, Any]] = {}
            for name in turn:
                # The PostgreSQL backends serve the pair as SQLite serves the other from
                # inside its nodes: metered with them, as servers.
                backends = tuple(_backend_cpu(databases[name]))
                endpoint = replace(endpoints[name], pids=(*endpoints[name].pids, *backends))
                with _database_cpu(databases[name]) as spent:
                    measured.update(measure_unary({name: endpoint}, smoke, rounds=1))
                if name in urls:
                    database_ms[name].append(round(spent.seconds * 1000 / calls, 4))
            rounds.append(measured)
        replica_cpu = {
            label: round(cpu_seconds(pid) - replicas_before[label], 3)
            for label, pid in replicas.items()
        }
        rss = {
            name: {label: peak_rss_mb(node.pid) for label, node in path.nodes.items()}
            for name, path in pairs.items()
        }
    figures = {
        name: {f"c{c}": medians([r[name][f"c{c}"] for r in rounds]) for c in CONCURRENCIES}
        for name in endpoints
    }
    # Paired in each round, so a host whose load drifts between rounds moves both sides alike.
    paired = {
        "postgres_over_sqlite": [
            r["postgres_state"]["c32"]["throughput"] / r["sqlite_state"]["c32"]["throughput"]
            for r in rounds
        ],
        "two_replicas_over_one": [
            r["postgres_two_replicas"]["c32"]["throughput"]
            / r["postgres_state"]["c32"]["throughput"]
            for r in rounds
        ],
    }
    return {
        **figures,
        "c32_throughput_ratio_per_round": {k: [round(v, 3) for v in r] for k, r in paired.items()},
        "database_cpu_ms_per_call": {
            name: {"median": statistics.median(per_round), "rounds": per_round}
            for name, per_round in database_ms.items()
        },
        "provider_replica_cpu_seconds": replica_cpu,
        "node_peak_rss_mb": rss,
        "calls_per_path_per_round": calls,
    }


@contextmanager
def _pair(
    workdir: Path, *, state_urls: Mapping[str, str], provider_replicas: int
) -> Iterator[concordat_paths.ConcordatPath]:
    """cross_node's pair of nodes, each on the PostgreSQL database `state_urls` names for it
    (else on SQLite), the providing node run as `provider_replicas` processes on one port.

    Assembled from concordat_paths' parts, as cross_node's own variants are. Each replica after
    the first writes its config and log in a folder of its own.
    """
    from gateway.dev.state import prepare_node
    from gateway.testing import node_config_dict

    paths = concordat_paths
    ask = paths.CROSS_NODE_ASK
    names = [ask.provider, ask.node]
    state_dir = paths._state_dir(workdir)
    states = {name: prepare_node(state_dir, name) for name in names}
    configs = {}
    for name, state in states.items():
        config = node_config_dict(
            state,
            state_dir,
            node={
                "listen": f"127.0.0.1:{paths._free_port()}",
                **({"share_port": True} if name == ask.provider and provider_replicas > 1 else {}),
            },
            **paths._federation_section(state_dir, name, names),
        )
        if name in state_urls:
            # As an operator writes it: the log lives in the state store, not at a path.
            config["state"] = {"url": state_urls[name]}
            del config["audit"]["path"]
        configs[name] = config
    paths._write_directory(state_dir, configs)
    with ExitStack() as stack:
        nodes = {
            name: stack.enter_context(paths._running_node(state_dir, states[name], configs[name]))
            for name in names
        }
        for number in range(2, provider_replicas + 1):
            replica_dir = state_dir / f"replica-{number}"
            replica_dir.mkdir()
            replica = stack.enter_context(
                paths._running_node(replica_dir, states[ask.provider], configs[ask.provider])
            )
            _wait_started(replica_dir / f"{ask.provider}.log", replica.pid)
            nodes[f"{ask.provider} replica {number}"] = replica
        subject = paths._demo_subject(nodes, ask)
        yield paths.ConcordatPath(paths._endpoint(nodes, ask, subject=subject), nodes)


def _wait_started(log: Path, pid: int) -> None:
    deadline = time.monotonic() + REPLICA_START_SECONDS
    while b"node_started" not in log.read_bytes():
        if not Path(f"/proc/{pid}").exists() or time.monotonic() > deadline:
            raise ChildFailed(f"a replica did not start:\n{log_tail(log)}")
        time.sleep(0.05)


def _database_names(urls: Collection[str]) -> list[str]:
    return [url.rsplit("/", 1)[1] for url in urls]


@contextmanager
def _database_cpu(databases: Collection[str]) -> Iterator[_Spent]:
    """CPU the PostgreSQL backends connected to `databases` spent in the block.

    A backend that connects meanwhile counts from its start; one that exits meanwhile is lost
    (pools keep theirs open). The server's shared processes (WAL writer, checkpointer) serve
    every database on it, others' too, and are left out.
    """
    spent = _Spent()
    before = _backend_cpu(databases)
    try:
        yield spent
    finally:
        after = _backend_cpu(databases)
        spent.seconds = sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())


def _backend_cpu(databases: Collection[str]) -> dict[int, float]:
    if not databases:
        return {}
    with psycopg.connect(
        concordat_paths.POSTGRES_SERVER, dbname="postgres", autocommit=True
    ) as server:
        pids = server.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = ANY(%s) AND pid <> pg_backend_pid()",
            (list(databases),),
        ).fetchall()
    seconds = {}
    for (pid,) in pids:
        try:
            seconds[pid] = cpu_seconds(pid)
        except FileNotFoundError:
            continue  # gone between the query and the read
    return seconds


def _audit_appends(smoke: bool, workdir: Path) -> dict[str, Any]:
    """Rounds of PostgresAuditLog, bare PostgreSQL inserts and SqliteAuditLog; the median round
    by the PostgreSQL log's rate, so its own baseline travels with it."""
    entries, concurrency = (500, 32) if smoke else (20_000, 256)
    rounds = []
    for number in range(1 if smoke else 3):
        directory = workdir / f"audit-round-{number}"
        directory.mkdir()
        rounds.append(_append_round(entries, concurrency, directory))
    chosen = sorted(rounds, key=lambda r: r["postgres_log"]["entries_per_s"])[len(rounds) // 2]
    per_round = {
        path: [r[path]["entries_per_s"] for r in rounds]
        for path in ("postgres_log", "postgres_bare", "sqlite_log")
    }
    return {**chosen, "rounds": len(rounds), "entries_per_s_per_round": per_round}


def _append_round(entries: int, concurrency: int, directory: Path) -> dict[str, Any]:
    from gateway.audit.postgres_log import export_to_sqlite
    from gateway.audit.verify import verify_log

    events = [audit_append.realistic_event(number) for number in range(entries)]
    key = Ed25519PrivateKey.generate()
    with (
        concordat_paths.postgres_database("audit_log", scheme="postgresql") as log_url,
        concordat_paths.postgres_database("audit_bare", scheme="postgresql") as bare_url,
    ):
        with (directory / "postgres-audit.log.jsonl").open("wb") as log_lines:
            log = audit_append._with_json_logs(
                log_lines, lambda: asyncio.run(_append_to_log(log_url, key, events, concurrency))
            )
        exported = directory / "postgres-audit-export.db"
        export_to_sqlite(log_url, exported, public_key=key.public_key())
        log["verified"] = verify_log(exported, key.public_key()).ok
        baseline = _insert_bare(bare_url, events, batch=max(1, round(log["mean_batch"])))
    # The embedded log in the same round, for scale (its own measure is audit_append).
    sqlite = audit_append.run(entries, concurrency, directory)
    return {
        "entries": entries,
        "concurrency": concurrency,
        "postgres_log": log,
        "postgres_bare": baseline,
        "sqlite_log": {
            key: sqlite[key]
            for key in ("entries_per_s", "mean_batch", "verified", "baseline_entries_per_s")
        },
    }


async def _append_to_log(
    url: str, key: Ed25519PrivateKey, events: list[dict[str, Any]], concurrency: int
) -> dict[str, Any]:
    from gateway.audit.postgres_log import PostgresAuditLog
    from gateway.config import AuditConfig
    from gateway.keys import SigningKeys

    # As a node opens it (gateway/node.py): the state's pool, which also creates the schema,
    # serves the log's reads; its writer has a connection of its own.
    state = await _open_state(url)
    log = PostgresAuditLog(
        url=url,
        node=NODE_NAME,
        signing_key=SigningKeys.fixed(key),
        max_batch=AuditConfig().max_batch,
        reads=state,
    )
    latencies: list[float] = []

    async def client(share: list[dict[str, Any]]) -> None:
        for event in share:
            started = time.perf_counter()
            await log.append(event)
            latencies.append(time.perf_counter() - started)

    databases = _database_names([url])
    try:
        with _database_cpu(databases) as database:
            own = time.process_time()
            started = time.perf_counter()
            await asyncio.gather(*(client(events[i::concurrency]) for i in range(concurrency)))
            elapsed = time.perf_counter() - started
            own = time.process_time() - own
    finally:
        await log.close()
        await state.close()
    counts = log.commits
    latencies.sort()
    return {
        "entries_per_s": round(len(events) / elapsed),
        "seals": counts.batches,
        "mean_batch": round(counts.entries / counts.batches, 1),
        "write_failures": counts.failures,
        "append_latency_ms": {
            "p50": round(statistics.median(latencies) * 1000, 2),
            "p99": round(latencies[int(len(latencies) * 0.99)] * 1000, 2),
        },
        **_per_entry(len(events), elapsed, own, database.seconds),
    }


def _insert_bare(url: str, events: list[dict[str, Any]], *, batch: int) -> dict[str, Any]:
    """The same rows into the same table with plain `executemany` (pipelined by psycopg), one
    committed transaction per batch of the size the log formed: no chain, seal, meter or hand-off.
    """
    asyncio.run(_create_schema(url))
    rows = [
        (
            seq,
            event["exchange_id"],
            event["subject_hash"],
            "2025-11-03T10:15:42.123456Z",
            json.dumps(event),
            "0" * 64,
            "f" * 64,
        )
        for seq, event in enumerate(events, start=1)
    ]
    with (
        psycopg.connect(url, autocommit=True) as connection,
        _database_cpu(_database_names([url])) as database,
    ):
        own = time.process_time()
        started = time.perf_counter()
        with connection.cursor() as cursor:
            for first in range(0, len(rows), batch):
                with connection.transaction():
                    cursor.executemany(BARE_INSERT, rows[first : first + batch])
        elapsed = time.perf_counter() - started
        own = time.process_time() - own
    return {
        "entries_per_s": round(len(rows) / elapsed),
        "batch": batch,
        **_per_entry(len(rows), elapsed, own, database.seconds),
    }


def _per_entry(entries: int, elapsed: float, own: float, database: float) -> dict[str, float]:
    """What one entry cost: wall time at this rate, and CPU here and in PostgreSQL's backend."""
    return {
        "wall_us_per_entry": round(elapsed * 1e6 / entries, 2),
        "client_cpu_us_per_entry": round(own * 1e6 / entries, 2),
        "database_cpu_us_per_entry": round(database * 1e6 / entries, 2),
    }


async def _open_state(url: str) -> PostgresState:
    from gateway.audit.postgres_log import SCHEMA
    from gateway.state.postgres import PostgresState

    return await PostgresState.open(
        url, node=NODE_NAME, pool_size=1, statement_timeout_seconds=10, schema=SCHEMA
    )


async def _create_schema(url: str) -> None:
    # Opening the state store once creates exactly the tables a node's log writes to.
    await (await _open_state(url)).close()


def _cpu_ms(figures: Mapping[str, Any]) -> float:
    return float(figures["client_cpu_ms_per_call"] + figures["servers_cpu_ms_per_call"])


def _exchange_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    bare_figures = result["bare"]
    database = {name: d["median"] for name, d in result["database_cpu_ms_per_call"].items()}
    rows = []
    for name, label in PAIRS.items():
        rows += report.unary_rows(label, bare_figures, result[name], targets=name in JUDGED)
        own = database.get(name)
        rows.append(
            report.row(
                f"{label}: CPU per exchange, c=32",
                concordat=f"{_cpu_ms(result[name]['c32']):.2f} ms "
                + (
                    "(caller and nodes; SQLite runs in the nodes)"
                    if own is None
                    else f"(caller, nodes and their PostgreSQL backends; backends {own:.2f} ms "
                    "a call over the whole turn)"
                ),
                baseline=f"{_cpu_ms(bare_figures['c32']):.2f} ms (caller, relay and provider)",
                ratio=_cpu_ms(result[name]["c32"]) / _cpu_ms(bare_figures["c32"]),
            )
        )
    ratios = result["c32_throughput_ratio_per_round"]
    for name, against, label, ratio_key in COMPARED:
        per_round = ratios[ratio_key]
        ours, theirs = result[name], result[against]
        added = ours["c1"]["p50_ms"] - theirs["c1"]["p50_ms"]
        rows += [
            report.row(
                f"{label}: throughput, c=32 (ratio: median of each round's)",
                concordat=report.rate(ours["c32"]["throughput"], "calls/s")
                + f" (rounds: {', '.join(f'{r:.2f}' for r in per_round)}x)",
                baseline=report.rate(theirs["c32"]["throughput"], "calls/s"),
                ratio=statistics.median(per_round),
            ),
            report.row(
                f"{label}: p50 latency, c=1",
                concordat=f"{ours['c1']['p50_ms']:.2f} ms ({added:+.2f})",
                baseline=f"{theirs['c1']['p50_ms']:.2f} ms",
                ratio=ours["c1"]["p50_ms"] / theirs["c1"]["p50_ms"],
            ),
        ]
        rows += [
            report.row(
                f"{label}: CPU per exchange, c={c} (PostgreSQL backends counted)",
                concordat=f"{_cpu_ms(ours[f'c{c}']):.2f} ms",
                baseline=f"{_cpu_ms(theirs[f'c{c}']):.2f} ms",
                ratio=_cpu_ms(ours[f"c{c}"]) / _cpu_ms(theirs[f"c{c}"]),
            )
            for c in (32, 1)
        ]
    spent = result["provider_replica_cpu_seconds"]
    total = sum(spent.values()) or 1.0
    rows.append(
        report.row(
            "2 providing replicas on one port: share of the providing node's CPU each spent",
            concordat=", ".join(
                f"{label} {seconds / total:.0%} ({seconds:.1f} s)"
                for label, seconds in spent.items()
            ),
        )
    )
    return rows


def _append_rows(appends: dict[str, Any]) -> list[dict[str, Any]]:
    log, bare_rows, sqlite = (
        appends[path] for path in ("postgres_log", "postgres_bare", "sqlite_log")
    )
    shape = f"{appends['entries']:,} entries, concurrency {appends['concurrency']}"
    return [
        report.row(
            f"audit appends on PostgreSQL, committed and sealed ({shape})",
            concordat=report.rate(log["entries_per_s"], "entries/s")
            + f" (batches of {log['mean_batch']:.0f}; verified: {_yes(log['verified'])})",
            baseline=report.rate(bare_rows["entries_per_s"], "rows/s (bare PostgreSQL inserts)"),
            ratio=log["entries_per_s"] / bare_rows["entries_per_s"],
        ),
        report.row(
            "audit appends on PostgreSQL: cost per entry",
            concordat=_entry_cost(log),
            baseline=_entry_cost(bare_rows),
            ratio=_entry_cpu(log) / _entry_cpu(bare_rows),
        ),
        report.row(
            "audit appends on PostgreSQL against SQLite (SqliteAuditLog, same rounds)",
            concordat=report.rate(log["entries_per_s"], "entries/s"),
            baseline=report.rate(sqlite["entries_per_s"], "entries/s (SQLite, fsynced)"),
            ratio=log["entries_per_s"] / sqlite["entries_per_s"],
        ),
    ]


def _entry_cpu(figures: Mapping[str, float]) -> float:
    return figures["client_cpu_us_per_entry"] + figures["database_cpu_us_per_entry"]


def _entry_cost(figures: Mapping[str, float]) -> str:
    return (
        f"{figures['wall_us_per_entry']:.1f} µs wall; CPU {_entry_cpu(figures):.1f} µs "
        f"(appending process {figures['client_cpu_us_per_entry']:.1f}, "
        f"PostgreSQL backend {figures['database_cpu_us_per_entry']:.1f})"
    )


def _yes(holds: bool) -> str:
    return "yes" if holds else "**no**"
