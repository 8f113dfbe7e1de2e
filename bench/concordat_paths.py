"""Real Concordat nodes for the benchmarks, each a child process run as operators run it.

A node is started with `python -m gateway.cli node --config <file>`, its config written from
`gateway.testing.node_config_dict` on a chosen loopback port, and is ready once its health check
says SERVING. The asks below name agreements in the registers under `policies/`: a measure whose
agreement is missing is skipped with that reason, and a refused call fails the measure (with
the denying rule) rather than timing the denial path.

The gateway's node-side modules are imported inside the functions that need them, so the bare
measures still run while the node cannot be imported.
"""

from __future__ import annotations

import importlib
import json
import random
import re
import socket
import time
import tomllib
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.children import REPO_ROOT, ChildFailed, log_tail, python_module, spawned
from bench.clients import Endpoint
from bench.memory import seconds_until_serving
from concordat.exchange.v1 import exchange_pb2
from gateway.config import LimitsConfig

if TYPE_CHECKING:
    from gateway.dev.state import LocalNodeState


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
POSTGRES_SERVER = "host=127.0.0.1 port=5432 user=postgres connect_timeout=3"


@dataclass(frozen=True)
class Ask:
    """A departmental system and what it asks for, under which registered agreement.

    The fields asked for are the agreement's data items for the record type, read from the
    providing administration's register.
    """

    node: str
    provider: str
    organisation: str
    system: str
    record_type: str
    purpose: str
    agreement_id: str
    accreditations: tuple[str, ...] = ()


LOCAL_ASK = Ask(
    node="whitehall",
    provider="whitehall",
    organisation="dwp",
    system="bereavement-service",
    record_type="DEATH_REGISTRATION",
    purpose="CIVIL_REGISTRATION",
    agreement_id="cr-dwp-gro-deaths-2026",
)
CROSS_NODE_ASK = Ask(
    node="whitehall",
    provider="holyrood",
    organisation="dwp",
    system="child-benefit-claims",
    record_type="BIRTH_REGISTRATION",
    purpose="CIVIL_REGISTRATION",
    agreement_id="cr-dwp-nrs-births-2026",
)
# Bulk extracts need an agreement registered with `bulk: true` and a record type that
# gateway.dev.demo.seed_bulk can seed in bulk. Across two nodes: DWP (whitehall) matches the
# Department for Communities' (stormont) benefit awards against fraud.
BULK_ASK = Ask(
    node="whitehall",
    provider="stormont",
    organisation="dwp",
    system="fraud-data-matching",
    record_type="BENEFIT_AWARD",
    purpose="FRAUD",
    agreement_id="fraud-dwp-dfc-benefits-2026",
)
# Records of about 200 bytes, the size issue 6 names: the Office for National Statistics
# (whitehall) extracts the Northern Ireland death registrations GRONI (stormont) holds, for
# mortality statistics, with each medical certificate's cause of death in full.
DEATHS_BULK_ASK = Ask(
    node="whitehall",
    provider="stormont",
    organisation="ons",
    system="mortality-statistics",
    record_type="DEATH_REGISTRATION",
    purpose="STATISTICS",
    agreement_id="stats-ons-groni-deaths-2026",
)
# Through one node: the only bulk agreement whose parties share a node. Administrative Data
# Research Scotland's accredited researchers extract Social Security Scotland's awards; a
# research release is de-identified, so the nino is withheld.
LOCAL_BULK_ASK = Ask(
    node="holyrood",
    provider="holyrood",
    organisation="adr-scotland",
    system="benefit-take-up-study",
    record_type="BENEFIT_AWARD",
    purpose="RESEARCH",
    agreement_id="research-adrs-sss-benefits-2026",
    accreditations=("accredited-researcher",),
)


@dataclass(frozen=True)
class RunningNode:
    name: str
    address: str
    pid: int
    startup_seconds: float
    state: LocalNodeState


@dataclass(frozen=True)
class ConcordatPath:
    """An exchange path through real nodes: where the caller calls, and the nodes on the way."""

    endpoint: Endpoint
    nodes: Mapping[str, RunningNode]


def unavailable(ask: Ask) -> str | None:
    """Why this ask cannot be measured yet, or None when it can."""
    try:
        importlib.import_module("gateway.node")
        importlib.import_module("gateway.testing")
    except ImportError as exc:
        return f"the node cannot be assembled yet: {exc}"
    for node in dict.fromkeys((ask.node, ask.provider)):
        if ask.agreement_id not in _register(node)["agreements"]:
            return f"agreement {ask.agreement_id} is not in policies/{node}/data.json"
    return None


@contextmanager
def local_exchange(workdir: Path) -> Iterator[ConcordatPath]:
    """Caller -> node -> SQLite adapter, one node."""
    with running_nodes(workdir, [LOCAL_ASK.node]) as nodes:
        yield ConcordatPath(
            _endpoint(nodes, LOCAL_ASK, subject=_demo_subject(nodes, LOCAL_ASK)), nodes
        )


