"""How an exchange is watched: one small seam that metrics and traces both plug into.

`Pipeline` enters `Observer.exchange` around a whole exchange (its stages, its batches and
its audit entry; on exit `exchange.error` says how it ended) and `Observer.stage` around each
stage and around the audit commit (named "audit"). An observer must never raise into the
exchange and must cost nothing when nothing watches: `NoObserver` is the default.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from typing import Protocol

from gateway.exchange import Exchange
from gateway.pipeline.stages import Branch, Stage


class Observer(Protocol):
    def exchange(self, exchange: Exchange) -> AbstractContextManager[None]:
        """Around one whole exchange."""
        ...

    def stage(self, exchange: Exchange, name: str) -> AbstractContextManager[None]:
        """Around one stage of it, or its audit commit ("audit")."""
        ...


_NOTHING: AbstractContextManager[None] = nullcontext()


class NoObserver:
    """Watches nothing, at the cost of returning one shared null context."""

    def exchange(self, exchange: Exchange) -> AbstractContextManager[None]:
        return _NOTHING

    def stage(self, exchange: Exchange, name: str) -> AbstractContextManager[None]:
        return _NOTHING


class Observers:
    """Several observers as one (metrics and traces), entered in order, left in reverse."""

    def __init__(self, observers: Sequence[Observer]) -> None:
        self._observers = tuple(observers)

    @contextmanager
    def exchange(self, exchange: Exchange) -> Iterator[None]:
        with ExitStack() as stack:
            for observer in self._observers:
                stack.enter_context(observer.exchange(exchange))
            yield

    @contextmanager
    def stage(self, exchange: Exchange, name: str) -> Iterator[None]:
        with ExitStack() as stack:
            for observer in self._observers:
                stack.enter_context(observer.stage(exchange, name))
            yield


def observed(stage: Stage, observer: Observer) -> Stage:
    """The stage, watched by `observer` under its name; unwrapped when nothing watches.

    A Branch is not watched itself: it only chooses, and the stages inside it are.
    """
    if isinstance(observer, NoObserver) or isinstance(stage, Branch):
        return stage
    return _ObservedStage(stage, stage_name(stage), observer)


class _ObservedStage:
    def __init__(self, stage: Stage, name: str, observer: Observer) -> None:
        self._stage = stage
        self.name = name
        self._observer = observer

    async def __call__(self, exchange: Exchange) -> None:
        with self._observer.stage(exchange, self.name):
            await self._stage(exchange)


_WORD = re.compile(r"(?<!^)(?=[A-Z])")


def stage_name(stage: Stage) -> str:
    """A stage's `name` if it has one (Decide: `decide_egress`), else its class in snake case."""
    name = getattr(stage, "name", None)
    if isinstance(name, str):
        return name
    return _WORD.sub("_", type(stage).__name__).lower()
