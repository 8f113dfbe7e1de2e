"""`concordat policy`: test, eval, impact and build, on the real bundles and a real node's log.

The impact tests replay the audit log of a real whitehall node (TLS, JWT, embedded engine,
SQLite audit, demo SQL source) against edited copies of its bundle.
"""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio
from typer.testing import CliRunner, Result

from gateway import testing
from gateway.api.status import error_info
from gateway.cli import app
from gateway.dev.demo import demo_subjects
from gateway.domain import Requester
from gateway.policy.bundle import load_bundle
from gateway.policy.embedded import EmbeddedEngine
from gateway.policy.opa import OpaServerEngine
from gateway.policy.tools import build_opa_bundle
from gateway.testing import DWP_FRAUD_REQUEST, get_request, running_node
from tests.support.real_opa import OpaServer, require_opa

ROOT = Path(__file__).resolve().parents[2]
POLICIES = ROOT / "policies"
GUIDE = ROOT / "docs" / "policy-authors.md"
JURISDICTIONS = ["whitehall", "holyrood", "stormont", "cardiff"]

ALLOWED_EGRESS = "whitehall.egress.allow_under_agreement"
ALLOWED_INGRESS = "whitehall.ingress.allow_under_agreement"


def invoke(*args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(app, ["policy", *args], input=stdin)


def copy_bundle(tmp_path: Path, jurisdiction: str = "whitehall") -> list[Path]:
    """A private copy of common + one jurisdiction, to edit."""
    copies = []
    for name in ("common", jurisdiction):
        copies.append(shutil.copytree(POLICIES / name, tmp_path / "policies" / name))
    return copies


def bundle_args(directories: list[Path]) -> list[str]:
    return [part for directory in directories for part in ("--bundle", str(directory))]


def edit_register(directory: Path, change: Callable[[dict[str, Any]], None]) -> None:
    path = directory / "data.json"
    data = json.loads(path.read_text())
    change(data["register"])
    path.write_text(json.dumps(data, indent=2))


# DWP asking the General Register Office, both at whitehall, for a death registration.
DEATH_REGISTRATION = replace(
    DWP_FRAUD_REQUEST,
    providing_node="whitehall",
    requester=Requester(organisation="dwp", system="benefit-stops", administration="whitehall"),
    record_type="DEATH_REGISTRATION",
    subject_kind="registration_id",
    purpose="CIVIL_REGISTRATION",
    agreement_id="cr-dwp-gro-deaths-2026",
    fields=("registration_id", "date_of_death", "cause_of_death"),
)


def policy_input(**changes: Any) -> dict[str, Any]:
    return testing.policy_input(DEATH_REGISTRATION, **changes)


def write_json(path: Path, document: Any) -> str:
    path.write_text(json.dumps(document))
    return str(path)


# --- the guide's worked example ----------------------------------------------------------


def guide_blocks() -> dict[str, str]:
    """The fenced blocks of docs/policy-authors.md marked `<!-- worked-example: NAME -->`."""
    found = re.findall(
        r"<!-- worked-example: ([\w./-]+) -->\n```\w*\n(.*?)\n```", GUIDE.read_text(), re.DOTALL
    )
    return dict(found)


def apply_worked_example(directories: list[Path]) -> None:
    """Make in a bundle copy the edits the guide walks through: an agreement and its tests."""
    blocks = guide_blocks()
    agreement = json.loads("{" + blocks["agreement"] + "}")
    edit_register(directories[1], lambda register: register["agreements"].update(agreement))
    root = directories[1].parent
    for name, block in blocks.items():
        if name.endswith(".rego"):
            with (root / name).open("a") as module:
                module.write("\n" + block + "\n")


def test_the_guide_s_worked_example_passes_its_tests_and_allows(tmp_path: Path) -> None:
    directories = copy_bundle(tmp_path)
    before = invoke("test", *bundle_args(directories))
    apply_worked_example(directories)
    after = invoke("test", *bundle_args(directories))
    assert after.exit_code == 0, after.output
    passed = [int(re.search(r"(\d+) passed, 0 failed", r.output)[1]) for r in (before, after)]
    assert passed[1] == passed[0] + 3
    assert "PASS test_hmrc_may_ask_gro_for_a_death_registration_without_the_cause" in after.output
    example = write_json(tmp_path / "hmrc-death.json", json.loads(guide_blocks()["input"]))
    decided = invoke("eval", *bundle_args(directories), "--input", example)
    assert decided.exit_code == 0, decided.output
    assert "egress: ALLOW" in decided.output
    assert "retain-max-days (days=180)" in decided.output
    # The unchanged bundle does not know the agreement.
    unchanged = invoke("eval", "--jurisdiction", "whitehall", "--input", example)
    assert unchanged.exit_code == 2
    assert "rule:         common.agreement_unknown" in unchanged.output


# --- policy test -------------------------------------------------------------------------


def test_policy_test_passes_on_a_real_bundle_with_every_rule_named() -> None:
    result = invoke("test", "--jurisdiction", "whitehall")
    assert result.exit_code == 0, result.output
    assert "  PASS test_suspended_fraud_pilot_partner_is_denied" in result.output
    assert re.search(r"^\d+ passed, 0 failed", result.output, re.MULTILINE)
    covered = re.search(r"rule coverage: (\d+) of (\d+) rule ids named by a test", result.output)
    assert covered is not None and covered[1] == covered[2] and int(covered[1]) > 20


def test_policy_test_counts_withholding_rules_among_the_rule_ids() -> None:
    result = invoke("test", "--jurisdiction", "whitehall", "--verbose")
    assert result.exit_code == 0, result.output
    assert re.search(r"common\.field_not_in_agreement: .*common/release_test\.rego", result.output)
    assert re.search(r"common\.research_identifying_field: .*release_test\.rego", result.output)


def test_policy_test_takes_the_bundle_from_a_node_config() -> None:
    result = invoke(
        "test", "--config", str(ROOT / "deploy" / "local" / "stormont.toml"), "--verbose"
    )
    assert result.exit_code == 0, result.output
    assert "policies/stormont" in result.output
    assert re.search(r"stormont\.psd_not_available: .*stormont/egress_test\.rego", result.output)


def test_policy_test_fails_on_a_failing_test(tmp_path: Path) -> None:
    directories = copy_bundle(tmp_path)
    with (directories[1] / "egress_test.rego").open("a") as tests:
        tests.write(
            "\ntest_an_expired_agreement_is_allowed if {\n"
            '\treq := requests.request("egress", "fraud-dwp-sss-benefits-2023", '
            '"dwp@whitehall", ["nino"])\n'
            "\trequests.decide(req).allow\n}\n"
        )
    result = invoke("test", *bundle_args(directories))
    assert result.exit_code == 1
    assert "  FAIL test_an_expired_agreement_is_allowed" in result.output
    assert re.search(r"^\d+ passed, 1 failed", result.output, re.MULTILINE)
    assert "FAILED concordat.tests.egress.test_an_expired_agreement_is_allowed" in result.output


def test_policy_test_names_the_file_and_line_of_a_syntax_error(tmp_path: Path) -> None:
    directories = copy_bundle(tmp_path)
    module = directories[0] / "psd.rego"
    lines = module.read_text().splitlines()
    broken = next(i for i, line in enumerate(lines) if line.startswith("failures contains"))
    lines[broken] = lines[broken].replace("if {", "if {{")
    module.write_text("\n".join(lines) + "\n")
    result = invoke("test", *bundle_args(directories))
    assert result.exit_code == 1
    assert f"common/psd.rego:{broken + 1}:" in result.output


def test_policy_test_names_the_file_and_line_of_a_broken_test(tmp_path: Path) -> None:
    directories = copy_bundle(tmp_path)
    tests = directories[1] / "ingress_test.rego"
    line = len(tests.read_text().splitlines()) + 3
    with tests.open("a") as module:
        module.write("\ntest_half_written if {\n\t1 ==\n}\n")
    result = invoke("test", *bundle_args(directories))
    assert result.exit_code == 1
    assert f"whitehall/ingress_test.rego:{line}:" in result.output


def test_policy_test_reports_a_rule_id_no_test_names(tmp_path: Path) -> None:
    directories = copy_bundle(tmp_path, "stormont")
    with (directories[1] / "local.rego").open("a") as module:
        module.write('\nfailures contains "stormont.example_untested" if req.bulk == "never"\n')
    result = invoke("test", *bundle_args(directories))
    assert result.exit_code == 0, result.output
    assert "not named by any test: stormont.example_untested (stormont/local.rego)" in (
        result.output
    )
    strict = invoke("test", *bundle_args(directories), "--fail-uncovered")
    assert strict.exit_code == 1
    assert "1 rule id(s) named by no test" in strict.output


def test_bundle_options_are_exclusive_and_checked() -> None:
    both = invoke("test", "--jurisdiction", "whitehall", "--bundle", str(POLICIES / "common"))
    assert both.exit_code == 1
    assert "exactly one of --config, --bundle" in both.output
    unknown = invoke("test", "--jurisdiction", "narnia")
    assert unknown.exit_code == 1
    assert "unknown jurisdiction 'narnia'; known: cardiff, holyrood, stormont, whitehall" in (
        unknown.output
    )


# --- policy eval -------------------------------------------------------------------------


def test_eval_shows_an_allow_and_exits_0(tmp_path: Path) -> None:
    result = invoke(
        "eval", "-j", "whitehall", "--input", write_json(tmp_path / "i", policy_input())
    )
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[:6] == [
        "egress: ALLOW",
        f"rule:         {ALLOWED_EGRESS}",
        "agreement:    cr-dwp-gro-deaths-2026",
        "fields:       date_of_death, registration_id",
        "withheld:     cause_of_death (common.field_not_in_agreement)",
        "pseudonymise: no",
    ]
    assert "  retain-max-days (days=90)" in result.output


def test_eval_shows_a_denial_with_every_reason_and_exits_2(tmp_path: Path) -> None:
    denied = policy_input(agreement_id="fraud-dwp-sss-benefits-2023", purpose="FRAUD")
    result = invoke("eval", "-j", "whitehall", "--input", write_json(tmp_path / "i", denied))
    assert result.exit_code == 2, result.output
    assert "egress: DENY" in result.output
    assert "rule:         common.agreement_expired" in result.output
    assert "fields:       (none)" in result.output
    assert "withheld:     (none)" in result.output
    reasons = result.output.split("in the order that decides):\n")[1].split()
    assert reasons[:2] == ["common.agreement_expired", "common.agreement_review_overdue"]


def test_eval_reads_standard_input_and_prints_json() -> None:
    result = invoke(
        "eval", "-j", "whitehall", "--input", "-", "--json", stdin=json.dumps(policy_input())
    )
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert document["direction"] == "egress"
    assert document["allow"] is True
    assert document["fields"] == ["date_of_death", "registration_id"]
    assert document["withheld"] == {"cause_of_death": "common.field_not_in_agreement"}
    assert [o["code"] for o in document["obligations"]] == [
        "no-onward-disclosure",
        "retain-max-days",
    ]


def test_eval_takes_one_direction_of_an_audit_entry_s_inputs(tmp_path: Path) -> None:
    inputs = {
        "egress": policy_input(),
        "ingress": policy_input(direction="ingress"),
    }
    path = write_json(tmp_path / "inputs.json", inputs)
    ambiguous = invoke("eval", "-j", "whitehall", "--input", path)
    assert ambiguous.exit_code == 1
    assert "choose one with --direction" in ambiguous.output
    ingress = invoke("eval", "-j", "whitehall", "--input", path, "--direction", "ingress")
    assert ingress.exit_code == 0, ingress.output
    assert ingress.output.startswith("ingress: ALLOW")
    assert f"rule:         {ALLOWED_INGRESS}" in ingress.output
    # A whole audit event works too, and its only direction needs no --direction.
    event = {"exchange_id": "x", "policy_inputs": {"egress": policy_input()}}
    whole = invoke("eval", "-j", "whitehall", "--input", write_json(tmp_path / "e", event))
    assert whole.exit_code == 0 and whole.output.startswith("egress: ALLOW")


def test_eval_refuses_unusable_input(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text("{not json")
    bad = invoke("eval", "-j", "whitehall", "--input", str(tmp_path / "bad.json"))
    assert bad.exit_code == 1
    assert "is not valid JSON" in bad.output
    no_direction = {k: v for k, v in policy_input().items() if k != "direction"}
    path = write_json(tmp_path / "i", no_direction)
    undirected = invoke("eval", "-j", "whitehall", "--input", path)
    assert undirected.exit_code == 1
    assert "give --direction" in undirected.output
    missing = invoke("eval", "-j", "whitehall", "--input", str(tmp_path / "absent.json"))
    assert missing.exit_code == 1


# --- policy impact, against a real node's audit log ----------------------------------------


@dataclass(frozen=True)
class RecordedLog:
    path: Path
    allowed: tuple[str, ...]  # exchange ids of DWP's two allowed death registrations
    unknown_agreement: str  # HMRC citing an agreement whitehall has not registered
    expired: str  # DWP citing an expired fraud agreement
    refused: str  # a malformed identifier, refused before any decision
    subjects: tuple[str, ...]  # the identifiers asked about (must never be printed)


async def _exchange(node: Any, organisation: str, request: Any) -> str:
    client = node.client(organisation=organisation)
    try:
        return (await client.get_record(request)).exchange_id
    except grpc.aio.AioRpcError as exc:
        return error_info(exc)["exchange_id"]
    finally:
        await client.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def recorded(tmp_path_factory: pytest.TempPathFactory) -> RecordedLog:
    state_dir = tmp_path_factory.mktemp("node")
    async with running_node(state_dir, "whitehall") as node:
        subjects = demo_subjects(f"sqlite:///{node.state.demo_db}", "whitehall")
        death = next(v for k, v in subjects["DEATH_REGISTRATION"] if k == "registration_id")
        nino = next(v for k, v in subjects["BENEFIT_AWARD"] if k == "nino")

        def deaths(agreement: str, registration: object = death) -> Any:
            return get_request(
                "DEATH_REGISTRATION",
                registration_id=registration,
                purpose="CIVIL_REGISTRATION",
                agreement_id=agreement,
                fields=["registration_id", "date_of_death"],
            )

        allowed = (
            await _exchange(node, "dwp", deaths("cr-dwp-gro-deaths-2026")),
            await _exchange(node, "dwp", deaths("cr-dwp-gro-deaths-2026")),
        )
        unknown = await _exchange(node, "hmrc", deaths("cr-hmrc-gro-deaths-2026"))
        expired = await _exchange(
            node,
            "dwp",
            get_request(
                "BENEFIT_AWARD",
                nino=nino,
                purpose="FRAUD",
                agreement_id="fraud-dwp-sss-benefits-2023",
                fields=["nino", "benefit"],
            ),
        )
        refused = await _exchange(node, "dwp", deaths("cr-dwp-gro-deaths-2026", "EW-X-1-1"))
        outcomes = [entry["outcome"] for entry in node.audit_entries()]
        path = node.audit_path
    assert outcomes == ["released", "released", "denied", "denied", "refused"]
    return RecordedLog(path, allowed, unknown, expired, refused, (str(death), str(nino)))


def impact_json(recorded: RecordedLog, *args: str) -> dict[str, Any]:
    result = invoke("impact", "--audit", str(recorded.path), "--json", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_impact_of_the_running_bundle_is_nothing(recorded: RecordedLog) -> None:
    report = impact_json(recorded, "--jurisdiction", "whitehall")
    assert report["entries"] == 5
    assert report["decisions_evaluated"] == 6  # two allowed exchanges decided both ways
    assert report["unchanged"] == 6
    assert report["changes"] == []
    assert report["skipped"] == {"no policy input (refused before any decision)": 1}
    assert report["nodes"] == {"whitehall": 5}


def test_impact_of_suspending_an_agreement_lists_exactly_its_flips(
    recorded: RecordedLog, tmp_path: Path
) -> None:
    directories = copy_bundle(tmp_path)

    def suspend(register: dict[str, Any]) -> None:
        register["agreements"]["cr-dwp-gro-deaths-2026"]["status"] = "suspended"

    edit_register(directories[1], suspend)
    report = impact_json(recorded, *bundle_args(directories))
    assert report["changed"] == {"allowed → denied": 4, "denied → allowed": 0, "rule changed": 0}
    assert report["unchanged"] == 2
    groups = [
        (g["kind"], g["direction"], g["agreement_id"], g["recorded_rule"], g["rule"], g["count"])
        for g in report["changes"]
    ]
    assert groups == [
        (
            "allowed → denied",
            "egress",
            "cr-dwp-gro-deaths-2026",
            ALLOWED_EGRESS,
            "common.agreement_not_active",
            2,
        ),
        (
            "allowed → denied",
            "ingress",
            "cr-dwp-gro-deaths-2026",
            ALLOWED_INGRESS,
            "common.agreement_not_active",
            2,
        ),
    ]
    assert sorted(report["changes"][0]["examples"]) == sorted(recorded.allowed)

    text = invoke("impact", "--audit", str(recorded.path), *bundle_args(directories))
    assert text.exit_code == 0, text.output
    assert "re-evaluated 6 decisions: 2 unchanged, 4 changed" in text.output
    assert "allowed → denied: 4" in text.output
    assert re.search(
        rf"2 egress\s+cr-dwp-gro-deaths-2026: {ALLOWED_EGRESS} → common\.agreement_not_active",
        text.output,
    )
    assert "skipped 1: no policy input (refused before any decision)" in text.output
    assert not any(subject in text.output for subject in recorded.subjects)


def test_impact_of_adding_the_guide_s_agreement_allows_what_was_unknown(
    recorded: RecordedLog, tmp_path: Path
) -> None:
    directories = copy_bundle(tmp_path)
    apply_worked_example(directories)
    report = impact_json(recorded, *bundle_args(directories))
    assert report["changes"] == [
        {
            "kind": "denied → allowed",
            "direction": "egress",
            "agreement_id": "cr-hmrc-gro-deaths-2026",
            "recorded_rule": "common.agreement_unknown",
            "rule": ALLOWED_EGRESS,
            "count": 1,
            "examples": [recorded.unknown_agreement],
        }
    ]


def test_impact_reports_a_denial_decided_by_another_rule(
    recorded: RecordedLog, tmp_path: Path
) -> None:
    directories = copy_bundle(tmp_path)

    def extend(register: dict[str, Any]) -> None:
        agreement = register["agreements"]["fraud-dwp-sss-benefits-2023"]
        agreement["end"] = agreement["review"] = "2029-03-31"

    edit_register(directories[1], extend)
    report = impact_json(recorded, *bundle_args(directories))
    assert [
        (g["kind"], g["recorded_rule"], g["rule"], g["examples"]) for g in report["changes"]
    ] == [
        (
            "rule changed",
            "common.agreement_expired",
            # Extended, it is still another administration's agreement: the provider is
            # Social Security Scotland, not a whitehall body.
            "common.provider_mismatch",
            [recorded.expired],
        )
    ]


def test_impact_as_of_a_later_date_and_since_a_date(recorded: RecordedLog) -> None:
    later = impact_json(recorded, "-j", "whitehall", "--as-of", "2029-04-01")
    assert later["changed"]["allowed → denied"] == 4
    assert {g["rule"] for g in later["changes"]} == {"common.agreement_expired"}
    future = impact_json(recorded, "-j", "whitehall", "--since", "2999-01-01")
    assert future["entries"] == 0 and future["entries_before_since"] == 5
    bad = invoke("impact", "--audit", str(recorded.path), "-j", "whitehall", "--since", "soon")
    assert bad.exit_code == 1 and "--since must be an ISO date" in bad.output


def test_impact_warns_when_the_bundle_is_another_administration_s(
    recorded: RecordedLog,
) -> None:
    result = invoke("impact", "--audit", str(recorded.path), "--jurisdiction", "stormont")
    assert result.exit_code == 0, result.output
    assert "warning: this is stormont's bundle, but the log holds entries of whitehall" in (
        result.output
    )


def test_impact_skips_entries_that_kept_no_policy_input(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE entries (seq INTEGER PRIMARY KEY, recorded_at TEXT, event TEXT)")
        decided = {"node": "whitehall", "egress": {"allow": True, "rule": ALLOWED_EGRESS}}
        refused = {"node": "whitehall", "egress": None, "ingress": None, "policy_inputs": {}}
        db.executemany(
            "INSERT INTO entries VALUES (?, ?, ?)",
            [(1, "2026-11-20", json.dumps(decided)), (2, "2026-11-20", json.dumps(refused))],
        )
    report = json.loads(invoke("impact", "-j", "whitehall", "--audit", str(path), "--json").output)
    assert report["decisions_evaluated"] == 0
    assert report["skipped"] == {
        "decided, but written before audit entries kept policy inputs": 1,
        "no policy input (refused before any decision)": 1,
    }


def test_impact_refuses_a_missing_log(tmp_path: Path) -> None:
    result = invoke("impact", "-j", "whitehall", "--audit", str(tmp_path / "none.db"))
    assert result.exit_code == 1
    assert "does not exist" in result.output


# --- manifests and policy build ------------------------------------------------------------


@pytest.mark.parametrize("folder", ["common", *JURISDICTIONS])
def test_every_folder_has_a_manifest_its_files_stay_inside(folder: str) -> None:
    manifest = json.loads((POLICIES / folder / ".manifest").read_text())
    assert manifest["roots"]
    # Loaded alone, a folder is checked against its own roots, as OPA checks each bundle.
    assert set(load_bundle([POLICIES / folder]).roots) == set(manifest["roots"])


@pytest.mark.parametrize("jurisdiction", JURISDICTIONS)
def test_each_node_s_folders_own_disjoint_roots(jurisdiction: str) -> None:
    common = json.loads((POLICIES / "common" / ".manifest").read_text())["roots"]
    own = json.loads((POLICIES / jurisdiction / ".manifest").read_text())["roots"]
    assert all(
        not (a == b or a.startswith(b + "/") or b.startswith(a + "/")) for a in common for b in own
    )
    bundle = load_bundle([POLICIES / "common", POLICIES / jurisdiction])
    assert set(bundle.roots) == {*common, *own}


def read_tarball(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {
            member.name: tar.extractfile(member).read()  # type: ignore[union-attr]
            for member in tar.getmembers()
        }


def test_build_writes_an_opa_bundle_with_modules_data_and_manifest(tmp_path: Path) -> None:
    out = tmp_path / "out" / "whitehall.tar.gz"
    result = invoke("build", "--jurisdiction", "whitehall", "--out", str(out))
    assert result.exit_code == 0, result.output
    files = read_tarball(out)
    bundle = load_bundle([POLICIES / "common", POLICIES / "whitehall"])
    manifest = json.loads(files["/.manifest"])
    assert manifest["revision"] == bundle.revision
    assert manifest["roots"] == sorted(bundle.roots)
    assert manifest["rego_version"] == 1
    assert json.loads(files["/data.json"]) == bundle.data
    assert {name.removeprefix("/") for name in files} == {".manifest", "data.json", *bundle.modules}
    assert f"revision {bundle.revision}" in result.output
    # The same sources give the same bytes; tests go in only when asked for.
    again = tmp_path / "again.tar.gz"
    assert invoke("build", "-j", "whitehall", "--out", str(again)).exit_code == 0
    assert again.read_bytes() == out.read_bytes()
    tests = tmp_path / "tests.tar.gz"
    assert invoke("build", "-j", "whitehall", "--out", str(tests), "--include-tests").exit_code == 0
    assert "/whitehall/egress_test.rego" in read_tarball(tests)


def test_build_refuses_a_bundle_that_does_not_compile(tmp_path: Path) -> None:
    directories = copy_bundle(tmp_path)
    (directories[1] / "egress.rego").write_text("package concordat.egress\n\ndecision := {\n")
    result = invoke("build", *bundle_args(directories), "--out", str(tmp_path / "b.tar.gz"))
    assert result.exit_code == 1
    assert "whitehall/egress.rego:" in result.output
    assert not (tmp_path / "b.tar.gz").exists()


async def test_the_real_opa_serves_the_built_bundle_like_the_embedded_engine(
    tmp_path: Path,
) -> None:
    require_opa()
    directories = [POLICIES / "common", POLICIES / "stormont"]
    built = build_opa_bundle(directories, tmp_path / "stormont.tar.gz")
    unpacked = tmp_path / "unpacked"
    with tarfile.open(built.path) as tar:
        tar.extractall(unpacked, filter="data")
    served = load_bundle([unpacked])
    assert served.roots == load_bundle(directories).roots
    embedded = EmbeddedEngine.compile(load_bundle(directories))
    asks = [
        policy_input(
            direction="ingress",
            node="stormont",
            providing_node="stormont",
            requesting_node="whitehall",
            record_type="BENEFIT_AWARD",
            subject_kind="nino",
            purpose="FRAUD",
            agreement_id="fraud-dwp-dfc-benefits-2026",
            fields=["nino", "benefit"],
            field_sensitivity={"nino": "PERSONAL", "benefit": "PERSONAL"},
            identifying_fields=["nino"],
        ),
        policy_input(direction="ingress", node="stormont", providing_node="stormont"),
    ]
    rules = []
    with OpaServer([built.path], config={"decision_logs": {"console": True}}) as server:
        opa = OpaServerEngine(url=server.url)
        try:
            for ask in asks:
                over_http = await opa.decide("ingress", ask)
                in_process = await embedded.decide("ingress", ask)
                assert (over_http.allow, over_http.rule, over_http.released_fields) == (
                    in_process.allow,
                    in_process.rule,
                    in_process.released_fields,
                )
                assert over_http.obligations == in_process.obligations
                assert over_http.reasons == in_process.reasons
                rules.append(over_http.rule)
        finally:
            await opa.close()
            await embedded.close()
    # Stormont discloses under its fraud agreement with DWP; it registers no death agreement.
    assert rules == ["stormont.ingress.allow_under_agreement", "common.agreement_unknown"]
    assert server.output().count('"path":"concordat/ingress/decision"') == 2
