"""The jurisdictions' Rego bundles: their own tests pass and cover every rule; loading rules."""

from __future__ import annotations

import functools
import hashlib
import json
import re
from pathlib import Path

import pytest

from gateway.policy.bundle import PolicyBundle, PolicyBundleError, load_bundle
from gateway.policy.embedded import load_interpreter
from gateway.policy.register_shards import agreement_shard
from gateway.policy.rego_tests import RegoTestResult, run_rego_tests

POLICIES = Path(__file__).resolve().parents[2] / "policies"
JURISDICTIONS = ["whitehall", "holyrood", "stormont", "cardiff"]
_RULE_ID = re.compile(r'\bfailures\s+contains\s+"([\w.]+)"')
_ALLOW_ID = re.compile(r'"(\w+\.(?:egress|ingress)\.allow_under_agreement)"')
_WITHHOLDING_ID = re.compile(r'\bwithholdings\[\s*\w+\s*\]\s*:=\s*"([\w.]+)"')


def bundle_of(jurisdiction: str) -> PolicyBundle:
    return load_bundle([POLICIES / "common", POLICIES / jurisdiction])


@functools.cache
def results_of(jurisdiction: str) -> tuple[RegoTestResult, ...]:
    """Each bundle's tests run once per session; several tests read the results."""
    return tuple(run_rego_tests(bundle_of(jurisdiction)))


@pytest.mark.parametrize("jurisdiction", JURISDICTIONS)
def test_every_rego_test_passes(jurisdiction: str) -> None:
    results = results_of(jurisdiction)
    failed = [f"{r.package}.{r.name}" for r in results if not r.passed]
    assert results
    assert failed == []


@pytest.mark.parametrize("jurisdiction", JURISDICTIONS)
def test_jurisdiction_tests_both_directions(jurisdiction: str) -> None:
    packages = {r.package for r in results_of(jurisdiction)}
    assert {"concordat.tests.egress", "concordat.tests.ingress"} <= packages


@pytest.mark.parametrize("jurisdiction", JURISDICTIONS)
def test_every_denial_and_allow_rule_appears_in_a_test(jurisdiction: str) -> None:
    bundle = bundle_of(jurisdiction)
    policy = "\n".join(bundle.modules.values())
    tests = "\n".join(bundle.tests.values())
    rule_ids = (
        set(_RULE_ID.findall(policy))
        | set(_ALLOW_ID.findall(policy))
        | set(_WITHHOLDING_ID.findall(policy))
    )
    assert {f"{jurisdiction}.egress.allow_under_agreement"} <= rule_ids
    assert {"common.field_not_in_agreement", "common.research_identifying_field"} <= rule_ids
    untested = sorted(rule_id for rule_id in rule_ids if f'"{rule_id}"' not in tests)
    assert untested == []


def test_agreements_registered_by_several_administrations_agree() -> None:
    copies: dict[str, dict[str, object]] = {}
    for jurisdiction in JURISDICTIONS:
        register = json.loads((POLICIES / jurisdiction / "data.json").read_text())["register"]
        for agreement_id, agreement in register["agreements"].items():
            assert copies.setdefault(agreement_id, agreement) == agreement, agreement_id
    purposes = {agreement["purpose"] for agreement in copies.values()}
    assert purposes == {
        "PUBLIC_SERVICE_DELIVERY",
        "CIVIL_REGISTRATION",
        "DEBT",
        "FRAUD",
        "RESEARCH",
        "STATISTICS",
    }


# --- loading bundles ---------------------------------------------------------------------


def make_dir(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


MODULE = "package concordat.egress\n\nimport rego.v1\n\ndecision := {}\n"


def test_bundle_splits_modules_tests_data_and_roots() -> None:
    bundle = bundle_of("whitehall")
    assert "common/request.rego" in bundle.modules
    assert "whitehall/egress_test.rego" in bundle.tests
    assert not any(name.endswith("_test.rego") for name in bundle.modules)
    assert bundle.data["register"]["administration"] == "whitehall"
    assert {"concordat/common", "concordat/egress", "register"} <= set(bundle.roots)


def test_revision_is_stable_and_follows_every_file(tmp_path: Path) -> None:
    root = make_dir(tmp_path / "b", {"a.rego": MODULE, "data.json": '{"k": 1}'})
    first = load_bundle([root]).revision
    assert load_bundle([root]).revision == first
    (root / "data.json").write_text('{"k": 2}')
    assert load_bundle([root]).revision != first


def test_nested_data_json_lands_at_its_folder_path(tmp_path: Path) -> None:
    root = make_dir(tmp_path / "b", {"a.rego": MODULE, "x/y/data.json": '{"k": 1}'})
    assert load_bundle([root]).data == {"x": {"y": {"k": 1}}}


def test_data_from_two_directories_merges(tmp_path: Path) -> None:
    one = make_dir(tmp_path / "one", {"a.rego": MODULE, "data.json": '{"register": {"a": 1}}'})
    two = make_dir(tmp_path / "two", {"data.json": '{"register": {"b": 2}}'})
    assert load_bundle([one, two]).data == {"register": {"a": 1, "b": 2}}


def test_conflicting_data_is_refused(tmp_path: Path) -> None:
    one = make_dir(tmp_path / "one", {"a.rego": MODULE, "data.json": '{"register": {"a": 1}}'})
    two = make_dir(tmp_path / "two", {"data.json": '{"register": {"a": 2}}'})
    with pytest.raises(PolicyBundleError, match=r"sets data\.register\.a, which another"):
        load_bundle([one, two])


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"a.rego": MODULE, "data.json": "{not json"}, r"data\.json is not valid JSON"),
        ({"a.rego": MODULE, "data.json": "[1]"}, r"data\.json must hold a JSON object"),
        ({"a.rego": MODULE, ".manifest": '{"roots": "x"}'}, r"'roots' is a list"),
        ({"data.json": "{}"}, r"no Rego modules"),
        (
            {"a.rego": MODULE, ".manifest": '{"roots": ["elsewhere"]}'},
            r"package concordat\.egress is outside the bundle roots",
        ),
        (
            {"a.rego": MODULE, "data.json": '{"k": 1}', ".manifest": '{"roots": ["concordat"]}'},
            r"data\.k is outside the bundle roots",
        ),
    ],
)
def test_malformed_bundle_is_refused_clearly(
    tmp_path: Path, files: dict[str, str], message: str
) -> None:
    with pytest.raises(PolicyBundleError, match=message):
        load_bundle([make_dir(tmp_path / "b", files)])


