"""The witness's checks, the comparison reconcile makes and verify's pairing of extract
entries, on real SQLite logs and without a network (the nodes' side is
tests/integration/test_evidence.py)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator
from contextlib import closing
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.audit.chain import (
    GENESIS_COMMITMENT,
    ChainHead,
    canonical_json,
    entry_hash,
    fold_commitment,
    witness_message,
)
from gateway.audit.reconcile import LocalExchange, PeerLog, reconcile
from gateway.audit.sqlite_log import SqliteAuditLog
from gateway.audit.verify import verify_log
from gateway.errors import InvalidRequest, WitnessRefused
from gateway.evidence.witness import Witness

PEER = "holyrood"


@pytest.fixture
async def witness(tmp_path: Path) -> AsyncIterator[tuple[Witness, Ed25519PrivateKey]]:
    key = Ed25519PrivateKey.generate()
    audit = await SqliteAuditLog.open(tmp_path / "witness.db", node="whitehall", signing_key=key)
    try:
        yield Witness(node="whitehall", audit=audit, current_key=lambda: (key, "whitehall-1")), key
    finally:
        await audit.close()


def _hashes(*labels: str) -> list[str]:
    """Stand-ins for a peer's entry hashes (the witness sees nothing else of its entries)."""
    return [entry_hash("00" * 32, n, "t", label) for n, label in enumerate(labels, start=1)]


def _head(hashes: list[str], *, upto: int) -> ChainHead:
    commitment = fold_commitment(GENESIS_COMMITMENT, hashes[:upto])
    return ChainHead(PEER, upto, hashes[upto - 1], commitment, f"2026-11-21T10:00:0{upto}Z")


def _packed(hashes: list[str]) -> bytes:
    return b"".join(bytes.fromhex(h) for h in hashes)


async def test_a_witness_signs_heads_that_extend_the_last_one_and_keeps_only_that(
    witness: tuple[Witness, Ed25519PrivateKey],
) -> None:
    signer, key = witness
    chain = _hashes("a", "b", "c", "d", "e")

    first = await signer.witness(_head(chain, upto=2), 0, _packed(chain[:2]))
    second = await signer.witness(_head(chain, upto=5), 2, _packed(chain[2:5]))

    key.public_key().verify(
        bytes.fromhex(second.signature),
        witness_message("whitehall", second.head, second.signed_at),
    )
    assert first.head.seq == 2
    assert await signer.last_signed(PEER) == _head(chain, upto=5)


async def test_a_witness_refuses_a_forked_head_and_counts_the_refusal(
    witness: tuple[Witness, Ed25519PrivateKey],
) -> None:
    signer, _ = witness
    chain = _hashes("a", "b", "c", "d")
    await signer.witness(_head(chain, upto=2), 0, _packed(chain[:2]))
    # Entry 2 rewritten: every entry hash from it on differs, and so does the commitment.
    forked = _hashes("a", "B", "c", "d")

    with pytest.raises(WitnessRefused, match="does not extend entry 2"):
        await signer.witness(_head(forked, upto=4), 2, _packed(forked[2:4]))

    assert signer.refusals[(PEER, "forked")] == 1
    assert await signer.last_signed(PEER) == _head(chain, upto=2)


async def test_a_witness_refuses_a_head_behind_the_last_it_signed(
    witness: tuple[Witness, Ed25519PrivateKey],
) -> None:
    signer, _ = witness
    chain = _hashes("a", "b", "c")
    await signer.witness(_head(chain, upto=3), 0, _packed(chain))

    with pytest.raises(WitnessRefused, match="behind entry 3"):
        await signer.witness(_head(chain, upto=2), 3, b"")

    assert signer.refusals[(PEER, "truncated")] == 1


async def test_a_witness_asks_for_exactly_the_hashes_since_its_last_head(
    witness: tuple[Witness, Ed25519PrivateKey],
) -> None:
    signer, _ = witness
    chain = _hashes("a", "b", "c")

    with pytest.raises(InvalidRequest, match=r"entries 1\.\.3"):
        await signer.witness(_head(chain, upto=3), 0, _packed(chain[:2]))


def test_reconcile_names_one_sided_and_altered_exchanges_but_not_one_the_peer_never_saw() -> None:
    here = {
        "e1": LocalExchange("e1", (1, "h1"), peer_took_part=True),
        "e2": LocalExchange("e2", (2, "h2"), peer_took_part=True),
        "e3": LocalExchange("e3", None, peer_took_part=True),
        # The peer was unreachable: nothing reached it, so it need hold nothing.
        "e4": LocalExchange("e4", None, peer_took_part=False),
    }
    there = PeerLog(
        node=PEER,
        head_seq=3,
        head_hash="h3",
        entries={"e1": [(1, "h1")], "e2": [(2, "XX")], "e5": [(3, "h3")]},
    )

    report = reconcile("whitehall", here, there)

    assert [(f.kind, f.exchange_id) for f in report.findings] == [
        ("altered", "e2"),
        ("missing-at-peer", "e3"),
        ("missing-here", "e5"),
    ]


async def test_verify_reports_a_closing_entry_that_names_no_opening_entry(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    path = tmp_path / "audit.db"
    audit = await SqliteAuditLog.open(path, node=PEER, signing_key=key)
    opened = await audit.append_entry({"exchange_id": "x1", "phase": "opening", "role": "provider"})
    await audit.append_entry(
        {
            "exchange_id": "x1",
            "phase": "closing",
            "role": "provider",
            "outcome": "released",
            "opening": {"seq": opened.seq, "hash": opened.hash, "recorded_at": opened.recorded_at},
        }
    )
    await audit.append_entry({"exchange_id": "x2", "phase": "opening", "role": "provider"})
    await audit.close()
    assert verify_log(path).interrupted == ["x2"]

    # A closing entry rewritten (and the chain rebuilt, as a forger with the key could) to name
    # an opening that is not its extract's.
    with closing(sqlite3.connect(path)) as db, db:
        event = json.loads(db.execute("SELECT event FROM entries WHERE seq = 2").fetchone()[0])
        event["opening"]["seq"] = 3
        prev = db.execute("SELECT hash FROM entries WHERE seq = 1").fetchone()[0]
        recorded_at = db.execute("SELECT recorded_at FROM entries WHERE seq = 2").fetchone()[0]
        text = canonical_json(event)
        db.execute(
            "UPDATE entries SET event = ?, hash = ? WHERE seq = 2",
            (text, entry_hash(prev, 2, recorded_at, text)),
        )
    report = verify_log(path)

    assert any(
        problem.what == "closing entry of x1 names no opening entry of it"
        for problem in report.problems
    )
