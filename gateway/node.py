"""The composition root: the one place a node is assembled from its configuration.

Nothing else in the gateway imports a concrete engine, adapter or audit store.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import grpc
import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from grpc_health.v1 import health, health_pb2
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_exponential

from adapters.base import RecordSource
from adapters.registry import open_source
from concordat.exchange.v1 import exchange_pb2
from gateway.api.evidence_service import EvidenceService
from gateway.api.exchange_service import ExchangeService
from gateway.api.federation_service import FederationService
from gateway.api.server import (
    EXCHANGE_SERVICE,
    ServerCertificates,
    add_evidence_service,
    add_federation_service,
    build_exchange_server,
)
from gateway.audit import AuditLog
from gateway.audit.grouping import AppendsDue, GroupCommit
from gateway.audit.sqlite_log import SqliteAuditLog
from gateway.citizen.service import TRANSPARENCY_SERVICE
from gateway.citizen.wiring import add_citizen_services, running_register
from gateway.clock import Clock, SystemClock
from gateway.config import ConfigError, FederationConfig, KeysConfig, NodeConfig, read_secret_key
from gateway.errors import Unavailable
from gateway.evidence import WitnessTally
from gateway.evidence.witness import Witness
from gateway.evidence.witnessing import HeadWitnessing
from gateway.federation.assertions import (
    AssertionSigner,
    AssertionVerifier,
    ReceiptSigner,
    ReceiptVerifier,
)
from gateway.federation.directory import DirectoryError, public_key_kid
from gateway.federation.live_directory import LiveDirectory
from gateway.federation.peers import PeerClients
from gateway.idempotency import IdempotencyCache
from gateway.identity import JwksFile, JwksUrl, ReplayCache, TokenVerifier
from gateway.keys import (
    SigningKey,
    SigningKeys,
    TlsMaterial,
    load_public_key,
    load_signing_key,
    load_tls_material,
)
from gateway.pipeline.batches import (
    AgreementWatch,
    CallerBatches,
    ChooseBatches,
    ExtractUnderWatch,
    LocalBatches,
    ResumeTokens,
)
from gateway.pipeline.evidence import EvidenceRecorder
from gateway.pipeline.observe import NoObserver, Observer, Observers
from gateway.pipeline.order import (
    NodeParts,
    PeerStages,
    caller_get_stages,
    caller_stream_stages,
    provider_get_stages,
    provider_stream_stages,
)
from gateway.pipeline.peer import AuthenticatePeer, SignedBatches, SignReceipt
from gateway.pipeline.relay import PeerMetadata, Relay, RemoteBatches, no_peer_metadata
from gateway.pipeline.routing import DirectoryProviders, NotFederated, OnlyThisNode, Providers
from gateway.pipeline.run import Pipeline
from gateway.pipeline.stages import Stage
from gateway.policy import PolicyEngine
from gateway.policy.bundle import PolicyBundle, load_bundle
from gateway.policy.cache import CacheCounts, CachingEngine
from gateway.policy.embedded import EmbeddedEngine, compile_in_subprocess
from gateway.policy.opa_readiness import BundleReadiness
from gateway.policy.reloading import LivePolicy
from gateway.rotation import Rotation
from gateway.state import IdempotencyStore, RateLimiter, ReplayGuard

if TYPE_CHECKING:
    from gateway.audit.postgres_log import PostgresAuditLog
    from gateway.observability.metrics import NodeMetrics
    from gateway.observability.tracing import TracingObserver
    from gateway.state.postgres import PostgresState

log = structlog.get_logger("concordat.node")


@dataclass
class Node:
    """A running node: its servers and the collaborators they share."""

    config: NodeConfig
    server: grpc.aio.Server
    port: int
    health: health.aio.HealthServicer
    engine: PolicyEngine
    audit: AuditLog
    sources: list[RecordSource] = field(default_factory=list)
    peers: PeerClients | None = None
    federation_port: int | None = None
    # Set when the node decides through an OPA sidecar: health follows its bundles.
    readiness: BundleReadiness | None = None
    # Set when the node serves metrics: their server starts and stops with the node.
    metrics: NodeMetrics | None = None
    # Set when the node traces: its last spans are exported as it stops.
    tracing: TracingObserver | None = None
    # Watches keys, certificates and the directory, and swaps in what changed.
    rotation: Rotation | None = None
    # Set on a federated node: it witnesses its peers' chain heads, and they witness its own
    # (gateway/evidence).
    witness: Witness | None = None
    witnessing: HeadWitnessing | None = None
    # Set when the node keeps its state in PostgreSQL: health follows the store's probe.
    state: PostgresState | None = None
    # What must hold for the node to serve; each is reported by its own watcher.
    _conditions: dict[str, bool] = field(default_factory=dict)
    _state_watch: asyncio.Task[None] | None = None

    @property
    def address(self) -> str:
        host = self.config.node.listen.rsplit(":", 1)[0]
        return f"{host}:{self.port}"

    async def start(self) -> None:
        if self.metrics is not None:
            await self.metrics.server.start()
        await self.server.start()
        if isinstance(self.engine, LivePolicy):
            self.engine.start_watching()
        if self.rotation is not None:
            self.rotation.start()
        if self.witnessing is not None:
            self.witnessing.start()
        # Serving only while every condition holds: the OPA sidecar's bundles, if there is
        # one, and the state store, if it is shared.
        self._conditions = {"policy": self.readiness is None, "state": True}
        if self.state is not None:
            self._conditions["state"] = await self.state.reachable()
            self._state_watch = asyncio.create_task(
                self._watch_state(self.state), name="concordat-state-probe"
            )
        await self._report_serving(all(self._conditions.values()))
        if self.readiness is not None:
            await self.readiness.start(self._report_policy_ready)
        log.info(
            "node_started",
            node=self.config.node.name,
            address=self.address,
            policy_revision=self.engine.revision,
            # Which loop runs the node ([node] event_loop): uvloop's or the standard library's.
            event_loop=type(asyncio.get_running_loop()).__module__.partition(".")[0],
        )

    async def stop(self, grace: float | None = None) -> None:
        """Says NOT_SERVING, stops taking calls, lets running ones finish within `grace`
        (default: the configured shutdown grace), then flushes the audit log and closes."""
        if grace is None:
            grace = self.config.node.shutdown_grace_seconds
        if self.readiness is not None:
            await self.readiness.close()
        if self._state_watch is not None:
            self._state_watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._state_watch
        if self.rotation is not None:
            await self.rotation.close()
        if self.witnessing is not None:
            await self.witnessing.close()
        await self.health.enter_graceful_shutdown()
        try:
            await self.server.stop(grace)
        finally:
            if self.metrics is not None:
                await self.metrics.server.stop()
            if self.peers is not None:
                await self.peers.close()
            await self.audit.close()
            if self.state is not None:
                await self.state.close()
            await self.engine.close()
            for source in self.sources:
                await source.close()
            if self.tracing is not None:
                await asyncio.to_thread(self.tracing.shutdown)
        log.info("node_stopped", node=self.config.node.name)

    async def _report_policy_ready(self, ready: bool) -> None:
        await self._report_condition("policy", ready)

    async def _report_condition(self, name: str, holds: bool) -> None:
        was_serving = all(self._conditions.values())
        self._conditions[name] = holds
        serving = all(self._conditions.values())
        if serving != was_serving:
            await self._report_serving(serving)

    async def _watch_state(self, state: PostgresState) -> None:
        """Probes the state store; health says NOT_SERVING while it does not answer."""
        interval = self.config.state.probe_interval_seconds if self.config.state else 1.0
        probes = 0
        while True:
            await asyncio.sleep(interval)
            reachable = await state.reachable()
            if reachable != self._conditions.get("state"):
                log.warning("state_store_reachable" if reachable else "state_store_unreachable")
                await self._report_condition("state", reachable)
            probes += 1
            # Expired replay ids and idempotency keys go about once a minute; any replica may.
            if reachable and probes % max(1, round(60 / interval)) == 0:
                with contextlib.suppress(Unavailable):
                    await state.forget_expired()

    async def _report_serving(self, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        await self.health.set("", status)
        await self.health.set(EXCHANGE_SERVICE, status)


def _build_engine(
    config: NodeConfig, cache_counts: CacheCounts
) -> tuple[PolicyEngine, BundleReadiness | None]:
    """The policy engine, and for an OPA sidecar the readiness the node's health follows."""
    policy = config.policy
    bundle = load_bundle(list(policy.bundle))
    if policy.engine == "opa":
        assert policy.opa_url is not None  # noqa: S101 - checked by PolicyConfig
        # Imported here: the OPA client and aiohttp cost every node ~12 MB of memory, and only
        # nodes that use an OPA server need them.
        from gateway.policy.opa import OpaServerEngine

        # The OPA server loads its own bundles; this node neither caches nor reloads them.
        opa = OpaServerEngine(
            url=policy.opa_url, timeout_seconds=policy.opa_timeout_seconds, revision=bundle.revision
        )
        return opa, BundleReadiness(
            opa.bundles_ready, interval_seconds=policy.opa_health_interval_seconds
        )

    def compiled(revision: PolicyBundle) -> PolicyEngine:
        engine = EmbeddedEngine.compile(revision)
        if policy.decision_cache_entries:
            return CachingEngine(
                engine, max_entries=policy.decision_cache_entries, counts=cache_counts
            )
        return engine

    live = LivePolicy(
        policy.bundle,
        bundle=bundle,
        build=compiled,
        check=compile_in_subprocess,
        interval_seconds=policy.reload_interval_seconds,
    )
    return live, None


