"""`concordat policy`: test, evaluate, measure the impact of and package a Rego bundle.

Every command takes the bundle one of three ways: `--jurisdiction whitehall` (the checkout's
policies/common + policies/whitehall), `--config NODE.toml` (the node config's
`policy.bundle`) or `--bundle DIR` (repeat it: `--bundle policies/common --bundle mine/`).
All of them run the embedded engine (rego-cpp) in this process.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar, cast

import typer

from gateway.domain import Direction
from gateway.policy.bundle import PolicyBundleError
from gateway.policy.tools import (
    CHANGE_KINDS,
    BundleSigning,
    PolicyToolError,
    build_opa_bundle,
    bundle_directories,
    decision_document,
    evaluate,
    impact,
    parse_since,
    read_audit_events,
    read_json_input,
    run_tests,
    select_policy_input,
)


def _reflow(text: str) -> str:
    """Typer prints a docstring's line breaks as they are: join each paragraph's lines."""
    return "\n\n".join(" ".join(p.split()) for p in inspect.cleandoc(text).split("\n\n"))


F = TypeVar("F", bound=Callable[..., Any])


def _reflowed(function: F) -> F:
    function.__doc__ = _reflow(function.__doc__ or "")
    return function


policy_app = typer.Typer(no_args_is_help=True, help=_reflow(__doc__ or ""))

EXIT_DENIED = 2

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="A node config: use its policy.bundle folders."),
]
BundleOption = Annotated[
    list[Path] | None,
    typer.Option("--bundle", "-b", help="A bundle folder; repeat for each (common first)."),
]
JurisdictionOption = Annotated[
    str | None,
    typer.Option(
        "--jurisdiction", "-j", help="policies/common + policies/<this> from the checkout."
    ),
]


def _directories(
    config: Path | None, bundle: list[Path] | None, jurisdiction: str | None
) -> list[Path]:
    try:
        return bundle_directories(config=config, bundles=bundle or (), jurisdiction=jurisdiction)
    except PolicyToolError as exc:
        raise _fail(str(exc)) from exc


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code=code)


def _names(directories: list[Path]) -> str:
    return " + ".join(str(d) for d in directories)


@policy_app.command("test")
@_reflowed
def test(
    config: ConfigOption = None,
    bundle: BundleOption = None,
    jurisdiction: JurisdictionOption = None,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Also list which test files name each rule.")
    ] = False,
    fail_uncovered: Annotated[
        bool, typer.Option(help="Exit 1 when a rule id is named by no test.")
    ] = False,
) -> None:
    """Compile the bundle, run its Rego tests (`test_*` in `*_test.rego`), report coverage.

    Prints PASS or FAIL for each test and a summary; exits 1 if a test fails or the bundle
    does not compile (the message names file:line). Coverage is approximate: rego-cpp has
    no coverage API, so a rule id (the string in `failures contains "<id>"`, or an allow
    rule passed to `decision.make`) counts as covered when a *_test.rego file quotes it.
    That shows a test names the rule, not that evaluation passed through it; helper rules
    that decide no id are not counted.
    """
    directories = _directories(config, bundle, jurisdiction)
    try:
        report = run_tests(directories)
    except PolicyBundleError as exc:
        raise _fail(str(exc)) from exc
    typer.echo(f"bundle {_names(directories)} (revision {report.revision[:12]})")
    package = None
    for result in report.results:
        if result.package != package:
            package = result.package
            typer.echo(package)
        if result.passed:
            typer.secho(f"  PASS {result.name}", fg=typer.colors.GREEN)
        else:
            typer.secho(f"  FAIL {result.name}", fg=typer.colors.RED, bold=True)
    failed = len(report.failed)
    passed = len(report.results) - failed
    covered = len(report.coverage) - len(report.uncovered)
    typer.echo(
        f"{passed} passed, {failed} failed; compiled in {report.compile_seconds:.2f}s, "
        f"tests ran in {report.test_seconds:.2f}s"
    )
    typer.echo(f"rule coverage: {covered} of {len(report.coverage)} rule ids named by a test")
    for rule in report.uncovered:
        typer.secho(
            f"  not named by any test: {rule.rule_id} ({', '.join(rule.defined_in)})",
            fg=typer.colors.YELLOW,
        )
    if verbose:
        for rule in report.coverage:
            if rule.covered:
                typer.echo(f"  {rule.rule_id}: {', '.join(rule.named_by)}")
    if failed:
        for result in report.failed:
            typer.secho(f"FAILED {result.package}.{result.name}", fg=typer.colors.RED, err=True)
        raise typer.Exit(code=1)
    if not report.results:
        raise _fail("the bundle has no Rego tests")
    if fail_uncovered and report.uncovered:
        raise _fail(f"{len(report.uncovered)} rule id(s) named by no test")


@policy_app.command("eval")
@_reflowed
def eval_(
    input_file: Annotated[
        str,
        typer.Option(
            "--input",
            "-i",
            help="A policy input as JSON (a file, or - for standard input); an audit "
            "entry's {'egress': ..., 'ingress': ...} or whole event works too.",
        ),
    ],
    direction: Annotated[
        str | None,
        typer.Option(help="egress or ingress; default: the input's own direction."),
    ] = None,
    config: ConfigOption = None,
    bundle: BundleOption = None,
    jurisdiction: JurisdictionOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the decision as JSON.")] = False,
) -> None:
    """Decide one policy input and show the decision and why.

    Exit code: 0 when the decision allows, 2 when it denies, 1 when the input or the
    bundle cannot be used.
    """
    if direction is not None and direction not in ("egress", "ingress"):
        raise _fail("--direction must be egress or ingress")
    directories = _directories(config, bundle, jurisdiction)
    try:
        chosen, policy_input = select_policy_input(
            read_json_input(input_file), cast(Direction | None, direction)
        )
        decision = evaluate(directories, chosen, policy_input)
    except (PolicyToolError, PolicyBundleError) as exc:
        raise _fail(str(exc)) from exc
    document = decision_document(decision)
    if as_json:
        typer.echo(json.dumps({"direction": chosen, **document}, indent=2))
    else:
        _print_decision(chosen, document)
    if not decision.allow:
        raise typer.Exit(code=EXIT_DENIED)


def _print_decision(direction: str, document: dict[str, Any]) -> None:
    verdict = "ALLOW" if document["allow"] else "DENY"
    colour = typer.colors.GREEN if document["allow"] else typer.colors.RED
    typer.secho(f"{direction}: {verdict}", fg=colour, bold=True)
    typer.echo(f"rule:         {document['rule']}")
    typer.echo(f"agreement:    {document['agreement_id'] or '(none)'}")
    typer.echo(f"fields:       {', '.join(document['fields']) or '(none)'}")
    withheld = ", ".join(f"{f} ({rule})" for f, rule in document["withheld"].items())
    typer.echo(f"withheld:     {withheld or '(none)'}")
    typer.echo(f"pseudonymise: {'yes' if document['pseudonymise'] else 'no'}")
    if document["obligations"]:
        typer.echo("obligations:")
        for obligation in document["obligations"]:
            parameters = ", ".join(f"{k}={v}" for k, v in sorted(obligation["parameters"].items()))
            typer.echo(f"  {obligation['code']}" + (f" ({parameters})" if parameters else ""))
    else:
        typer.echo("obligations:  (none)")
    if document["reasons"]:
        typer.echo("reasons (every failing check, in the order that decides):")
        for reason in document["reasons"]:
            typer.echo(f"  {reason}")


@policy_app.command("impact")
@_reflowed
def impact_(
    audit: Annotated[
        Path | None,
        typer.Option(help="The node's audit log (SQLite); default: the --config node's log."),
    ] = None,
    config: ConfigOption = None,
    bundle: BundleOption = None,
    jurisdiction: JurisdictionOption = None,
    since: Annotated[
        str | None, typer.Option(help="Only entries recorded on or after this ISO date.")
    ] = None,
    as_of: Annotated[
        str | None,
        typer.Option(
            help="Decide as if on this date (YYYY-MM-DD) instead of the day each input records."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Re-decide every policy input an audit log recorded, with this bundle, and report flips.

    Compares each recorded decision's allow and rule with the bundle's: allowed → denied,
    denied → allowed, and same outcome under another rule, grouped by direction, agreement
    and rules, with counts and example exchange ids. Entries refused before any decision
    carry no policy input and are counted as skipped. The log is opened read-only and holds
    no subject identifiers; none are printed. Exits 0 unless the bundle or log is unusable.
    """
    directories = _directories(config, bundle, jurisdiction)
    if audit is None:
        if config is None:
            raise _fail("give --audit (or --config, to use that node's audit log)")
        from gateway.config import load_config

        audit = load_config(config).audit.path
        if audit is None:
            raise _fail(
                "this node keeps its log in PostgreSQL: run `concordat audit export` and "
                "give the file with --audit"
            )
    try:
        since_value = parse_since(since) if since else None
        as_of_value = parse_since(as_of) if as_of else None
        if as_of_value is not None and len(as_of_value) != 10:
            raise PolicyToolError("--as-of must be a date (YYYY-MM-DD)")
        report = impact(directories, read_audit_events(audit), since=since_value, as_of=as_of_value)
    except (PolicyToolError, PolicyBundleError) as exc:
        raise _fail(str(exc)) from exc
    if as_json:
        typer.echo(json.dumps({"audit": str(audit), **report.as_json()}, indent=2))
        return
    nodes = ", ".join(sorted(n for n in report.nodes if n)) or "no node"
    typer.echo(
        f"impact of bundle {_names(directories)} (revision {report.revision[:12]}) "
        f"on {report.entries} audit entries of {nodes} ({audit})"
        + (f", recorded since {since_value}" if since_value else "")
    )
    foreign = sorted(n for n in report.nodes if n and n != report.administration)
    if report.administration and foreign:
        typer.secho(
            f"warning: this is {report.administration}'s bundle, but the log holds entries of "
            f"{', '.join(foreign)}: their inputs name another deciding node",
            fg=typer.colors.YELLOW,
        )
    if as_of_value:
        typer.echo(f"decided as of {as_of_value}")
    typer.echo(
        f"re-evaluated {report.decisions} decisions: {report.unchanged} unchanged, "
        f"{report.changed} changed"
    )
    for reason, count in sorted(report.skipped.items()):
        typer.echo(f"skipped {count}: {reason}")
    for kind in CHANGE_KINDS:
        groups = [g for g in report.changes if g.kind == kind]
        if not groups:
            continue
        typer.secho(f"{kind}: {report.count(kind)}", bold=True)
        for group in groups:
            typer.echo(
                f"  {group.count:>6} {group.direction:<7} {group.agreement_id}: "
                f"{group.recorded_rule} → {group.rule}  e.g. {', '.join(group.examples)}"
            )
    if not report.changes:
        typer.echo("no decision would change")


