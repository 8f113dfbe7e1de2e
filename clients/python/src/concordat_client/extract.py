"""`concordat-extract` (and `concordat extract`): a bulk extract to CSV or JSON Lines.

It shows records, records per second and the time elapsed (and the time left, given
`--expected`); after an interruption the same command carries on where the file ends
(concordat_client.extract_file); at the end it says what was released and withheld and the
obligations that travel with the data, and writes them to `<out>.summary.json`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, get_args

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from concordat_client.channel import command_token
from concordat_client.client import Client
from concordat_client.errors import ConcordatClientError, Unavailable
from concordat_client.extract_file import (
    ExtractFile,
    ExtractFileError,
    ExtractRequest,
    Format,
    Summary,
    summary_path,
)
from concordat_client.messages import RECORD_CLASSES, Purpose, Subject, SubjectKind

# Exit codes: a refusal or bad option, the node unavailable after retries (EX_TEMPFAIL: run
# the same command again), and Ctrl-C.
_FAILED = 1
_TRY_AGAIN = 75
_INTERRUPTED = 130


class _Rate(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f} records/s" if speed else "- records/s")


def _fail(console: Console, message: str, code: int = _FAILED) -> typer.Exit:
    console.print(message, markup=False, highlight=False, soft_wrap=True)
    return typer.Exit(code)


def _subject(text: str) -> Subject:
    kind, _, value = text.partition("=")
    if kind not in get_args(SubjectKind) or not value:
        raise typer.BadParameter(f"kind=value, kind one of {', '.join(get_args(SubjectKind))}")
    if kind == "uprn":
        if not value.isdigit():
            raise typer.BadParameter("a uprn is digits")
        return Subject("uprn", int(value))
    return Subject(kind, value)  # type: ignore[arg-type]  # checked against SubjectKind above


def extract(
    out: Annotated[Path, typer.Argument(help="The file to write (.csv, or .jsonl).")],
    target: Annotated[str, typer.Option(envvar="CONCORDAT_TARGET", help="Your node, host:port.")],
    token_command: Annotated[
        str,
        typer.Option(
            envvar="CONCORDAT_TOKEN_COMMAND",
            help="A command that prints a fresh bearer token; run for every call.",
        ),
    ],
    record_type: Annotated[str, typer.Option(help="e.g. BENEFIT_AWARD")],
    purpose: Annotated[str, typer.Option(help="e.g. RESEARCH")],
    agreement: Annotated[str, typer.Option(help="The data sharing agreement id.")],
    fields: Annotated[str, typer.Option(help="Comma-separated fields you need.")],
    subject: Annotated[
        list[str] | None,
        typer.Option(help="kind=value; repeat for several (default: all the agreement covers)."),
    ] = None,
    provider_node: Annotated[str, typer.Option(help="The node that holds the records.")] = "",
    case_reference: Annotated[str, typer.Option()] = "",
    batch_size: Annotated[int, typer.Option(help="Records per batch (0: the node's).")] = 0,
    output_format: Annotated[
        str, typer.Option("--format", help="csv or jsonl (default: from OUT's suffix).")
    ] = "",
    expected: Annotated[
        int | None, typer.Option(help="The records you expect, to show the time left.")
    ] = None,
    ca_cert: Annotated[
        Path | None,
        typer.Option(envvar="CONCORDAT_CA_CERT", help="Your node's CA (PEM); default: system."),
    ] = None,
    server_name: Annotated[str | None, typer.Option(help="The name in the node's cert.")] = None,
    timeout: Annotated[float | None, typer.Option(help="Seconds for the whole extract.")] = None,
    restart: Annotated[bool, typer.Option(help="Start over, discarding OUT.")] = False,
) -> None:
    """Extract records to CSV or JSON Lines; run it again after an interruption to resume."""
    console = Console(stderr=True)
    if record_type.upper() not in RECORD_CLASSES:
        raise _fail(console, f"unknown record type; one of {', '.join(RECORD_CLASSES)}")
    if purpose.upper() not in get_args(Purpose):
        raise _fail(console, f"unknown purpose; one of {', '.join(get_args(Purpose))}")
    chosen = output_format or ("jsonl" if out.suffix in (".jsonl", ".ndjson") else "csv")
    if chosen not in get_args(Format):
        raise _fail(console, "--format is csv or jsonl")
    request = ExtractRequest(
        record_type=record_type.upper(),
        purpose=purpose.upper(),  # type: ignore[arg-type]  # checked against Purpose above
        agreement_id=agreement,
        fields=tuple(name.strip() for name in fields.split(",") if name.strip()),
        subjects=tuple(_subject(text) for text in subject or ()),
        provider_node=provider_node,
        case_reference=case_reference,
        format=chosen,  # type: ignore[arg-type]  # checked against Format above
    )
    try:
        output = ExtractFile.open(out, request, restart=restart)
    except ExtractFileError as exc:
        raise _fail(console, str(exc)) from exc
    if output.resuming:
        console.print(f"resuming {out} after {output.records:,} records")
    client = Client(
        target, token=command_token(token_command), ca_cert=ca_cert, server_name=server_name
    )
    try:
        summary = _run(console, client, output, request, batch_size, expected, timeout)
    finally:
        client.close()
    _print_summary(console, out, summary)


def _run(
    console: Console,
    client: Client,
    output: ExtractFile,
    request: ExtractRequest,
    batch_size: int,
    expected: int | None,
    timeout: float | None,
) -> Summary:
    columns: list[ProgressColumn] = [
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:,} records"),
        _Rate(),
        TimeElapsedColumn(),
    ]
    if expected is not None:
        columns.append(TimeRemainingColumn())
    batches = client.stream_records(
        RECORD_CLASSES[request.record_type],
        purpose=request.purpose,
        agreement_id=request.agreement_id,
        fields=request.fields,
        subjects=request.subjects,
        batch_size=batch_size,
        case_reference=request.case_reference,
        provider_node=request.provider_node,
        resume_token=output.resume_token,
        timeout=timeout,
    )
    try:
        with Progress(*columns, console=console) as progress:
            task = progress.add_task(output.out.name, total=expected, completed=output.records)
            for batch in batches:
                output.add(batch)
                progress.update(task, completed=output.records)
        return output.finish()
    except KeyboardInterrupt:
        output.close()
        raise _fail(
            console,
            f"interrupted after {output.records:,} records; run the same command to resume",
            _INTERRUPTED,
        ) from None
    except Unavailable as exc:
        output.close()
        raise _fail(
            console,
            f"{exc}\nstopped after {output.records:,} records; run the same command to resume",
            _TRY_AGAIN,
        ) from exc
    except ConcordatClientError as exc:
        output.close()
        raise _fail(console, f"{exc}\nstopped after {output.records:,} records") from exc


def _print_summary(console: Console, out: Path, summary: Summary) -> None:
    console.print(
        f"[bold]{summary.records:,} records[/] written to {out} "
        f"({len(summary.exchanges)} exchange(s): "
        f"{', '.join(e['exchange_id'] for e in summary.exchanges)})",
        soft_wrap=True,
    )
    console.print(f"released: {', '.join(summary.released_fields)}", soft_wrap=True)
    if summary.columns and summary.columns[-1] == "pseudonym":
        console.print("pseudonymised: each record carries a pseudonym in place of the subject")
    for withheld in summary.withheld:
        console.print(f"withheld: {withheld.field} ({withheld.rule})", soft_wrap=True)
    if summary.obligations:
        console.print(
            f"obligations that travel with the data (in {summary_path(out)}):", soft_wrap=True
        )
    for obligation in summary.obligations:
        parameters = ", ".join(f"{k}={v}" for k, v in sorted(obligation.parameters.items()))
        console.print(
            f"  {obligation.code} {parameters} - {obligation.description}",
            markup=False,
            soft_wrap=True,
        )


app = typer.Typer(add_completion=False)
app.command()(extract)
