"""The meter through a real node: what each requester took under each agreement, and that it
always adds up to the signed entries."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import grpc
import pytest
from typer.testing import CliRunner

from gateway.audit.meter import read_meter
from gateway.audit.verify import verify_log
from gateway.cli import app
from gateway.dev.demo import demo_subjects
from gateway.testing import RunningNode, get_request, running_node

AGREEMENT = "cr-dwp-gro-deaths-2026"
FIELDS = ["registration_id", "given_name", "family_name", "date_of_death"]


async def _exchanges(node: RunningNode) -> None:
    subjects = demo_subjects(f"sqlite:///{node.state.demo_db}", "whitehall")["DEATH_REGISTRATION"]
    dwp = node.client(organisation="dwp")
    for kind, value in subjects[:3]:
        await dwp.get_record(
            get_request(
                "DEATH_REGISTRATION",
                purpose="CIVIL_REGISTRATION",
                agreement_id=AGREEMENT,
                fields=FIELDS,
                **{kind: value},
            )
        )
    hmrc = node.client(organisation="hmrc")
    kind, value = subjects[0]
    with pytest.raises(grpc.aio.AioRpcError) as denied:
        await hmrc.get_record(
            get_request(
                "DEATH_REGISTRATION",
                purpose="CIVIL_REGISTRATION",
                agreement_id=AGREEMENT,
                fields=FIELDS,
                **{kind: value},
            )
        )
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_the_meter_counts_exchanges_records_and_bytes_per_requester_and_agreement(
    tmp_path: Path,
) -> None:
    async with running_node(tmp_path, "whitehall") as node:
        await _exchanges(node)
        entries = node.audit_entries()
    rows = {(r.requester, r.agreement_id): r for r in read_meter(node.audit_path)}
    dwp = rows[("dwp@whitehall", AGREEMENT)]
    released = [e for e in entries if e["requester"]["organisation"] == "dwp"]
    assert (dwp.exchanges, dwp.released, dwp.denied) == (3, 3, 0)
    assert dwp.records == sum(e["records"] for e in released) == 3
    assert dwp.bytes == sum(e["bytes"] for e in released) > 0
    assert dwp.role == "local"
    hmrc = rows[("hmrc@whitehall", AGREEMENT)]
    assert (hmrc.exchanges, hmrc.released, hmrc.denied, hmrc.records, hmrc.bytes) == (
        1,
        0,
        1,
        0,
        0,
    )
    assert read_meter(node.audit_path, requester="hmrc@whitehall") == [hmrc]
    assert read_meter(node.audit_path, since="2999-01-01") == []


async def test_audit_verify_catches_a_meter_that_disagrees_with_the_entries(
    tmp_path: Path,
) -> None:
    async with running_node(tmp_path, "whitehall") as node:
        await _exchanges(node)
    assert verify_log(node.audit_path).ok
    with sqlite3.connect(node.audit_path) as db:
        db.execute("UPDATE meter SET records = records - 1 WHERE requester = 'dwp@whitehall'")
    report = verify_log(node.audit_path)
    assert not report.ok
    assert any("meter for dwp@whitehall" in p.what for p in report.problems)


async def test_the_meter_command_reports_as_a_table_and_as_json(tmp_path: Path) -> None:
    async with running_node(tmp_path, "whitehall") as node:
        await _exchanges(node)
    runner = CliRunner()
    table = runner.invoke(
        app, ["audit", "meter", "--db", str(node.audit_path)], env={"COLUMNS": "200"}
    )
    assert table.exit_code == 0, table.output
    assert "dwp@whitehall" in table.output
    assert AGREEMENT in table.output
    as_json = runner.invoke(
        app, ["audit", "meter", "--db", str(node.audit_path), "--json", "--agreement", AGREEMENT]
    )
    assert as_json.exit_code == 0, as_json.output
    lines = [json.loads(line) for line in as_json.output.splitlines()]
    assert {line["requester"] for line in lines} == {"dwp@whitehall", "hmrc@whitehall"}


async def test_a_log_written_before_the_meter_existed_gets_its_meter_rebuilt(
    tmp_path: Path,
) -> None:
    async with running_node(tmp_path, "whitehall") as node:
        await _exchanges(node)
    with sqlite3.connect(node.audit_path) as db:
        db.execute("DROP TABLE meter")
    async with running_node(tmp_path, "whitehall") as reopened:
        assert reopened.audit_path == node.audit_path
    assert verify_log(node.audit_path).ok
    assert {r.requester for r in read_meter(node.audit_path)} == {
        "dwp@whitehall",
        "hmrc@whitehall",
    }
