"""The `concordat` command line: run nodes, mint development tokens, call, verify audit logs."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated

import grpc
import typer
from google.protobuf import json_format
from rich.console import Console
from rich.table import Table

from concordat.exchange.v1 import exchange_pb2
from gateway.cli_policy import policy_app
from gateway.clock import Clock, SystemClock
from gateway.config import ADMINISTRATIONS, ConfigError, load_config
from gateway.devstate import (
    DEFAULT_STATE_DIR,
    LOCAL_CONFIG_DIR,
    audience,
    prepare_federation,
    prepare_node,
)

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
audit_app = typer.Typer(no_args_is_help=True, help="Inspect and verify audit logs.")
app.add_typer(audit_app, name="audit")
directory_app = typer.Typer(no_args_is_help=True, help="Make and assemble the signed directory.")
app.add_typer(directory_app, name="directory")
app.add_typer(policy_app, name="policy")
console = Console()
err_console = Console(stderr=True)

StateDir = Annotated[Path, typer.Option(help="Development state folder (keys, certs, demo data).")]


def _fail(message: str) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code=1)


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
            loop.add_signal_handler(signum, task.cancel)  # type: ignore[union-attr]
        with contextlib.suppress(asyncio.CancelledError):
            await serve(node_config, clock=clock)

    from adapters.base import AdapterError

    try:
        asyncio.run(main())
    except (AdapterError, ConfigError) as exc:
        # A source whose mapping or database cannot serve refuses the start, saying why.
        raise _fail(f"the node cannot start: {exc}") from exc


def _wait_serving(address: str, ca_cert: Path, deadline: float) -> bool:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    credentials = grpc.ssl_channel_credentials(root_certificates=ca_cert.read_bytes())
    with grpc.secure_channel(address, credentials) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=0.5)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return True
            except grpc.RpcError:
                time.sleep(0.1)
    return False


@app.command()
def up(
    nodes: Annotated[str, typer.Option(help="Comma-separated nodes to start.")] = ",".join(
        ADMINISTRATIONS
    ),
) -> None:
    """Start the local federation on loopback with embedded defaults; Ctrl-C stops it.

    Uses deploy/local/<node>.toml; keys, certificates, demo data, audit logs and the signed
    directory are made on first run under .state/.
    """
    state_dir = DEFAULT_STATE_DIR
    names = [n.strip() for n in nodes.split(",") if n.strip()]
    unknown = [n for n in names if n not in ADMINISTRATIONS]
    if unknown:
        raise _fail(f"unknown node(s): {', '.join(unknown)}")
    console.print(f"preparing development state in {state_dir} ...")
    states = prepare_federation(state_dir)
    processes: dict[str, subprocess.Popen[bytes]] = {}
    logs_dir = state_dir / "logs"
    logs_dir.mkdir(parents=True, exist_ok=True)
    try:
        for name in names:
            log_file = (logs_dir / f"{name}.log").open("ab")
            processes[name] = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                [
                    sys.executable,
                    "-m",
                    "gateway.cli",
                    "node",
                    "--config",
                    str(states[name].config_path),
                ],
                stdout=log_file,
                stderr=log_file,
            )
        table = Table(title="Concordat federation (local)")
        for column in ("node", "exchange API", "log"):
            table.add_column(column)
        deadline = time.monotonic() + 30
        for name in names:
            config = load_config(states[name].config_path)
            address = config.node.listen
            if not _wait_serving(address, config.tls.ca_cert, deadline):
                raise _fail(f"{name} did not become ready; see {logs_dir / (name + '.log')}")
            table.add_row(name, address, str(logs_dir / f"{name}.log"))
        console.print(table)
        console.print(_example_call(state_dir))
        console.print("[bold]Ctrl-C stops every node.[/]")
        while all(p.poll() is None for p in processes.values()):
            time.sleep(0.5)
        dead = [n for n, p in processes.items() if p.poll() is not None]
        raise _fail(f"node(s) stopped unexpectedly: {', '.join(dead)}; see {logs_dir}")
    except KeyboardInterrupt:
        console.print("stopping ...")
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


def _example_call(state_dir: Path) -> str:
    from gateway.demo import demo_subjects

    births = demo_subjects(f"sqlite:///{state_dir / 'holyrood' / 'demo.db'}", "holyrood")
    registration = next(v for k, v in births["BIRTH_REGISTRATION"] if k == "registration_id")
    return (
        "Try a call from another terminal (DWP at whitehall asks holyrood for a birth):\n"
        "  .venv/bin/concordat call --node whitehall --organisation dwp "
        "--record-type BIRTH_REGISTRATION \\\n"
        f"    --subject registration_id={registration} --purpose CIVIL_REGISTRATION "
        "--agreement cr-dwp-nrs-births-2026 \\\n"
        "    --fields registration_id,given_name,family_name,date_of_birth"
    )


@app.command()
def token(
    node_name: Annotated[str, typer.Option("--node", help="The node the token is for.")],
    organisation: Annotated[str, typer.Option(help="Calling organisation, e.g. dwp.")],
    system: Annotated[str, typer.Option(help="Calling system, e.g. fraud-case-system.")],
    accreditation: Annotated[
        list[str] | None, typer.Option(help="An accreditation; repeat for several.")
    ] = None,
    ttl: Annotated[int, typer.Option(help="Lifetime in seconds.")] = 300,
    state_dir: StateDir = DEFAULT_STATE_DIR,
) -> None:
    """Mint a single-use development token for a demo caller (development issuer only)."""
    state = prepare_node(state_dir, node_name, seed_demo=False)
    typer.echo(
        state.issuer.mint(
            audience=audience(node_name),
            organisation=organisation,
            system=system,
            accreditations=accreditation or [],
            ttl_seconds=ttl,
        )
    )


_SUBJECT_KINDS = ("nino", "nhs_number", "chi_number", "hc_number", "uprn", "registration_id")


@app.command()
def call(
    node_name: Annotated[str, typer.Option("--node", help="The node to call.")],
    record_type: Annotated[str, typer.Option(help="e.g. BENEFIT_AWARD")],
    subject: Annotated[str, typer.Option(help="kind=value, e.g. nino=ZX123456A")],
    purpose: Annotated[str, typer.Option(help="e.g. FRAUD")],
    agreement: Annotated[str, typer.Option(help="The data sharing agreement id.")],
    fields: Annotated[str, typer.Option(help="Comma-separated fields you need.")],
    organisation: Annotated[str, typer.Option(help="Calling organisation.")] = "",
    system: Annotated[str, typer.Option(help="Calling system.")] = "concordat-cli",
    accreditation: Annotated[list[str] | None, typer.Option()] = None,
    case_reference: Annotated[str, typer.Option()] = "",
    token_value: Annotated[
        str, typer.Option("--token", help="A bearer token; minted by the dev issuer if unset.")
    ] = "",
    config: Annotated[
        Path | None, typer.Option(help="Node config (default deploy/local/<node>.toml).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the response as JSON.")] = False,
    state_dir: StateDir = DEFAULT_STATE_DIR,
) -> None:
    """Call a node's GetRecord as a departmental system and print the result readably."""
    kind, _, value = subject.partition("=")
    if kind not in _SUBJECT_KINDS or not value:
        raise _fail(f"--subject must be kind=value with kind one of {', '.join(_SUBJECT_KINDS)}")
    node_config = load_config(config or LOCAL_CONFIG_DIR / f"{node_name}.toml")
    request = exchange_pb2.GetRecordRequest(
        record_type=_enum(exchange_pb2.RecordType, "RECORD_TYPE_", record_type),
        purpose=_enum(exchange_pb2.Purpose, "PURPOSE_", purpose),
        agreement_id=agreement,
        case_reference=case_reference,
        idempotency_key=os.urandom(8).hex(),
    )
    if kind == "uprn":
        if not value.isdigit():
            raise _fail("--subject uprn must be digits")
        request.subject.uprn = int(value)
    else:
        setattr(request.subject, kind, value)
    request.field_mask.paths.extend(f.strip() for f in fields.split(",") if f.strip())
    if not token_value:
        state = prepare_node(state_dir, node_name, seed_demo=False)
        token_value = state.issuer.mint(
            audience=audience(node_name),
            organisation=organisation or "concordat-cli",
            system=system,
            accreditations=accreditation or [],
        )
    response = asyncio.run(_get_record(node_config, request, token_value))
    if isinstance(response, grpc.aio.AioRpcError):
        _print_error(response)
        raise typer.Exit(code=1)
    if as_json:
        typer.echo(json_format.MessageToJson(response))
        return
    _print_response(response)