@contextmanager
def cross_node_exchange(workdir: Path) -> Iterator[ConcordatPath]:
    """Caller -> requesting node -> providing node -> SQLite adapter, over mutual TLS."""
    with running_nodes(
        workdir, [CROSS_NODE_ASK.provider, CROSS_NODE_ASK.node], federated=True
    ) as nodes:
        subject = _demo_subject(nodes, CROSS_NODE_ASK)
        yield ConcordatPath(_endpoint(nodes, CROSS_NODE_ASK, subject=subject), nodes)


@contextmanager
def bulk_exchange(
    workdir: Path, *, rows: int, database_url: str | None = None, ask: Ask = BULK_ASK
) -> Iterator[ConcordatPath]:
    """A StreamRecords extract of every record of the ask's type the provider holds.

    The provider's demo records plus `rows` bulk ones are read from `database_url` (an empty
    PostgreSQL database, seeded here) or, without one, from its SQLite demo file. Across two
    nodes for BULK_ASK and DEATHS_BULK_ASK, through one for LOCAL_BULK_ASK.
    """
    from gateway.dev.demo import seed_bulk, seed_demo_database
    from gateway.dev.state import prepare_node

    state = prepare_node(_state_dir(workdir), ask.provider)
    url = database_url or f"sqlite:///{state.demo_db}"
    if database_url is not None:
        seed_demo_database(url, ask.provider)
    seed_bulk(url, ask.provider, rows, record_type=ask.record_type)
    names = list(dict.fromkeys([ask.provider, ask.node]))
    with running_nodes(
        workdir, names, federated=len(names) > 1, database_urls={ask.provider: url}
    ) as nodes:
        yield ConcordatPath(_endpoint(nodes, ask, subject=None), nodes)


@contextmanager
def running_nodes(
    workdir: Path,
    names: Sequence[str],
    *,
    federated: bool = False,
    database_urls: Mapping[str, str] | None = None,
) -> Iterator[dict[str, RunningNode]]:
    """Starts the named nodes, in order, each in its own process; stops them on exit.

    Federated nodes share a directory of their signed entries, as `concordat up` makes it,
    listing only these nodes on this run's ports. A node named in `database_urls` serves its
    demo records from that database instead of its SQLite demo file: the same mapping, only
    the URL differs.
    """
    from gateway.dev.demo import demo_source_config
    from gateway.dev.state import prepare_node
    from gateway.testing import node_config_dict

    state_dir = _state_dir(workdir)
    states = {name: prepare_node(state_dir, name) for name in names}
    urls = database_urls or {}
    configs = {
        name: node_config_dict(
            state,
            state_dir,
            node={"listen": f"127.0.0.1:{_free_port()}"},
            **(_federation_section(state_dir, name, names) if federated else {}),
            **({"sources": {"demo": demo_source_config(urls[name], name)}} if name in urls else {}),
        )
        for name, state in states.items()
    }
    if federated:
        _write_directory(state_dir, configs)
    with ExitStack() as stack:
        yield {
            name: stack.enter_context(_running_node(state_dir, states[name], configs[name]))
            for name in names
        }


def _federation_section(state_dir: Path, node: str, members: Sequence[str]) -> dict[str, Any]:
    from gateway.config import load_config
    from gateway.dev.state import LOCAL_CONFIG_DIR

    # What each node serves is the development federation's own rule list.
    local = load_config(LOCAL_CONFIG_DIR / f"{node}.toml").federation
    assert local is not None
    return {
        "federation": {
            "listen": f"127.0.0.1:{_free_port()}",
            "directory": str(state_dir / "directory.json"),
            # Where prepare_node keeps each administration's directory keys.
            "directory_key": str(state_dir / node / "directory_key.pem"),
            "trust_anchors": {m: str(state_dir / m / "directory_public.pem") for m in members},
            "serves": [rule.model_dump() for rule in local.serves],
        }
    }


def _write_directory(state_dir: Path, configs: Mapping[str, dict[str, Any]]) -> None:
    from gateway.config import parse_config
    from gateway.federation.directory import write_directory
    from gateway.federation.enrolment import signed_directory_entry

    write_directory(
        state_dir / "directory.json",
        [
            signed_directory_entry(parse_config(config, base=state_dir), serial=1)
            for config in configs.values()
        ],
    )


@contextmanager
def _running_node(
    state_dir: Path, state: LocalNodeState, config: Mapping[str, Any]
) -> Iterator[RunningNode]:
    address = config["node"]["listen"]
    config_path = state_dir / f"{state.node}.toml"
    config_path.write_text(to_toml(config))
    log = state_dir / f"{state.node}.log"
    argv = python_module("gateway.cli", "node", "--config", str(config_path))
    started = time.perf_counter()
    with spawned(argv, log, ready_line=False) as process:
        try:
            seconds = seconds_until_serving(
                process, address, state.material.ca_cert, started=started
            )
        except ChildFailed as exc:
            raise ChildFailed(f"{exc}\n{log_tail(log)}") from exc
        yield RunningNode(
            name=state.node,
            address=address,
            pid=process.pid,
            startup_seconds=round(seconds, 3),
            state=state,
        )


