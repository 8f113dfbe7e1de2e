"""`concordat register publish`: every administration's register, written for people and
machines, round-trips; the HTML escapes what it shows; and the register check refuses an
agreement that lacks one of the DEA register's fields, naming the agreement and the field."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gateway.cli import app
from gateway.policy.bundle import load_bundle
from gateway.policy.tools import POLICIES, register_problems
from gateway.register.entries import COLUMNS, Register, load_register
from gateway.register.publish import csv_value, register_csv, register_html, write_register

JURISDICTIONS = ("whitehall", "holyrood", "stormont", "cardiff")


def registered_ids(jurisdiction: str) -> set[str]:
    data = json.loads((POLICIES / jurisdiction / "data.json").read_text())
    return set(data["register"]["agreements"])


@pytest.fixture(scope="module")
def registers() -> dict[str, Register]:
    return {j: load_register([POLICIES / "common", POLICIES / j]) for j in JURISDICTIONS}


@pytest.mark.parametrize("jurisdiction", JURISDICTIONS)
def test_published_register_round_trips_through_csv_and_json_with_every_agreement_and_field(
    registers: dict[str, Register], jurisdiction: str, tmp_path: Path
) -> None:
    register = registers[jurisdiction]
    written = write_register(register, tmp_path)
    assert sorted(p.name for p in written) == [
        f"{jurisdiction}.csv",
        f"{jurisdiction}.html",
        f"{jurisdiction}.json",
    ]
    expected = {e.id: dataclasses.asdict(e) for e in register.entries}
    assert set(expected) == registered_ids(jurisdiction)

    rows = list(csv.DictReader(io.StringIO((tmp_path / f"{jurisdiction}.csv").read_text())))
    assert [row["id"] for row in rows] == sorted(expected)
    for row in rows:
        assert list(row) == [c.key for c in COLUMNS]
        assert row == {c.key: csv_value(expected[row["id"]][c.key]) for c in COLUMNS}

    document = json.loads((tmp_path / f"{jurisdiction}.json").read_text())
    assert document["administration"] == jurisdiction
    assert document["revision"] == register.revision
    published = {a["id"]: a for a in document["agreements"]}
    assert set(published) == set(expected)
    for agreement_id, agreement in published.items():
        assert set(agreement) == {c.key for c in COLUMNS}
        as_listed = {
            k: list(v) if isinstance(v, tuple) else v for k, v in expected[agreement_id].items()
        }
        assert agreement == as_listed


@pytest.mark.parametrize("jurisdiction", JURISDICTIONS)
def test_the_html_register_lists_every_agreement_and_fetches_nothing(
    registers: dict[str, Register], jurisdiction: str
) -> None:
    html = register_html(registers[jurisdiction])
    for agreement_id in registered_ids(jurisdiction):
        assert f'<section id="{agreement_id}">' in html
        assert f'href="#{agreement_id}"' in html
    assert "src=" not in html and "<link" not in html and "@import" not in html
    assert "http://" not in html and "https://" not in html


def test_the_html_register_escapes_the_text_it_shows(registers: dict[str, Register]) -> None:
    hostile = '<script>alert("register")</script> & <b>bold</b>'
    register = registers["stormont"]
    entry = dataclasses.replace(
        register.entries[0], name=hostile, areas_covered=("<img onerror=x>",), contact="a&b"
    )
    html = register_html(dataclasses.replace(register, notes=hostile, entries=(entry,)))
    assert "<script>" not in html and "<b>" not in html and "<img" not in html
    assert "&lt;script&gt;alert(&quot;register&quot;)&lt;/script&gt; &amp; &lt;b&gt;" in html
    assert "&lt;img onerror=x&gt;" in html and "a&amp;b" in html


def test_a_debt_or_fraud_agreement_states_its_pilot_terms_and_disclosure_delay(
    registers: dict[str, Register],
) -> None:
    for register in registers.values():
        for entry in register.entries:
            if entry.purpose in ("DEBT", "FRAUD"):
                assert entry.pilot is not None and entry.business_case and entry.evaluation_date
                assert entry.disclosure_delay_days > 0
            else:
                assert entry.pilot is entry.business_case is entry.evaluation_date is None
                assert entry.disclosure_delay_days == 0


def test_the_demo_register_shows_every_state(registers: dict[str, Register]) -> None:
    statuses = {e.status for r in registers.values() for e in r.entries}
    assert statuses == {"active", "suspended", "ended"}


@pytest.mark.parametrize("jurisdiction", JURISDICTIONS)
def test_every_real_register_passes_the_register_check(jurisdiction: str) -> None:
    assert register_problems(load_bundle([POLICIES / "common", POLICIES / jurisdiction])) == ()


def copy_policies(tmp_path: Path) -> Path:
    policies = tmp_path / "policies"
    shutil.copytree(POLICIES, policies)
    return policies


def test_the_register_check_refuses_an_agreement_missing_a_required_field(
    tmp_path: Path,
) -> None:
    policies = copy_policies(tmp_path)
    data_file = policies / "stormont" / "data.json"
    data = json.loads(data_file.read_text())
    del data["register"]["agreements"]["cr-dfc-groni-deaths-2026"]["benefits"]
    del data["register"]["agreements"]["fraud-dwp-dfc-benefits-2026"]["evaluation_date"]
    data_file.write_text(json.dumps(data))

    problems = register_problems(load_bundle([policies / "common", policies / "stormont"]))
    assert problems == (
        "agreement cr-dfc-groni-deaths-2026: register field benefits must be a non-empty string",
        "agreement fraud-dwp-dfc-benefits-2026: a debt or fraud agreement needs an "
        "evaluation_date (an ISO date)",
    )

    out = tmp_path / "published"
    args = ["register", "publish", "--policies", str(policies), "--out", str(out), "-j", "stormont"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1
    assert "cr-dfc-groni-deaths-2026: register field benefits" in result.output
    assert "the stormont register has 2 problem(s)" in result.output
    assert not out.exists()


def test_publish_writes_every_administration_s_register_by_default(tmp_path: Path) -> None:
    out = tmp_path / "published"
    result = CliRunner().invoke(app, ["register", "publish", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{j}.{ext}" for j in JURISDICTIONS for ext in ("csv", "html", "json")
    )
    check = CliRunner().invoke(app, ["register", "check", "-j", "cardiff"])
    assert check.exit_code == 0 and "cardiff" in check.output


def test_csv_cells_join_lists_and_leave_what_does_not_apply_empty(
    registers: dict[str, Register],
) -> None:
    entry = registers["cardiff"].entry("cr-cardiff-council-gro-deaths-2026")
    assert entry is not None
    one = dataclasses.replace(registers["cardiff"], entries=(entry,))
    row = next(csv.DictReader(io.StringIO(register_csv(one))))
    assert row["controllers"] == "cardiff-council@cardiff; gro@whitehall"
    assert row["pilot"] == row["business_case"] == row["evaluation_date"] == ""
    assert row["disclosure_delay_days"] == "0"