def _enum(enum: object, prefix: str, name: str) -> int:
    try:
        return enum.Value(prefix + name.upper().replace("-", "_"))  # type: ignore[attr-defined]
    except ValueError as exc:
        known = ", ".join(n.removeprefix(prefix) for n in enum.keys()[1:])  # type: ignore[attr-defined]
        raise _fail(f"unknown value {name!r}; known: {known}") from exc


async def _get_record(
    node_config: object, request: exchange_pb2.GetRecordRequest, bearer: str
) -> exchange_pb2.GetRecordResponse | grpc.aio.AioRpcError:
    from gateway.client import ExchangeClient, secure_channel

    client = ExchangeClient(
        secure_channel(node_config.node.listen, node_config.tls.ca_cert),  # type: ignore[attr-defined]
        lambda: bearer,
    )
    try:
        return await client.get_record(request)
    except grpc.aio.AioRpcError as exc:
        return exc
    finally:
        await client.close()


def _print_error(error: grpc.aio.AioRpcError) -> None:
    from gateway.status import error_info

    info = error_info(error)
    err_console.print(f"[bold red]{error.code().name}[/]: {error.details()}")
    for key, value in sorted(info.items()):
        err_console.print(f"  {key}: {value}")


def _print_response(response: exchange_pb2.GetRecordResponse) -> None:
    console.print(f"exchange [bold]{response.exchange_id}[/] from {response.provider_node}")
    for index, record in enumerate(response.records, start=1):
        kind = record.WhichOneof("kind")
        table = Table(title=f"record {index}: {kind}")
        table.add_column("field")
        table.add_column("value")
        body = json_format.MessageToDict(getattr(record, kind), preserving_proto_field_name=True)
        for field_name, value in body.items():
            table.add_row(field_name, json.dumps(value) if isinstance(value, list) else str(value))
        if record.pseudonym:
            table.add_row("(pseudonym)", record.pseudonym)
        console.print(table)
    console.print(f"released fields: {', '.join(response.released_fields)}")
    for withheld in response.withheld:
        console.print(f"withheld: {withheld.field} ({withheld.rule})")
    for obligation in response.obligations:
        params = ", ".join(f"{k}={v}" for k, v in sorted(obligation.parameters.items()))
        console.print(f"obligation: {obligation.code} {params} - {obligation.description}")
    console.print(
        f"decisions: egress {response.egress_decision_id}, ingress {response.ingress_decision_id}"
    )


