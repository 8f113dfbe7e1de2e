"""Runs an exchange's stages in order and records its one audit entry, whatever happens.

Whatever happens, `Pipeline` writes exactly one audit entry per exchange, durably, before
the answer (or the error) goes back to the caller; the entry is shielded from cancellation.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, TypeVar

import structlog

from gateway.api.status import internal_error
from gateway.audit.grouping import AppendsDue
from gateway.errors import ConcordatError, DeadlineExceeded, InternalError, Unavailable
from gateway.exchange import Exchange
from gateway.logs import raised_at
from gateway.pipeline.evidence import EvidenceRecorder
from gateway.pipeline.observe import NoObserver, Observer
from gateway.pipeline.stages import Stage
from gateway.state import IdempotencyStore

log = structlog.get_logger("concordat.pipeline")

# What a stream yields: a caller's batches, or a providing node's signed relay messages.
B = TypeVar("B")


class Pipeline:
    """Runs stages in order and records the evidence, whatever the outcome."""

    def __init__(
        self,
        *,
        stages: Sequence[Stage],
        evidence: EvidenceRecorder,
        idempotency: IdempotencyStore | None = None,
        default_deadline_seconds: float,
        observer: Observer | None = None,
        appends_due: AppendsDue | None = None,
    ) -> None:
        self._stages = list(stages)
        # Unary exchanges are counted until they reach their entry, so the audit writer knows
        # when waiting for company is worthwhile; streams are not (they may run for minutes).
        self._appends_due = appends_due
        self._evidence = evidence
        self._idempotency = idempotency
        self._default_deadline = default_deadline_seconds
        self._observer: Observer = observer or NoObserver()

    async def run(self, exchange: Exchange) -> Any:
        """Runs the exchange to its response; raises its ConcordatError after auditing it."""
        with self._observer.exchange(exchange):
            return await self._run(exchange)

    async def _run(self, exchange: Exchange) -> Any:
        try:
            await self._run_counted(exchange)
        except BaseException as exc:
            await self._settle_idempotency(exchange, None)
            await self._record(exchange, exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
            raise exchange.error from None  # type: ignore[misc]  # _record set it for the failure
        try:
            await self._record(exchange, None)
        except BaseException:
            # No evidence, no answer: the key is free for a retry, which will be recorded.
            await self._settle_idempotency(exchange, None)
            raise
        # Only an answer whose evidence is stored may be given again to a repeat.
        await self._settle_idempotency(exchange, exchange.response)
        return exchange.response

    async def _run_counted(self, exchange: Exchange) -> None:
        """The stages, counted among the appends due until they end, however they end."""
        due = self._appends_due
        if due is None:
            await self._run_stages(exchange)
            return
        due.expect()
        try:
            await self._run_stages(exchange)
        finally:
            due.arrived()

    async def stream(
        self, exchange: Exchange, batches: Callable[[Exchange], AsyncIterator[B]]
    ) -> AsyncIterator[B]:
        """Runs the stages, then yields batches; audits once when the stream ends, however."""
        failure: BaseException | None = None
        with self._observer.exchange(exchange):
            try:
                await self._run_stages(exchange)
                with self._observer.stage(exchange, "batches"):
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

    async def _settle_idempotency(self, exchange: Exchange, response: Any) -> None:
        owner = exchange.idempotency_owner
        if self._idempotency is None or owner is None:
            return
        key, exchange_id = exchange.idempotency_key, exchange.exchange_id
        try:
            # Shielded: a caller who cancels must not leave its key claimed until it expires.
            if response is None:
                await asyncio.shield(self._idempotency.release(owner, key, exchange_id))
            else:
                await asyncio.shield(self._idempotency.complete(owner, key, exchange_id, response))
        except ConcordatError as exc:
            # The answer stands; a repeat of it waits for the claim's lease to end instead.
            log.warning("idempotency_settle_failed", exchange_id=exchange_id, error=exc.code)

    async def _record(self, exchange: Exchange, failure: BaseException | None) -> None:
        cancelled = isinstance(failure, asyncio.CancelledError | GeneratorExit)
        if failure is not None:
            exchange.error = _as_error(failure, exchange)
        try:
            # Shielded: a caller who cancels still leaves evidence of what was asked.
            with self._observer.stage(exchange, "audit"):
                await asyncio.shield(self._evidence.record(exchange))
        except asyncio.CancelledError:
            if not cancelled:
                raise
        except Exception as exc:
            log.error(
                "audit_append_failed", exchange_id=exchange.exchange_id, error=type(exc).__name__
            )
            # No evidence, no answer: the node fails closed. A store that is unreachable will
            # be back (health says so meanwhile): the caller may retry, as nothing was given.
            exchange.error = (
                Unavailable(
                    "the exchange could not be recorded: the node's state store is unreachable;"
                    " retry shortly"
                )
                if isinstance(exc, Unavailable)
                else InternalError(
                    f"the exchange could not be recorded; quote exchange id {exchange.exchange_id}"
                )
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
