"""`concordat register`: check each administration's register of data sharing agreements and
publish it, as the DEA 2017 Part 5 codes of practice ask, for people (HTML) and machines (CSV,
JSON).

Both commands read the checkout's `policies/common` plus each administration's folder (or
`--policies DIR` holding the same layout); without `--jurisdiction` they take every
administration found there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gateway.cli.common import console, err_console, fail
from gateway.policy.bundle import PolicyBundle, PolicyBundleError, load_bundle
from gateway.policy.tools import POLICIES, register_problems
from gateway.register.entries import RegisterUnreadable, register_of
from gateway.register.publish import write_register

register_app = typer.Typer(no_args_is_help=True, help=" ".join((__doc__ or "").split()))

JurisdictionsOption = Annotated[
    list[str] | None,
    typer.Option(
        "--jurisdiction",
        "-j",
        help="An administration's folder; repeat for several (default: all).",
    ),
]
PoliciesOption = Annotated[
    Path, typer.Option(help="The folder holding common/ and each administration's folder.")
]


def _jurisdictions(policies: Path, asked: list[str] | None) -> list[str]:
    found = (
        sorted(p.name for p in policies.iterdir() if p.is_dir() and p.name != "common")
        if policies.is_dir()
        else []
    )
    if not found:
        raise fail(f"no administration folders in {policies}")
    unknown = sorted(set(asked or ()) - set(found))
    if unknown:
        raise fail(f"unknown jurisdiction {', '.join(unknown)}; known: {', '.join(found)}")
    return list(asked) if asked else found


def _checked_bundle(policies: Path, jurisdiction: str) -> PolicyBundle:
    """The jurisdiction's bundle, refused (exit 1) with every problem its register has."""
    try:
        bundle = load_bundle([policies / "common", policies / jurisdiction])
        problems = register_problems(bundle)
    except PolicyBundleError as exc:
        raise fail(f"{jurisdiction}: {exc}") from exc
    if problems:
        for problem in problems:
            err_console.print(f"[red]{jurisdiction}[/]: {problem}")
        raise fail(f"the {jurisdiction} register has {len(problems)} problem(s)")
    return bundle


@register_app.command("check")
def check(
    jurisdiction: JurisdictionsOption = None,
    policies: PoliciesOption = POLICIES,
) -> None:
    """Check each register: every agreement carries the DEA register's fields, well formed."""
    for name in _jurisdictions(policies, jurisdiction):
        bundle = _checked_bundle(policies, name)
        count = len(register_of(bundle).entries)
        console.print(f"[green]ok[/]: {name}, {count} agreements, no problems")


@register_app.command("publish")
def publish(
    out: Annotated[Path, typer.Option(help="The folder to write the registers into.")],
    jurisdiction: JurisdictionsOption = None,
    policies: PoliciesOption = POLICIES,
) -> None:
    """Write each register as <administration>.html, .csv and .json into --out.

    A register the register check finds a problem in is not published: the problems are
    printed and the command exits 1.
    """
    bundles = {
        name: _checked_bundle(policies, name) for name in _jurisdictions(policies, jurisdiction)
    }
    for name, bundle in bundles.items():
        try:
            register = register_of(bundle)
        except RegisterUnreadable as exc:
            raise fail(f"{name}: {exc}") from exc
        written = write_register(register, out)
        typer.echo(
            f"{name}: {len(register.entries)} agreements -> "
            + ", ".join(str(path) for path in written)
        )
