"""A node's Prometheus metrics, in a registry of its own, served on a port of their own.

Everything is read when Prometheus scrapes, never pushed, from two kinds of source:

- `MetricsObserver` watches each exchange and each stage through the pipeline's observer seam
  and counts them into plain dictionaries (`ExchangeTally`): on the data path a metric costs
  a dictionary bump, or a bisection into a histogram's buckets; nothing is formatted or
  locked there.
- The counts the node's components keep anyway (`NodeCollector`): the decision cache, policy
  reloads, the audit writer, each peer's circuit breaker, the replay and idempotency stores,
  and the node's TLS certificates, read from their files at each scrape.

A scrape is answered in the node's event loop, between two pieces of exchange work, so it
reads the counts with no lock and no thread of its own.

Label values come only from bounded sets the node owns, never from a caller's input
(`Vocabulary`): an agreement is named only if the running bundle's register holds it, else
`unregistered`; a rule only if it is a dotted string literal of the bundle's Rego modules or
one of the node's own rules, else `other` (a peer's jurisdiction-specific rule is `other`
here and named on the peer's own metrics); nodes are the four administrations; reasons are
the error tree's codes; record types and purposes the proto enums' names; stages the
pipeline's own names.
"""

from __future__ import annotations

import asyncio
import re
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence, Sized
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Protocol

import structlog
from cryptography import x509
from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.registry import Collector

from concordat.exchange.v1 import exchange_pb2
from gateway.config import ADMINISTRATIONS
from gateway.errors import ConcordatError
from gateway.evidence import WitnessTally
from gateway.exchange import Exchange
from gateway.federation.peers import PeerClients
from gateway.pipeline.evidence import outcome_of
from gateway.pipeline.stages import NOTHING_RELEASED_RULE
from gateway.policy.bundle import PolicyBundle
from gateway.policy.cache import CacheCounts
from gateway.policy.decision import (
    ENGINE_ERROR_RULE,
    ENGINE_UNAVAILABLE_RULE,
    MALFORMED_RULE,
    UNDEFINED_RULE,
    UNREQUESTED_FIELDS_RULE,
)
from gateway.policy.register_shards import AGREEMENTS, SHARDS
from gateway.policy.reloading import LivePolicy

log = structlog.get_logger("concordat.metrics")

UNREGISTERED = "unregistered"
OTHER = "other"
NONE = "none"
OK = "ok"

NODES = frozenset(ADMINISTRATIONS)
# Why a witness refuses a head (gateway/evidence/witness.py).
_REASONS = frozenset({"truncated", "stale", "forked"})


def _error_codes(error: type[ConcordatError]) -> Iterator[str]:
    yield error.code
    for subclass in error.__subclasses__():
        yield from _error_codes(subclass)


REASONS = frozenset(_error_codes(ConcordatError)) | {OK}
RECORD_TYPES = frozenset(
    name.removeprefix("RECORD_TYPE_")
    for name in exchange_pb2.RecordType.keys()
    if name != "RECORD_TYPE_UNSPECIFIED"
)
PURPOSES = frozenset(
    name.removeprefix("PURPOSE_")
    for name in exchange_pb2.Purpose.keys()
    if name != "PURPOSE_UNSPECIFIED"
)
# The rules the node itself names in a denial, whatever its bundle says.
NODE_RULES = frozenset(
    {
        NOTHING_RELEASED_RULE,
        UNDEFINED_RULE,
        MALFORMED_RULE,
        UNREQUESTED_FIELDS_RULE,
        ENGINE_ERROR_RULE,
        ENGINE_UNAVAILABLE_RULE,
    }
)

# Seconds. An exchange takes milliseconds (a relay tens); a stage from microseconds up.
EXCHANGE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
STAGE_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    1.0,
)

# A rule id as policies write one: a dotted name in a string literal ("common.agreement_unknown").
_RULE_LITERAL = re.compile(r'"([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+)"')


@dataclass(frozen=True)
class Vocabulary:
    """The label values one bundle revision allows: its register's agreements and its rules."""

    agreements: frozenset[str]
    rules: frozenset[str]

    @classmethod
    def of(cls, bundle: PolicyBundle) -> Vocabulary:
        rules = {
            rule for source in bundle.modules.values() for rule in _RULE_LITERAL.findall(source)
        }
        return cls(agreements=registered_agreements(bundle), rules=frozenset(rules) | NODE_RULES)

    def agreement(self, agreement_id: str) -> str:
        return agreement_id if agreement_id in self.agreements else UNREGISTERED

    def rule(self, rule: str) -> str:
        return rule if rule in self.rules else OTHER