def _audit_log(config: Path | None, db: Path | None) -> Path:
    """The audit log file named by --config (its node's log) or --db, which must exist."""
    if (config is None) == (db is None):
        raise _fail("give exactly one of --config and --db")
    path = load_config(config).audit.path if config is not None else db
    assert path is not None  # noqa: S101 - one of the two was given
    if not path.exists():
        raise _fail(f"audit log {path} does not exist")
    return path


@audit_app.command("verify")
def audit_verify(
    config: Annotated[Path | None, typer.Option(help="Verify this node's audit log.")] = None,
    db: Annotated[Path | None, typer.Option(help="Or: an audit database file.")] = None,
    public_key: Annotated[
        Path | None, typer.Option(help="The node's Ed25519 public key (PEM) to check seals with.")
    ] = None,
) -> None:
    """Check an audit log's hash chain and signatures; say where it was altered."""
    from gateway.audit.verify import verify_log
    from gateway.keys import load_public_key, load_signing_key

    key = load_public_key(public_key) if public_key else None
    if key is None and config is not None:
        key = load_signing_key(load_config(config).keys.signing_key).public_key()
    db = _audit_log(config, db)
    report = verify_log(db, key)
    if report.ok:
        console.print(
            f"[green]ok[/]: {report.entries} entries, chain intact, "
            f"sealed up to {report.sealed_upto}"
        )
        return
    for problem in report.problems:
        err_console.print(f"[red]entry {problem.seq}[/]: {problem.what}")
    raise _fail(f"audit log {db} failed verification ({len(report.problems)} problem(s))")


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

    db = _audit_log(config, db)
    rows = read_meter(db, since=since, until=until, agreement_id=agreement, requester=requester)
    if as_json:
        for row in rows:
            typer.echo(json.dumps(row.as_dict()))
        return
    table = Table(
        "requester", "agreement", "role", "exchanges", "released", "denied", "records", "bytes"
    )
    for row in rows:
        table.add_row(
            row.requester,
            row.agreement_id or "(none)",
            row.role,
            *(f"{n:,}" for n in (row.exchanges, row.released, row.denied, row.records, row.bytes)),
        )
    console.print(table)


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
    console.print(f"wrote {out} with {len(entries)} entries")


if __name__ == "__main__":
    app()
