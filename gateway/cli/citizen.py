"""`concordat citizen`: hold a live case out of citizens' lookups, release it, list the holds.

A hold keeps every exchange under one agreement with one case reference out of the answers
citizens get (docs/citizens.md), whatever the agreement's disclosure delay, until released.
The node re-reads its holds file when it changes: a hold bites on the next lookup.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from gateway.citizen.holds import HoldsUnreadable, close_hold, open_hold, read_holds
from gateway.cli.common import console, fail
from gateway.clock import SystemClock
from gateway.config import ConfigError, load_config

citizen_app = typer.Typer(
    no_args_is_help=True, help="Hold live cases out of citizens' lookups, and release them."
)

ConfigOption = Annotated[Path, typer.Option("--config", "-c", help="The node's configuration.")]
AgreementOption = Annotated[str, typer.Option("--agreement", help="The agreement's id.")]
CaseOption = Annotated[
    str, typer.Option("--case-reference", help="The case reference its exchanges carry.")
]


def _holds_file(config: Path) -> Path:
    try:
        citizens = load_config(config).citizens
    except ConfigError as exc:
        raise fail(str(exc)) from exc
    if citizens is None or citizens.holds_file is None:
        raise fail(f"{config} sets no citizens.holds_file; add one to hold cases")
    return citizens.holds_file


@citizen_app.command("hold")
def hold(
    config: ConfigOption,
    agreement: AgreementOption,
    case_reference: CaseOption,
    note: Annotated[str, typer.Option(help="Why, for the next operator.")] = "",
) -> None:
    """Keep a live case's exchanges out of citizens' lookups until it is released."""
    path = _holds_file(config)
    try:
        opened = open_hold(
            path,
            agreement_id=agreement,
            case_reference=case_reference,
            note=note,
            today=SystemClock().today(),
        )
    except HoldsUnreadable as exc:
        raise fail(str(exc)) from exc
    console.print(
        f"{'held' if opened else 'already held'}: {agreement} {case_reference}", markup=False
    )


@citizen_app.command("release")
def release(config: ConfigOption, agreement: AgreementOption, case_reference: CaseOption) -> None:
    """End a hold: the case's exchanges follow their agreement's disclosure delay again."""
    path = _holds_file(config)
    try:
        closed = close_hold(path, agreement_id=agreement, case_reference=case_reference)
    except HoldsUnreadable as exc:
        raise fail(str(exc)) from exc
    if not closed:
        raise fail(f"no hold on {agreement} {case_reference}")
    console.print(f"released: {agreement} {case_reference}", markup=False)


@citizen_app.command("holds")
def holds(config: ConfigOption) -> None:
    """List the cases held."""
    try:
        cases = read_holds(_holds_file(config))
    except HoldsUnreadable as exc:
        raise fail(str(exc)) from exc
    table = Table("agreement", "case reference", "since", "note")
    for case in cases:
        table.add_row(case.agreement_id, case.case_reference, case.opened_on, case.note)
    console.print(table)