def _build_tracing(config: NodeConfig) -> TracingObserver | None:
    if config.tracing is None:
        return None
    # Imported here: only a node that traces loads OpenTelemetry.
    from gateway.logs import join_traces
    from gateway.observability.tracing import TracingObserver

    join_traces()
    return TracingObserver.start(config.tracing, config.node.name)


def _build_metrics(
    config: NodeConfig,
    engine: PolicyEngine,
    cache_counts: CacheCounts,
    audit: SqliteAuditLog | PostgresAuditLog,
    peers: PeerClients | None,
    replay: ReplayGuard,
    idempotency: IdempotencyStore,
    witnessing: WitnessTally,
) -> NodeMetrics | None:
    if config.metrics is None:
        return None
    # Imported here: only a node that serves metrics loads prometheus-client.
    from gateway.observability.metrics import MetricSources, node_metrics

    live = engine if isinstance(engine, LivePolicy) else None
    sources = MetricSources(
        node=config.node.name,
        live=live,
        # An OPA sidecar loads the same folders: their register and rules label its metrics.
        bundle=live.bundle if live is not None else load_bundle(list(config.policy.bundle)),
        cache=cache_counts if live is not None and config.policy.decision_cache_entries else None,
        audit=audit,
        peers=peers,
        replay_cache=replay if isinstance(replay, ReplayCache) else None,
        idempotency=idempotency if isinstance(idempotency, IdempotencyCache) else None,
        certificates={"node": config.tls.cert, "ca": config.tls.ca_cert},
        witnessing=witnessing,
    )
    return node_metrics(sources, listen=config.metrics.listen)


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
                    raise ValueError(
                        f"sources.{name}: {record_type} is already served by another source"
                    )
                by_type[record_type] = source
    except BaseException:
        for source in opened:
            await source.close()
        raise
    return opened, by_type


