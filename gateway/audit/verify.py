"""Checks an audit log file on its own, without the node that wrote it.

Each entry's hash is recomputed from its content and linked to the entry before it, and each
seal's signature is checked against the chain hash it names. A valid seal at N vouches for every
entry up to N, because the chain links them all. What the file alone cannot show is truncation:
whoever deletes the newest entries together with the seals that cover them leaves a shorter log
that verifies. Detecting that needs evidence kept elsewhere: the peers' receipts pin where each
exchange sits in the log (`concordat audit reconcile`), and the peers witness the chain's head
(docs/evidence.md). The witness signatures a node holds are checked here: each must verify with
the witness's published key and name an entry this log still has, with the same hash and the
same commitment over every entry hash up to it; a signature over an entry that is gone means
the log was cut after it was witnessed.

A bulk extract's opening entry without a closing one is an interrupted extract, not a fault:
the report lists them, and the meter counts them (gateway/audit/meter.py).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from gateway.audit import meter
from gateway.audit.chain import (
    GENESIS_COMMITMENT,
    GENESIS_HASH,
    WitnessSignature,
    entry_hash,
    fold_commitment,
    index_columns,
    seal_message,
    witness_message,
)
from gateway.audit.sqlite_log import WITNESS_SIGNATURES, witness_signature_of

# A witness's public key by (witness node, key id), as the signed directory publishes them;
# raises (any exception) for a key it does not know.
WitnessKeys = Callable[[str, str], Ed25519PublicKey]

# Problems about the log as a whole rather than one entry carry this sequence number.
LOG_WIDE = 0
_ROWS_PER_FETCH = 1000
_ENTRIES_IN_ORDER = (
    "SELECT seq, exchange_id, subject_hash, recorded_at, event, prev_hash, hash"
    " FROM entries ORDER BY seq"
)


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with the log, located at the entry (or seal) sequence number `seq`."""

    seq: int
    what: str


@dataclass(slots=True)
class VerifyReport:
    """The outcome: `ok` only if there are no problems; `sealed_upto` is the last valid seal."""

    ok: bool
    entries: int
    sealed_upto: int
    problems: list[Problem] = field(default_factory=list)
    # Extracts whose opening entry has no closing one (their node stopped mid-stream).
    interrupted: list[str] = field(default_factory=list)
    # Per witness, the last entry its valid signatures cover.
    witnessed_upto: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Seal:
    upto_seq: int
    hash: str
    sealed_at: str
    signature: str


@dataclass(frozen=True, slots=True)
class WitnessCheck:
    """How to check the witness signatures a log holds.

    `keys` finds each witness's public key. Each of `expected` must have signed a head at or
    after every entry recorded before `due_before` (ISO 8601, as entries' `recorded_at`):
    a witness that has not is reported as a missing signature.
    """

    keys: WitnessKeys
    expected: Sequence[str] = ()
    due_before: str = ""


def verify_log(
    path: Path,
    public_keys: Ed25519PublicKey | Collection[Ed25519PublicKey] | None = None,
    *,
    witnesses: WitnessCheck | None = None,
) -> VerifyReport:
    """Verifies the log at `path`, trusting `public_keys` if given, else the keys it records.

    Each seal is checked with the key the log records for it (the key the log began with, or
    a rotated key from the seal it first made on); given keys, that key must be one of them.
    """
    if isinstance(public_keys, Ed25519PublicKey):
        public_keys = (public_keys,)
    uri = f"{Path(path).resolve().as_uri()}?mode=ro"
    with closing(sqlite3.connect(uri, uri=True, isolation_level=None)) as connection:
        # One read transaction, so entries and seals come from the same snapshot.
        connection.execute("BEGIN")
        return _Verification(connection, public_keys, witnesses).run()