def registered_agreements(bundle: PolicyBundle) -> frozenset[str]:
    """The agreement ids of a bundle's register, filed in shards or (as written) by id."""
    register = bundle.data.get("register")
    if not isinstance(register, Mapping):
        return frozenset()
    shards = register.get(SHARDS)
    if isinstance(shards, Mapping):
        return frozenset(
            agreement_id
            for filed in shards.values()
            if isinstance(filed, Mapping)
            for agreement_id in filed
        )
    agreements = register.get(AGREEMENTS)
    return frozenset(agreements) if isinstance(agreements, Mapping) else frozenset()


def _bounded(value: str, allowed: frozenset[str], *, empty: str = NONE) -> str:
    if not value:
        return empty
    return value if value in allowed else OTHER


class _Histograms:
    """Per label set, a plain list: each bucket's own count, then the sum; cumulated on scrape."""

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self._series: dict[tuple[str, ...], list[float]] = {}

    def observe(self, key: tuple[str, ...], seconds: float) -> None:
        series = self._series.get(key)
        if series is None:
            # One slot per bound, one for +Inf, and the sum last.
            series = self._series[key] = [0.0] * (len(self.bounds) + 2)
        series[bisect_left(self.bounds, seconds)] += 1
        series[-1] += seconds

    def family(self, name: str, documentation: str, labels: Sequence[str]) -> Metric:
        family = HistogramMetricFamily(name, documentation, labels=labels)
        edges = [repr(bound) for bound in self.bounds] + ["+Inf"]
        for key, series in list(self._series.items()):
            snapshot = list(series)
            cumulative, buckets = 0.0, []
            for edge, count in zip(edges, snapshot[:-1], strict=True):
                cumulative += count
                buckets.append((edge, cumulative))
            family.add_metric(list(key), buckets, sum_value=snapshot[-1])
        return family


def _counter(
    name: str, documentation: str, labels: Sequence[str], counts: Mapping[tuple[str, ...], float]
) -> Metric:
    family = CounterMetricFamily(name, documentation, labels=labels)
    for key, value in list(counts.items()):
        family.add_metric(list(key), value)
    return family


def _bump(counts: dict[tuple[str, ...], float], key: tuple[str, ...], by: float = 1) -> None:
    counts[key] = counts.get(key, 0) + by


