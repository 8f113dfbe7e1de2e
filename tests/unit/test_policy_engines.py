"""Both policy engines, through the PolicyEngine seam: what they decide and how they fail."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import regopy

from gateway.domain import Decision
from gateway.policy import embedded
from gateway.policy.bundle import PolicyBundle, PolicyBundleError, load_bundle
from gateway.policy.decision import parse_decision
from gateway.policy.embedded import EmbeddedEngine, compile_in_subprocess
from gateway.policy.opa import OpaServerEngine
from gateway.policy.tools import build_opa_bundle
from gateway.testing import policy_input
from tests.support.opa_server import OpaDataApiServer
from tests.support.real_opa import OpaServer, require_opa

POLICIES = Path(__file__).resolve().parents[2] / "policies"


def directories(jurisdiction: str) -> list[Path]:
    return [POLICIES / "common", POLICIES / jurisdiction]


@pytest.fixture(scope="module")
def whitehall() -> PolicyBundle:
    return load_bundle(directories("whitehall"))


@pytest.fixture(scope="module")
def stormont() -> PolicyBundle:
    return load_bundle(directories("stormont"))


def without_id(decision: Decision) -> tuple[Any, ...]:
    return (
        decision.allow,
        decision.rule,
        decision.agreement_id,
        decision.released_fields,
        decision.withheld,
        decision.obligations,
        decision.reasons,
        decision.pseudonymise,
    )


def write_bundle(root: Path, egress: str, ingress: str | None = None) -> list[Path]:
    """A throwaway bundle whose egress decision is `egress` (Rego rule text)."""
    root.mkdir()
    header = "import rego.v1\n\n"
    (root / "egress.rego").write_text(f"package concordat.egress\n\n{header}{egress}\n")
    if ingress is not None:
        (root / "ingress.rego").write_text(f"package concordat.ingress\n\n{header}{ingress}\n")
    return [root]


DENY_ALL = 'decision := {"allow": false, "rule": "test.deny_all"}'
MALFORMED = "concordat.decision_malformed"


# --- the embedded engine decides ---------------------------------------------------------


@pytest.fixture(scope="module")
def engine(whitehall: PolicyBundle) -> EmbeddedEngine:
    return EmbeddedEngine.compile(whitehall)


async def test_request_under_a_registered_agreement_is_allowed(engine: EmbeddedEngine) -> None:
    decision = await engine.decide("egress", policy_input())
    assert decision.allow
    assert decision.rule == "whitehall.egress.allow_under_agreement"
    assert decision.agreement_id == "fraud-dwp-dfc-benefits-2026"
    assert decision.released_fields == ("benefit", "nino", "weekly_amount_pence")
    assert [o.code for o in decision.obligations] == ["no-onward-disclosure", "retain-max-days"]
    assert decision.obligations[1].parameters == {"days": "365"}
    assert decision.withheld == {}
    assert re.fullmatch(r"[0-9a-f]{32}", decision.decision_id)


async def test_field_the_agreement_does_not_list_is_withheld_with_its_rule(
    engine: EmbeddedEngine,
) -> None:
    asked = policy_input()
    decision = await engine.decide(
        "egress",
        policy_input(
            fields=[*asked["fields"], "address_line"],
            field_sensitivity={**asked["field_sensitivity"], "address_line": "PERSONAL"},
            identifying_fields=["address_line", "nino"],
        ),
    )
    assert decision.allow
    assert decision.released_fields == ("benefit", "nino", "weekly_amount_pence")
    assert decision.withheld == {"address_line": "common.field_not_in_agreement"}


async def test_expired_agreement_is_denied_with_its_rule(engine: EmbeddedEngine) -> None:
    decision = await engine.decide(
        "egress",
        policy_input(agreement_id="fraud-dwp-sss-benefits-2023", providing_node="holyrood"),
    )
    assert not decision.allow
    assert decision.rule == "common.agreement_expired"
    assert decision.released_fields == ()
    assert decision.obligations == ()


async def test_suspended_body_is_denied_with_its_rule(engine: EmbeddedEngine) -> None:
    requester = {**policy_input()["requester"], "organisation": "fraud-pilot-partner"}
    decision = await engine.decide(
        "egress",
        policy_input(agreement_id="fraud-fpp-dfc-benefits-2026", requester=requester),
    )
    assert decision.rule == "common.requester_not_fit_and_proper"


async def test_providing_node_decides_ingress_under_its_own_law(stormont: PolicyBundle) -> None:
    engine = EmbeddedEngine.compile(stormont)
    decision = await engine.decide("ingress", policy_input(direction="ingress", node="stormont"))
    assert decision.rule == "stormont.ingress.allow_under_agreement"
    refused = await engine.decide(
        "egress",
        policy_input(
            node="stormont",
            requesting_node="stormont",
            providing_node="whitehall",
            requester={
                **policy_input()["requester"],
                "organisation": "dfc-ni",
                "administration": "stormont",
            },
            purpose="PUBLIC_SERVICE_DELIVERY",
            agreement_id="psd-dfc-dwp-fuel-poverty-2026",
        ),
    )
    assert refused.rule == "stormont.psd_not_available"


def with_flat_register(bundle: PolicyBundle) -> PolicyBundle:
    """The bundle with its agreements keyed by id, as data.json writes them, not in shards."""
    register = dict(bundle.data["register"])
    shards = register.pop("agreement_shards")
    register["agreements"] = {
        agreement_id: agreement
        for shard in shards.values()
        for agreement_id, agreement in shard.items()
    }
    return dataclasses.replace(bundle, data={**bundle.data, "register": register})


async def test_register_filed_in_shards_decides_as_the_register_written_flat(
    whitehall: PolicyBundle, engine: EmbeddedEngine
) -> None:
    flat = EmbeddedEngine.compile(with_flat_register(whitehall))
    shards = whitehall.data["register"]["agreement_shards"]
    asked = [agreement_id for shard in shards.values() for agreement_id in shard]
    rules = set()
    for agreement_id in [*asked, "no-such-agreement", ""]:
        policy = policy_input(agreement_id=agreement_id)
        decision = await engine.decide("egress", policy)
        assert without_id(decision) == without_id(await flat.decide("egress", policy))
        rules.add(decision.rule)
    # Different agreements reach different outcomes, so equal decisions mean equal lookups.
    assert {"whitehall.egress.allow_under_agreement", "common.agreement_unknown"} <= rules
    assert len(rules) >= 4


async def test_agreement_listed_last_of_thousands_is_found(tmp_path: Path) -> None:
    common = shutil.copytree(POLICIES / "common", tmp_path / "common")
    own = shutil.copytree(POLICIES / "whitehall", tmp_path / "whitehall")
    data = json.loads((own / "data.json").read_text())
    agreements = data["register"]["agreements"]
    asked = agreements.pop("fraud-dwp-dfc-benefits-2026")
    for index in range(3000):
        agreements[f"fraud-synthetic-{index:04d}"] = {**asked, "id": f"fraud-synthetic-{index:04d}"}
    agreements[asked["id"]] = asked
    (own / "data.json").write_text(json.dumps(data))
    large = EmbeddedEngine.compile(load_bundle([common, own]))
    decision = await large.decide("egress", policy_input())
    assert decision.allow
    assert decision.released_fields == ("benefit", "nino", "weekly_amount_pence")
    unknown = await large.decide("egress", policy_input(agreement_id="fraud-synthetic-3000"))
    assert unknown.rule == "common.agreement_unknown"


async def test_every_decision_gets_its_own_id(engine: EmbeddedEngine) -> None:
    first = await engine.decide("egress", policy_input())
    second = await engine.decide("egress", policy_input())
    assert first.decision_id != second.decision_id


async def test_engine_compiles_once_and_never_per_decision(
    whitehall: PolicyBundle, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = EmbeddedEngine.compile(whitehall)

    def rebuild(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the bundle was rebuilt for a decision")

    monkeypatch.setattr(regopy.Interpreter, "build", rebuild)
    monkeypatch.setattr(regopy.Interpreter, "add_module", rebuild)
    for _ in range(3):
        assert (await engine.decide("egress", policy_input())).allow
    assert engine.revision == whitehall.revision


async def test_closed_engine_denies(whitehall: PolicyBundle) -> None:
    engine = EmbeddedEngine.compile(whitehall)
    await engine.close()
    decision = await engine.decide("egress", policy_input())
    assert decision.rule == "concordat.engine_unavailable"


async def test_input_the_engine_cannot_take_is_an_engine_error(engine: EmbeddedEngine) -> None:
    decision = await engine.decide("egress", policy_input(now=object()))
    assert not decision.allow
    assert decision.rule == "concordat.engine_error"


async def test_unknown_direction_is_an_engine_error(engine: EmbeddedEngine) -> None:
    decision = await engine.decide("sideways", policy_input())  # type: ignore[arg-type]
    assert decision.rule == "concordat.engine_error"


# --- malformed decisions fail closed -----------------------------------------------------


@pytest.mark.parametrize(
    ("rule_text", "expected_rule"),
    [
        ('decision := "allow"', "concordat.decision_malformed"),
        ('decision := {"allow": "yes", "rule": "t"}', "concordat.decision_malformed"),
        ('decision := {"allow": true}', "concordat.decision_malformed"),
        ('decision := {"allow": true, "rule": ""}', "concordat.decision_malformed"),
        (
            'decision := {"allow": true, "rule": "t", "fields": "nino"}',
            "concordat.decision_malformed",
        ),
        ('decision := {"allow": true, "rule": "t", "fields": [1]}', "concordat.decision_malformed"),
        (
            'decision := {"allow": true, "rule": "t", "obligations": [{"code": 1}]}',
            "concordat.decision_malformed",
        ),
        (
            'decision := {"allow": true, "rule": "t", '
            '"obligations": [{"code": "retain", "parameters": {"days": 30}}]}',
            "concordat.decision_malformed",
        ),
        (
            'decision := {"allow": true, "rule": "t", "pseudonymise": "no"}',
            "concordat.decision_malformed",
        ),
        (
            'decision := {"allow": true, "rule": "t", "fields": ["nino", "address_line"]}',
            "concordat.decision_released_unrequested_fields",
        ),
        ('decision := {"allow": true, "rule": "t", "withheld": ["nino"]}', MALFORMED),
        ('decision := {"allow": true, "rule": "t", "withheld": {"nino": 1}}', MALFORMED),
        ('decision := {"allow": true, "rule": "t", "withheld": {"nino": ""}}', MALFORMED),
        ('decision := {"allow": true, "rule": "t", "withheld": {"": "t.rule"}}', MALFORMED),
        ('decision := {"allow": true, "rule": "t", "withheld": {"nino": ["t.rule"]}}', MALFORMED),
        # Naming a field not asked for, or one it also releases, contradicts the request.
        (
            'decision := {"allow": true, "rule": "t", "fields": ["nino"], '
            '"withheld": {"address_line": "t.rule"}}',
            MALFORMED,
        ),
        (
            'decision := {"allow": true, "rule": "t", "fields": ["nino", "benefit"], '
            '"withheld": {"nino": "t.rule"}}',
            MALFORMED,
        ),
        ('decision := {"allow": true, "rule": "t"} if input.never', "concordat.decision_undefined"),
    ],
)
async def test_malformed_decision_is_a_denial_with_the_right_rule(
    tmp_path: Path, rule_text: str, expected_rule: str
) -> None:
    engine = EmbeddedEngine.compile(load_bundle(write_bundle(tmp_path / "b", rule_text, DENY_ALL)))
    decision = await engine.decide("egress", policy_input())
    assert not decision.allow
    assert decision.rule == expected_rule
    assert decision.released_fields == ()
    assert decision.reasons


async def test_unknown_keys_in_a_decision_are_ignored(tmp_path: Path) -> None:
    rule_text = 'decision := {"allow": true, "rule": "t.ok", "fields": ["nino"], "colour": "blue"}'
    engine = EmbeddedEngine.compile(load_bundle(write_bundle(tmp_path / "b", rule_text, DENY_ALL)))
    decision = await engine.decide("egress", policy_input())
    assert decision.allow
    assert decision.released_fields == ("nino",)


async def test_conflicting_decisions_are_an_engine_error(tmp_path: Path) -> None:
    rule_text = (
        'decision := {"allow": true, "rule": "a"} if input.bulk == false\n'
        'decision := {"allow": false, "rule": "b"} if input.bulk == false'
    )
    engine = EmbeddedEngine.compile(load_bundle(write_bundle(tmp_path / "b", rule_text, DENY_ALL)))
    decision = await engine.decide("egress", policy_input())
    assert decision.rule == "concordat.engine_error"


def test_denial_never_releases_what_it_lists() -> None:
    decision = parse_decision(
        {
            "allow": False,
            "rule": "x.deny",
            "fields": ["nino"],
            "withheld": {"benefit": "x.withheld"},
            "pseudonymise": True,
        },
        decision_id="d1",
        requested_fields={"nino", "benefit"},
    )
    assert decision == Decision(allow=False, decision_id="d1", rule="x.deny")


def test_withheld_fields_are_kept_by_field_name_with_their_rules() -> None:
    decision = parse_decision(
        {
            "allow": True,
            "rule": "x.allow",
            "fields": ["benefit"],
            "withheld": {"nino": "x.identifying", "address_line": "x.not_agreed"},
        },
        decision_id="d1",
        requested_fields={"nino", "benefit", "address_line"},
    )
    assert decision.allow
    assert list(decision.withheld.items()) == [
        ("address_line", "x.not_agreed"),
        ("nino", "x.identifying"),
    ]


def test_a_decision_without_withheld_withholds_nothing_by_name() -> None:
    decision = parse_decision(
        {"allow": True, "rule": "x.allow", "fields": ["nino"]},
        decision_id="d1",
        requested_fields={"nino", "benefit"},
    )
    assert decision.allow
    assert decision.withheld == {}


# --- bundles the engine refuses ----------------------------------------------------------


def test_missing_entrypoint_is_refused_at_compile(tmp_path: Path) -> None:
    bundle = load_bundle(write_bundle(tmp_path / "b", DENY_ALL))
    with pytest.raises(
        PolicyBundleError, match=r"does not define data\.concordat\.ingress\.decision"
    ):
        EmbeddedEngine.compile(bundle)


def test_syntax_error_is_refused_with_file_and_line(tmp_path: Path) -> None:
    bundle = load_bundle(write_bundle(tmp_path / "b", "decision := {", DENY_ALL))
    with pytest.raises(PolicyBundleError, match=r"b/egress\.rego:5: "):
        EmbeddedEngine.compile(bundle)


def test_rego_that_would_crash_rego_cpp_is_refused(tmp_path: Path) -> None:
    rule_text = f"{DENY_ALL}\nprobe if {{ decision.allow with input as {{}} }}"
    bundle = load_bundle(write_bundle(tmp_path / "b", rule_text, DENY_ALL))
    with pytest.raises(PolicyBundleError, match=r"egress\.rego:6: `with input as` crashes"):
        EmbeddedEngine.compile(bundle)


def test_compile_in_subprocess_accepts_a_bundle_and_names_the_revision_it_checked() -> None:
    checked = compile_in_subprocess(directories("cardiff"))
    assert checked == load_bundle(directories("cardiff")).revision


def test_compile_in_subprocess_refuses_a_syntax_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyBundleError, match=r"b/egress\.rego:5: "):
        compile_in_subprocess(write_bundle(tmp_path / "b", "decision := {", DENY_ALL))


def test_compile_in_subprocess_refuses_failing_rego_tests(tmp_path: Path) -> None:
    root = write_bundle(tmp_path / "b", DENY_ALL, DENY_ALL)
    (root[0] / "egress_test.rego").write_text(
        "package concordat.egress_test\n\nimport rego.v1\n\n"
        "test_allows if data.concordat.egress.decision.allow\n"
        "test_denies if not data.concordat.egress.decision.allow\n"
    )
    with pytest.raises(
        PolicyBundleError, match=r"Rego tests failed: concordat\.egress_test\.test_allows$"
    ):
        compile_in_subprocess(root)


def test_compile_in_subprocess_survives_a_crashing_compiler(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(embedded, "_CHILD_PROGRAM", "import os\nprint('boom')\nos.abort()\n")
    with pytest.raises(PolicyBundleError, match=r"crashed \(SIGABRT\).*boom"):
        compile_in_subprocess(directories("cardiff"))


# --- the OPA server engine ---------------------------------------------------------------


@pytest.fixture
def opa(whitehall: PolicyBundle) -> Iterator[OpaDataApiServer]:
    with OpaDataApiServer(whitehall) as server:
        yield server


SAMPLES = [
    ("egress", policy_input()),
    ("egress", policy_input(agreement_id="fraud-dwp-sss-benefits-2023", providing_node="holyrood")),
    ("egress", policy_input(agreement_id="no-such-agreement")),
    ("egress", policy_input(fields=["address_line"])),
    ("egress", policy_input(purpose="DEBT")),
    (
        "ingress",
        policy_input(
            direction="ingress",
            providing_node="whitehall",
            agreement_id="cr-dwp-gro-deaths-2026",
            purpose="CIVIL_REGISTRATION",
            record_type="DEATH_REGISTRATION",
            fields=["nino", "date_of_death", "cause_of_death"],
            field_sensitivity={
                "nino": "PERSONAL",
                "date_of_death": "PERSONAL",
                "cause_of_death": "SPECIAL_CATEGORY",
            },
        ),
    ),
    ("ingress", policy_input(direction="ingress")),
]


@pytest.fixture(scope="module")
def real_opa(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpaServer]:
    """The real OPA serving whitehall's built bundle, logging its decisions to its output."""
    require_opa()
    built = build_opa_bundle(directories("whitehall"), tmp_path_factory.mktemp("opa") / "b.tgz")
    with OpaServer([built.path], config={"decision_logs": {"console": True}}) as server:
        yield server