def _endpoint(
    nodes: Mapping[str, RunningNode], ask: Ask, *, subject: tuple[str, str | int] | None
) -> Endpoint:
    from gateway.testing import get_request

    entry = nodes[ask.node]
    identifier = {subject[0]: subject[1]} if subject else {}
    request = get_request(
        ask.record_type,
        purpose=ask.purpose,
        agreement_id=ask.agreement_id,
        fields=_register(ask.provider)["agreements"][ask.agreement_id]["record_types"][
            ask.record_type
        ],
        case_reference="BENCH-CASE-0001",
        **identifier,
    )
    stream_request = exchange_pb2.StreamRecordsRequest(
        record_type=request.record_type,
        purpose=request.purpose,
        agreement_id=ask.agreement_id,
        field_mask=request.field_mask,
        case_reference=request.case_reference,
        batch_size=LimitsConfig().stream_batch_size,
        # Without a subject every node serving the record type is a candidate: name the one.
        provider_node=ask.provider if ask.provider != ask.node else "",
    )
    return Endpoint(
        address=entry.address,
        ca_cert=entry.state.material.ca_cert,
        pids=tuple(node.pid for node in nodes.values()),
        request=request,
        stream_request=stream_request,
        tokens=_token_minter(entry.state, ask),
    )


def _token_minter(state: LocalNodeState, ask: Ask) -> Callable[[int], list[str]]:
    from gateway.dev.state import audience

    def mint(count: int) -> list[str]:
        return [
            state.issuer.mint(
                audience=audience(state.node),
                organisation=ask.organisation,
                system=ask.system,
                accreditations=ask.accreditations,
            )
            for _ in range(count)
        ]

    return mint


def _demo_subject(nodes: Mapping[str, RunningNode], ask: Ask) -> tuple[str, str | int]:
    from gateway.dev.demo import demo_subjects

    provider = nodes[ask.provider].state
    found = demo_subjects(f"sqlite:///{provider.demo_db}", provider.node)[ask.record_type]
    if not found:
        raise ValueError(f"{provider.node}'s demo data holds no {ask.record_type}")
    return found[0]


@contextmanager
def postgres_database(label: str, *, scheme: str = "postgresql+psycopg") -> Iterator[str]:
    """A new, empty database on the local PostgreSQL server, dropped on exit; yields its URL.

    The URL names SQLAlchemy's driver, as an adapter's does; `scheme="postgresql"` gives the
    plain libpq URL a node's `[state] url` takes. Raises PostgresUnavailable when the server
    cannot be reached.
    """
    import psycopg
    from psycopg import sql as pgsql

    name = f"concordat_bench_{label}_{uuid.uuid4().hex[:8]}"
    try:
        server = psycopg.connect(POSTGRES_SERVER, dbname="postgres", autocommit=True)
    except psycopg.OperationalError as exc:
        raise PostgresUnavailable(f"PostgreSQL on 127.0.0.1:5432 is unreachable: {exc}") from exc
    with server:
        server.execute(pgsql.SQL("CREATE DATABASE {}").format(pgsql.Identifier(name)))
    try:
        yield f"{scheme}://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(POSTGRES_SERVER, dbname="postgres", autocommit=True) as server:
            server.execute(
                pgsql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(pgsql.Identifier(name))
            )


class PostgresUnavailable(Exception):
    """The local PostgreSQL server (127.0.0.1:5432, trust authentication) cannot be reached."""


def _register(node: str) -> dict[str, Any]:
    return json.loads((REPO_ROOT / "policies" / node / "data.json").read_text())["register"]


def _state_dir(workdir: Path) -> Path:
    return workdir / "concordat-state"


def _free_port() -> int:
    """A port for a node's config, which peers name before the node starts.

    Taken below the kernel's ephemeral range: a port the kernel hands out (bind to port 0)
    can be taken again, before the node binds it, by the client end of any connection the
    bench opens meanwhile; a port below that range never is. Each is handed out once.
    """
    low = _ephemeral_low()
    while True:
        port = _PORTS.randrange(max(1024, low - 10_000), low)
        if port in _HANDED_OUT:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        _HANDED_OUT.add(port)
        return port


_PORTS = random.Random()  # noqa: S311 - spreading ports, not a secret
_HANDED_OUT: set[int] = set()


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def to_toml(config: Mapping[str, Any]) -> str:
    """The node config as TOML: one table per section, nested values inline (tomli-w is absent)."""
    lines = []
    for section, values in config.items():
        lines.append(f"[{_key(section)}]")
        lines.extend(f"{_key(key)} = {_value(value)}" for key, value in values.items())
        lines.append("")
    text = "\n".join(lines)
    if tomllib.loads(text) != json.loads(json.dumps(config, default=str)):
        raise ValueError("the TOML written does not read back as the config it was written from")
    return text


def _key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else json.dumps(key)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    # json.dumps escapes exactly as a TOML basic string does, for the text a config holds.
    return json.dumps(str(value))
