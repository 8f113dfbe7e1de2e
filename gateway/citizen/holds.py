"""Live-case holds: a case under live investigation stays out of citizens' lookups until closed.

An operator opens a hold on an agreement and case reference (`concordat citizen hold`) and
closes it when the investigation ends (`concordat citizen release`). The holds live in one
small JSON file beside the node's configuration, replaced atomically on every change; the
node re-reads it when it changes, so a hold bites on the next lookup without a restart.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path
from typing import Any

import structlog

log = structlog.get_logger("concordat.citizen.holds")


@dataclass(frozen=True, slots=True)
class LiveCase:
    """One held case: the agreement, the case reference its exchanges carry, since when, why."""

    agreement_id: str
    case_reference: str
    opened_on: str
    note: str = ""


class HoldsUnreadable(Exception):
    """The holds file exists but is not a holds file; the message says why."""


class LiveCaseHolds:
    """The node's view of the holds file, re-read whenever the file changes.

    Fails closed: until the file has been read once, and whenever it exists but was never
    readable, every exchange that carries a case reference counts as held.
    """

    def __init__(self, path: Path | None) -> None:
        self._path = path
        self._held: frozenset[tuple[str, str]] = frozenset()
        self._version: tuple[int, int, int] | None = None
        self._readable = path is None

    def holds(self, agreement_id: str, case_reference: str) -> bool:
        if not case_reference:
            return False
        self._reload_if_changed()
        if not self._readable:
            return True
        return (agreement_id, case_reference) in self._held

    def _reload_if_changed(self) -> None:
        if self._path is None:
            return
        try:
            stat = self._path.stat()
        except FileNotFoundError:
            # No file: no hold was ever opened.
            self._held, self._version, self._readable = frozenset(), None, True
            return
        except OSError:
            return
        version = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        if version == self._version:
            return
        try:
            cases = read_holds(self._path)
        except (OSError, HoldsUnreadable) as exc:
            log.error("holds_unreadable", path=str(self._path), error=type(exc).__name__)
            # The last good holds stay; a file never read holds everything (see the class).
            return
        self._held = frozenset((case.agreement_id, case.case_reference) for case in cases)
        self._version, self._readable = version, True


def read_holds(path: Path) -> list[LiveCase]:
    """The open holds in `path` (none when the file does not exist)."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HoldsUnreadable(f"{path} is not JSON: {exc}") from exc
    if not isinstance(document, dict) or not isinstance(document.get("holds"), list):
        raise HoldsUnreadable(f"{path} must be an object with a 'holds' list")
    try:
        return [LiveCase(**_case_fields(item)) for item in document["holds"]]
    except TypeError as exc:
        raise HoldsUnreadable(f"{path}: a hold has missing or unknown members") from exc


def open_hold(
    path: Path, *, agreement_id: str, case_reference: str, note: str, today: date
) -> bool:
    """Holds a case; False if it was already held."""
    cases = read_holds(path)
    if any(c.agreement_id == agreement_id and c.case_reference == case_reference for c in cases):
        return False
    cases.append(LiveCase(agreement_id, case_reference, today.isoformat(), note))
    _write(path, cases)
    return True


def close_hold(path: Path, *, agreement_id: str, case_reference: str) -> bool:
    """Ends the hold on a case; False if it was not held."""
    cases = read_holds(path)
    kept = [
        c
        for c in cases
        if not (c.agreement_id == agreement_id and c.case_reference == case_reference)
    ]
    if len(kept) == len(cases):
        return False
    _write(path, kept)
    return True


def _case_fields(item: Any) -> dict[str, str]:
    if not isinstance(item, dict) or not all(isinstance(v, str) for v in item.values()):
        raise TypeError("a hold is an object of strings")
    return item


def _write(path: Path, cases: list[LiveCase]) -> None:
    # Replaced atomically: a node re-reading the file never sees half of it.
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        json.dump({"holds": [asdict(case) for case in cases]}, file, indent=2)
    os.replace(temporary, path)
