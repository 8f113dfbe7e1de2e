"""Runs one node as `concordat node` does, but deciding as on a fixed day (tests only).

    python -m tests.support.pinned_node --today 2026-11-21 --config node.json

Policies compare the node's day with each agreement's dates, so end-to-end tests pin it;
production has no way to set the day (see gateway/clock.py).
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Annotated

import typer

from gateway.cli import run_node
from gateway.clock import FixedClock


def main(
    config: Annotated[Path, typer.Option("--config", "-c", help="The node's configuration.")],
    today: Annotated[str, typer.Option(help="The day the node decides on (YYYY-MM-DD).")],
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING or ERROR.")] = "INFO",
) -> None:
    try:
        day = date.fromisoformat(today)
    except ValueError as exc:
        raise typer.BadParameter("must be a date (YYYY-MM-DD)", param_hint="--today") from exc
    run_node(config, log_level=log_level, clock=FixedClock(day))


if __name__ == "__main__":
    typer.run(main)
