"""The one reader of a stored audit log's entries, for tools and tests (never for the node).

Read-only: a running node may be writing the same file. `audit verify` reads the chain and the
seals itself (gateway/audit/verify.py); everything else that needs the recorded events comes here.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class AuditLogUnreadable(Exception):
    """The file is missing or is not an audit log; the message says which."""


@dataclass(frozen=True, slots=True)
class RecordedEvent:
    """One entry's event as it was recorded, with its place in the chain."""

    seq: int
    recorded_at: str
    event: Mapping[str, Any]


def read_events(path: Path) -> Iterator[RecordedEvent]:
    """Every entry of the log at `path`, in sequence order."""
    if not path.is_file():
        raise AuditLogUnreadable(f"audit log {path} does not exist")
    return _events(path)


def _events(path: Path) -> Iterator[RecordedEvent]:
    try:
        with closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as db:
            rows = db.execute("SELECT seq, recorded_at, event FROM entries ORDER BY seq")
            for seq, recorded_at, event_json in rows:
                yield RecordedEvent(seq=seq, recorded_at=recorded_at, event=json.loads(event_json))
    except sqlite3.DatabaseError as exc:
        raise AuditLogUnreadable(f"{path} is not a readable audit log: {exc}") from exc
