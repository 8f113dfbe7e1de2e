"""`concordat up`, `token` and `call`: the development commands (embedded defaults, dev issuer).

They read and write the development state under .state/ (gateway/dev); a production node is run
with `concordat node` alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import grpc
import typer
from google.protobuf import json_format
from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper
from rich.table import Table

from concordat.exchange.v1 import exchange_pb2
from gateway.cli.common import console, err_console
from gateway.cli.common import fail as _fail
from gateway.config import ADMINISTRATIONS, NodeConfig, load_config
from gateway.dev.state import (
    DEFAULT_STATE_DIR,
    LOCAL_CONFIG_DIR,
    audience,
    citizen_audience,
    citizen_issuer,
    prepare_federation,
    prepare_node,
)

StateDir = Annotated[Path, typer.Option(help="Development state folder (keys, certs, demo data).")]


def _serving(address: str, ca_cert: Path) -> bool:
    """One health check: True if the node at `address` answers SERVING."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    credentials = grpc.ssl_channel_credentials(root_certificates=ca_cert.read_bytes())
    with grpc.secure_channel(address, credentials) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=0.5
            )
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


# A node that dies within _QUICK_EXIT_SECONDS of starting failed quickly. `up` restarts a dead
# node after _RESTART_DELAYS[0], and after each quick failure in a row waits the next delay;
# when the restart after the last delay fails quickly too, it leaves the node stopped.
_QUICK_EXIT_SECONDS = 30.0
_RESTART_DELAYS = (1.0, 2.0, 4.0)
_LOG_TAIL_LINES = 5


@dataclass
class _NodeProcess:
    """One node `up` runs as a child process, and how its recent restarts went."""

    name: str
    config_path: Path
    address: str
    ca_cert: Path
    log_path: Path
    pid_path: Path
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    quick_exits: int = 0
    restart_at: float = 0.0
    recovering: bool = False
    given_up: bool = False

    def start(self) -> int:
        """Starts the node's process; returns its pid."""
        # Its own session: Ctrl-C reaches `up` alone, which stops the nodes it runs (and
        # does not mistake a node stopping on Ctrl-C for a node that died).
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                [sys.executable, "-m", "gateway.cli", "node", "--config", str(self.config_path)],
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        self.started_at = time.monotonic()
        self.pid_path.write_text(f"{self.process.pid}\n")
        return self.process.pid

    def exit_code(self) -> int | None:
        """The node process's exit code once it has exited; None while it runs."""
        return None if self.process is None else self.process.poll()

    def wait_ready(self, deadline: float) -> bool:
        """Waits until the node serves; False if it exits or the deadline passes first."""
        assert self.process is not None  # noqa: S101 - started before it is awaited
        while time.monotonic() < deadline and self.process.poll() is None:
            if _serving(self.address, self.ca_cert):
                return True
            time.sleep(0.1)
        return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.pid_path.unlink(missing_ok=True)

    def by_hand(self) -> str:
        """The command that starts this node by hand, as the user would type it here."""
        concordat = Path(sys.executable).parent / "concordat"
        program = _here(concordat) if concordat.exists() else f"{sys.executable} -m gateway.cli"
        return f"{program} node --config {_here(self.config_path)}"


def _here(path: Path) -> str:
    """`path` relative to the working directory when it is below it, else absolute."""
    with contextlib.suppress(ValueError):
        return str(path.relative_to(Path.cwd()))
    return str(path)


def _log_tail(path: Path, lines: int) -> list[str]:
    with contextlib.suppress(OSError), path.open("rb") as log:
        log.seek(max(0, log.seek(0, os.SEEK_END) - 16_384))
        return log.read().decode(errors="replace").splitlines()[-lines:]
    return []


