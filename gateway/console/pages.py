"""The console's pages as plain HTML: every value escaped, styles inline, nothing fetched."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from html import escape

from concordat.exchange.v1 import exchange_pb2
from concordat.transparency.v1 import transparency_pb2
from gateway.console.readings import Count, NodeReading
from gateway.federation.directory import DirectoryEntry
from gateway.register.entries import Register

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5rem; color: #1b1b1b; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.2rem; margin-top: 2rem; }
h3 { font-size: 1rem; margin-bottom: .3rem; }
table { border-collapse: collapse; margin: .4rem 0 1rem; }
th, td { border: 1px solid #c8c8c8; padding: .25rem .5rem; text-align: left; font-size: .9rem; }
th { background: #f0f0f0; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
nav a { margin-right: 1rem; } .problem { color: #a00; } .muted { color: #666; }
.SERVING { color: #006b2e; font-weight: bold; } .bad { color: #a00; font-weight: bold; }
.grid { display: flex; flex-wrap: wrap; gap: 2rem; }
textarea { width: 40rem; height: 6rem; font-family: monospace; }
"""


def _page(title: str, body: str) -> str:
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>"
        "<nav><a href='/'>Federation</a><a href='/citizen'>Citizen's view</a></nav>"
        f"<h1>{escape(title)}</h1>{body}</body></html>"
    )


def _table(headings: Sequence[str], rows: Iterable[Sequence[object]], *, table_id: str = "") -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headings)
    body = "".join(
        "<tr>"
        + "".join(
            f"<td class='n'>{_number(cell)}</td>"
            if isinstance(cell, int | float)
            else f"<td>{escape(str(cell))}</td>"
            for cell in row
        )
        + "</tr>"
        for row in rows
    )
    if not body:
        body = f"<tr><td colspan='{len(headings)}' class='muted'>none</td></tr>"
    ident = f" id='{escape(table_id)}'" if table_id else ""
    return f"<table{ident}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _number(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


def _counts(counts: Sequence[Count]) -> list[tuple[object, ...]]:
    return [(*c.labels, c.value) for c in counts]


def console_page(
    readings: Sequence[NodeReading],
    directory: Sequence[DirectoryEntry],
    directory_problem: str,
    registers: Sequence[Register],
    register_problems: Sequence[str],
) -> str:
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    parts = [f"<p class='muted'>Read from the nodes at {now}. Reload to read again.</p>"]
    parts.append("<h2>Nodes</h2>")
    parts.append(
        _table(
            ("node", "health", "bundle revision", "agreements registered", "problems"),
            (
                (
                    r.name,
                    r.health,
                    r.revision or "unknown",
                    r.agreements_registered if r.agreements_registered is not None else "?",
                    "; ".join(r.problems),
                )
                for r in readings
            ),
            table_id="nodes",
        )
    )
    parts.append("<h2>Directory</h2>")
    if directory_problem:
        parts.append(f"<p class='problem'>{escape(directory_problem)}</p>")
    parts.append(
        _table(
            ("node", "name", "exchange endpoint", "federation endpoint", "serial", "serves"),
            (
                (
                    e.node,
                    e.name,
                    e.exchange_endpoint,
                    e.federation_endpoint,
                    e.serial,
                    ", ".join(sorted({rule.record_type for rule in e.serves})),
                )
                for e in directory
            ),
            table_id="directory",
        )
    )
    for reading in readings:
        parts.append(f"<h2 id='node-{escape(reading.name)}'>{escape(reading.name)}</h2>")
        parts.append("<div class='grid'><div><h3>Traffic by agreement and outcome</h3>")
        parts.append(
            _table(
                ("agreement", "role", "outcome", "exchanges"),
                _counts(reading.traffic),
                table_id=f"traffic-{reading.name}",
            )
        )
        parts.append("</div><div><h3>Denials by rule</h3>")
        parts.append(
            _table(
                ("direction", "deciding node", "rule", "denials"),
                _counts(reading.denials),
                table_id=f"denials-{reading.name}",
            )
        )
        parts.append("</div><div><h3>Circuit breakers</h3>")
        parts.append(
            _table(
                ("peer", "state"),
                ((c.labels[0], c.labels[1]) for c in reading.breakers),
                table_id=f"breakers-{reading.name}",
            )
        )
        parts.append("</div></div><h3>Meter (from the audit log)</h3>")
        parts.append(
            _table(
                ("requester", "agreement", "role", "exchanges", "released", "denied", "records"),
                (
                    (
                        m.requester,
                        m.agreement_id,
                        m.role,
                        m.exchanges,
                        m.released,
                        m.denied,
                        m.records,
                    )
                    for m in reading.meter
                ),
                table_id=f"meter-{reading.name}",
            )
        )
    parts.append("<h2>Registers</h2>")
    parts.extend(f"<p class='problem'>{escape(p)}</p>" for p in register_problems)
    for register in registers:
        parts.append(
            f"<h3>{escape(register.administration)} "
            f"<span class='muted'>revision {escape(register.revision[:12])}</span></h3>"
        )
        parts.append(
            _table(
                ("agreement", "name", "status", "purpose", "legal power", "review", "delay (days)"),
                (
                    (
                        e.id,
                        e.name,
                        e.status,
                        e.purpose,
                        e.legal_power,
                        e.review,
                        e.disclosure_delay_days,
                    )
                    for e in register.entries
                ),
                table_id=f"register-{register.administration}",
            )
        )
    return _page("Concordat federation", "".join(parts))