async def build_node(
    config: NodeConfig,
    *,
    sources: Mapping[str, RecordSource] | None = None,
    clock: Clock | None = None,
) -> Node:
    """Assembles a node from its configuration; refuses to build on any inconsistency.

    `sources` (record type -> source) replaces the configured adapters, and `clock` the
    system clock policies decide by, for tests.
    """
    name = config.node.name
    subject_key, pseudonym_key = _read_hash_keys(config.keys)
    federation = _load_federation(config)
    verifier = _build_verifier(config)
    cache_counts = CacheCounts()
    engine, readiness = _build_engine(config, cache_counts)
    signing_key = load_signing_key(config.keys.signing_key)
    kid = public_key_kid(name, signing_key.public_key())
    # Read by every signer and the audit writer on each use; rotation replaces it.
    signing = SigningKeys(SigningKey.of(signing_key, kid))
    tls = _load_tls(config)
    if sources is None:
        opened, sources = await _open_sources(config)
    else:
        opened = []
    state = await _open_state(config, signing)
    audit = state.audit
    tracing = _build_tracing(config)
    peer_metadata: PeerMetadata = tracing.peer_metadata if tracing else no_peer_metadata
    limits = config.limits
    evidence = EvidenceRecorder(node=name, audit=audit, subject_key=subject_key, policy=engine)
    idempotency = state.idempotency
    local_batches = LocalBatches(
        sources=sources,
        tokens=ResumeTokens.keyed_from_signing_key(signing_key),
        default_batch_size=limits.stream_batch_size,
        pseudonym_key=pseudonym_key,
    )
    # A node that is not federated routes to itself alone; the null objects stand where the
    # federation's parts would, so no stage asks whether there is one.
    peers: PeerClients | None = None
    not_federated = NotFederated()
    providers: Providers = OnlyThisNode(name, frozenset(sources))
    relay: Stage = not_federated
    remote_batches: CallerBatches = not_federated.batches
    peer_stages: PeerStages | None = None
    if federation is not None:
        directory, fed = federation
        peers = PeerClients(
            directory=directory,
            tls=config.tls,
            breaker_failures=fed.breaker_failures,
            breaker_reset_seconds=fed.breaker_reset_seconds,
        )
        assertion_signer = AssertionSigner(name, signing, ttl_seconds=fed.assertion_ttl_seconds)
        receipt_verifier = ReceiptVerifier(directory.signing_key)
        providers = DirectoryProviders(directory)
        relay = Relay(
            peers=peers,
            signer=assertion_signer,
            receipts=receipt_verifier,
            attempts=fed.relay_attempts,
            peer_metadata=peer_metadata,
        )
        remote_batches = RemoteBatches(
            peers=peers,
            signer=assertion_signer,
            receipts=receipt_verifier,
            peer_metadata=peer_metadata,
        )
        receipt_signer = ReceiptSigner(name, signing)
        sign_receipt = SignReceipt(receipt_signer)
        peer_stages = PeerStages(
            authenticate_peer=AuthenticatePeer(
                node=name,
                directory=directory,
                verifier=AssertionVerifier(name, directory.signing_key),
                replay=state.peer_replay,
            ),
            sign_receipt=sign_receipt,
        )
    # Who watches the exchanges: metrics and traces, each when configured.
    witness_tally = WitnessTally()
    metrics = _build_metrics(
        config, engine, cache_counts, audit, peers, state.caller_replay, idempotency, witness_tally
    )
    observers: list[Observer] = []
    if metrics is not None:
        observers.append(metrics.observer)
    if tracing is not None:
        observers.append(tracing)
    observer: Observer = NoObserver()
    if len(observers) == 1:
        # Used as it is: Observers' exit stack around each stage costs more than metrics do.
        observer = observers[0]
    elif observers:
        observer = Observers(observers)
    parts = NodeParts(
        node=name,
        verifier=verifier,
        replay=state.caller_replay,
        engine=engine,
        sources=sources,
        idempotency=idempotency,
        pseudonym_key=pseudonym_key,
        limits=limits,
        clock=clock or SystemClock(),
        providers=providers,
        relay=relay,
        observer=observer,
    )

    def pipeline(
        stage_list: Sequence[Stage], *, dedupe: bool = False, recorder: EvidenceRecorder = evidence
    ) -> Pipeline:
        return Pipeline(
            stages=stage_list,
            evidence=recorder,
            idempotency=idempotency if dedupe else None,
            default_deadline_seconds=limits.default_deadline_seconds,
            observer=observer,
            appends_due=state.appends_due,
        )

    # Extracts leave an opening entry before their first batch and stop at the next batch
    # when a decision that let them start no longer holds (issue 18).
    watch = AgreementWatch(node=name, engine=engine, clock=parts.clock)
    service = ExchangeService(
        get_pipeline=pipeline(caller_get_stages(parts), dedupe=True),
        stream_pipeline=pipeline(caller_stream_stages(parts)),
        stream_batches=ExtractUnderWatch(
            ChooseBatches(name, local=local_batches, remote=remote_batches),
            evidence=evidence,
            watch=watch,
        ),
    )
    exchange_certificates = ServerCertificates(
        key_pem=tls.key_pem, cert_pem=tls.cert_pem, client_roots=None
    )
    server, port, health_servicer = build_exchange_server(
        service,
        listen=config.node.listen,
        certificates=exchange_certificates,
        share_port=config.node.share_port,
        connection_max_age_seconds=config.node.connection_max_age_seconds,
        reflected=(
            (TRANSPARENCY_SERVICE,)
            if config.citizens is not None and config.citizens.serves_citizens
            else ()
        ),
    )
    federation_port = None
    federation_certificates = None
    witness: Witness | None = None
    witnessing: HeadWitnessing | None = None
    if federation is not None and peer_stages is not None:
        directory, fed = federation
        federation_certificates = ServerCertificates(
            key_pem=tls.key_pem, cert_pem=tls.cert_pem, client_roots=directory.ca_bundle_pem()
        )
        federation_port = add_federation_service(
            server,
            FederationService(
                # A relay's receipt is signed once its entry is stored, and pins it.
                get_pipeline=pipeline(
                    provider_get_stages(parts, peer_stages),
                    recorder=evidence.with_after_entry(sign_receipt.pin),
                ),
                stream_pipeline=pipeline(provider_stream_stages(parts, peer_stages)),
                stream_batches=SignedBatches(
                    ExtractUnderWatch(local_batches, evidence=evidence, watch=watch),
                    receipt_signer,
                ),
            ),
            listen=fed.listen,
            certificates=federation_certificates,
        )
        witness, witnessing = _add_evidence_service(
            server, config=config, audit=audit, directory=directory, peers=peers, signing=signing
        )
        # The metrics read the live counts of what was just made.
        witness_tally.refused_to_sign = witness.refusals
        if witnessing is not None:
            witness_tally.refused_by = witnessing.refused
    # Citizens asking who used their data (gateway/citizen): SubjectSearch for member nodes on
    # the federation port; ListMyExchanges where [citizens] names an identity provider, whose
    # tokens are used once across replicas, as callers' are.
    add_citizen_services(
        server,
        config=config,
        audit=audit,
        subject_key=subject_key,
        register=running_register(engine, config),
        clock=parts.clock,
        directory=federation[0] if federation is not None else None,
        peers=peers,
        replay=_citizen_replay(config, state),
        limiter=_citizen_limiter(config, state),
    )
    rotation = Rotation(
        node=name,
        tls=config.tls,
        tls_material=tls,
        signing_key_path=config.keys.signing_key,
        signing_keys=signing,
        exchange_port=exchange_certificates,
        federation_port=federation_certificates,
        directory=federation[0] if federation is not None else None,
        peers=peers,
    )
    return Node(
        config=config,
        server=server,
        port=port,
        health=health_servicer,
        engine=engine,
        audit=audit,
        sources=opened,
        peers=peers,
        federation_port=federation_port,
        readiness=readiness,
        metrics=metrics,
        tracing=tracing,
        rotation=rotation,
        state=state.postgres,
        witness=witness,
        witnessing=witnessing,
    )