def _report_exit(node: _NodeProcess, code: int) -> None:
    """Says which node stopped, how, and how its log ends."""
    assert node.process is not None  # noqa: S101 - only a started node exits
    how = (
        f"was killed by {signal.Signals(-code).name} (exit code {code})"
        if code < 0
        else f"exited with code {code}"
    )
    err_console.print(f"[bold red]{node.name}[/] (pid {node.process.pid}) {how}")
    err_console.print(f"  its log: {node.log_path}", markup=False, highlight=False, soft_wrap=True)
    for line in _log_tail(node.log_path, _LOG_TAIL_LINES):
        err_console.print(f"  | {line}", markup=False, highlight=False, soft_wrap=True)


def _supervise(nodes: list[_NodeProcess]) -> None:
    """Until interrupted: reports a node that stops, keeps the others serving, restarts it."""
    while True:
        for node in nodes:
            if not node.given_up:
                _check(node, time.monotonic())
        time.sleep(0.5)


def _check(node: _NodeProcess, now: float) -> None:
    if node.process is None:
        if now >= node.restart_at:
            console.print(f"restarted {node.name} (pid {node.start()})")
        return
    code = node.process.poll()
    if code is None:
        if node.recovering and _serving(node.address, node.ca_cert):
            node.recovering = False
            console.print(f"[green]{node.name} is serving again[/] on {node.address}")
        return
    _report_exit(node, code)
    node.process = None
    node.pid_path.unlink(missing_ok=True)
    node.recovering = True
    node.quick_exits = node.quick_exits + 1 if now - node.started_at < _QUICK_EXIT_SECONDS else 1
    if node.quick_exits > len(_RESTART_DELAYS):
        node.given_up = True
        err_console.print(
            f"[bold red]{node.name} died within {_QUICK_EXIT_SECONDS:g} s of each of "
            f"{len(_RESTART_DELAYS)} restarts in a row: not restarting it.[/] The other nodes "
            "keep serving. Once its log says what to fix, start it in another terminal with:"
        )
        err_console.print(f"  {node.by_hand()}", markup=False, highlight=False, soft_wrap=True)
        return
    delay = _RESTART_DELAYS[node.quick_exits - 1]
    node.restart_at = now + delay
    err_console.print(f"the other nodes keep serving; restarting {node.name} in {delay:g} s")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def up(
    nodes: Annotated[str, typer.Option(help="Comma-separated nodes to start.")] = ",".join(
        ADMINISTRATIONS
    ),
) -> None:
    """Start the local federation on loopback with embedded defaults; Ctrl-C stops it.

    Uses deploy/local/<node>.toml; keys, certificates, demo data, audit logs and the signed
    directory are made on first run under .state/. A node that dies is reported and restarted
    while the others keep serving; each node's pid is in .state/run/<node>.pid.
    """
    state_dir = DEFAULT_STATE_DIR
    names = [n.strip() for n in nodes.split(",") if n.strip()]
    unknown = [n for n in names if n not in ADMINISTRATIONS]
    if unknown:
        raise _fail(f"unknown node(s): {', '.join(unknown)}")
    # The nodes run in sessions of their own, so `up` alone stops them: on Ctrl-C, on `kill`
    # (even when started in the background, where SIGINT starts ignored) and when the terminal
    # closes (unless under nohup).
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        if signum != signal.SIGHUP or signal.getsignal(signum) is not signal.SIG_IGN:
            signal.signal(signum, _interrupt)
    console.print(f"preparing development state in {state_dir} ...")
    states = prepare_federation(state_dir)
    for folder in ("logs", "run"):
        (state_dir / folder).mkdir(parents=True, exist_ok=True)
    running: list[_NodeProcess] = []
    for name in names:
        config = load_config(states[name].config_path)
        running.append(
            _NodeProcess(
                name=name,
                config_path=states[name].config_path,
                address=config.node.listen,
                ca_cert=config.tls.ca_cert,
                log_path=state_dir / "logs" / f"{name}.log",
                pid_path=state_dir / "run" / f"{name}.pid",
            )
        )
    try:
        pids = {node.name: node.start() for node in running}
        deadline = time.monotonic() + 30
        for node in running:
            if not node.wait_ready(deadline):
                if (code := node.exit_code()) is not None:
                    _report_exit(node, code)
                raise _fail(f"{node.name} did not become ready; see {node.log_path}")
        table = Table(title="Concordat federation (local)")
        for column in ("node", "exchange API", "pid", "log"):
            table.add_column(column)
        for node in running:
            table.add_row(node.name, node.address, str(pids[node.name]), str(node.log_path))
        console.print(table)
        # Printed as is, never re-wrapped to the terminal, so it can be pasted.
        console.print(_example_call(state_dir), soft_wrap=True, markup=False, highlight=False)
        console.print("[bold]Ctrl-C stops every node.[/]")
        _supervise(running)
    except KeyboardInterrupt:
        console.print("stopping ...")
    finally:
        for node in running:
            if node.process is not None and node.process.poll() is None:
                node.process.send_signal(signal.SIGTERM)
        for node in running:
            node.stop()


