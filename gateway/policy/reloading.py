"""Hot reload: the node's policy follows its bundle directories without a restart.

A watcher polls the directories. When their content changes:

- The new bundle is compiled and its Rego tests run in a child process (a rego-cpp abort
  there cannot end the node). A bundle that does not load, compile or pass its own tests is
  refused with one log line; the running revision stays.
- Once it passes, it is compiled here and swapped in by one assignment. Evaluation of the
  embedded engine never yields to the event loop, so every decision runs wholly on the old
  revision or wholly on the new one, and no request fails during the swap.

Checking takes seconds (the Rego tests), and a suspension must not wait for them. When the
data changed but the modules are those already running (so the compile is known to be
safe), the new revision is compiled at once as a *tentative* revision: every decision is
taken by both and the stricter result wins. A tightening (a suspension, an ended agreement,
a withdrawn field) therefore takes effect on the next decision; a loosening waits for the
tests. If the new bundle is refused, its tightening stays in force (fail closed) until a
bundle passes or the directories go back to the running revision: a suspension usually
breaks tests that say the body may ask, and must not be undone by them.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import structlog

from gateway.domain import Decision, Direction, merge_obligations, merge_withheld
from gateway.policy import PolicyEngine
from gateway.policy.bundle import PolicyBundle, PolicyBundleError, load_bundle

log = structlog.get_logger("concordat.policy")

ReloadOutcome = Literal["unchanged", "reloaded", "refused"]
# What a reload attempt came to, as counted for the node's metrics ("failed": it raised).
ReloadCount = Literal["reloaded", "refused", "failed"]
BuildEngine = Callable[[PolicyBundle], PolicyEngine]
CheckBundle = Callable[[Sequence[Path]], str]


class LivePolicy:
    """A `PolicyEngine` whose bundle can be replaced while the node serves."""

    def __init__(
        self,
        directories: Sequence[Path],
        *,
        bundle: PolicyBundle,
        build: BuildEngine,
        check: CheckBundle,
        interval_seconds: float = 1.0,
    ) -> None:
        self._directories = tuple(directories)
        self._build = build
        self._check = check
        self._interval = interval_seconds
        self._bundle = bundle
        self._engine = build(bundle)
        self._tentative: PolicyEngine | None = None
        self._refused_revision: str | None = None
        self._fingerprint = _fingerprint(self._directories)
        self._lock = asyncio.Lock()
        self._watcher: asyncio.Task[None] | None = None
        self._reloads: dict[ReloadCount, int] = {"reloaded": 0, "refused": 0, "failed": 0}
        self._last_outcome: ReloadOutcome | None = None

    @property
    def bundle(self) -> PolicyBundle:
        """The running bundle (its register and Rego sources), swapped with its engine."""
        return self._bundle

    @property
    def reloads(self) -> Mapping[ReloadCount, int]:
        """How many reloads swapped a bundle in, were refused, or failed, since start."""
        return MappingProxyType(self._reloads)

    @property
    def refusing(self) -> bool:
        """True while the bundle on disk is one the last reload refused (the old one runs)."""
        return self._last_outcome == "refused"

    @property
    def tightening(self) -> bool:
        """True while a tentative revision co-decides every request (the stricter wins)."""
        return self._tentative is not None

    @property
    def revision(self) -> str:
        if self._tentative is not None:
            return f"{self._engine.revision}+{self._tentative.revision}"
        return self._engine.revision

    @property
    def engine(self) -> PolicyEngine:
        return self._engine

    async def decide(self, direction: Direction, policy_input: Mapping[str, Any]) -> Decision:
        engine, tentative = self._engine, self._tentative
        decision = await engine.decide(direction, policy_input)
        if tentative is None:
            return decision
        return stricter(decision, await tentative.decide(direction, policy_input))

    def start_watching(self) -> None:
        if self._interval > 0 and self._watcher is None:
            self._watcher = asyncio.get_running_loop().create_task(
                self._watch(), name="concordat-policy-watcher"
            )

    async def close(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None
        await self._engine.close()

    async def reload(self) -> ReloadOutcome:
        """Loads the directories now; swaps in their bundle if it differs and passes."""
        async with self._lock:
            try:
                outcome = await self._reload()
            except Exception:
                self._reloads["failed"] += 1
                raise
            self._last_outcome = outcome
            if outcome != "unchanged":
                self._reloads[outcome] += 1
            return outcome

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            fingerprint = _fingerprint(self._directories)
            if fingerprint == self._fingerprint:
                continue
            self._fingerprint = fingerprint
            try:
                await self.reload()
            except Exception:
                log.exception("policy.reload_failed", revision=self._engine.revision)

    async def _reload(self) -> ReloadOutcome:
        started = time.perf_counter()
        try:
            bundle = load_bundle(self._directories)
        except PolicyBundleError as exc:
            return self._refuse("(unreadable)", str(exc))
        if bundle.revision == self._bundle.revision:
            # Back to what runs (a reverted edit): nothing tentative is left to apply.
            self._tentative = None
            return "unchanged"
        if bundle.revision == self._refused_revision:
            return "refused"
        if bundle.modules == self._bundle.modules and bundle.data != self._bundle.data:
            self._tighten_at_once(bundle)
        try:
            checked = await asyncio.to_thread(self._check, self._directories)
        except PolicyBundleError as exc:
            return self._refuse(bundle.revision, str(exc))
        if checked != bundle.revision:
            # The files changed again while they were checked; the watcher will see it.
            self._fingerprint = None
            return "unchanged"
        try:
            engine = self._build(bundle)
        except PolicyBundleError as exc:
            return self._refuse(bundle.revision, str(exc))
        previous = self._engine.revision
        # The swap: one assignment each, with no await between them.
        self._engine, self._bundle, self._tentative = engine, bundle, None
        self._refused_revision = None
        log.info(
            "policy.reloaded",
            previous_revision=previous,
            revision=bundle.revision,
            took_ms=round((time.perf_counter() - started) * 1000, 1),
        )
        return "reloaded"

    def _tighten_at_once(self, bundle: PolicyBundle) -> None:
        try:
            self._tentative = self._build(bundle)
        except PolicyBundleError:
            # The check below names the problem; any earlier tightening stays in force.
            return
        log.info(
            "policy.tightening_applied",
            revision=self._engine.revision,
            tentative_revision=bundle.revision,
        )

    def _refuse(self, revision: str, reason: str) -> ReloadOutcome:
        self._refused_revision = revision
        log.error(
            "policy.reload_refused",
            revision=self._engine.revision,
            refused_revision=revision,
            reason=reason,
            # Which stricter revision, if any, still co-decides every request.
            tightening_in_force=self._tentative.revision if self._tentative else None,
        )
        return "refused"


def stricter(current: Decision, tentative: Decision) -> Decision:
    """The decision that releases no more than either: a denial wins, fields intersect.

    A field either withholds is withheld, by the running revision's rule where both name one.
    """
    if not tentative.allow:
        return tentative
    if not current.allow:
        return current
    allowed = set(tentative.released_fields)
    return dataclasses.replace(
        current,
        released_fields=tuple(f for f in current.released_fields if f in allowed),
        withheld=merge_withheld(current.withheld, tentative.withheld),
        obligations=merge_obligations(current.obligations, tentative.obligations),
        pseudonymise=current.pseudonymise or tentative.pseudonymise,
    )


def _fingerprint(directories: Sequence[Path]) -> tuple[tuple[str, int, int], ...] | None:
    """Cheap change detection: every file's path, size and modification time."""
    found = []
    for directory in directories:
        try:
            for path in directory.rglob("*"):
                stat = path.stat()
                found.append((str(path), stat.st_size, stat.st_mtime_ns))
        except OSError:
            return None
    return tuple(sorted(found))
