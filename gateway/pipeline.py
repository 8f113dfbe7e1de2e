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

Whatever happens, `Pipeline` writes exactly one audit entry per exchange, durably, before
the answer (or the error) goes back to the caller.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from adapters.base import RecordSource
from gateway import stages
from gateway.clock import Clock
from gateway.config import LimitsConfig
from gateway.domain import Direction
from gateway.errors import ConcordatError, DeadlineExceeded, InternalError, Unavailable
from gateway.evidence import EvidenceRecorder
from gateway.exchange import Exchange
from gateway.federation.directory import DirectoryLookup
from gateway.federation.routing import RouteToSelf
from gateway.idempotency import IdempotencyCache
from gateway.identity import TokenVerifier
from gateway.logs import raised_at
from gateway.policy import PolicyEngine
from gateway.responses import Respond
from gateway.stages import Stage
from gateway.status import internal_error
from gateway.streaming import CallerBatches

log = structlog.get_logger("concordat.pipeline")


class Pipeline:
    """Runs stages in order and records the evidence, whatever the outcome."""

    def __init__(
        self,
        *,
        stages: Sequence[Stage],
        evidence: EvidenceRecorder,
        idempotency: IdempotencyCache | None = None,
        default_deadline_seconds: float,
    ) -> None:
        self._stages = list(stages)
        self._evidence = evidence
        self._idempotency = idempotency
        self._default_deadline = default_deadline_seconds

    async def run(self, exchange: Exchange) -> Any:
        """Runs the exchange to its response; raises its ConcordatError after auditing it."""
        try:
            await self._run_stages(exchange)
        except BaseException as exc:
            self._settle_idempotency(exchange, None)
            await self._record(exchange, exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
            raise exchange.error from None  # type: ignore[misc]  # _record set it for the failure
        self._settle_idempotency(exchange, exchange.response)
        await self._record(exchange, None)
        return exchange.response

    async def stream(self, exchange: Exchange, batches: CallerBatches) -> AsyncIterator[Any]:
        """Runs the stages, then yields batches; audits once when the stream ends, however."""
        failure: BaseException | None = None
        try:
            await self._run_stages(exchange)
            async for response in batches(exchange):
                yield response
        except BaseException as exc:  # noqa: BLE001 - recorded, then re-raised below
            failure = exc
        finally:
            await self._record(exchange, failure)
        if isinstance(failure, asyncio.CancelledError | GeneratorExit):
            raise failure
        if failure is not None:
            raise exchange.error from None  # type: ignore[misc]  # _record set it for the failure

    async def _run_stages(self, exchange: Exchange) -> None:
        if not exchange.deadline_seconds:
            # The configured default, set once here for every stage (a relay budgets from it).
            exchange.deadline_seconds = self._default_deadline
        try:
            async with asyncio.timeout(exchange.deadline_seconds):
                for stage in self._stages:
                    await stage(exchange)
                    if exchange.done:
                        return
        except TimeoutError as exc:
            raise DeadlineExceeded(
                "the exchange did not finish within the call's deadline"
            ) from exc

    def _settle_idempotency(self, exchange: Exchange, response: Any) -> None:
        owner = exchange.idempotency_owner
        if self._idempotency is None or owner is None:
            return
        if response is None:
            self._idempotency.release(owner, exchange.idempotency_key)
        else:
            self._idempotency.complete(owner, exchange.idempotency_key, response)

    async def _record(self, exchange: Exchange, failure: BaseException | None) -> None:
        cancelled = isinstance(failure, asyncio.CancelledError | GeneratorExit)
        if failure is not None:
            exchange.error = _as_error(failure, exchange)
        try:
            # Shielded: a caller who cancels still leaves evidence of what was asked.
            await asyncio.shield(self._evidence.record(exchange))
        except asyncio.CancelledError:
            if not cancelled:
                raise
        except Exception as exc:
            log.error(
                "audit_append_failed", exchange_id=exchange.exchange_id, error=type(exc).__name__
            )
            # No evidence, no answer: the node fails closed.
            exchange.error = InternalError(
                f"the exchange could not be recorded; quote exchange id {exchange.exchange_id}"
            )
            if failure is None:
                raise exchange.error from exc


def _as_error(failure: BaseException, exchange: Exchange) -> ConcordatError:
    if isinstance(failure, ConcordatError):
        return failure
    if isinstance(failure, asyncio.CancelledError | GeneratorExit):
        return Unavailable("the call was cancelled before the exchange finished")
    log.error(
        "exchange_internal_error",
        exchange_id=exchange.exchange_id,
        error=type(failure).__name__,
        raised_at=raised_at(failure),
    )
    return internal_error(exchange.exchange_id)


@dataclass(frozen=True)
class NodeParts:
    """The collaborators the stages are built from (assembled by gateway/node.py)."""

    node: str
    verifier: TokenVerifier
    engine: PolicyEngine
    sources: Mapping[str, RecordSource]
    idempotency: IdempotencyCache
    pseudonym_key: bytes
    limits: LimitsConfig
    # The day policies decide on: the system clock in production, a fixed day in tests.
    clock: Clock
    directory: DirectoryLookup | None = None
    relay: Stage | None = None
    authenticate_peer: Stage | None = None
    sign_receipt: Stage | None = None


def _validate(parts: NodeParts) -> Stage:
    return stages.ValidateRequest(
        min_deadline_seconds=parts.limits.min_deadline_seconds,
        max_batch_size=parts.limits.max_stream_batch_size,
    )


def _decide(direction: Direction, parts: NodeParts) -> Stage:
    return stages.Decide(direction, parts.node, parts.engine, parts.clock)


def _route(parts: NodeParts) -> Stage:
    return stages.Route(parts.node, frozenset(parts.sources), parts.directory)


def _remote(parts: NodeParts) -> list[Stage]:
    return [parts.relay] if parts.relay is not None else []


def caller_get_stages(parts: NodeParts) -> list[Stage]:
    """GetRecord from a departmental system at its own administration's node."""
    return [
        stages.RequireDecoded(),
        stages.Authenticate(parts.verifier),
        _validate(parts),
        stages.Deduplicate(parts.idempotency),
        _route(parts),
        _decide("egress", parts),
        stages.Branch(
            parts.node,
            local=[
                _decide("ingress", parts),
                stages.Fetch(parts.sources),
                stages.Minimise(parts.pseudonym_key),
            ],
            remote=_remote(parts),
        ),
        Respond(),
    ]


def caller_stream_stages(parts: NodeParts) -> list[Stage]:
    """StreamRecords up to the first batch; the batches come from local or remote batches."""
    return [
        stages.RequireDecoded(),
        stages.Authenticate(parts.verifier),
        _validate(parts),
        _route(parts),
        _decide("egress", parts),
        stages.Branch(parts.node, local=[_decide("ingress", parts)], remote=[]),
    ]


def provider_get_stages(parts: NodeParts) -> list[Stage]:
    """A GetRecord relayed by a peer node, for records this node holds."""
    assert parts.authenticate_peer and parts.sign_receipt  # noqa: S101 - federation configured
    return [
        parts.authenticate_peer,
        _validate(parts),
        RouteToSelf(parts.node, frozenset(parts.sources)),
        _decide("ingress", parts),
        stages.Fetch(parts.sources),
        stages.Minimise(parts.pseudonym_key),
        Respond(),
        parts.sign_receipt,
    ]


def provider_stream_stages(parts: NodeParts) -> list[Stage]:
    assert parts.authenticate_peer is not None  # noqa: S101 - federation configured
    return [
        parts.authenticate_peer,
        _validate(parts),
        RouteToSelf(parts.node, frozenset(parts.sources)),
        _decide("ingress", parts),
    ]
