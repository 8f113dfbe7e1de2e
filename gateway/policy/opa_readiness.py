"""Readiness of an OPA sidecar, as a node's gRPC health reports it.

A node that decides through OPA serves only while its OPA has its bundles activated
(`GET /health?bundles` answers 200): it says NOT_SERVING until then, and again whenever OPA
stops saying so, asked every `interval_seconds`. Decisions are not held back meanwhile; they
still go to OPA, and an OPA that cannot decide is a denial (gateway/policy/opa.py).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import structlog

log = structlog.get_logger("concordat.policy")

Probe = Callable[[], Awaitable[bool]]
Report = Callable[[bool], Awaitable[None]]


class BundleReadiness:
    """Asks `probe` now and then every `interval_seconds`; reports each change of answer."""

    def __init__(self, probe: Probe, *, interval_seconds: float) -> None:
        if interval_seconds <= 0:
            raise ValueError("interval_seconds must be positive")
        self._probe = probe
        self._interval = interval_seconds
        self._ready: bool | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self, report: Report) -> None:
        """Ask once and report the answer, then keep asking in the background."""
        await self._check(report)
        self._task = asyncio.create_task(self._watch(report), name="opa-bundle-readiness")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _watch(self, report: Report) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self._check(report)

    async def _check(self, report: Report) -> None:
        try:
            ready = await self._probe()
        except Exception as exc:  # noqa: BLE001 - any failure to ask is "not ready" (fail closed)
            log.warning("policy.opa_readiness_probe_failed", error=type(exc).__name__)
            ready = False
        if ready == self._ready:
            return
        self._ready = ready
        if ready:
            log.info("policy.opa_bundles_ready")
        else:
            log.warning("policy.opa_bundles_not_ready")
        await report(ready)