def _example_call(state_dir: Path) -> str:
    """A first call to paste: lines under 80 columns, each but the last ending in ` \\`."""
    from gateway.dev.demo import demo_subjects

    births = demo_subjects(f"sqlite:///{state_dir / 'holyrood' / 'demo.db'}", "holyrood")
    registration = next(v for k, v in births["BIRTH_REGISTRATION"] if k == "registration_id")
    return (
        "Try a call from another terminal (DWP at whitehall asks holyrood for a birth):\n"
        "  .venv/bin/concordat call --node whitehall --organisation dwp \\\n"
        "    --record-type BIRTH_REGISTRATION \\\n"
        f"    --subject registration_id={registration} \\\n"
        "    --purpose CIVIL_REGISTRATION --agreement cr-dwp-nrs-births-2026 \\\n"
        "    --fields registration_id,given_name,family_name,date_of_birth"
    )


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
_CITIZEN_KINDS = ("nino", "nhs_number", "chi_number", "hc_number")


def citizen_token(
    node_name: Annotated[str, typer.Option("--node", help="The citizen's administration.")],
    identifier: Annotated[
        list[str],
        typer.Option(help="kind=value the provider verified, e.g. nino=ZX123456A; repeatable."),
    ],
    person: Annotated[str, typer.Option(help="Who the citizen is to the provider.")] = "demo",
    ttl: Annotated[int, typer.Option(help="Lifetime in seconds.")] = 300,
    state_dir: StateDir = DEFAULT_STATE_DIR,
) -> None:
    """Mint a single-use token of the development citizen identity provider (demo only)."""
    verified: dict[str, list[str]] = {}
    for item in identifier:
        kind, _, value = item.partition("=")
        if kind not in _CITIZEN_KINDS or not value:
            raise _fail(f"--identifier must be kind=value, kind one of {', '.join(_CITIZEN_KINDS)}")
        verified.setdefault(kind, []).append(value)
    prepare_node(state_dir, node_name, seed_demo=False)
    typer.echo(
        citizen_issuer(state_dir, node_name).mint_citizen(
            audience=citizen_audience(node_name),
            person=person,
            identifiers=verified,
            ttl_seconds=ttl,
        )
    )


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


def _enum(enum: EnumTypeWrapper, prefix: str, name: str) -> str:
    """The value's full name, which a request message takes for the value; unknown ones fail."""
    label = prefix + name.upper().replace("-", "_")
    if label not in enum.keys():
        known = ", ".join(n.removeprefix(prefix) for n in enum.keys()[1:])
        raise _fail(f"unknown value {name!r}; known: {known}")
    return label


async def _get_record(
    node_config: NodeConfig, request: exchange_pb2.GetRecordRequest, bearer: str
) -> exchange_pb2.GetRecordResponse | grpc.aio.AioRpcError:
    from gateway.api.client import ExchangeClient, secure_channel

    client = ExchangeClient(
        secure_channel(node_config.node.listen, node_config.tls.ca_cert),
        lambda: bearer,
    )
    try:
        return await client.get_record(request)
    except grpc.aio.AioRpcError as exc:
        return exc
    finally:
        await client.close()


def _print_error(error: grpc.aio.AioRpcError) -> None:
    from gateway.api.status import error_info

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