class ExchangeTally(Collector):
    """What the observer saw, counted by bounded labels; a collector of its own for scrapes."""

    def __init__(self, vocabulary: Callable[[], Vocabulary]) -> None:
        self._vocabulary = vocabulary
        self.exchanges: dict[tuple[str, ...], float] = {}
        self.by_agreement: dict[tuple[str, ...], float] = {}
        self.by_record_type: dict[tuple[str, ...], float] = {}
        self.records: dict[tuple[str, ...], float] = {}
        self.bytes: dict[tuple[str, ...], float] = {}
        self.denials: dict[tuple[str, ...], float] = {}
        self.peer_calls: dict[tuple[str, ...], float] = {}
        self.exchange_seconds = _Histograms(EXCHANGE_BUCKETS)
        self.stage_seconds = _Histograms(STAGE_BUCKETS)
        self.peer_seconds = _Histograms(EXCHANGE_BUCKETS)

    def exchange_ended(self, exchange: Exchange) -> None:
        seconds = time.monotonic() - exchange.started
        error = exchange.error
        outcome = outcome_of(exchange)
        rpc, role = exchange.rpc, exchange.role
        vocabulary = self._vocabulary()
        agreement = vocabulary.agreement(exchange.agreement_id)
        _bump(self.exchanges, (rpc, role, outcome, _reason(error)))
        self.exchange_seconds.observe((rpc, role, outcome), seconds)
        _bump(self.by_agreement, (agreement, role, outcome))
        _bump(
            self.by_record_type,
            (
                _bounded(exchange.record_type, RECORD_TYPES),
                _bounded(exchange.purpose, PURPOSES),
                outcome,
            ),
        )
        # As the audit entry counts them: a stream that failed part way released what it sent.
        if exchange.record_count and (error is None or rpc == "StreamRecords"):
            _bump(self.records, (agreement, role, rpc), exchange.record_count)
            _bump(self.bytes, (agreement, role, rpc), exchange.bytes_released)
        if outcome == "denied" and error is not None:
            metadata = error.metadata
            direction = "ingress" if "peer" in metadata or exchange.ingress else "egress"
            node = _bounded(metadata.get("node", ""), NODES)
            rule = vocabulary.rule(metadata.get("rule", ""))
            _bump(self.denials, (direction, node, rule))

    def stage_ended(
        self, exchange: Exchange, name: str, seconds: float, error: BaseException | None
    ) -> None:
        self.stage_seconds.observe((name, exchange.role), seconds)
        if name == "relay":
            peer = _bounded(exchange.providing_node, NODES)
            self.peer_seconds.observe((peer,), seconds)
            _bump(self.peer_calls, (peer, _reason(error)))

    def collect(self) -> Iterable[Metric]:
        yield _counter(
            "concordat_exchanges",
            "Exchanges ended, by RPC, this node's role, outcome and stable reason code.",
            ["rpc", "role", "outcome", "reason"],
            self.exchanges,
        )
        yield self.exchange_seconds.family(
            "concordat_exchange_duration_seconds",
            "Whole exchanges, from the request to its audit entry, by RPC, role and outcome.",
            ["rpc", "role", "outcome"],
        )
        yield self.stage_seconds.family(
            "concordat_stage_duration_seconds",
            "Each stage of an exchange (audit: the wait for its entry's commit; batches: a "
            "stream's batches), by stage and role.",
            ["stage", "role"],
        )
        yield _counter(
            "concordat_denials",
            "Denials, by direction, the node that decided and the rule that denied.",
            ["direction", "node", "rule"],
            self.denials,
        )
        yield _counter(
            "concordat_agreement_exchanges",
            "Exchanges by registered agreement (unregistered: any other), role and outcome.",
            ["agreement", "role", "outcome"],
            self.by_agreement,
        )
        yield _counter(
            "concordat_record_type_exchanges",
            "Exchanges by record type and purpose (none: not yet read) and outcome.",
            ["record_type", "purpose", "outcome"],
            self.by_record_type,
        )
        yield _counter(
            "concordat_records_released",
            "Records released, by agreement, role and RPC (StreamRecords: bulk extracts).",
            ["agreement", "role", "rpc"],
            self.records,
        )
        yield _counter(
            "concordat_bytes_released",
            "Bytes of records released, by agreement, role and RPC (StreamRecords: bulk).",
            ["agreement", "role", "rpc"],
            self.bytes,
        )
        yield _counter(
            "concordat_peer_calls",
            "Relayed GetRecord calls to a peer, by peer and reason (ok, or the error's code).",
            ["peer", "reason"],
            self.peer_calls,
        )
        yield self.peer_seconds.family(
            "concordat_peer_call_duration_seconds",
            "Relayed GetRecord calls to a peer, retries and receipt check included, by peer.",
            ["peer"],
        )


def _reason(error: BaseException | None) -> str:
    if error is None:
        return OK
    if isinstance(error, ConcordatError):
        return error.code if error.code in REASONS else OTHER
    return OTHER


class _WatchedExchange:
    __slots__ = ("_exchange", "_tally")

    def __init__(self, tally: ExchangeTally, exchange: Exchange) -> None:
        self._tally = tally
        self._exchange = exchange

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            self._tally.exchange_ended(self._exchange)
        except Exception:  # a metric must never fail an exchange
            log.exception("metrics_failed", exchange_id=self._exchange.exchange_id)


class _WatchedStage:
    __slots__ = ("_exchange", "_name", "_started", "_tally")

    def __init__(self, tally: ExchangeTally, exchange: Exchange, name: str) -> None:
        self._tally = tally
        self._exchange = exchange
        self._name = name
        self._started = 0.0

    def __enter__(self) -> None:
        self._started = time.perf_counter()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        seconds = time.perf_counter() - self._started
        try:
            self._tally.stage_ended(self._exchange, self._name, seconds, exc)
        except Exception:  # a metric must never fail an exchange
            log.exception("metrics_failed", exchange_id=self._exchange.exchange_id)


