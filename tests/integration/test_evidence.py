"""Evidence peers hold each other to, between real nodes on loopback (mutual TLS, SQLite logs):
receipts that pin the provider's log, reconciliation, witnessed heads, keyed digests, roles.

The nodes run in this process on the signed directory of tests/e2e/conftest.py's
`build_federation`; witnessing rounds are asked for by the tests rather than left to a timer.
A provider that rewrites its log is played by editing its SQLite file while it is stopped, as
an administration holding its own signing key could: the file then verifies on its own.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import sqlite3
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, closing
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.api.client import ExchangeClient, secure_channel
from gateway.audit import meter
from gateway.audit.chain import canonical_json, entry_hash, seal_message
from gateway.audit.reconcile import local_exchanges, reconcile
from gateway.audit.verify import WitnessCheck, verify_log
from gateway.config import parse_config
from gateway.dev.state import audience
from gateway.evidence.reconcile_peer import fetch_peer_log
from gateway.evidence.witnessing import HeadWitnessing
from gateway.federation.assertions import ReceiptVerifier
from gateway.federation.directory import Directory
from gateway.keys import load_public_key, load_signing_key
from gateway.node import Node, build_node
from gateway.testing import TEST_CLOCK, get_request, read_audit
from tests.e2e.conftest import Federation, build_federation
from tests.e2e.test_federation import subject

REQUESTER, PROVIDER = "whitehall", "holyrood"
FIELDS = ["registration_id", "given_name", "family_name", "date_of_birth"]
# Every entry is due a witness signature in these checks (recorded before the far future).
ALL_DUE = "9999-12-31T00:00:00.000000Z"


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Federation:
    built = build_federation(tmp_path_factory.mktemp("evidence"))
    for config in built.configs.values():
        # Rounds run when a test asks: no timer decides what a test sees.
        config["federation"]["witness_interval_seconds"] = 0
    return built


@dataclass
class Pair:
    federation: Federation
    nodes: dict[str, Node]
    stack: AsyncExitStack

    async def start(self, name: str) -> Node:
        config = parse_config(self.federation.configs[name], base=self.federation.state_dir)
        node = await build_node(config, clock=TEST_CLOCK)
        await node.start()
        self.nodes[name] = node
        return node

    async def stop(self, name: str) -> None:
        await self.nodes.pop(name).stop(grace=0.5)

    def client(self) -> ExchangeClient:
        issuer = self.federation.states[REQUESTER].issuer
        return ExchangeClient(
            secure_channel(
                self.federation.address(REQUESTER),
                self.federation.states[REQUESTER].material.ca_cert,
            ),
            lambda: issuer.mint(audience=audience(REQUESTER), organisation="dwp", system="t"),
        )

    async def births(self, count: int) -> list[str]:
        """`count` Scottish birth registrations relayed to DWP; their exchange ids."""
        registration = subject(self.federation, PROVIDER, "BIRTH_REGISTRATION", "registration_id")
        client = self.client()
        ids = []
        for _ in range(count):
            response = await client.get_record(
                get_request(
                    "BIRTH_REGISTRATION",
                    registration_id=str(registration),
                    purpose="CIVIL_REGISTRATION",
                    agreement_id="cr-dwp-nrs-births-2026",
                    fields=FIELDS,
                )
            )
            ids.append(response.exchange_id)
        await client.close()
        return ids

    async def reconcile_with_provider(self) -> tuple[bool, list[tuple[str, str]]]:
        config = parse_config(self.federation.configs[REQUESTER], base=self.federation.state_dir)
        directory = _directory(self.federation, REQUESTER)
        there = await fetch_peer_log(config, directory, PROVIDER, page_size=3)
        report = reconcile(
            REQUESTER,
            local_exchanges(self.federation.audit_path(REQUESTER), PROVIDER),
            there,
        )
        return report.ok, [(f.kind, f.exchange_id) for f in report.findings]


@pytest.fixture
async def pair(federation: Federation) -> AsyncIterator[Pair]:
    for name in (REQUESTER, PROVIDER):
        # Each test starts from empty logs (the keys and directory are the module's).
        for suffix in ("", "-wal", "-shm"):
            Path(f"{federation.audit_path(name)}{suffix}").unlink(missing_ok=True)
    async with AsyncExitStack() as stack:
        running = Pair(federation, {}, stack)
        await running.start(PROVIDER)
        await running.start(REQUESTER)
        try:
            yield running
        finally:
            for name in list(running.nodes):
                await running.stop(name)


def _directory(federation: Federation, node: str) -> Directory:
    anchors = {
        name: load_public_key(Path(path))
        for name, path in federation.configs[node]["federation"]["trust_anchors"].items()
    }
    return Directory.load(Path(federation.configs[node]["federation"]["directory"]), anchors)


def _witnessing(node: Node) -> HeadWitnessing:
    assert node.witnessing is not None
    return node.witnessing


async def test_a_relayed_receipt_pins_the_providers_entry_and_both_sides_reconcile(
    pair: Pair,
) -> None:
    (exchange_id,) = await pair.births(1)

    mine = next(e for e in read_audit(pair.federation.audit_path(REQUESTER)))
    with closing(sqlite3.connect(pair.federation.audit_path(PROVIDER))) as db:
        theirs = db.execute(
            "SELECT seq, hash FROM entries WHERE exchange_id = ?", (exchange_id,)
        ).fetchone()
    assert mine["exchange_id"] == exchange_id
    assert mine["peer_log"] == {"seq": theirs[0], "hash": theirs[1]}
    assert mine["role"] == "caller"
    # The receipt as kept in the entry still verifies, with the key the directory publishes.
    kept = ReceiptVerifier(_directory(pair.federation, REQUESTER).signing_key).verify(
        mine["receipt"],
        provider_node=PROVIDER,
        exchange_id=exchange_id,
        response_digest=mine["response_digest"],
    )
    assert (kept["log_seq"], kept["log_hash"]) == (theirs[0], theirs[1])
    assert await pair.reconcile_with_provider() == (True, [])
    # The same through the command line, over the federation and from the peer's export.
    config = pair.federation.config_path
    export = pair.federation.state_dir / "holyrood-hashes.json"
    exported = await _concordat(
        "audit",
        "export-hashes",
        "--config",
        str(config(PROVIDER)),
        "--peer",
        REQUESTER,
        "--out",
        str(export),
    )
    assert exported[0] == 0, exported[1]
    for source in ([], ["--export", str(export)]):
        code, output = await _concordat(
            "audit",
            "reconcile",
            "--config",
            str(config(REQUESTER)),
            "--peer",
            PROVIDER,
            "--json",
            *source,
        )
        assert code == 0, output
        assert json.loads(output)["ok"] is True


async def test_a_relayed_exchange_is_metered_as_caller_at_the_requesting_node(
    pair: Pair,
) -> None:
    await pair.births(2)

    rows = meter.read_meter(pair.federation.audit_path(REQUESTER))
    assert [(row.role, row.exchanges, row.released) for row in rows] == [("caller", 2, 2)]
    provided = meter.read_meter(pair.federation.audit_path(PROVIDER))
    assert [(row.role, row.exchanges) for row in provided] == [("provider", 2)]


async def test_a_provider_that_truncates_its_log_seals_and_meter_is_caught_by_reconcile_and_its_witness(  # noqa: E501 - the behaviour, whole
    pair: Pair,
) -> None:
    kept = await pair.births(3)
    deleted = await pair.births(2)
    assert (await _witnessing(pair.nodes[PROVIDER]).round())[REQUESTER] == "signed up to 5"
    await pair.stop(PROVIDER)
    path = pair.federation.audit_path(PROVIDER)
    _truncate(path, keep=3)
    # On its own the cut log verifies: chain, seals and meter all agree with each other.
    assert verify_log(path).ok
    await pair.start(PROVIDER)

    ok, findings = await pair.reconcile_with_provider()
    code, output = await _concordat(
        "audit",
        "reconcile",
        "--config",
        str(pair.federation.config_path(REQUESTER)),
        "--peer",
        PROVIDER,
    )

    assert code == 1
    assert "truncated" in output and all(exchange in output for exchange in deleted)
    assert not ok
    assert {exchange for kind, exchange in findings if kind == "truncated"} == {*deleted, ""}
    assert not any(exchange in kept for _, exchange in findings)
    outcomes = await _witnessing(pair.nodes[PROVIDER]).round()
    assert outcomes[REQUESTER].startswith("FAILED_PRECONDITION")
    assert "behind entry 5" in outcomes[REQUESTER]
    witness = pair.nodes[REQUESTER]
    assert witness.witness is not None
    assert witness.witness.refusals[(PROVIDER, "truncated")] == 1


async def test_an_altered_provider_entry_is_named_by_reconcile_and_its_witness_refuses_the_forked_head(  # noqa: E501 - the behaviour, whole
    pair: Pair,
) -> None:
    exchanges = await pair.births(3)
    assert (await _witnessing(pair.nodes[PROVIDER]).round())[REQUESTER] == "signed up to 3"
    await pair.stop(PROVIDER)
    path = pair.federation.audit_path(PROVIDER)
    key = load_signing_key(Path(pair.federation.configs[PROVIDER]["keys"]["signing_key"]))
    altered = _rewrite(path, key, seq=2, change=lambda event: event.update(records=0))
    # While it holds the witness's signature over entry 3, its own verify gives it away...
    (problem,) = verify_log(path).problems
    assert problem.what == (
        "witness whitehall's signature over entry 3 names another chain: the log was rewritten"
    )
    # ...so a careful forger deletes that too, and the file then verifies on its own.
    with closing(sqlite3.connect(path)) as db, db:
        db.execute("DELETE FROM witness_signatures")
    assert verify_log(path).ok
    await pair.start(PROVIDER)

    ok, findings = await pair.reconcile_with_provider()

    assert not ok
    assert ("altered", altered) in findings
    assert altered == exchanges[1]
    outcomes = await _witnessing(pair.nodes[PROVIDER]).round()
    assert "does not extend entry 3" in outcomes[REQUESTER]
    witness = pair.nodes[REQUESTER].witness
    assert witness is not None
    assert witness.refusals[(PROVIDER, "forked")] == 1


async def test_verify_reports_a_bad_and_a_missing_witness_signature(pair: Pair) -> None:
    await pair.births(2)
    await _witnessing(pair.nodes[PROVIDER]).round()
    await pair.stop(PROVIDER)
    path = pair.federation.audit_path(PROVIDER)
    check = WitnessCheck(
        keys=_directory(pair.federation, PROVIDER).signing_key,
        expected=[REQUESTER],
        due_before=ALL_DUE,
    )
    assert verify_log(path, witnesses=check).witnessed_upto == {REQUESTER: 2}

    with closing(sqlite3.connect(path)) as db, db:
        db.execute(
            "UPDATE witness_signatures SET signature = ? WHERE witness = ?", ("00" * 64, REQUESTER)
        )
    bad = verify_log(path, witnesses=check)
    with closing(sqlite3.connect(path)) as db, db:
        db.execute("DELETE FROM witness_signatures")
    missing = verify_log(path, witnesses=check)

    assert not bad.ok
    assert any(
        "witness whitehall's signature over entry 2 does not verify" in p.what for p in bad.problems
    )
    assert not missing.ok
    assert [p.what for p in missing.problems] == [
        "no valid signature from witness whitehall covers entries 1..2"
    ]


async def test_an_assertions_stored_digest_matches_no_plain_sha256_of_a_candidate_request(
    pair: Pair,
) -> None:
    (exchange_id,) = await pair.births(1)
    provider_entry = next(
        e
        for e in read_audit(pair.federation.audit_path(PROVIDER))
        if e["exchange_id"] == exchange_id
    )
    stored = _claims(provider_entry["assertion"])["digest"]
    registration = subject(pair.federation, PROVIDER, "BIRTH_REGISTRATION", "registration_id")

    # Whoever reads the log and guesses the subject (here, correctly) gets nowhere: the
    # request as relayed, and variations of it, digest to something else.
    candidates = []
    for value in [str(registration), "SC-B-1931-000001", "SC-B-1931-000038"]:
        for fields in (
            FIELDS,
            provider_entry["fields_released"],
            provider_entry["fields_requested"],
        ):
            for provider_node in ("", PROVIDER):
                request = get_request(
                    "BIRTH_REGISTRATION",
                    registration_id=value,
                    purpose="CIVIL_REGISTRATION",
                    agreement_id="cr-dwp-nrs-births-2026",
                    fields=fields,
                )
                request.provider_node = provider_node
                candidates.append(request)
    plain = {
        hashlib.sha256(request.SerializeToString(deterministic=True)).hexdigest()
        for request in candidates
    }
    assert len(stored) == 64
    assert stored not in plain


async def _concordat(*arguments: str) -> tuple[int, str]:
    """Runs the command line without blocking this loop, whose nodes it may call."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway.cli",
        *arguments,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "COLUMNS": "200"},
    )
    output, _ = await process.communicate()
    assert process.returncode is not None
    return process.returncode, output.decode()