def test_missing_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PolicyBundleError, match="does not exist"):
        load_bundle([tmp_path / "nowhere"])


def test_overlapping_roots_are_refused(tmp_path: Path) -> None:
    one = make_dir(tmp_path / "one", {"a.rego": MODULE, ".manifest": '{"roots": ["concordat"]}'})
    two = make_dir(tmp_path / "two", {".manifest": '{"roots": ["concordat/egress"]}'})
    with pytest.raises(PolicyBundleError, match="overlaps"):
        load_bundle([one, two])


# --- the register's agreements are filed in shards as a bundle loads ---------------------


def test_loaded_register_files_every_agreement_under_its_shard() -> None:
    written = json.loads((POLICIES / "whitehall" / "data.json").read_text())["register"]
    register = bundle_of("whitehall").data["register"]
    assert "agreements" not in register
    shards = register["agreement_shards"]
    assert all(re.fullmatch(r"[0-9a-f]{2}", shard) for shard in shards)
    filed = {
        agreement_id: (shard, agreement)
        for shard, agreements in shards.items()
        for agreement_id, agreement in agreements.items()
    }
    assert {agreement_id: agreement for agreement_id, (_, agreement) in filed.items()} == (
        written["agreements"]
    )
    # The digest is computed here rather than with agreement_shard, so that a change to the
    # loader's hashing cannot pass by changing both sides.
    for agreement_id, (shard, _) in filed.items():
        assert shard == hashlib.md5(agreement_id.encode()).hexdigest()[:2]  # noqa: S324


@pytest.mark.parametrize("agreement_id", ["fraud-dwp-dfc-benefits-2026", "", "cytundeb-ŵyn-2027"])
def test_rego_looks_for_an_agreement_in_the_shard_the_loader_files_it_in(agreement_id: str) -> None:
    interpreter = load_interpreter(bundle_of("whitehall"))
    # Through the input, as a request's agreement id reaches the policy. (rego-cpp 1.5 does
    # not decode a \u escape in a string literal, so a literal would hash other bytes.)
    interpreter.set_input({"agreement_id": agreement_id})
    output = interpreter.query("x := data.concordat.common.register.shard(input.agreement_id)")
    assert output.ok()
    assert json.loads(output.binding("x").json()) == agreement_shard(agreement_id)


def test_register_already_in_shards_is_kept(tmp_path: Path) -> None:
    """An OPA bundle that `concordat policy build` wrote can be unpacked and loaded again."""
    shards = {agreement_shard("fraud-pilot"): {"fraud-pilot": {"id": "fraud-pilot"}}}
    data = json.dumps({"register": {"agreement_shards": shards}})
    root = make_dir(tmp_path / "b", {"a.rego": MODULE, "data.json": data})
    assert load_bundle([root]).data == {"register": {"agreement_shards": shards}}


@pytest.mark.parametrize(
    ("register", "message"),
    [
        (
            {"agreements": {}, "agreement_shards": {}},
            r"data\.register sets both agreements and agreement_shards",
        ),
        (
            {"agreement_shards": {"00": {"fraud-pilot": {}}}},
            r"files agreement fraud-pilot under 00, where a decision looks for it under "
            + agreement_shard("fraud-pilot"),
        ),
        ({"agreement_shards": {"00": ["fraud-pilot"]}}, r"must map shards to agreements by id"),
    ],
)
def test_register_whose_shards_cannot_be_trusted_is_refused(
    tmp_path: Path, register: dict[str, object], message: str
) -> None:
    data = json.dumps({"register": register})
    root = make_dir(tmp_path / "b", {"a.rego": MODULE, "data.json": data})
    with pytest.raises(PolicyBundleError, match=message):
        load_bundle([root])


def test_register_whose_agreements_is_not_an_object_is_loaded_as_written(tmp_path: Path) -> None:
    """The register check reports it when the bundle is tested; the loader does not guess."""
    data = '{"register": {"administration": "alpha", "agreements": ["fraud-pilot"]}}'
    root = make_dir(tmp_path / "b", {"a.rego": MODULE, "data.json": data})
    assert load_bundle([root]).data == json.loads(data)