class MetricsObserver:
    """The pipeline's `Observer` for metrics: times each exchange and stage into a tally."""

    def __init__(self, tally: ExchangeTally) -> None:
        self._tally = tally

    def exchange(self, exchange: Exchange) -> _WatchedExchange:
        return _WatchedExchange(self._tally, exchange)

    def stage(self, exchange: Exchange, name: str) -> _WatchedStage:
        return _WatchedStage(self._tally, exchange, name)


class _Commits(Protocol):
    @property
    def batches(self) -> int: ...
    @property
    def entries(self) -> int: ...
    @property
    def commit_seconds(self) -> float: ...
    @property
    def failures(self) -> int: ...


class AuditWriter(Protocol):
    """What the metrics read of the audit store (the SQLite log keeps these counts)."""

    @property
    def queue_depth(self) -> int: ...
    @property
    def failing(self) -> bool: ...
    @property
    def commits(self) -> _Commits: ...


BREAKER_STATES = ("closed", "open", "half_open")


@dataclass(frozen=True)
class MetricSources:
    """The components whose own counts the collector reads at each scrape."""

    node: str
    # The policy that hot-reloads (its bundle swaps), or None: `bundle` is then for good.
    live: LivePolicy | None
    bundle: PolicyBundle
    cache: CacheCounts | None
    audit: AuditWriter | None
    peers: PeerClients | None
    # In-process stores only: a PostgreSQL store's rows are the database's to count.
    replay_cache: Sized | None
    idempotency: Sized | None
    # Certificates whose expiry is exported, by name ("node": the node's TLS certificate).
    certificates: Mapping[str, Path]
    witnessing: WitnessTally = field(default_factory=WitnessTally)

    def running_bundle(self) -> PolicyBundle:
        return self.live.bundle if self.live is not None else self.bundle


