"""An extract's output file, written batch by batch, and the sidecar that lets it resume.

After each batch the file is flushed to disk, then `<out>.resume` is replaced atomically: it
holds the file's length and the batch's resume token. A run that stops anywhere (Ctrl-C, a
kill, a lost connection) leaves a sidecar that matches a prefix of the file; the next run
cuts the file back to that length and asks the node to continue after that batch, so the
finished file is the one an uninterrupted run writes. When the extract is complete the
sidecar goes and `<out>.summary.json` says what was released, withheld and obliged.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Literal

from google.protobuf import json_format
from google.protobuf.message import Message

from concordat_client.errors import ConcordatClientError, ReleaseChanged
from concordat_client.messages import Batch, Decisions, Obligation, Purpose, Subject, Withheld

Format = Literal["csv", "jsonl"]
PSEUDONYM = "pseudonym"


class ExtractFileError(ConcordatClientError):
    """The output file cannot be started or resumed as asked."""


@dataclass(frozen=True)
class ExtractRequest:
    """What identifies one extract: a sidecar resumes only the extract it was written for."""

    record_type: str
    purpose: Purpose
    agreement_id: str
    fields: tuple[str, ...]
    subjects: tuple[Subject, ...] = ()
    provider_node: str = ""
    case_reference: str = ""
    format: Format = "csv"

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()


@dataclass
class _State:
    """The sidecar's content."""

    extract: str
    resume_token: str = ""
    records: int = 0
    size: int = 0
    # Chosen at the first batch with records: the released fields in the order asked for,
    # then the pseudonym when the release is pseudonymised.
    columns: list[str] | None = None
    released_fields: list[str] | None = None
    exchanges: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Summary:
    """What an extract released, under which decisions, and what travels with it."""

    records: int
    columns: tuple[str, ...]
    released_fields: tuple[str, ...]
    withheld: tuple[Withheld, ...]
    obligations: tuple[Obligation, ...]
    # Every exchange the extract took (one more per resumption), with its decisions.
    exchanges: tuple[dict[str, Any], ...]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"


def sidecar_path(out: Path) -> Path:
    return out.with_name(out.name + ".resume")


def summary_path(out: Path) -> Path:
    return out.with_name(out.name + ".summary.json")


