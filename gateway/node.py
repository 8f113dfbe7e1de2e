"""The composition root: the one place a node is assembled from its configuration.

Nothing else in the gateway imports a concrete engine, adapter or audit store.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field

import grpc
import structlog
from grpc_health.v1 import health, health_pb2

from adapters.base import RecordSource
from adapters.registry import open_source
from gateway.audit.sqlite_log import SqliteAuditLog
from gateway.config import NodeConfig
from gateway.devpki import load_signing_key
from gateway.evidence import EvidenceRecorder
from gateway.identity import JwksFile, JwksUrl, ReplayCache, TokenVerifier
from gateway.idempotency import IdempotencyCache
from gateway.pipeline import Pipeline, local_get_stages, local_stream_stages
from gateway.policy import PolicyEngine
from gateway.policy.bundle import load_bundle
from gateway.policy.embedded import EmbeddedEngine
from gateway.policy.opa import OpaServerEngine
from gateway.server import EXCHANGE_SERVICE, build_exchange_server
from gateway.service import ExchangeService
from gateway.streaming import LocalBatches, ResumeTokens

log = structlog.get_logger("concordat.node")


@dataclass
class Node:
    """A running node: its servers and the collaborators they share."""

    config: NodeConfig
    server: grpc.aio.Server
    port: int
    health: health.aio.HealthServicer
    engine: PolicyEngine
    audit: SqliteAuditLog
    sources: list[RecordSource] = field(default_factory=list)

    @property
    def address(self) -> str:
        host = self.config.node.listen.rsplit(":", 1)[0]
        return f"{host}:{self.port}"

    async def start(self) -> None:
        await self.server.start()
        await self.health.set("", health_pb2.HealthCheckResponse.SERVING)
        await self.health.set(EXCHANGE_SERVICE, health_pb2.HealthCheckResponse.SERVING)
        log.info("node_started", node=self.config.node.name, address=self.address,
                 policy_revision=self.engine.revision)

    async def stop(self, grace: float = 2.0) -> None:
        """Stops taking calls, lets running ones finish, then closes what the node opened."""
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)
        await self.audit.close()
        await self.engine.close()
        for source in self.sources:
            await source.close()
        log.info("node_stopped", node=self.config.node.name)


def _build_engine(config: NodeConfig) -> PolicyEngine:
    bundle = load_bundle(list(config.policy.bundle))
    if config.policy.engine == "opa":
        assert config.policy.opa_url is not None  # noqa: S101 - checked by PolicyConfig
        return OpaServerEngine(
            url=config.policy.opa_url,
            timeout_seconds=config.policy.opa_timeout_seconds,
            revision=bundle.revision,
        )
    return EmbeddedEngine.compile(bundle)


def _build_verifier(config: NodeConfig) -> TokenVerifier:
    auth = config.auth
    jwks = JwksFile(auth.jwks_file) if auth.jwks_file else JwksUrl(auth.jwks_url or "")
    return TokenVerifier(
        issuer=auth.issuer,
        audience=auth.audience,
        administration=config.node.name,
        jwks=jwks,
        algorithms=auth.algorithms,
        leeway_seconds=auth.leeway_seconds,
        max_lifetime_seconds=auth.max_token_lifetime_seconds,
        replay_cache=ReplayCache(),
    )


async def _open_sources(config: NodeConfig) -> tuple[list[RecordSource], dict[str, RecordSource]]:
    opened: list[RecordSource] = []
    by_type: dict[str, RecordSource] = {}
    try:
        for name, source_config in config.sources.items():
            source = await open_source(source_config)
            opened.append(source)
            for record_type in source.record_types:
                if record_type in by_type:
                    raise ValueError(f"sources.{name}: {record_type} is already served by "
                                     "another source")
                by_type[record_type] = source
    except BaseException:
        for source in opened:
            await source.close()
        raise
    return opened, by_type


async def build_node(
    config: NodeConfig, *, sources: Mapping[str, RecordSource] | None = None
) -> Node:
    """Assembles a node from its configuration; refuses to build on any inconsistency.

    `sources` (record type -> source) replaces the configured adapters, for tests.
    """
    name = config.node.name
    verifier = _build_verifier(config)
    engine = _build_engine(config)
    subject_key = config.keys.subject_hash_key.read_bytes()
    signing_key = load_signing_key(config.keys.signing_key)
    if sources is None:
        opened, sources = await _open_sources(config)
    else:
        opened = []
    audit = await SqliteAuditLog.open(
        config.audit.path, node=name, signing_key=signing_key, max_batch=config.audit.max_batch
    )
    limits = config.limits
    evidence = EvidenceRecorder(
        node=name, audit=audit, subject_key=subject_key, policy_revision=engine.revision
    )
    idempotency = IdempotencyCache(
        max_entries=limits.idempotency_entries, ttl_seconds=limits.idempotency_ttl_seconds
    )
    common = {
        "node": name,
        "verifier": verifier,
        "engine": engine,
        "sources": sources,
        "min_deadline_seconds": limits.min_deadline_seconds,
        "max_batch_size": limits.max_stream_batch_size,
    }
    service = ExchangeService(
        get_pipeline=Pipeline(
            stages=local_get_stages(**common, idempotency=idempotency, pseudonym_key=subject_key),
            evidence=evidence,
            idempotency=idempotency,
            default_deadline_seconds=limits.default_deadline_seconds,
        ),
        stream_pipeline=Pipeline(
            stages=local_stream_stages(**common),
            evidence=evidence,
            default_deadline_seconds=limits.default_deadline_seconds,
        ),
        stream_batches=LocalBatches(
            sources=sources,
            tokens=ResumeTokens(subject_key),
            default_batch_size=limits.stream_batch_size,
        ),
    )
    server, port, health_servicer = build_exchange_server(
        service, listen=config.node.listen, tls=config.tls
    )
    return Node(config=config, server=server, port=port, health=health_servicer,
                engine=engine, audit=audit, sources=opened)


async def serve(config: NodeConfig, *, ready: asyncio.Event | None = None) -> None:
    """Runs a node until cancelled (Ctrl-C), then stops it gracefully."""
    node = await build_node(config)
    await node.start()
    if ready is not None:
        ready.set()
    try:
        await node.server.wait_for_termination()
    finally:
        await asyncio.shield(node.stop())

