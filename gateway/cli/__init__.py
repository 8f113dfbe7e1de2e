"""The `concordat` command line: run a node, verify and meter audit logs, make the directory,
work on policies; and, for development, run the local federation, mint tokens and call a node
(gateway/cli/dev.py)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from gateway.cli import audit as audit_commands
from gateway.cli import dev
from gateway.cli.citizen import citizen_app

# Named apart from the `console` command's module, which as gateway.cli.console would
# shadow a `console` imported here.
from gateway.cli.common import console as stdout
from gateway.cli.common import err_console
from gateway.cli.common import fail as _fail
from gateway.cli.console import console as console_command
from gateway.cli.policy import policy_app
from gateway.cli.register import register_app
from gateway.clock import Clock, SystemClock
from gateway.config import ConfigError, NodeConfig, load_config

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
audit_app = typer.Typer(no_args_is_help=True, help="Inspect and verify audit logs.")
app.add_typer(audit_app, name="audit")
audit_app.command("reconcile")(audit_commands.reconcile)
audit_app.command("export-hashes")(audit_commands.export_hashes)
directory_app = typer.Typer(no_args_is_help=True, help="Make and assemble the signed directory.")
app.add_typer(directory_app, name="directory")
app.add_typer(policy_app, name="policy")
app.add_typer(register_app, name="register")
app.add_typer(citizen_app, name="citizen")
app.command("console")(console_command)
for command in (dev.up, dev.token, dev.citizen_token, dev.call):
    app.command()(command)
# `concordat extract` is the client kit's `concordat-extract` (clients/python), which `make
# setup` installs with its extract extra; without the kit there is no extract command.
with contextlib.suppress(ImportError):
    from concordat_client.extract import extract

    app.command()(extract)


@app.command()
def node(
    config: Annotated[Path, typer.Option("--config", "-c", help="The node's TOML configuration.")],
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING or ERROR.")] = "INFO",
) -> None:
    """Run one node, as an administration runs it in production."""
    run_node(config, log_level=log_level, clock=SystemClock())


def run_node(config: Path, *, log_level: str, clock: Clock) -> None:
    """Runs the node configured in `config` until SIGINT or SIGTERM, deciding by `clock`.

    `concordat node` passes the system clock; only test launchers pass another, no setting can.
    """
    from gateway.logs import configure_logging
    from gateway.node import serve

    configure_logging(log_level)
    try:
        node_config = load_config(config)
    except ConfigError as exc:
        raise _fail(str(exc)) from exc

    async def main() -> None:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, task.cancel)  # type: ignore[union-attr]  # main() is asyncio.run's task
        with contextlib.suppress(asyncio.CancelledError):
            await serve(node_config, clock=clock)

    from adapters.base import AdapterError
    from gateway.errors import Unavailable

    try:
        with asyncio.Runner(loop_factory=_loop_factory(node_config.node.event_loop)) as runner:
            runner.run(main())
    except (AdapterError, ConfigError) as exc:
        # A source whose mapping or database cannot serve refuses the start, saying why.
        raise _fail(f"the node cannot start: {exc}") from exc
    except Unavailable as exc:
        # The state store did not answer within the minute the node waits for it at start.
        raise _fail(f"the node cannot start: {exc.message}") from exc


def _loop_factory(event_loop: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop, or None for the standard library's (`[node] event_loop`)."""
    if event_loop != "uvloop":
        return None
    import uvloop

    return uvloop.new_event_loop


@contextlib.contextmanager
def _audit_log(config: Path | None, db: Path | None) -> Iterator[Path]:
    """The audit log file named by --config (its node's log) or --db, which must exist.

    A node whose log is in PostgreSQL has it exported first, from one snapshot, into a
    temporary SQLite file, which is read exactly as an embedded node's log is.
    """
    if (config is None) == (db is None):
        raise _fail("give exactly one of --config and --db")
    if config is not None:
        node_config = load_config(config)
        if node_config.state is not None:
            with tempfile.TemporaryDirectory(prefix="concordat-audit-") as directory:
                yield _export(node_config, Path(directory) / "audit.db")
            return
        db = node_config.audit.path
    assert db is not None  # noqa: S101 - one of the two was given
    if not db.exists():
        raise _fail(f"audit log {db} does not exist")
    yield db


def _export(node_config: NodeConfig, out: Path) -> Path:
    from gateway.audit.postgres_log import export_to_sqlite
    from gateway.keys import load_signing_key

    assert node_config.state is not None  # noqa: S101 - only a node with [state] exports
    key = load_signing_key(node_config.keys.signing_key).public_key()
    try:
        entries = export_to_sqlite(node_config.state.resolved_url(), out, public_key=key)
    except (OSError, ConfigError) as exc:
        raise _fail(f"the audit log cannot be exported: {exc}") from exc
    except Exception as exc:  # psycopg's errors: the database is unreachable or not a log
        raise _fail(f"the audit log cannot be read from PostgreSQL: {type(exc).__name__}") from exc
    err_console.print(f"exported {entries} entries from PostgreSQL to {out}")
    return out