class NodeCollector(Collector):
    """The node's components, read when Prometheus scrapes.

    Every family is always exposed, with no samples where the node lacks the part (a node
    that is not federated has no peers; one on OPA neither reloads nor caches), so the
    exposition names every metric the node can export.
    """

    def __init__(self, parts: MetricSources) -> None:
        self._parts = parts

    def collect(self) -> Iterable[Metric]:
        parts = self._parts
        info = GaugeMetricFamily(
            "concordat_node_info", "The administration this node serves.", labels=["node"]
        )
        info.add_metric([parts.node], 1)
        yield info
        yield from self._policy()
        yield from self._audit()
        yield from self._peers()
        yield from self._witnessing()
        replay = GaugeMetricFamily(
            "concordat_replay_cache_entries",
            "Callers' token ids remembered until their tokens expire (replay protection).",
            labels=[],
        )
        if parts.replay_cache is not None:
            replay.add_metric([], len(parts.replay_cache))
        yield replay
        idempotency = GaugeMetricFamily(
            "concordat_idempotency_entries",
            "Idempotency keys remembered (answered or in flight).",
            labels=[],
        )
        if parts.idempotency is not None:
            idempotency.add_metric([], len(parts.idempotency))
        yield idempotency
        yield self._certificates()

    def _policy(self) -> Iterator[Metric]:
        parts = self._parts
        bundle = parts.running_bundle()
        revision = GaugeMetricFamily(
            "concordat_policy_bundle_info",
            "The running policy bundle's revision (its first 12 hex digits).",
            labels=["revision"],
        )
        revision.add_metric([bundle.revision[:12]], 1)
        yield revision
        yield GaugeMetricFamily(
            "concordat_policy_register_agreements",
            "Agreements in the running bundle's register.",
            value=len(registered_agreements(bundle)),
        )
        reloads = CounterMetricFamily(
            "concordat_policy_reloads",
            "Bundle reloads since start, by outcome (reloaded, refused, failed).",
            labels=["outcome"],
        )
        refused = GaugeMetricFamily(
            "concordat_policy_bundle_refused",
            "1 while the bundle on disk is one the last reload refused (the old one runs).",
            labels=[],
        )
        tightening = GaugeMetricFamily(
            "concordat_policy_tightening_in_force",
            "1 while a changed register co-decides every request, the stricter winning.",
            labels=[],
        )
        if parts.live is not None:
            for outcome, count in parts.live.reloads.items():
                reloads.add_metric([outcome], count)
            refused.add_metric([], int(parts.live.refusing))
            tightening.add_metric([], int(parts.live.tightening))
        yield from (reloads, refused, tightening)
        hits = CounterMetricFamily(
            "concordat_decision_cache_hits",
            "Policy decisions answered from the decision cache, every revision's.",
            labels=[],
        )
        misses = CounterMetricFamily(
            "concordat_decision_cache_misses",
            "Policy decisions the decision cache did not hold, so the engine evaluated.",
            labels=[],
        )
        if parts.cache is not None:
            hits.add_metric([], parts.cache.hits)
            misses.add_metric([], parts.cache.misses)
        yield from (hits, misses)

    def _audit(self) -> Iterator[Metric]:
        queue = GaugeMetricFamily(
            "concordat_audit_queue_depth", "Audit entries waiting for the writer.", labels=[]
        )
        failing = GaugeMetricFamily(
            "concordat_audit_failing",
            "1 once an audit write failed: the node answers INTERNAL until restarted.",
            labels=[],
        )
        failures = CounterMetricFamily(
            "concordat_audit_write_failures", "Audit batches whose write failed.", labels=[]
        )
        batches = SummaryMetricFamily(
            "concordat_audit_batch_entries",
            "Audit batches committed (count) and the entries in them (sum): one seal each.",
            labels=[],
        )
        commit_seconds = SummaryMetricFamily(
            "concordat_audit_commit_seconds",
            "Audit batches committed (count) and the seconds their durable writes took (sum).",
            labels=[],
        )
        audit = self._parts.audit
        if audit is not None:
            commits = audit.commits
            queue.add_metric([], audit.queue_depth)
            failing.add_metric([], int(audit.failing))
            failures.add_metric([], commits.failures)
            batches.add_metric([], commits.batches, commits.entries)
            commit_seconds.add_metric([], commits.batches, commits.commit_seconds)
        yield from (queue, failing, failures, batches, commit_seconds)

    def _peers(self) -> Iterator[Metric]:
        state = GaugeMetricFamily(
            "concordat_peer_breaker_state",
            "Each called peer's circuit breaker: 1 for its present state.",
            labels=["peer", "state"],
        )
        failed = CounterMetricFamily(
            "concordat_peer_transport_failures",
            "Calls to a peer that found it unreachable or late (what opens its breaker).",
            labels=["peer"],
        )
        opened = CounterMetricFamily(
            "concordat_peer_breaker_opened", "Times a peer's breaker opened.", labels=["peer"]
        )
        refused = CounterMetricFamily(
            "concordat_peer_breaker_refused",
            "Calls the open breaker answered UNAVAILABLE without asking the peer.",
            labels=["peer"],
        )
        peers = self._parts.peers
        for node, breaker in sorted(peers.breakers().items() if peers is not None else ()):
            peer = _bounded(node, NODES)
            counts = breaker.counts
            for each in BREAKER_STATES:
                state.add_metric([peer, each], int(breaker.state == each))
            failed.add_metric([peer], counts.failed_calls)
            opened.add_metric([peer], counts.opened)
            refused.add_metric([peer], counts.refused)
        yield from (state, failed, opened, refused)

    def _witnessing(self) -> Iterator[Metric]:
        refused_to_sign = CounterMetricFamily(
            "concordat_witness_refusals",
            "Chain heads of a peer this node refused to witness (truncated or forked history).",
            labels=["peer", "reason"],
        )
        for (peer, reason), count in sorted(self._parts.witnessing.refused_to_sign.items()):
            refused_to_sign.add_metric([_bounded(peer, NODES), _bounded(reason, _REASONS)], count)
        refused_by = CounterMetricFamily(
            "concordat_witness_refused_heads",
            "Chain heads of this node a peer refused to witness.",
            labels=["witness"],
        )
        for witness, count in sorted(self._parts.witnessing.refused_by.items()):
            refused_by.add_metric([_bounded(witness, NODES)], count)
        yield from (refused_to_sign, refused_by)

    def _certificates(self) -> Metric:
        family = GaugeMetricFamily(
            "concordat_tls_certificate_expiry_timestamp_seconds",
            "When a certificate expires (not after), in Unix seconds; the earliest of a bundle.",
            labels=["certificate"],
        )
        for name, path in self._parts.certificates.items():
            not_after = certificate_not_after(path)
            if not_after is not None:
                family.add_metric([name], not_after)
        return family