class ExtractFile:
    """The output file of one extract; `ExtractFile.open` starts it or resumes it."""

    def __init__(self, out: Path, request: ExtractRequest, state: _State, file: BinaryIO) -> None:
        self.out = out
        self._request = request
        self._state = state
        self._file = file

    @classmethod
    def open(cls, out: Path, request: ExtractRequest, *, restart: bool = False) -> ExtractFile:
        """Resumes the extract `<out>.resume` describes, or starts one; `restart` starts over."""
        sidecar = sidecar_path(out)
        if restart:
            sidecar.unlink(missing_ok=True)
            summary_path(out).unlink(missing_ok=True)
        elif sidecar.exists():
            state = _State(**json.loads(sidecar.read_text()))
            if state.extract != request.digest():
                raise ExtractFileError(
                    f"{sidecar} belongs to a different extract; give the same options to "
                    "resume it, or --restart to start this one over"
                )
            if not out.exists():
                raise ExtractFileError(f"{sidecar} is left, but {out} is gone: --restart")
            file = out.open("r+b")
            file.truncate(state.size)
            file.seek(state.size)
            return cls(out, request, state, file)
        elif out.exists():
            raise ExtractFileError(
                f"{out} exists and is not an extract in progress; choose another file or "
                "pass --restart to overwrite it"
            )
        extract = cls(out, request, _State(extract=request.digest()), out.open("wb"))
        extract._save()
        return extract

    @property
    def resume_token(self) -> str:
        return self._state.resume_token

    @property
    def records(self) -> int:
        return self._state.records

    @property
    def resuming(self) -> bool:
        return bool(self._state.resume_token)

    def add(self, batch: Batch[Message]) -> None:
        """Writes the batch, makes it durable, then records where the extract has reached."""
        if batch.decisions is not None:
            self._note_decisions(batch.exchange_id, batch.provider_node, batch.decisions)
        data = b""
        if batch.records and self._state.columns is None:
            self._state.columns = self._columns(any(batch.pseudonyms))
            data += self._header()
        if batch.records:
            data += self._rows(batch)
        self._write(data)
        self._state.records += len(batch.records)
        self._state.resume_token = batch.resume_token
        self._save()

    def finish(self) -> Summary:
        """Completes the file (a CSV header even with no records) and writes the summary."""
        if self._state.columns is None:
            self._state.columns = self._columns(pseudonymised=False)
            self._write(self._header())
        self._file.close()
        summary = self._summary()
        summary_path(self.out).write_text(summary.to_json())
        sidecar_path(self.out).unlink()
        return summary

    def close(self) -> None:
        self._file.close()

    def _note_decisions(self, exchange_id: str, provider: str, decisions: Decisions) -> None:
        released = list(decisions.released_fields)
        if self._state.released_fields is None:
            self._state.released_fields = released
        elif set(released) != set(self._state.released_fields):
            raise ReleaseChanged(
                f"the extract resumed under decisions that release {sorted(released)} instead "
                f"of {sorted(self._state.released_fields)}; --restart to start it over"
            )
        self._state.exchanges.append(
            {"exchange_id": exchange_id, "provider_node": provider, **asdict(decisions)}
        )

    def _columns(self, pseudonymised: bool) -> list[str]:
        released = set(self._state.released_fields or ())
        columns = [name for name in self._request.fields if name in released]
        return [*columns, PSEUDONYM] if pseudonymised else columns

    def _header(self) -> bytes:
        if self._request.format != "csv":
            return b""
        return _csv_line(self._state.columns or [])

    def _rows(self, batch: Batch[Message]) -> bytes:
        columns = self._state.columns or []
        lines = []
        for record, pseudonym in zip(batch.records, batch.pseudonyms, strict=True):
            values = {
                name: pseudonym if name == PSEUDONYM else _value(getattr(record, name))
                for name in columns
            }
            if self._request.format == "csv":
                lines.append(_csv_line([_cell(values[name]) for name in columns]))
            else:
                line = json.dumps(values, ensure_ascii=False, separators=(",", ":"))
                lines.append(line.encode() + b"\n")
        return b"".join(lines)

    def _write(self, data: bytes) -> None:
        self._file.write(data)
        self._file.flush()
        os.fsync(self._file.fileno())
        self._state.size = self._file.tell()

    def _save(self) -> None:
        sidecar = sidecar_path(self.out)
        partial = sidecar.with_name(sidecar.name + ".tmp")
        with partial.open("w") as file:
            json.dump(asdict(self._state), file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(partial, sidecar)

    def _summary(self) -> Summary:
        exchanges = self._state.exchanges
        first = exchanges[0] if exchanges else {}
        obligations: dict[str, Obligation] = {}
        for exchange in exchanges:
            for obligation in exchange["obligations"]:
                key = json.dumps(obligation, sort_keys=True)
                obligations.setdefault(key, Obligation(**obligation))
        return Summary(
            records=self._state.records,
            columns=tuple(self._state.columns or ()),
            released_fields=tuple(self._state.released_fields or ()),
            withheld=tuple(Withheld(**w) for w in first.get("withheld", ())),
            obligations=tuple(obligations.values()),
            exchanges=tuple(exchanges),
        )


def _value(value: Any) -> Any:
    """A record field's value as JSON has it (repeated fields as lists)."""
    if isinstance(value, Message):
        return json_format.MessageToDict(value, preserving_proto_field_name=True)
    if isinstance(value, str | int | float | bool):
        return value
    return [_value(item) for item in value]


def _cell(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _csv_line(cells: Sequence[str]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(cells)
    return buffer.getvalue().encode()
