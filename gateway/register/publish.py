"""An administration's register written for people (one self-contained HTML document) and
for machines (CSV and JSON), as the codes of practice ask agreements to be published.

The HTML fetches nothing: its style sheet is inline and it links nowhere but within itself,
so it reads the same offline, from a file share or behind a strict content security policy.
Every value is escaped. CSV and JSON hold the same columns (`entries.COLUMNS`); in CSV a
list is its items joined by "; " and a value that does not apply is empty.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict
from html import escape
from pathlib import Path
from typing import Any

from gateway.register.entries import COLUMNS, Register, RegisterEntry

LIST_SEPARATOR = "; "
FORMATS = ("html", "csv", "json")

_STATUS_WORDS = {"active": "In force", "suspended": "Suspended", "ended": "Ended"}

_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem auto;
max-width:72rem;padding:0 1rem;color:#1b1b1b;line-height:1.45}
h1{font-size:1.6rem;margin-bottom:.25rem}h2{font-size:1.2rem;margin-top:2.5rem;
border-top:1px solid #ccc;padding-top:1rem}p.notes{color:#444}
table{border-collapse:collapse;width:100%;font-size:.92rem}
th,td{border:1px solid #ccc;padding:.35rem .5rem;text-align:left;vertical-align:top}
th{background:#f3f3f3}dl{display:grid;grid-template-columns:14rem 1fr;gap:.3rem 1rem}
dt{font-weight:600}dd{margin:0}.status{font-weight:600;padding:.05rem .4rem;border-radius:.2rem}
.status-active{background:#e3f4e1}.status-suspended{background:#fff1c2}
.status-ended{background:#eee;color:#555}
"""


def csv_value(value: Any) -> str:
    """A column's value as one CSV cell."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, tuple | list):
        return LIST_SEPARATOR.join(value)
    return str(value)


def register_csv(register: Register) -> str:
    """The register as CSV: a header of column keys, then one row per agreement."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([c.key for c in COLUMNS])
    for entry in register.entries:
        values = asdict(entry)
        writer.writerow([csv_value(values[c.key]) for c in COLUMNS])
    return out.getvalue()


def register_json(register: Register) -> str:
    """The register as one JSON document: who publishes it, which revision, every entry."""
    document = {
        "administration": register.administration,
        "revision": register.revision,
        "notes": register.notes,
        "columns": {c.key: c.heading for c in COLUMNS},
        "agreements": [asdict(entry) for entry in register.entries],
    }
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def register_html(register: Register) -> str:
    """The register as one self-contained HTML document: a summary table, then each entry."""
    title = f"Register of data sharing agreements: {register.administration}"
    rows = "".join(_summary_row(entry) for entry in register.entries)
    sections = "".join(_section(entry) for entry in register.entries)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>{escape(title)}</h1>"
        f'<p class="notes">{escape(register.notes)}</p>'
        f"<p>{len(register.entries)} agreements; bundle revision "
        f"<code>{escape(register.revision[:12])}</code>.</p>"
        "<table><thead><tr><th>Agreement</th><th>Name</th><th>Purpose</th><th>Status</th>"
        "<th>Start</th><th>End</th><th>Review</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>{sections}</body></html>\n"
    )


def write_register(register: Register, out: Path) -> tuple[Path, ...]:
    """Write `<administration>.html`, `.csv` and `.json` into `out`; the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for extension, text in (
        ("html", register_html(register)),
        ("csv", register_csv(register)),
        ("json", register_json(register)),
    ):
        path = out / f"{register.administration}.{extension}"
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return tuple(written)


def _status(entry: RegisterEntry) -> str:
    words = _STATUS_WORDS.get(entry.status, entry.status)
    return f'<span class="status status-{escape(entry.status)}">{escape(words)}</span>'


def _summary_row(entry: RegisterEntry) -> str:
    cells = (
        f'<a href="#{escape(entry.id)}">{escape(entry.id)}</a>',
        escape(entry.name),
        escape(entry.purpose),
        _status(entry),
        escape(entry.start),
        escape(entry.end),
        escape(entry.review),
    )
    return "<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>"


def _section(entry: RegisterEntry) -> str:
    values = asdict(entry)
    terms = []
    for column in COLUMNS:
        value = values[column.key]
        if column.key == "status":
            shown = _status(entry)
        elif value is None:
            shown = "not applicable"
        else:
            shown = escape(csv_value(value)) or "none"
        terms.append(f"<dt>{escape(column.heading)}</dt><dd>{shown}</dd>")
    return (
        f'<section id="{escape(entry.id)}"><h2>{escape(entry.name)}</h2>'
        f"<dl>{''.join(terms)}</dl></section>"
    )
