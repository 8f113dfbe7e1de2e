"""Reconciliation: both sides of every exchange between two nodes, compared by hash alone.

A requesting node keeps, in its entry of each relayed exchange, the provider's receipt, which
pins where the provider's own entry of that exchange sits in its chain (`log_seq`, `log_hash`;
for a bulk extract, its opening entry). The provider answers, for the exchanges between the two
of them, only sequence numbers and entry hashes (gateway/api/evidence_service.py), or an
operator exports them (`concordat audit export-hashes`). Comparing the two finds:

- an exchange one side recorded and the other did not (`missing-at-peer`, `missing-here`);
- a provider entry whose hash is not the one its receipt pinned (`altered`);
- a provider chain shorter than a receipt it signed (`truncated`): the newest entries deleted
  with their seals and meter, which no check of the provider's log alone can show.
"""

from __future__ import annotations

import base64
import json
import sqlite3
from collections.abc import Iterable, Mapping
from contextlib import closing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from gateway.audit.chain import ExchangeHash

# Read from the requesting or providing node named in the event, as the log stores it.
_EXCHANGES_WITH = (
    "SELECT exchange_id, seq, hash, event FROM entries WHERE exchange_id IS NOT NULL"
    " AND (json_extract(event, '$.requesting_node') = ?"
    " OR json_extract(event, '$.providing_node') = ?)"
    " ORDER BY exchange_id, seq"
)