def citizen_page(
    nodes: Sequence[str],
    *,
    chosen: str = "",
    answer: transparency_pb2.ListMyExchangesResponse | None = None,
    error: str = "",
) -> str:
    options = "".join(
        f"<option value='{escape(n)}'{' selected' if n == chosen else ''}>{escape(n)}</option>"
        for n in nodes
    )
    form = (
        "<p>Who used my data: every exchange of records about you, from all four "
        "administrations, newest first. Sign in with your administration's citizen identity "
        "provider and paste the token it gives you.</p>"
        "<form method='post' action='/citizen'>"
        f"<p><label>Your administration <select name='node' id='node'>{options}</select>"
        "</label></p><p><label>Your token<br><textarea name='token' id='token' required>"
        "</textarea></label></p><p><button type='submit' id='ask'>Show who used my data"
        "</button></p></form>"
    )
    parts = [form]
    if error:
        parts.append(f"<p class='problem' id='error'>{escape(error)}</p>")
    if answer is not None:
        parts.append(f"<h2>Exchanges about you ({len(answer.exchanges)})</h2>")
        if answer.unanswered_administrations:
            parts.append(
                "<p class='problem'>Not answering just now (ask again later): "
                f"{escape(', '.join(answer.unanswered_administrations))}</p>"
            )
        parts.append(
            _table(
                ("when", "who asked", "who provided", "purpose", "agreement", "legal power",
                 "record", "fields released"),
                (
                    (
                        e.at.ToDatetime(tzinfo=UTC).strftime("%Y-%m-%d %H:%M UTC"),
                        _body(e.requester),
                        _body(e.provider),
                        exchange_pb2.Purpose.Name(e.purpose).removeprefix("PURPOSE_"),
                        f"{e.agreement.name or e.agreement.id} ({e.agreement.id})",
                        e.agreement.legal_power,
                        exchange_pb2.RecordType.Name(e.record_type).removeprefix("RECORD_TYPE_"),
                        ", ".join(e.fields_released),
                    )
                    for e in answer.exchanges
                ),
                table_id="exchanges",
            )
        )  # fmt: skip
    return _page("Who used my data", "".join(parts))


def _body(body: transparency_pb2.Body) -> str:
    name = body.name or body.id
    return f"{name} ({body.administration})" if body.administration else name