def _add_evidence_service(
    server: grpc.aio.Server,
    *,
    config: NodeConfig,
    audit: AuditLog,
    directory: LiveDirectory,
    peers: PeerClients | None,
    signing: SigningKeys,
) -> tuple[Witness, HeadWitnessing | None]:
    """Reconciliation and witnessing on the federation port; the rounds that ask the peers to
    witness this node's head (docs/evidence.md)."""
    name = config.node.name

    def current_key() -> tuple[Ed25519PrivateKey, str]:
        key = signing.current()
        return key.private, key.kid

    witness = Witness(node=name, audit=audit, current_key=current_key)
    add_evidence_service(server, EvidenceService(audit=audit, directory=directory, witness=witness))
    fed = config.federation
    if peers is None or fed is None:
        return witness, None
    return witness, HeadWitnessing(
        node=name,
        audit=audit,
        peers=peers,
        witnesses=lambda: [node for node in directory.nodes if node != name],
        witness_keys=directory.signing_key,
        interval_seconds=fed.witness_interval_seconds,
    )


@dataclass(frozen=True)
class _NodeState:
    """The state a node keeps: embedded (one process) or in PostgreSQL (shared by replicas)."""

    audit: SqliteAuditLog | PostgresAuditLog
    caller_replay: ReplayGuard
    peer_replay: ReplayGuard
    idempotency: IdempotencyStore
    # Counted by the unary pipelines, read by the audit writer (gateway/audit/grouping.py).
    appends_due: AppendsDue
    postgres: PostgresState | None = None


