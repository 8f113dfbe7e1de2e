"""What the console reads from each node, through the node's own public surfaces."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from gateway.api.client import secure_channel
from gateway.audit.meter import MeterRow, read_meter
from gateway.config import NodeConfig
from gateway.federation.directory import DirectoryEntry, DirectoryError
from gateway.federation.live_directory import LiveDirectory
from gateway.keys import load_public_key
from gateway.policy.bundle import PolicyBundleError
from gateway.register.entries import Register, RegisterUnreadable, load_register

_TIMEOUT_SECONDS = 2.0


@dataclass(frozen=True)
class NodeTarget:
    """Where one node is read, from its configuration."""

    name: str
    exchange_address: str
    ca_cert: Path
    metrics_url: str | None
    bundle: tuple[Path, ...]
    audit_path: Path | None
    serves_citizens: bool
    config: NodeConfig

    @classmethod
    def of(cls, config: NodeConfig) -> NodeTarget:
        metrics = config.metrics
        citizens = config.citizens
        fed = config.federation
        # The address the node publishes for callers, where it sets one (a listen address
        # such as 0.0.0.0:7401 is where it binds, not where it is reached).
        advertised = fed.advertise_exchange if fed is not None else None
        return cls(
            name=config.node.name,
            exchange_address=advertised or config.node.listen,
            ca_cert=config.tls.ca_cert,
            metrics_url=f"http://{metrics.listen}/metrics" if metrics is not None else None,
            bundle=config.policy.bundle,
            # On PostgreSQL state the meter is read with `concordat audit meter` instead.
            audit_path=config.audit.path if config.state is None else None,
            serves_citizens=citizens is not None and citizens.serves_citizens,
            config=config,
        )


@dataclass
class Count:
    labels: tuple[str, ...]
    value: float


@dataclass
class NodeReading:
    """One node as the console last read it; a part that could not be read says why."""

    name: str
    health: str = "unknown"
    revision: str = ""
    agreements_registered: int | None = None
    traffic: list[Count] = field(default_factory=list)
    denials: list[Count] = field(default_factory=list)
    breakers: list[Count] = field(default_factory=list)
    released: list[Count] = field(default_factory=list)
    meter: list[MeterRow] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


async def read_nodes(targets: Sequence[NodeTarget]) -> list[NodeReading]:
    """Every node read at once; one that is down never holds up the others."""
    async with aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=_TIMEOUT_SECONDS)
    ) as session:
        return list(await asyncio.gather(*(_read(target, session) for target in targets)))


async def _read(target: NodeTarget, session: aiohttp.ClientSession) -> NodeReading:
    reading = NodeReading(name=target.name)
    reading.health = await _health(target)
    if target.metrics_url is None:
        reading.problems.append("no [metrics] listen: traffic, denials and breakers unknown")
    else:
        await _metrics(target.metrics_url, session, reading)
    if target.audit_path is None:
        reading.problems.append("meter not read here: see concordat audit meter")
    elif target.audit_path.exists():
        try:
            reading.meter = await asyncio.to_thread(read_meter, target.audit_path)
        except (sqlite3.Error, OSError) as exc:
            reading.problems.append(f"meter unreadable: {type(exc).__name__}")
    return reading


async def _health(target: NodeTarget) -> str:
    try:
        async with secure_channel(target.exchange_address, target.ca_cert) as channel:
            answer = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=_TIMEOUT_SECONDS
            )
    except grpc.aio.AioRpcError as exc:
        return f"unreachable ({exc.code().name})"
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status))


# Counter samples and their labels, as the console shows them.
_TRAFFIC = ("concordat_agreement_exchanges_total", ("agreement", "role", "outcome"))
_DENIALS = ("concordat_denials_total", ("direction", "node", "rule"))
_RELEASED = ("concordat_records_released_total", ("agreement", "role", "rpc"))
_BREAKERS = ("concordat_peer_breaker_state", ("peer", "state"))


async def _metrics(url: str, session: aiohttp.ClientSession, reading: NodeReading) -> None:
    try:
        async with session.get(url) as response:
            response.raise_for_status()
            text = await response.text()
    except (aiohttp.ClientError, TimeoutError) as exc:
        reading.problems.append(f"metrics unreachable at {url}: {type(exc).__name__}")
        return
    wanted = {
        name: (labels, into)
        for (name, labels), into in (
            (_TRAFFIC, reading.traffic),
            (_DENIALS, reading.denials),
            (_RELEASED, reading.released),
            (_BREAKERS, reading.breakers),
        )
    }
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "concordat_policy_bundle_info":
                reading.revision = sample.labels.get("revision", "")
            elif sample.name == "concordat_policy_register_agreements":
                reading.agreements_registered = int(sample.value)
            elif sample.name in wanted and sample.value:
                labels, into = wanted[sample.name]
                into.append(Count(tuple(sample.labels.get(k, "") for k in labels), sample.value))
    for counts in (reading.traffic, reading.denials, reading.released):
        counts.sort(key=lambda c: (-c.value, c.labels))
    reading.breakers = [c for c in reading.breakers if c.value]


def read_directory(targets: Sequence[NodeTarget]) -> tuple[list[DirectoryEntry], str]:
    """The federation directory the first federated node trusts, verified; or why not."""
    for target in targets:
        fed = target.config.federation
        if fed is None:
            continue
        try:
            anchors = {node: load_public_key(path) for node, path in fed.trust_anchors.items()}
            directory = LiveDirectory(fed.directory, anchors)
        except (OSError, ValueError, DirectoryError) as exc:
            return [], f"directory {fed.directory} cannot be read: {type(exc).__name__}"
        return [directory.entry(node) for node in directory.nodes], ""
    return [], "no node given is federated"


def read_registers(targets: Sequence[NodeTarget]) -> tuple[list[Register], list[str]]:
    """Each node's register, from the bundle folders its configuration names."""
    registers: list[Register] = []
    problems: list[str] = []
    for target in targets:
        try:
            registers.append(load_register(list(target.bundle)))
        except (RegisterUnreadable, PolicyBundleError, OSError) as exc:
            problems.append(f"{target.name}: register unreadable ({exc})")
    return registers, problems