@audit_app.command("export")
def audit_export(
    config: Annotated[Path, typer.Option(help="A node whose log is in PostgreSQL ([state]).")],
    out: Annotated[Path, typer.Option(help="The SQLite file to write (must not exist).")],
) -> None:
    """Copy a node's PostgreSQL audit log into one SQLite file, e.g. for an auditor."""
    node_config = load_config(config)
    if node_config.state is None:
        raise _fail("this node keeps its log in SQLite already: copy the file at audit.path")
    if out.exists():
        raise _fail(f"{out} already exists")
    _export(node_config, out)


@audit_app.command("verify")
def audit_verify(
    config: Annotated[Path | None, typer.Option(help="Verify this node's audit log.")] = None,
    db: Annotated[Path | None, typer.Option(help="Or: an audit database file.")] = None,
    public_key: Annotated[
        list[Path] | None,
        typer.Option(
            help="An Ed25519 public key (PEM) seals may be made with; repeat it for keys "
            "retired by rotation. With --config, the node's signing key and "
            "federation.publish_signing_keys are trusted too."
        ),
    ] = None,
) -> None:
    """Check an audit log's hash chain and signatures; say where it was altered."""
    from gateway.audit.verify import verify_log
    from gateway.keys import load_public_key, load_signing_key

    keys = [load_public_key(path) for path in public_key or ()]
    if config is not None:
        node_config = load_config(config)
        keys.append(load_signing_key(node_config.keys.signing_key).public_key())
        if node_config.federation is not None:
            keys += [load_public_key(p) for p in node_config.federation.publish_signing_keys]
    witnesses = audit_commands.witness_check(load_config(config)) if config is not None else None
    with _audit_log(config, db) as path:
        report = verify_log(path, keys or None, witnesses=witnesses)
    if report.ok:
        stdout.print(
            f"[green]ok[/]: {report.entries} entries, chain intact, "
            f"sealed up to {report.sealed_upto}"
        )
        for witness, upto in sorted(report.witnessed_upto.items()):
            stdout.print(f"witnessed by {witness} up to entry {upto}")
        if report.interrupted:
            stdout.print(f"{len(report.interrupted)} interrupted extract(s) (opened, never closed)")
        return
    for problem in report.problems:
        err_console.print(f"[red]entry {problem.seq}[/]: {problem.what}")
    raise _fail(f"the audit log failed verification ({len(report.problems)} problem(s))")


@audit_app.command("meter")
def audit_meter(
    config: Annotated[Path | None, typer.Option(help="This node's meter.")] = None,
    db: Annotated[Path | None, typer.Option(help="Or: an audit database file.")] = None,
    since: Annotated[str | None, typer.Option(help="First day counted (YYYY-MM-DD).")] = None,
    until: Annotated[str | None, typer.Option(help="Last day counted (YYYY-MM-DD).")] = None,
    agreement: Annotated[str | None, typer.Option(help="Only this agreement.")] = None,
    requester: Annotated[
        str | None, typer.Option(help="Only this requester, as organisation@administration.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """Exchanges, records and bytes per requester and agreement, for cost recovery."""
    from gateway.audit.meter import read_meter

    with _audit_log(config, db) as path:
        rows = read_meter(
            path, since=since, until=until, agreement_id=agreement, requester=requester
        )
    if as_json:
        for row in rows:
            typer.echo(json.dumps(row.as_dict()))
        return
    # Interrupted extracts are rare: their column is shown only when there are some, so the
    # usual table still fits an 80-column terminal.
    interrupted = any(row.interrupted for row in rows)
    columns = ["requester", "agreement", "role", "exchanges", "released", "denied", "records"]
    table = Table(*columns, "bytes", *(["interrupted"] if interrupted else []))
    for row in rows:
        counts = [row.exchanges, row.released, row.denied, row.records, row.bytes]
        table.add_row(
            row.requester,
            row.agreement_id or "(none)",
            row.role,
            *(f"{n:,}" for n in ([*counts, row.interrupted] if interrupted else counts)),
        )
    stdout.print(table)


@directory_app.command("entry")
def directory_entry(
    config: Annotated[Path, typer.Option(help="This node's configuration.")],
    serial: Annotated[int, typer.Option(help="Increase on every change of the entry.")] = 1,
) -> None:
    """Print this node's directory entry, signed with its administration's directory key."""
    from gateway.federation.enrolment import signed_directory_entry

    try:
        typer.echo(json.dumps(signed_directory_entry(load_config(config), serial=serial), indent=2))
    except ConfigError as exc:
        raise _fail(str(exc)) from exc


@directory_app.command("assemble")
def directory_assemble(
    entries: Annotated[list[Path], typer.Argument(help="Signed entry files, one per node.")],
    out: Annotated[Path, typer.Option(help="The directory file to write.")],
) -> None:
    """Assemble signed entries into the directory file every node loads."""
    from gateway.federation.directory import write_directory

    write_directory(out, [json.loads(path.read_text()) for path in entries])
    stdout.print(f"wrote {out} with {len(entries)} entries")
