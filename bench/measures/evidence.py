"""Evidence peers hold each other to (issue 18): what witnessing costs the cross-node path, and
what reconciling 100,000 exchanges between two nodes costs.

Witnessing: three pairs of nodes on the cross-node path (bench/concordat_paths.py), with
`witness_interval_seconds` 0 (off), 10 (six times the default rate) and 1 (sixty times: each
measurement then carries dozens of witnessing rounds under load), their rounds interleaved and
each pair first in one round; each pair's c=32 throughput is judged against the pair without
witnessing in the same round, on the median of those ratios. The target is judged at 10 s.

Reconciling: N exchanges (100,000; 1,000 in smoke mode) written into both nodes' audit logs as
the nodes write them (`SqliteAuditLog`, sealed and durable; the requesting node's entries pin
the provider's positions as receipts do), then the providing node started as a process and
`concordat audit reconcile`'s work timed in this process: the peer's entry hashes over mutual
TLS (ListExchangeHashes, a page at a time), this node's own entries read from its log, and the
comparison.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from bench import concordat_paths, report
from bench.clients import CONCURRENCIES, Endpoint, measure_unary, plan
from bench.load import medians

# Witnessing may cost at most this share of the throughput at c=32 without it.
WITNESS_COST = 0.02
# Each pair's interval; the one judged against WITNESS_COST is JUDGED_PAIR.
WITNESS_INTERVALS = {"witnessing_off": 0.0, "witnessing_10s": 10.0, "witnessing_1s": 1.0}
JUDGED_PAIR = "witnessing_10s"
RECONCILED_EXCHANGES = 100_000
_APPENDS_AT_ONCE = 2_000


def run(smoke: bool, workdir: Path) -> dict[str, Any]:
    if reason := concordat_paths.unavailable(concordat_paths.CROSS_NODE_ASK):
        return {"skipped": reason}
    witnessing = _witnessing(smoke, workdir / "witnessing")
    reconciling = _reconciling(1_000 if smoke else RECONCILED_EXCHANGES, workdir / "reconcile")
    return {
        "witnessing": witnessing,
        "reconcile": reconciling,
        "summary": _witnessing_rows(witnessing) + _reconcile_rows(reconciling),
    }


def _witnessing(smoke: bool, workdir: Path) -> dict[str, Any]:
    names = list(WITNESS_INTERVALS)
    with ExitStack() as stack:
        pairs = {
            name: stack.enter_context(_cross_node(workdir / name, witness_interval_seconds=seconds))
            for name, seconds in WITNESS_INTERVALS.items()
        }
        rounds = []
        for i in range(max(plan(smoke).rounds, len(names))):
            # Each pair goes first in one round: the order of a round moves its figures.
            order = names[i % len(names) :] + names[: i % len(names)]
            rounds.append(measure_unary({name: pairs[name] for name in order}, smoke, rounds=1))
    figures = {
        name: {f"c{c}": medians([r[name][f"c{c}"] for r in rounds]) for c in CONCURRENCIES}
        for name in names
    }
    paired = {
        name: [
            r[name]["c32"]["throughput"] / r["witnessing_off"]["c32"]["throughput"] for r in rounds
        ]
        for name in names[1:]
    }
    return {**figures, "c32_ratio_per_round": paired, "intervals_seconds": WITNESS_INTERVALS}


@contextmanager
def _cross_node(workdir: Path, *, witness_interval_seconds: float) -> Iterator[Endpoint]:
    """The cross-node path on two nodes of its own, witnessing at the given interval."""
    with _cross_node_nodes(workdir, witness_interval_seconds=witness_interval_seconds) as (
        nodes,
        _configs,
    ):
        ask = concordat_paths.CROSS_NODE_ASK
        yield concordat_paths._endpoint(
            nodes, ask, subject=concordat_paths._demo_subject(nodes, ask)
        )


Configs = dict[str, dict[str, Any]]


@contextmanager
def _cross_node_nodes(
    workdir: Path,
    *,
    witness_interval_seconds: float,
    before_start: Callable[[Path, Configs], None] | None = None,
    start: Sequence[str] | None = None,
) -> Iterator[tuple[dict[str, concordat_paths.RunningNode], Configs]]:
    """The cross-node path's two nodes (or those in `start`), `before_start` run on their state
    first; assembled from concordat_paths' own parts, as its running_nodes takes no setting."""
    from gateway.dev.state import prepare_node
    from gateway.testing import node_config_dict

    paths = concordat_paths
    ask = paths.CROSS_NODE_ASK
    names = [ask.provider, ask.node]
    state_dir = paths._state_dir(workdir)
    states = {name: prepare_node(state_dir, name) for name in names}
    configs = {}
    for name, state in states.items():
        federation = paths._federation_section(state_dir, name, names)
        federation["federation"]["witness_interval_seconds"] = witness_interval_seconds
        configs[name] = node_config_dict(
            state, state_dir, node={"listen": f"127.0.0.1:{paths._free_port()}"}, **federation
        )
    paths._write_directory(state_dir, configs)
    if before_start is not None:
        before_start(state_dir, configs)
    with ExitStack() as stack:
        nodes = {
            name: stack.enter_context(paths._running_node(state_dir, states[name], configs[name]))
            for name in (start or names)
        }
        yield nodes, configs