def pinned_position(receipt: str) -> tuple[int, str] | None:
    """The (seq, hash) a provider's receipt pins, read from its claims; None if it pins none.

    The claims are read without checking the signature: the receipt was verified when it was
    received, and the entry holding it is part of this node's own chain since.
    """
    parts = receipt.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = parts[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except ValueError:
        return None
    if not isinstance(claims, dict):
        return None
    seq, chain_hash = claims.get("log_seq"), claims.get("log_hash")
    if isinstance(seq, int) and not isinstance(seq, bool) and isinstance(chain_hash, str):
        return seq, chain_hash
    return None


@dataclass(frozen=True, slots=True)
class LocalExchange:
    """This node's record of one exchange with the peer."""

    exchange_id: str
    # Where the peer's receipt says the peer's entry sits; None without a receipt.
    pinned: tuple[int, str] | None
    # The peer took part (it answered, refused by its own decision, or it asked us), so it
    # must hold an entry; an exchange that never reached it (unreachable) need not.
    peer_took_part: bool


@dataclass(frozen=True, slots=True)
class PeerLog:
    """What the peer showed of its log: its head, and its entries of exchanges with us."""

    node: str
    head_seq: int
    head_hash: str
    entries: Mapping[str, list[tuple[int, str]]]


@dataclass(frozen=True, slots=True)
class Finding:
    """One disagreement between the two logs; `exchange_id` is empty for the log as a whole."""

    kind: str
    exchange_id: str
    detail: str


@dataclass(slots=True)
class ReconcileReport:
    node: str
    peer: str
    exchanges_here: int
    exchanges_there: int
    peer_head_seq: int
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def local_exchanges(path: Path, peer: str) -> dict[str, LocalExchange]:
    """This node's entries of exchanges with `peer`, from its log file, by exchange id."""
    found: dict[str, LocalExchange] = {}
    uri = f"{path.resolve().as_uri()}?mode=ro"
    with closing(sqlite3.connect(uri, uri=True)) as connection:
        for exchange_id, _seq, _hash, event_json in connection.execute(
            _EXCHANGES_WITH, (peer, peer)
        ):
            event = json.loads(event_json)
            known = found.get(exchange_id)
            pinned = _pinned_of(event)
            took_part = _peer_took_part(event, peer)
            if known is not None:
                # An extract's opening and closing entries: the closing knows more.
                pinned = pinned or known.pinned
                took_part = took_part or known.peer_took_part
            found[exchange_id] = LocalExchange(exchange_id, pinned, took_part)
    return found


def exported_hashes(path: Path, peer: str) -> tuple[tuple[int, str], list[ExchangeHash]]:
    """The head and the (exchange id, seq, hash) of every entry of exchanges with `peer`."""
    uri = f"{path.resolve().as_uri()}?mode=ro"
    with closing(sqlite3.connect(uri, uri=True)) as connection:
        head = connection.execute("SELECT seq, hash FROM entries ORDER BY seq DESC LIMIT 1")
        row = head.fetchone()
        entries = [
            ExchangeHash(exchange_id, seq, chain_hash)
            for exchange_id, seq, chain_hash, _event in connection.execute(
                _EXCHANGES_WITH, (peer, peer)
            )
        ]
    return ((row[0], row[1]) if row else (0, "")), entries


def peer_log(node: str, head: tuple[int, str], entries: Iterable[ExchangeHash]) -> PeerLog:
    by_exchange: dict[str, list[tuple[int, str]]] = {}
    for entry in entries:
        by_exchange.setdefault(entry.exchange_id, []).append((entry.seq, entry.hash))
    return PeerLog(node=node, head_seq=head[0], head_hash=head[1], entries=by_exchange)


def reconcile(node: str, here: Mapping[str, LocalExchange], there: PeerLog) -> ReconcileReport:
    """Compares this node's exchanges with the peer's entries of them."""
    report = ReconcileReport(
        node=node,
        peer=there.node,
        exchanges_here=len(here),
        exchanges_there=len(there.entries),
        peer_head_seq=there.head_seq,
    )
    findings = report.findings
    highest_pinned = 0
    for exchange_id in sorted(here):
        mine = here[exchange_id]
        theirs = there.entries.get(exchange_id)
        if mine.pinned is not None:
            highest_pinned = max(highest_pinned, mine.pinned[0])
        if theirs is None:
            if mine.pinned is not None and mine.pinned[0] > there.head_seq:
                findings.append(
                    Finding(
                        "truncated",
                        exchange_id,
                        f"{there.node}'s receipt pinned its entry {mine.pinned[0]}, beyond its"
                        f" head {there.head_seq}",
                    )
                )
            elif mine.peer_took_part:
                findings.append(
                    Finding("missing-at-peer", exchange_id, f"{there.node} has no entry of it")
                )
            continue
        if mine.pinned is not None and mine.pinned not in theirs:
            seq, pinned_hash = mine.pinned
            shown = next((h for s, h in theirs if s == seq), None)
            detail = (
                f"{there.node}'s entry {seq} has hash {shown[:16]}…, its receipt pinned"
                f" {pinned_hash[:16]}…"
                if shown is not None
                else f"{there.node}'s receipt pinned entry {seq}, which it no longer holds for"
                " this exchange"
            )
            findings.append(Finding("altered", exchange_id, detail))
    for exchange_id in sorted(set(there.entries) - set(here)):
        findings.append(
            Finding("missing-here", exchange_id, f"{there.node} has an entry; this node has none")
        )
    if highest_pinned > there.head_seq:
        findings.append(
            Finding(
                "truncated",
                "",
                f"{there.node}'s chain ends at entry {there.head_seq}, but its receipts pin"
                f" entries up to {highest_pinned}",
            )
        )
    return report


def _pinned_of(event: Mapping[str, Any]) -> tuple[int, str] | None:
    stored = event.get("peer_log")
    if isinstance(stored, dict):
        seq, chain_hash = stored.get("seq"), stored.get("hash")
        if isinstance(seq, int) and isinstance(chain_hash, str):
            return seq, chain_hash
    return None


def _peer_took_part(event: Mapping[str, Any], peer: str) -> bool:
    if event.get("role") == "provider":
        return True
    if event.get("receipt") or event.get("last_receipt"):
        return True
    error = event.get("peer_error")
    return isinstance(error, dict) and error.get("node") == peer
