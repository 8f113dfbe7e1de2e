"""The meter: exchanges, records and bytes per requester and agreement, per day.

A provider recovers its costs from these figures, so they come from the evidence itself:
the audit log adds each batch to the `meter` table in the same transaction that stores the
batch's entries, and `recount` rebuilds the same figures from the entries, so the meter can
always be checked against the signed chain (`concordat audit verify` does).

A bulk extract leaves two entries: an opening one before its first batch leaves and the
closing one when it ends. The opening adds one to `interrupted` and the closing takes it back
(on the opening's day), so an extract whose node was killed mid-stream stays counted as
interrupted; the exchange itself, its records and bytes, are counted once, by the closing.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping
from contextlib import closing
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS meter (
    day TEXT NOT NULL,
    role TEXT NOT NULL,
    requester TEXT NOT NULL,
    agreement_id TEXT NOT NULL,
    exchanges INTEGER NOT NULL,
    released INTEGER NOT NULL,
    denied INTEGER NOT NULL,
    records INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    interrupted INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (day, role, requester, agreement_id)
);
"""
ADD = """
INSERT INTO meter (
    day, role, requester, agreement_id, exchanges, released, denied, records, bytes, interrupted
)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (day, role, requester, agreement_id) DO UPDATE SET
    exchanges = exchanges + excluded.exchanges,
    released = released + excluded.released,
    denied = denied + excluded.denied,
    records = records + excluded.records,
    bytes = bytes + excluded.bytes,
    interrupted = interrupted + excluded.interrupted
"""
_COUNTS = ("exchanges", "released", "denied", "records", "bytes", "interrupted")
# An extract's opening entry says so in its `phase`; its closing entry names the opening.
OPENING_PHASE = "opening"

MeterKey = tuple[str, str, str, str]


@dataclass(frozen=True, slots=True)
class MeterRow:
    """What one requester did under one agreement (on this node, in this role)."""

    requester: str
    agreement_id: str
    role: str
    exchanges: int
    released: int
    denied: int
    records: int
    bytes: int
    interrupted: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def key_of(event: Mapping[str, Any], recorded_at: str) -> MeterKey:
    """(day, role, requester, agreement): requester is organisation@administration."""
    requester = event.get("requester") or {}
    who = (
        f"{requester.get('organisation', '')}@{requester.get('administration', '')}"
        if requester
        else "(unauthenticated)"
    )
    return (
        recorded_at[:10],
        str(event.get("role", "")),
        who,
        str(event.get("agreement_id", "")),
    )


def counts_of(event: Mapping[str, Any]) -> tuple[int, int, int, int, int, int]:
    if event.get("phase") == OPENING_PHASE:
        return (0, 0, 0, 0, 0, 1)
    outcome = event.get("outcome")
    return (
        1,
        int(outcome == "released"),
        int(outcome == "denied"),
        int(event.get("records") or 0),
        int(event.get("bytes") or 0),
        0,
    )


def count(totals: dict[MeterKey, list[int]], event: Mapping[str, Any], recorded_at: str) -> None:
    """Adds one entry to running totals, as the meter table counts it."""
    row = totals.setdefault(key_of(event, recorded_at), [0] * len(_COUNTS))
    for index, value in enumerate(counts_of(event)):
        row[index] += value
    opening = event.get("opening")
    if isinstance(opening, Mapping) and isinstance(opening.get("recorded_at"), str):
        # The extract ended: it is no longer interrupted on the day it was opened.
        opened = totals.setdefault(key_of(event, opening["recorded_at"]), [0] * len(_COUNTS))
        opened[-1] -= 1


def tally(events: Iterable[tuple[Mapping[str, Any], str]]) -> dict[MeterKey, list[int]]:
    """Sums (event, recorded_at) pairs into meter rows."""
    totals: dict[MeterKey, list[int]] = {}
    for event, recorded_at in events:
        count(totals, event, recorded_at)
    return totals


def ensure_schema(connection: sqlite3.Connection) -> None:
    """Creates the meter table, or adds the `interrupted` column to one made before it."""
    connection.executescript(SCHEMA)
    columns = {row[1] for row in connection.execute("PRAGMA table_info(meter)")}
    if "interrupted" not in columns:
        connection.execute("ALTER TABLE meter ADD COLUMN interrupted INTEGER NOT NULL DEFAULT 0")


def add_rows(connection: sqlite3.Connection, totals: Mapping[MeterKey, list[int]]) -> None:
    """Adds a batch's totals; call inside the transaction that stores its entries."""
    connection.executemany(ADD, [(*key, *counts) for key, counts in totals.items()])


def read_meter(
    path: Path,
    *,
    since: str | None = None,
    until: str | None = None,
    agreement_id: str | None = None,
    requester: str | None = None,
) -> list[MeterRow]:
    """Totals per (requester, agreement, role) over the days from `since` to `until`."""
    clauses, parameters = [], []
    for clause, value in (
        ("day >= ?", since),
        ("day <= ?", until),
        ("agreement_id = ?", agreement_id),
        ("requester = ?", requester),
    ):
        if value:
            clauses.append(clause)
            parameters.append(value)
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    sums = ", ".join(f"SUM({name})" for name in _COUNTS)
    query = (
        f"SELECT requester, agreement_id, role, {sums} FROM meter {where}"  # noqa: S608 - fixed
        " GROUP BY requester, agreement_id, role ORDER BY requester, agreement_id, role"
    )
    with closing(_read_only(path)) as connection:
        return [MeterRow(*row) for row in connection.execute(query, parameters)]


def _read_only(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