async def test_the_real_opa_gives_the_same_decisions_as_the_embedded_engine(
    engine: EmbeddedEngine, real_opa: OpaServer
) -> None:
    remote = OpaServerEngine(url=real_opa.url, revision=engine.revision)
    try:
        for direction, sample in SAMPLES:
            expected = await engine.decide(direction, sample)  # type: ignore[arg-type]
            got = await remote.decide(direction, sample)  # type: ignore[arg-type]
            assert without_id(got) == without_id(expected), sample
    finally:
        await remote.close()
    assert '"path":"concordat/egress/decision"' in real_opa.output()


async def test_unreachable_opa_is_a_denial(whitehall: PolicyBundle) -> None:
    with OpaDataApiServer(whitehall) as server:
        url = server.url
    remote = OpaServerEngine(url=url, timeout_seconds=0.5)
    try:
        decision = await remote.decide("egress", policy_input())
    finally:
        await remote.close()
    assert not decision.allow
    assert decision.rule == "concordat.engine_unavailable"


@pytest.mark.parametrize(
    ("fault", "expected_rule"),
    [
        ({"fail_with": 500}, "concordat.engine_unavailable"),
        ({"fail_with": 404}, "concordat.engine_unavailable"),
        ({"delay_seconds": 0.5}, "concordat.engine_unavailable"),
        ({"respond_with": b"this is not json"}, "concordat.decision_malformed"),
        ({"respond_with": b"[1, 2]"}, "concordat.decision_malformed"),
        (
            {"respond_with": b'{"result": {"allow": 1, "rule": "x"}}'},
            "concordat.decision_malformed",
        ),
        ({"respond_with": b"{}"}, "concordat.decision_undefined"),
    ],
)
async def test_opa_faults_are_denials_with_the_right_rule(
    opa: OpaDataApiServer, fault: dict[str, Any], expected_rule: str
) -> None:
    for name, value in fault.items():
        setattr(opa, name, value)
    remote = OpaServerEngine(url=opa.url, timeout_seconds=0.2)
    try:
        decision = await remote.decide("egress", policy_input())
    finally:
        await remote.close()
    assert not decision.allow
    assert decision.rule == expected_rule


async def test_opa_decision_id_is_kept_when_opa_logs_decisions(real_opa: OpaServer) -> None:
    remote = OpaServerEngine(url=real_opa.url)
    try:
        decision = await remote.decide("egress", policy_input())
    finally:
        await remote.close()
    assert f'"decision_id":"{decision.decision_id}"' in real_opa.output()


async def test_closed_opa_engine_denies_without_asking(real_opa: OpaServer) -> None:
    remote = OpaServerEngine(url=real_opa.url)
    await remote.close()
    decision = await remote.decide("egress", policy_input())
    assert decision.rule == "concordat.engine_unavailable"
    assert decision.decision_id not in real_opa.output()


@pytest.mark.parametrize("url", ["opa:8181", "ftp://opa:8181", "http://opa:8181/v1"])
def test_opa_url_must_be_a_plain_http_origin(url: str) -> None:
    with pytest.raises(ValueError, match="OPA url"):
        OpaServerEngine(url=url)