def _citizen_replay(config: NodeConfig, state: _NodeState) -> ReplayGuard:
    leeway = config.citizens.leeway_seconds if config.citizens is not None else 30.0
    if state.postgres is None:
        return ReplayCache(leeway_seconds=leeway)
    from gateway.state.postgres import PostgresReplayGuard

    return PostgresReplayGuard(state.postgres, scope="citizen", leeway_seconds=leeway)


def _citizen_limiter(config: NodeConfig, state: _NodeState) -> RateLimiter | None:
    """Replicas share their citizens' lookup budgets; one process keeps its own."""
    if state.postgres is None or config.citizens is None:
        return None
    from gateway.state.postgres import PostgresRateLimiter

    return PostgresRateLimiter(
        state.postgres,
        scope="citizen-lookups",
        per_hour=config.citizens.lookups_per_hour,
        burst=config.citizens.lookup_burst,
    )


def _grouping(config: NodeConfig) -> GroupCommit:
    return GroupCommit(
        delay_seconds=config.audit.group_commit_delay_ms / 1000,
        siblings=config.audit.group_commit_siblings,
    )


async def _open_state(config: NodeConfig, signing_key: SigningKeys) -> _NodeState:
    name, limits = config.node.name, config.limits
    appends_due = AppendsDue()
    if config.state is None:
        assert config.audit.path is not None  # noqa: S101 - required without [state]
        audit = await SqliteAuditLog.open(
            config.audit.path,
            node=name,
            signing_key=signing_key,
            max_batch=config.audit.max_batch,
            grouping=_grouping(config),
            appends_due=appends_due,
        )
        return _NodeState(
            audit=audit,
            appends_due=appends_due,
            caller_replay=ReplayCache(leeway_seconds=config.auth.leeway_seconds),
            # Assertions are checked with a 5 s leeway (gateway/federation/assertions.py).
            peer_replay=ReplayCache(leeway_seconds=5),
            idempotency=IdempotencyCache(
                max_entries=limits.idempotency_entries, ttl_seconds=limits.idempotency_ttl_seconds
            ),
        )
    # Imported here: only a node with shared state loads the PostgreSQL driver and pool.
    from gateway.audit.postgres_log import SCHEMA as AUDIT_SCHEMA
    from gateway.audit.postgres_log import PostgresAuditLog
    from gateway.state.postgres import PostgresIdempotency, PostgresReplayGuard, PostgresState

    url = config.state.resolved_url()
    postgres = await _retry_while_unreachable(
        lambda: PostgresState.open(
            url,
            node=name,
            pool_size=config.state.pool_size if config.state else 4,
            statement_timeout_seconds=config.state.statement_timeout_seconds
            if config.state
            else 2.0,
            schema=AUDIT_SCHEMA,
        )
    )
    return _NodeState(
        audit=PostgresAuditLog(
            url=url,
            node=name,
            signing_key=signing_key,
            max_batch=config.audit.max_batch,
            reads=postgres,
            grouping=_grouping(config),
            appends_due=appends_due,
        ),
        appends_due=appends_due,
        caller_replay=PostgresReplayGuard(
            postgres, scope="caller", leeway_seconds=config.auth.leeway_seconds
        ),
        peer_replay=PostgresReplayGuard(postgres, scope="peer", leeway_seconds=5),
        idempotency=PostgresIdempotency(
            postgres,
            ttl_seconds=limits.idempotency_ttl_seconds,
            # A claim whose replica died is free again once its exchange's deadline has passed.
            lease_seconds=limits.default_deadline_seconds + 5,
            decode=exchange_pb2.GetRecordResponse.FromString,
        ),
        postgres=postgres,
    )


