"""The order of an exchange, in one place.

    GetRecord at the caller's node:
        authenticate → validate → deduplicate → route → egress decision →
          local:  ingress decision → fetch → minimise
          remote: relay (assertion; the peer decides ingress) → verify receipt
        → respond
    Relay at the providing node:
        authenticate peer + assertion → validate → route to self → ingress decision
        → fetch → minimise → respond → sign receipt
    StreamRecords: the same stages up to the decisions, then batches (local or relayed).

`Pipeline` (run.py) runs one of these lists and writes exactly one audit entry per exchange,
durably, before the answer (or the error) goes back to the caller.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import structlog

from adapters.base import RecordSource
from gateway.clock import Clock
from gateway.config import LimitsConfig
from gateway.domain import Direction
from gateway.identity import TokenVerifier
from gateway.pipeline import stages
from gateway.pipeline.observe import NoObserver, Observer, observed
from gateway.pipeline.respond import Respond
from gateway.pipeline.routing import Providers, RouteToSelf
from gateway.pipeline.stages import Stage
from gateway.policy import PolicyEngine
from gateway.state import IdempotencyStore, ReplayGuard

log = structlog.get_logger("concordat.pipeline")


@dataclass(frozen=True)
class NodeParts:
    """The collaborators the stages are built from (assembled by gateway/node.py)."""

    node: str
    verifier: TokenVerifier
    # Callers' token ids, remembered until their tokens expire (shared by replicas if stored).
    replay: ReplayGuard
    engine: PolicyEngine
    sources: Mapping[str, RecordSource]
    idempotency: IdempotencyStore
    pseudonym_key: bytes
    limits: LimitsConfig
    # The day policies decide on: the system clock in production, a fixed day in tests.
    clock: Clock
    # Who serves what, and how a peer is asked: the federation's, or on a node that is not
    # federated the null objects of gateway/pipeline/routing.py.
    providers: Providers
    relay: Stage
    # Metrics and traces watch each stage through this; NoObserver watches nothing.
    observer: Observer = field(default_factory=NoObserver)


@dataclass(frozen=True)
class PeerStages:
    """The providing node's own stages: the peer and its assertion, and the signed receipt."""

    authenticate_peer: Stage
    sign_receipt: Stage


def _watched(parts: NodeParts, stage_list: list[Stage]) -> list[Stage]:
    return [observed(stage, parts.observer) for stage in stage_list]


def _validate(parts: NodeParts) -> Stage:
    return stages.ValidateRequest(
        min_deadline_seconds=parts.limits.min_deadline_seconds,
        max_batch_size=parts.limits.max_stream_batch_size,
    )


def _decide(direction: Direction, parts: NodeParts) -> Stage:
    return stages.Decide(direction, parts.node, parts.engine, parts.clock)


def _route(parts: NodeParts) -> Stage:
    return stages.Route(parts.node, frozenset(parts.sources), parts.providers)


def caller_get_stages(parts: NodeParts) -> list[Stage]:
    """GetRecord from a departmental system at its own administration's node."""
    return _watched(
        parts,
        [
            stages.RequireDecoded(),
            stages.Authenticate(parts.verifier, parts.replay),
            _validate(parts),
            stages.Deduplicate(parts.idempotency),
            _route(parts),
            _decide("egress", parts),
            stages.Branch(
                parts.node,
                local=_watched(
                    parts,
                    [
                        _decide("ingress", parts),
                        stages.Fetch(parts.sources),
                        stages.Minimise(parts.pseudonym_key),
                    ],
                ),
                remote=_watched(parts, [parts.relay]),
            ),
            Respond(),
        ],
    )


def caller_stream_stages(parts: NodeParts) -> list[Stage]:
    """StreamRecords up to the first batch; the batches come from local or remote batches."""
    return _watched(
        parts,
        [
            stages.RequireDecoded(),
            stages.Authenticate(parts.verifier, parts.replay),
            _validate(parts),
            _route(parts),
            _decide("egress", parts),
            stages.Branch(
                parts.node, local=_watched(parts, [_decide("ingress", parts)]), remote=[]
            ),
        ],
    )


def provider_get_stages(parts: NodeParts, peer: PeerStages) -> list[Stage]:
    """A GetRecord relayed by a peer node, for records this node holds."""
    return _watched(
        parts,
        [
            peer.authenticate_peer,
            _validate(parts),
            RouteToSelf(parts.node, frozenset(parts.sources)),
            _decide("ingress", parts),
            stages.Fetch(parts.sources),
            stages.Minimise(parts.pseudonym_key),
            Respond(),
            peer.sign_receipt,
        ],
    )


def provider_stream_stages(parts: NodeParts, peer: PeerStages) -> list[Stage]:
    """A StreamRecords relayed by a peer node, up to its first batch."""
    return _watched(
        parts,
        [
            peer.authenticate_peer,
            _validate(parts),
            RouteToSelf(parts.node, frozenset(parts.sources)),
            _decide("ingress", parts),
        ],
    )
