"""The observer seam: each stage watched under its name, in order, around the real stage."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from gateway.exchange import Exchange
from gateway.pipeline.observe import NoObserver, Observers, observed, stage_name
from gateway.pipeline.stages import Branch, RequireDecoded


class Recording:
    def __init__(self, label: str, log: list[str]) -> None:
        self._label = label
        self._log = log

    @contextmanager
    def exchange(self, exchange: Exchange) -> Iterator[None]:
        self._log.append(f"{self._label}:exchange")
        yield

    @contextmanager
    def stage(self, exchange: Exchange, name: str) -> Iterator[None]:
        self._log.append(f"{self._label}:enter {name}")
        yield
        self._log.append(f"{self._label}:leave {name}")


def _exchange() -> Exchange:
    return Exchange(
        rpc="GetRecord", role="local", request=object(), metadata=(), deadline_seconds=1
    )


async def test_an_observed_stage_runs_inside_every_observer_in_order() -> None:
    log: list[str] = []
    both = Observers([Recording("metrics", log), Recording("traces", log)])
    await observed(RequireDecoded(), both)(_exchange())
    assert log == [
        "metrics:enter require_decoded",
        "traces:enter require_decoded",
        "traces:leave require_decoded",
        "metrics:leave require_decoded",
    ]


def test_nothing_is_wrapped_when_nothing_watches_and_a_branch_is_never_wrapped() -> None:
    stage = RequireDecoded()
    assert observed(stage, NoObserver()) is stage
    branch = Branch("whitehall", local=[], remote=[])
    assert observed(branch, Recording("x", [])) is branch


def test_a_decision_stage_is_named_for_its_direction() -> None:
    from gateway.clock import SystemClock
    from gateway.pipeline.stages import Decide

    assert stage_name(Decide("ingress", "holyrood", engine=None, clock=SystemClock())) == (  # type: ignore[arg-type]  # the engine is never asked
        "decide_ingress"
    )
