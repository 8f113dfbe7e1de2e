"""`concordat audit reconcile` and `export-hashes`, and the witness checks `audit verify` makes.

Reconciliation compares this node's entries of its exchanges with a peer against the peer's
(over the federation, or from the peer's export) and exits 1 if they disagree.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from gateway.audit.chain import timestamp
from gateway.audit.verify import WitnessCheck
from gateway.cli.common import console, fail
from gateway.config import ConfigError, NodeConfig, load_config
from gateway.federation.directory import Directory, DirectoryError
from gateway.keys import load_public_key

# How long past its due round a witness signature may be missing before verify says so.
_WITNESS_SLACK_SECONDS = 30.0


def federation_directory(config: NodeConfig) -> Directory:
    """The signed directory the node's config names, verified against its trust anchors."""
    fed = config.federation
    if fed is None:
        raise ConfigError("this node is not federated: no [federation] section")
    try:
        anchors = {node: load_public_key(path) for node, path in fed.trust_anchors.items()}
        return Directory.load(fed.directory, anchors)
    except (OSError, ValueError, DirectoryError) as exc:
        raise ConfigError(f"federation directory {fed.directory} cannot be used: {exc}") from exc


def witness_check(config: NodeConfig, *, now: float | None = None) -> WitnessCheck | None:
    """What verify checks of the witness signatures a federated node holds: each verifies with
    its witness's published key, and every peer has signed each entry two rounds old."""
    fed = config.federation
    if fed is None:
        return None
    directory = federation_directory(config)
    interval = fed.witness_interval_seconds
    if interval <= 0:
        return WitnessCheck(keys=directory.signing_key)
    due = (time.time() if now is None else now) - 2 * interval - _WITNESS_SLACK_SECONDS
    return WitnessCheck(
        keys=directory.signing_key,
        expected=[node for node in directory.nodes if node != config.node.name],
        due_before=timestamp(due),
    )


def reconcile(
    config: Annotated[Path, typer.Option(help="This node's configuration.")],
    peer: Annotated[str, typer.Option(help="The peer node to reconcile with.")],
    export: Annotated[
        Path | None,
        typer.Option(help="The peer's export (audit export-hashes) instead of asking it."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="The report as one JSON object.")] = False,
) -> None:
    """Compare both sides of every exchange with a peer: one-sided, altered, truncated."""
    from gateway.audit.reconcile import local_exchanges
    from gateway.audit.reconcile import reconcile as compare
    from gateway.evidence.reconcile_peer import fetch_peer_log, read_export

    try:
        node_config = load_config(config)
        path = _audit_path(node_config)
        if export is not None:
            there = read_export(export)
        else:
            directory = federation_directory(node_config)
            there = asyncio.run(fetch_peer_log(node_config, directory, peer))
    except (ConfigError, ValueError, OSError) as exc:
        raise fail(str(exc)) from exc
    except Exception as exc:  # a peer that cannot be asked (gRPC, TLS), said plainly
        raise fail(f"cannot read {peer}'s exchange hashes: {exc}") from exc
    if there.node != peer:
        raise fail(f"the export is {there.node}'s, not {peer}'s")
    report = compare(node_config.node.name, local_exchanges(path, peer), there)
    if as_json:
        typer.echo(json.dumps(report.as_dict()))
    else:
        console.print(
            f"{report.node} ↔ {report.peer}: {report.exchanges_here:,} exchanges here,"
            f" {report.exchanges_there:,} there; {report.peer}'s chain ends at entry"
            f" {report.peer_head_seq:,}"
        )
        if report.findings:
            table = Table("finding", "exchange", "detail")
            for finding in report.findings:
                table.add_row(finding.kind, finding.exchange_id or "(log)", finding.detail)
            console.print(table)
        else:
            console.print("[green]ok[/]: both sides agree")
    if not report.ok:
        raise typer.Exit(code=1)


def export_hashes(
    config: Annotated[Path, typer.Option(help="This node's configuration.")],
    peer: Annotated[str, typer.Option(help="The peer the export is for.")],
    out: Annotated[Path, typer.Option(help="Where to write it (JSON).")],
) -> None:
    """Write the head and entry hashes of this node's exchanges with a peer, for it to reconcile."""
    from gateway.evidence.reconcile_peer import write_export

    try:
        node_config = load_config(config)
        count = write_export(out, node_config.node.name, _audit_path(node_config), peer)
    except (ConfigError, OSError) as exc:
        raise fail(str(exc)) from exc
    console.print(f"wrote {out}: {count:,} entries of exchanges with {peer}")


def _audit_path(config: NodeConfig) -> Path:
    path = config.audit.path
    if path is None or not path.exists():
        raise ConfigError(f"audit log {path} does not exist")
    return path