@policy_app.command("build")
@_reflowed
def build(
    out: Annotated[Path, typer.Option(help="The bundle tarball to write (bundle.tar.gz).")],
    config: ConfigOption = None,
    bundle: BundleOption = None,
    jurisdiction: JurisdictionOption = None,
    include_tests: Annotated[
        bool, typer.Option(help="Also pack the *_test.rego modules (for `opa test`).")
    ] = False,
    signing_key: Annotated[
        Path | None,
        typer.Option(help="Sign the bundle with this PEM private key (Ed25519, ECDSA or RSA)."),
    ] = None,
    signing_alg: Annotated[
        str | None,
        typer.Option(
            help="EdDSA, ES256/384/512, RS256/384/512 or PS256/384/512; by default the "
            "key's own (RS256 for RSA). OPA must be given the same (--signing-alg)."
        ),
    ] = None,
    key_id: Annotated[
        str, typer.Option(help="The key id OPA verifies with (--verification-key-id).")
    ] = "default",
) -> None:
    """Write the bundle as one OPA bundle tarball, for `opa run --server --bundle OUT`.

    Holds /.manifest (the folders' roots merged, and the revision a node records for these
    folders), one /data.json with the merged data, and the modules. The bundle must compile.
    With --signing-key it also holds /.signatures.json in OPA's bundle signature format,
    which `opa run --verification-key PUBLIC.pem --signing-alg ALG` checks before it
    activates the bundle (docs/opa-sidecar.md).
    """
    directories = _directories(config, bundle, jurisdiction)
    try:
        signing = (
            BundleSigning.from_pem(signing_key, algorithm=signing_alg, key_id=key_id)
            if signing_key is not None
            else None
        )
    except PolicyToolError as exc:
        raise _fail(str(exc)) from exc
    if signing is None and signing_alg is not None:
        raise _fail("--signing-alg needs --signing-key")
    try:
        built = build_opa_bundle(directories, out, include_tests=include_tests, signing=signing)
    except PolicyBundleError as exc:
        raise _fail(str(exc)) from exc
    signed = f", signed {signing.algorithm} (key id {signing.key_id})" if signing else ""
    typer.echo(
        f"wrote {built.path}: {len(built.files)} files, revision {built.revision}, "
        f"roots {', '.join(built.roots) or '(all)'}{signed}"
    )