def _reconciling(count: int, workdir: Path) -> dict[str, Any]:
    from gateway.audit.reconcile import local_exchanges, reconcile
    from gateway.config import parse_config
    from gateway.evidence.reconcile_peer import fetch_peer_log
    from gateway.federation.directory import Directory
    from gateway.keys import load_public_key

    ask = concordat_paths.CROSS_NODE_ASK
    written: dict[str, float] = {}

    def write_logs(state_dir: Path, configs: Configs) -> None:
        from gateway.logs import configure_logging

        # The writer logs a line per entry, as a node does; here that is only noise.
        configure_logging("WARNING")
        started = time.perf_counter()
        asyncio.run(_write_exchanges(state_dir, configs, count))
        written["seconds"] = time.perf_counter() - started

    # Only the providing node need answer: the requesting node's log is read as a file.
    with _cross_node_nodes(
        workdir, witness_interval_seconds=0, before_start=write_logs, start=[ask.provider]
    ) as (_nodes, configs):
        state_dir = concordat_paths._state_dir(workdir)
        config = parse_config(configs[ask.node], base=state_dir)
        fed = config.federation
        assert fed is not None
        directory = Directory.load(
            fed.directory, {n: load_public_key(p) for n, p in fed.trust_anchors.items()}
        )
        started = time.perf_counter()
        there = asyncio.run(fetch_peer_log(config, directory, ask.provider))
        fetched = time.perf_counter()
        assert config.audit.path is not None
        here = local_exchanges(config.audit.path, ask.provider)
        read = time.perf_counter()
        result = reconcile(ask.node, here, there)
        compared = time.perf_counter()
    if not result.ok or result.exchanges_here != count or result.exchanges_there != count:
        raise AssertionError(f"the synthetic logs did not reconcile: {result.findings[:3]}")
    return {
        "exchanges": count,
        "write_both_logs_seconds": round(written["seconds"], 2),
        "fetch_seconds": round(fetched - started, 3),
        "read_own_seconds": round(read - fetched, 3),
        "compare_seconds": round(compared - read, 3),
        "total_seconds": round(compared - started, 3),
    }


async def _write_exchanges(state_dir: Path, configs: Configs, count: int) -> None:
    """`count` released exchanges in both logs, the requesting node's pinning the provider's."""
    from gateway.audit.sqlite_log import SqliteAuditLog
    from gateway.federation.directory import public_key_kid
    from gateway.keys import SigningKey, SigningKeys, load_signing_key

    ask = concordat_paths.CROSS_NODE_ASK

    async def opened(name: str) -> SqliteAuditLog:
        key = load_signing_key(Path(configs[name]["keys"]["signing_key"]))
        signing = SigningKeys(SigningKey.of(key, public_key_kid(name, key.public_key())))
        return await SqliteAuditLog.open(
            Path(configs[name]["audit"]["path"]), node=name, signing_key=signing
        )

    provider, requester = await opened(ask.provider), await opened(ask.node)
    common = {
        "requester": {
            "organisation": ask.organisation,
            "system": ask.system,
            "administration": ask.node,
        },
        "requesting_node": ask.node,
        "providing_node": ask.provider,
        "record_type": ask.record_type,
        "purpose": ask.purpose,
        "agreement_id": ask.agreement_id,
        "rpc": "GetRecord",
        "outcome": "released",
        "records": 1,
        "bytes": 120,
    }
    try:
        for start in range(0, count, _APPENDS_AT_ONCE):
            ids = [uuid.uuid4().hex for _ in range(min(_APPENDS_AT_ONCE, count - start))]
            positions = await asyncio.gather(
                *(
                    provider.append_entry({**common, "exchange_id": i, "role": "provider"})
                    for i in ids
                )
            )
            await asyncio.gather(
                *(
                    requester.append_entry(
                        {
                            **common,
                            "exchange_id": i,
                            "role": "caller",
                            "receipt": "(synthetic)",
                            "peer_log": {"seq": p.seq, "hash": p.hash},
                        }
                    )
                    for i, p in zip(ids, positions, strict=True)
                )
            )
    finally:
        await provider.close()
        await requester.close()


def _witnessing_rows(witnessing: dict[str, Any]) -> list[dict[str, Any]]:
    off = witnessing["witnessing_off"]
    rows = []
    for name, per_round in witnessing["c32_ratio_per_round"].items():
        on = witnessing[name]
        seconds = WITNESS_INTERVALS[name]
        ratio = statistics.median(per_round)
        judged = name == JUDGED_PAIR
        cpu, base_cpu = (
            f["c32"]["servers_cpu_ms_per_call"] + f["c32"]["client_cpu_ms_per_call"]
            for f in (on, off)
        )
        rows += [
            report.row(
                f"cross-node exchange witnessed every {seconds:g} s: throughput, c=32 "
                "(ratio: median of each round's)",
                concordat=report.rate(on["c32"]["throughput"], "calls/s")
                + f" (rounds: {', '.join(f'{r:.3f}' for r in per_round)}x)",
                baseline=report.rate(off["c32"]["throughput"], "calls/s") + " (witnessing off)",
                ratio=ratio,
                target=(
                    f"≥ {1 - WITNESS_COST:.2f}x witnessing off" if judged else report.NOT_APPLICABLE
                ),
                met=ratio >= 1 - WITNESS_COST if judged else None,
            ),
            report.row(
                f"cross-node exchange witnessed every {seconds:g} s: CPU per call, c=32",
                concordat=f"{cpu:.2f} ms (caller and both nodes)",
                baseline=f"{base_cpu:.2f} ms (witnessing off)",
                ratio=cpu / base_cpu,
            ),
        ]
    return rows


def _reconcile_rows(reconciling: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        report.row(
            f"reconcile {reconciling['exchanges']:,} exchanges between two nodes",
            concordat=(
                f"{reconciling['total_seconds']:.2f} s: peer's hashes over mTLS "
                f"{reconciling['fetch_seconds']:.2f} s, own log "
                f"{reconciling['read_own_seconds']:.2f} s, comparison "
                f"{reconciling['compare_seconds']:.2f} s"
            ),
        )
    ]