def certificate_not_after(path: Path) -> float | None:
    """The earliest not-after of the PEM certificates in `path`, or None if unreadable."""
    try:
        certificates = x509.load_pem_x509_certificates(path.read_bytes())
    except (OSError, ValueError) as exc:
        log.warning("certificate_unreadable", path=str(path), error=type(exc).__name__)
        return None
    return min(c.not_valid_after_utc.timestamp() for c in certificates)


class MetricsServer:
    """Serves a registry over plain HTTP on its own port, from the node's own event loop.

    No thread of its own: a serving thread wakes to poll and competes with the loop for the
    GIL all the time, where answering a scrape in the loop costs it about a millisecond per
    scrape. One request per connection (`Connection: close`), `GET /metrics` only.
    """

    # A scrape's request head must arrive within this, and fit in HEAD_LIMIT bytes.
    REQUEST_SECONDS = 10.0
    HEAD_LIMIT = 8192

    def __init__(self, registry: CollectorRegistry, listen: str) -> None:
        host, _, port = listen.rpartition(":")
        self._registry = registry
        self._host = host.strip("[]")
        self._port = int(port)
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        """The bound port (the configured one, or the one chosen for port 0)."""
        if self._server is None or not self._server.sockets:
            return self._port
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        """Binds the port (OSError if it is taken) and answers scrapes until `stop`."""
        self._server = await asyncio.start_server(
            self._answer, self._host, self._port, limit=self.HEAD_LIMIT
        )

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            await server.wait_closed()

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self.REQUEST_SECONDS)
            writer.write(self._response(head))
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            # A client that dawdles, hangs up or sends an oversized head is simply let go.
            pass
        except Exception:  # a fault in a collector fails its scrape, never the node
            log.exception("metrics_scrape_failed")
        finally:
            writer.close()

    def _response(self, head: bytes) -> bytes:
        lines = head.decode("latin-1").split("\r\n")
        method, _, rest = lines[0].partition(" ")
        path = rest.partition(" ")[0].partition("?")[0]
        if method != "GET" or path not in ("/metrics", "/"):
            return _http(b"404 Not Found", "text/plain; charset=utf-8", b"GET /metrics\n")
        headers = dict(line.partition(":")[::2] for line in lines[1:] if line)
        accept = next((v for k, v in headers.items() if k.strip().lower() == "accept"), "")
        encode, content_type = choose_encoder(accept.strip())
        return _http(b"200 OK", content_type, encode(self._registry))


def _http(status: bytes, content_type: str, body: bytes) -> bytes:
    return (
        b"HTTP/1.1 "
        + status
        + b"\r\nContent-Type: "
        + content_type.encode("latin-1")
        + b"\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\nConnection: close\r\n\r\n"
        + body
    )


@dataclass(frozen=True)
class NodeMetrics:
    """A node's metrics: the observer the pipelines report to, and the server scrapes read."""

    observer: MetricsObserver
    server: MetricsServer
    registry: CollectorRegistry


def node_metrics(parts: MetricSources, *, listen: str) -> NodeMetrics:
    """The metrics of one node, in a registry of its own (several nodes may share a process)."""
    registry = CollectorRegistry()
    vocabulary = _VocabularyOf(parts.running_bundle)
    tally = ExchangeTally(vocabulary)
    registry.register(tally)
    registry.register(NodeCollector(parts))
    ProcessCollector(registry=registry)
    return NodeMetrics(
        observer=MetricsObserver(tally), server=MetricsServer(registry, listen), registry=registry
    )


class _VocabularyOf:
    """The running bundle's vocabulary, worked out again only when the bundle changes."""

    def __init__(self, bundle: Callable[[], PolicyBundle]) -> None:
        self._bundle = bundle
        self._seen: PolicyBundle | None = None
        self._vocabulary = Vocabulary(agreements=frozenset(), rules=NODE_RULES)

    def __call__(self) -> Vocabulary:
        bundle = self._bundle()
        if bundle is not self._seen:
            self._vocabulary = Vocabulary.of(bundle)
            self._seen = bundle
        return self._vocabulary