async def _retry_while_unreachable(
    opening: Callable[[], Awaitable[PostgresState]],
) -> PostgresState:
    """A node starting before its database answers waits for it, up to a minute, then fails."""
    async for attempt in AsyncRetrying(
        retry=retry_if_exception_type(Unavailable),
        wait=wait_exponential(multiplier=0.25, max=5),
        stop=stop_after_delay(60),
        reraise=True,
        before_sleep=lambda _: log.warning("state_store_unreachable_at_start"),
    ):
        with attempt:
            return await opening()
    raise AssertionError("unreachable: tenacity reraises the last failure")  # pragma: no cover


def _read_hash_keys(keys: KeysConfig) -> tuple[bytes, bytes]:
    """The subject hash key and the pseudonym key; refuses keys that are short or the same."""
    subject_key = read_secret_key(keys.subject_hash_key, "keys.subject_hash_key")
    pseudonym_key = read_secret_key(keys.pseudonym_key, "keys.pseudonym_key")
    if hmac.compare_digest(subject_key, pseudonym_key):
        raise ConfigError(
            "keys.pseudonym_key: holds the same key as keys.subject_hash_key; each needs its own"
        )
    return subject_key, pseudonym_key


def _load_tls(config: NodeConfig) -> TlsMaterial:
    tls = config.tls
    try:
        return load_tls_material(
            key=tls.key, cert=tls.cert, ca_cert=tls.ca_cert, node=config.node.name
        )
    except (OSError, ValueError) as exc:
        raise ConfigError(f"tls: {exc}") from exc


def _load_federation(config: NodeConfig) -> tuple[LiveDirectory, FederationConfig] | None:
    fed = config.federation
    if fed is None:
        return None
    try:
        anchors = {node: load_public_key(path) for node, path in fed.trust_anchors.items()}
        directory = LiveDirectory(fed.directory, anchors)
    except (OSError, ValueError, DirectoryError) as exc:
        raise ConfigError(f"federation directory {fed.directory} cannot be used: {exc}") from exc
    if config.node.name not in directory.nodes:
        raise ConfigError(f"the federation directory has no entry for {config.node.name}")
    return directory, fed


async def serve(
    config: NodeConfig, *, ready: asyncio.Event | None = None, clock: Clock | None = None
) -> None:
    """Runs a node until cancelled (Ctrl-C), then stops it gracefully."""
    node = await build_node(config, clock=clock)
    await node.start()
    if node.rotation is not None:
        node.rotation.reload_on_sighup()
    if ready is not None:
        ready.set()
    try:
        # Shielded: cancelling grpc's own wait cancels the future its shutdown then waits on,
        # which cut node.stop() short before it closed the audit log, sources and engine.
        await asyncio.shield(node.server.wait_for_termination())
    finally:
        await asyncio.shield(node.stop())