class _Verification:
    """Walks entries and seals in step, in sequence order, holding one row of each at a time."""

    def __init__(
        self,
        connection: sqlite3.Connection,
        supplied: Collection[Ed25519PublicKey] | None,
        witnesses: WitnessCheck | None = None,
    ) -> None:
        self._connection = connection
        self._witnesses = witnesses
        self._witnessed_upto: dict[str, int] = {}
        # Open extracts: exchange id -> (seq, hash) of the opening entry.
        self._open: dict[str, tuple[int, str]] = {}
        self._problems: list[Problem] = []
        meta = dict(connection.execute("SELECT key, value FROM meta").fetchall())
        self._node = meta.get("node")
        if self._node is None:
            self._report(LOG_WIDE, "the log does not name its node")
        self._trusted = None if supplied is None else {_raw_hex(key): key for key in supplied}
        self._key = self._choose_key(meta.get("public_key"))
        # (first seal, key) of each rotated key, newest first; the key the log began with last.
        self._seal_keys = [*self._rotated_keys(), (0, self._key)]
        self._sealed_upto = 0
        self._metered: dict[meter.MeterKey, list[int]] = {}

    def run(self) -> VerifyReport:
        seals = self._seals()
        next_seal = next(seals, None)
        signatures = self._witness_signatures()
        next_signature = next(signatures, None)
        commitment, due_upto = GENESIS_COMMITMENT, 0
        expected_seq, prev_hash, count = 1, GENESIS_HASH, 0
        for row in self._stream(_ENTRIES_IN_ORDER):
            seq, exchange_id, subject, recorded_at, event_json, stored_prev, stored_hash = row
            count += 1
            if seq != expected_seq:
                self._report(expected_seq, f"{_span(expected_seq, seq - 1)} missing")
            elif stored_prev != prev_hash:
                self._report(
                    seq,
                    f"prev_hash does not match the hash of entry {seq - 1}:"
                    " entries removed or reordered",
                )
            if _recompute(stored_prev, seq, recorded_at, event_json) != stored_hash:
                self._report(seq, "hash does not match the entry's content: entry altered")
            if isinstance(event_json, str):
                event = self._check_index_columns(seq, exchange_id, subject, event_json)
                if event is not None and isinstance(recorded_at, str):
                    meter.count(self._metered, event, recorded_at)
                    self._follow_extract(seq, stored_hash, event)
            if isinstance(stored_hash, str):
                commitment = _folded(commitment, stored_hash)
            if (
                self._witnesses is not None
                and isinstance(recorded_at, str)
                and recorded_at < self._witnesses.due_before
            ):
                due_upto = seq
            while next_signature is not None and next_signature.head.seq <= seq:
                if next_signature.head.seq < seq:
                    self._report_gone(next_signature)
                else:
                    self._check_witness(next_signature, stored_hash, commitment, recorded_at)
                next_signature = next(signatures, None)
            while next_seal is not None and next_seal.upto_seq <= seq:
                if next_seal.upto_seq < seq:
                    self._report(next_seal.upto_seq, "seal names an entry that is missing")
                self._check_seal(next_seal, stored_hash if next_seal.upto_seq == seq else None)
                next_seal = next(seals, None)
            expected_seq, prev_hash = seq + 1, stored_hash
        while next_seal is not None:
            self._report(next_seal.upto_seq, "seal names an entry that is missing")
            self._check_seal(next_seal, None)
            next_seal = next(seals, None)
        while next_signature is not None:
            self._report_gone(next_signature)
            next_signature = next(signatures, None)
        self._check_witnesses_present(due_upto)
        last_seq = expected_seq - 1
        if last_seq > self._sealed_upto:
            self._report(
                self._sealed_upto + 1,
                f"{_span(self._sealed_upto + 1, last_seq)} not covered by a seal",
            )
        self._check_meter()
        return VerifyReport(
            ok=not self._problems,
            entries=count,
            sealed_upto=self._sealed_upto,
            problems=self._problems,
            interrupted=sorted(self._open),
            witnessed_upto=dict(self._witnessed_upto),
        )

    def _follow_extract(self, seq: int, chain_hash: object, event: dict[str, Any]) -> None:
        """Pairs each extract's closing entry with the opening entry it names."""
        exchange_id = event.get("exchange_id")
        if not isinstance(exchange_id, str):
            return
        if event.get("phase") == meter.OPENING_PHASE and isinstance(chain_hash, str):
            self._open[exchange_id] = (seq, chain_hash)
            return
        opening = event.get("opening")
        if not isinstance(opening, dict):
            return
        if self._open.pop(exchange_id, None) != (opening.get("seq"), opening.get("hash")):
            self._report(seq, f"closing entry of {exchange_id} names no opening entry of it")

    def _check_witness(
        self, signature: WitnessSignature, chain_hash: object, commitment: str, at: object
    ) -> None:
        head = signature.head
        where = f"witness {signature.witness}'s signature over entry {head.seq}"
        # A checkpoint head (a step of a long catch-up) names no time.
        if (head.hash, head.commitment, head.at or at) != (chain_hash, commitment, at):
            self._report(head.seq, f"{where} names another chain: the log was rewritten")
            return
        if not self._witness_signature_verifies(signature):
            self._report(head.seq, f"{where} does not verify")
            return
        self._witnessed_upto[signature.witness] = max(
            head.seq, self._witnessed_upto.get(signature.witness, 0)
        )

    def _witness_signature_verifies(self, signature: WitnessSignature) -> bool:
        if self._witnesses is None:
            return True
        try:
            key = self._witnesses.keys(signature.witness, signature.kid)
            key.verify(
                bytes.fromhex(signature.signature),
                witness_message(signature.witness, signature.head, signature.signed_at),
            )
        except Exception:  # noqa: BLE001 - an unknown key, a malformed or a false signature
            return False
        return True

    def _report_gone(self, signature: WitnessSignature) -> None:
        self._report(
            signature.head.seq,
            f"witness {signature.witness} signed entry {signature.head.seq}, which is missing:"
            " the log was cut after it was witnessed",
        )

    def _check_witnesses_present(self, due_upto: int) -> None:
        if self._witnesses is None or due_upto == 0:
            return
        for witness in self._witnesses.expected:
            upto = self._witnessed_upto.get(witness, 0)
            if upto < due_upto:
                self._report(
                    LOG_WIDE,
                    f"no valid signature from witness {witness} covers entries"
                    f" {upto + 1}..{due_upto}",
                )

    def _witness_signatures(self) -> Iterator[WitnessSignature]:
        has_table = self._connection.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'witness_signatures'"
        ).fetchone()
        if has_table is None or self._node is None:
            return
        for row in self._stream(WITNESS_SIGNATURES):
            yield witness_signature_of(self._node, row)

    def _choose_key(self, recorded: str | None) -> Ed25519PublicKey | None:
        """The key the log began with: the one the log records, if trusted."""
        if self._trusted is not None and len(self._trusted) == 1 and recorded is None:
            # A log that records no key is checked with the one key supplied.
            return next(iter(self._trusted.values()))
        return self._recorded_key(LOG_WIDE, recorded, "public key")

    def _recorded_key(self, seq: int, recorded: object, what: str) -> Ed25519PublicKey | None:
        if recorded is None:
            self._report(seq, f"the log records no {what} and none was supplied")
            return None
        if self._trusted is not None:
            key = self._trusted.get(recorded) if isinstance(recorded, str) else None
            if key is None:
                supplied = "the one" if len(self._trusted) == 1 else "any of those"
                self._report(seq, f"{what} in the log does not match {supplied} supplied")
            return key
        try:
            return Ed25519PublicKey.from_public_bytes(bytes.fromhex(str(recorded)))
        except ValueError:
            self._report(seq, f"the {what} in the log is malformed")
            return None

    def _rotated_keys(self) -> list[tuple[int, Ed25519PublicKey | None]]:
        has_table = self._connection.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'seal_keys'"
        ).fetchone()
        if has_table is None:
            return []
        rows = self._connection.execute(
            "SELECT first_seal, public_key FROM seal_keys ORDER BY first_seal DESC"
        ).fetchall()
        return [
            (first, self._recorded_key(first, key, "rotated signing key")) for first, key in rows
        ]

    def _key_of(self, seal: _Seal) -> Ed25519PublicKey | None:
        for first_seal, key in self._seal_keys:
            if seal.upto_seq >= first_seal:
                return key
        return None

    def _check_index_columns(
        self, seq: int, exchange_id: str | None, subject: str | None, event_json: str
    ) -> dict[str, Any] | None:
        # The index columns decide who finds an entry, so they must say what the event says.
        try:
            event = json.loads(event_json)
        except ValueError:
            self._report(seq, "event is not valid JSON")
            return None
        if not isinstance(event, dict):
            self._report(seq, "event is not a JSON object")
            return None
        if (exchange_id, subject) != index_columns(event):
            self._report(seq, "exchange_id or subject_hash column does not match the event")
        return event

    def _check_meter(self) -> None:
        """The meter bills requesters, so it must add up to exactly what the entries say."""
        has_meter = self._connection.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meter'"
        ).fetchone()
        if has_meter is None:
            return
        stored = {
            tuple(row[:4]): list(row[4:])
            for row in self._connection.execute(
                "SELECT day, role, requester, agreement_id,"
                " exchanges, released, denied, records, bytes, interrupted FROM meter"
            )
        }
        # A row whose counts net to nothing is as good as no row (an extract opened and
        # closed on different days leaves +1 and -1 interrupted on the opening's day).
        self._metered = {k: v for k, v in self._metered.items() if any(v) or k in stored}
        for key in sorted(set(stored) | set(self._metered)):
            if stored.get(key) != self._metered.get(key):
                day, role, requester, agreement = key
                self._report(
                    LOG_WIDE,
                    f"meter for {requester} under {agreement or '(none)'} as {role} on {day}"
                    f" says {stored.get(key)}, the entries say {self._metered.get(key)}",
                )

    def _check_seal(self, seal: _Seal, chain_hash: str | None) -> None:
        if chain_hash is not None and seal.hash != chain_hash:
            self._report(seal.upto_seq, "seal does not match the chain hash at its entry")
            chain_hash = None
        key = self._key_of(seal)
        if key is None and self._trusted is not None:
            # Made with a key none of those supplied: it does not verify with any of them.
            self._report(seal.upto_seq, "seal signature does not verify")
            return
        if key is None or self._node is None:
            return
        try:
            key.verify(
                bytes.fromhex(seal.signature),
                seal_message(self._node, seal.upto_seq, seal.hash, seal.sealed_at),
            )
        except (InvalidSignature, ValueError):
            self._report(seal.upto_seq, "seal signature does not verify")
            return
        if chain_hash is not None:
            self._sealed_upto = seal.upto_seq

    def _seals(self) -> Iterator[_Seal]:
        for row in self._stream(
            "SELECT upto_seq, hash, sealed_at, signature FROM seals ORDER BY upto_seq"
        ):
            yield _Seal(*row)

    def _stream(self, query: str) -> Iterator[tuple[Any, ...]]:
        cursor = self._connection.execute(query)
        while rows := cursor.fetchmany(_ROWS_PER_FETCH):
            yield from rows

    def _report(self, seq: int, what: str) -> None:
        self._problems.append(Problem(seq, what))


def _recompute(prev_hash: object, seq: int, recorded_at: object, event_json: object) -> str | None:
    """Returns the hash the entry should have, or None if its columns cannot even be hashed."""
    if not (
        isinstance(prev_hash, str) and isinstance(recorded_at, str) and isinstance(event_json, str)
    ):
        return None
    try:
        return entry_hash(prev_hash, seq, recorded_at, event_json)
    except (ValueError, OverflowError):
        return None


def _folded(commitment: str, chain_hash: str) -> str:
    try:
        return fold_commitment(commitment, (chain_hash,))
    except ValueError:
        return commitment


def _span(first: int, last: int) -> str:
    return f"entry {first} is" if first == last else f"entries {first}..{last} are"


def _raw_hex(key: Ed25519PublicKey) -> str:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw).hex()