def _claims(token: str) -> dict[str, object]:
    payload = token.split(".")[1]
    claims: dict[str, object] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return claims


def _truncate(path: Path, *, keep: int) -> None:
    """Deletes every entry after `keep` with its seals, witness signatures and meter counts."""
    with closing(sqlite3.connect(path)) as db, db:
        sealed = {row[0] for row in db.execute("SELECT upto_seq FROM seals")}
        assert keep in sealed, "the cut must fall on a seal, as a careful forger's would"
        db.execute("DELETE FROM entries WHERE seq > ?", (keep,))
        db.execute("DELETE FROM seals WHERE upto_seq > ?", (keep,))
        db.execute("DELETE FROM witness_signatures WHERE seq > ?", (keep,))
        _recount_meter(db)


def _rewrite(
    path: Path, key: Ed25519PrivateKey, *, seq: int, change: Callable[[dict[str, object]], None]
) -> str:
    """Changes entry `seq` and rebuilds the chain, seals and meter after it; its exchange id."""
    with closing(sqlite3.connect(path)) as db, db:
        node = db.execute("SELECT value FROM meta WHERE key = 'node'").fetchone()[0]
        rows = db.execute(
            "SELECT seq, exchange_id, recorded_at, event, prev_hash FROM entries WHERE seq >= ?"
            " ORDER BY seq",
            (seq,),
        ).fetchall()
        prev = rows[0][4]
        hashes = {}
        altered = rows[0][1]
        for number, _exchange, recorded_at, event_json, _prev in rows:
            event = json.loads(event_json)
            if number == seq:
                change(event)
                event_json = canonical_json(event)
            chain = entry_hash(prev, number, recorded_at, event_json)
            db.execute(
                "UPDATE entries SET event = ?, prev_hash = ?, hash = ? WHERE seq = ?",
                (event_json, prev, chain, number),
            )
            hashes[number], prev = chain, chain
        for upto, sealed_at in db.execute(
            "SELECT upto_seq, sealed_at FROM seals WHERE upto_seq >= ?", (seq,)
        ).fetchall():
            signature = key.sign(seal_message(node, upto, hashes[upto], sealed_at)).hex()
            db.execute(
                "UPDATE seals SET hash = ?, signature = ? WHERE upto_seq = ?",
                (hashes[upto], signature, upto),
            )
        _recount_meter(db)
    return str(altered)


def _recount_meter(db: sqlite3.Connection) -> None:
    db.execute("DELETE FROM meter")
    events = [(json.loads(e), at) for e, at in db.execute("SELECT event, recorded_at FROM entries")]
    meter.add_rows(db, meter.tally(events))
