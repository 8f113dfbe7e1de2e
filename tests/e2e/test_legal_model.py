"""The legal model, proved through the real four-node federation.

Every case here runs through real node processes over mutual TLS: the requesting node's
egress policy and the providing node's ingress policy both decide, with each
administration's own register (policies/<node>/data.json) as it stands. The cases use
agreements and bodies that really exist in those registers; where the registers cannot
express a rule the legal model asks for, the case is absent rather than faked.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
from dataclasses import dataclass
from datetime import date
from functools import cache
from typing import Any

import grpc
import pytest

from concordat.exchange.v1 import exchange_pb2
from gateway.api.status import error_info
from gateway.audit.meter import read_meter
from gateway.audit.subjects import subject_hash
from gateway.dev.demo import demo_subjects
from gateway.dev.state import REPO_ROOT
from gateway.domain import PURPOSES
from gateway.pseudonyms import Pseudonyms
from gateway.testing import TEST_TODAY, get_request, read_audit
from tests.e2e.conftest import Federation

pytestmark = pytest.mark.slow

# After the registered agreements' review date (2028-03-31), before their end (2029-03-31).
OVERDUE = date(2028, 6, 1)
# Every release carries these two (common/obligations.rego), the others as the data demands.
RELEASE = ("no-onward-disclosure", "retain-max-days")
SPECIAL = ("caldicott-need-to-know",)


@dataclass(frozen=True)
class Ask:
    """One GetRecord: an organisation at its node asks a providing node under an agreement."""

    requester: str
    organisation: str
    provider: str
    record_type: str
    kind: str
    agreement: str
    purpose: str
    fields: tuple[str, ...]
    accreditations: tuple[str, ...] = ()
    case_reference: str = ""

    @property
    def who(self) -> str:
        return f"{self.organisation}@{self.requester}"


def subjects(federation: Federation, node: str, record_type: str, kind: str) -> list[Any]:
    """Distinct subjects of `kind` that `node`'s demo database holds `record_type` records for."""
    examples = demo_subjects(f"sqlite:///{federation.states[node].demo_db}", node)[record_type]
    return list(dict.fromkeys(value for k, value in examples if k == kind))


@cache
def registered(node: str, agreement: str) -> dict[str, Any]:
    """The agreement as `node`'s own register holds it."""
    path = REPO_ROOT / "policies" / node / "data.json"
    return dict(json.loads(path.read_text())["register"]["agreements"][agreement])


async def send(
    federation: Federation, ask: Ask, value: Any = None
) -> exchange_pb2.GetRecordResponse:
    if value is None:
        value = subjects(federation, ask.provider, ask.record_type, ask.kind)[0]
    client = federation.client(ask.requester, ask.organisation, accreditations=ask.accreditations)
    request = get_request(
        ask.record_type,
        purpose=ask.purpose,
        agreement_id=ask.agreement,
        fields=list(ask.fields),
        case_reference=ask.case_reference,
        **{ask.kind: value},
    )
    request.provider_node = ask.provider
    try:
        return await client.get_record(request)
    finally:
        await client.close()


def entries(federation: Federation, node: str, exchange_id: str) -> list[dict[str, Any]]:
    return [e for e in read_audit(federation.audit_path(node)) if e["exchange_id"] == exchange_id]


def provider_meter(federation: Federation, ask: Ask) -> tuple[int, ...]:
    """(exchanges, released, denied, records, bytes) the provider metered for this requester
    under this agreement, in the provider role."""
    rows = read_meter(
        federation.audit_path(ask.provider), agreement_id=ask.agreement, requester=ask.who
    )
    for row in rows:
        if row.role == "provider":
            return (row.exchanges, row.released, row.denied, row.records, row.bytes)
    return (0, 0, 0, 0, 0)


def populated(record: Any, record_type: str) -> set[str]:
    assert record.WhichOneof("kind") == record_type.lower()
    return {field.name for field, _ in getattr(record, record_type.lower()).ListFields()}


def assert_released(
    federation: Federation,
    ask: Ask,
    response: exchange_pb2.GetRecordResponse,
    *,
    fields: tuple[str, ...],
    obligations: tuple[str, ...] = RELEASE,
) -> None:
    """Released exactly `fields`, with the agreement's obligations, allowed by both policies
    under the rules of the two jurisdictions, and audited as such on both nodes."""
    assert response.provider_node == ask.provider
    assert sorted(response.released_fields) == sorted(fields)
    assert response.records
    for record in response.records:
        assert populated(record, ask.record_type) <= set(fields)

    agreement = registered(ask.provider, ask.agreement)
    assert [o.code for o in response.obligations] == list(obligations)
    by_code = {o.code: dict(o.parameters) for o in response.obligations}
    assert by_code["no-onward-disclosure"] == {
        "agreement_id": ask.agreement,
        "power": agreement["power"],
        "permitted": agreement["onward_disclosure"],
    }
    assert by_code["retain-max-days"] == {"days": str(agreement["retention_days"])}

    (mine,) = entries(federation, ask.requester, response.exchange_id)
    (theirs,) = entries(federation, ask.provider, response.exchange_id)
    for entry in (mine, theirs):
        assert entry["outcome"] == "released"
        assert sorted(entry["fields_released"]) == sorted(fields)
    assert mine["egress"]["allow"] and theirs["ingress"]["allow"]
    assert mine["egress"]["rule"] == f"{ask.requester}.egress.allow_under_agreement"
    assert theirs["ingress"]["rule"] == f"{ask.provider}.ingress.allow_under_agreement"
    assert mine["egress"]["agreement_id"] == theirs["ingress"]["agreement_id"] == ask.agreement


async def assert_denied(
    federation: Federation,
    ask: Ask,
    *,
    rule: str,
    node: str,
    also: tuple[str, ...] = (),
) -> None:
    """Denied with PERMISSION_DENIED by `rule` of `node`, named in the error and in the audit
    of every node the request reached; the provider's meter releases nothing for it."""
    before = provider_meter(federation, ask)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await send(federation, ask)
    error = caught.value
    info = error_info(error)
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert info["reason"] == "policy-denied"
    assert (info["rule"], info["node"], info["agreement_id"]) == (rule, node, ask.agreement)

    (decided,) = entries(federation, node, info["exchange_id"])
    (decision,) = [d for d in (decided["egress"], decided["ingress"]) if d and not d["allow"]]
    assert decision["rule"] == rule and decision["reasons"][0] == rule
    assert decision["decision_id"] == info["decision_id"]
    assert decision["agreement_id"] == ask.agreement
    assert set(also) <= set(decision["reasons"])

    egress_denied = node == ask.requester
    reached = {ask.requester} if egress_denied else {ask.requester, ask.provider}
    for involved in reached:
        (entry,) = entries(federation, involved, info["exchange_id"])
        assert entry["outcome"] == "denied" and entry["agreement_id"] == ask.agreement
        assert entry["error_message"].endswith(rule)
    if egress_denied and ask.provider != ask.requester:
        assert not entries(federation, ask.provider, info["exchange_id"])

    after = provider_meter(federation, ask)
    remote_ingress_denial = not egress_denied and ask.provider != ask.requester
    exchanges, released, denied, records, size = (a - b for a, b in zip(after, before, strict=True))
    assert (released, records, size) == (0, 0, 0)
    assert exchanges == denied == int(remote_ingress_denial)


# --- 1. Each purpose, allowed through both policies, releasing exactly the agreed fields ------


@dataclass(frozen=True)
class Allowed:
    ask: Ask
    fields: tuple[str, ...]
    obligations: tuple[str, ...] = RELEASE


ALLOWED = {
    "public service delivery: Cardiff Council gets DWP benefit awards for fuel poverty, "
    "an objective both Welsh and UK ministers set": Allowed(
        Ask(
            "cardiff",
            "cardiff-council",
            "whitehall",
            "BENEFIT_AWARD",
            "nino",
            "psd-cardiff-council-dwp-fuel-poverty-2026",
            "PUBLIC_SERVICE_DELIVERY",
            ("nino", "benefit", "status", "start_date"),
        ),
        fields=("nino", "benefit", "status", "start_date"),
    ),
    "civil registration: DWP gets a Scottish birth registration from NRS": Allowed(
        Ask(
            "whitehall",
            "dwp",
            "holyrood",
            "BIRTH_REGISTRATION",
            "registration_id",
            "cr-dwp-nrs-births-2026",
            "CIVIL_REGISTRATION",
            ("registration_id", "given_name", "family_name", "date_of_birth", "sex"),
        ),
        fields=("registration_id", "given_name", "family_name", "date_of_birth", "sex"),
    ),
    "debt: HMRC gets a Welsh council tax account from Cardiff Council": Allowed(
        Ask(
            "whitehall",
            "hmrc",
            "cardiff",
            "COUNCIL_TAX_ACCOUNT",
            "uprn",
            "debt-hmrc-cardiff-council-ctax-2026",
            "DEBT",
            ("account_ref", "band", "annual_charge_pence", "arrears_pence", "local_authority"),
        ),
        fields=("account_ref", "band", "annual_charge_pence", "arrears_pence", "local_authority"),
    ),
    "fraud: DfC gets DWP benefit awards under the fraud pilot": Allowed(
        Ask(
            "stormont",
            "dfc-ni",
            "whitehall",
            "BENEFIT_AWARD",
            "nino",
            "fraud-dfc-dwp-benefits-2026",
            "FRAUD",
            ("award_id", "nino", "benefit", "weekly_amount_pence", "status"),
        ),
        fields=("award_id", "nino", "benefit", "weekly_amount_pence", "status"),
    ),
    "statistics: ONS gets a GRONI death registration with its cause of death": Allowed(
        Ask(
            "whitehall",
            "ons",
            "stormont",
            "DEATH_REGISTRATION",
            "registration_id",
            "stats-ons-groni-deaths-2026",
            "STATISTICS",
            ("registration_district", "date_of_death", "cause_of_death"),
        ),
        fields=("registration_district", "date_of_death", "cause_of_death"),
        obligations=(*RELEASE, *SPECIAL, "statistics-only"),
    ),
    "statistics: ONS gets an NHS Wales health summary against a case reference, "
    "less the NHS number the agreement does not list": Allowed(
        Ask(
            "whitehall",
            "ons",
            "cardiff",
            "HEALTH_SUMMARY",
            "nhs_number",
            "stats-ons-nhs-wales-health-2026",
            "STATISTICS",
            ("nhs_number", "gp_practice", "conditions"),
            case_reference="ONS-HEALTH-STATS-0001",
        ),
        fields=("gp_practice", "conditions"),
        obligations=(*RELEASE, *SPECIAL, "statistics-only"),
    ),
}


def test_every_purpose_has_an_allowed_case() -> None:
    # RESEARCH is proved by its own tests below (pseudonyms).
    assert {case.ask.purpose for case in ALLOWED.values()} | {"RESEARCH"} == set(PURPOSES)


@pytest.mark.parametrize("case", ALLOWED.values(), ids=ALLOWED.keys())
async def test_each_purpose_releases_exactly_the_agreed_fields_with_obligations(
    federation: Federation, case: Allowed
) -> None:
    response = await send(federation, case.ask)
    assert_released(
        federation, case.ask, response, fields=case.fields, obligations=case.obligations
    )


RESEARCH = Ask(
    "holyrood",
    "adr-scotland",
    "holyrood",
    "BENEFIT_AWARD",
    "nino",
    "research-adrs-sss-benefits-2026",
    "RESEARCH",
    ("nino", "benefit", "weekly_amount_pence", "start_date"),
    accreditations=("accredited-researcher",),
)
PSEUDONYM = re.compile(r"^[0-9a-f]{32}$")


async def test_research_releases_no_identifying_field_and_a_pseudonym_on_every_record(
    federation: Federation,
) -> None:
    response = await send(federation, RESEARCH)
    # nino was asked for and is in the agreement, but identifies the subject.
    assert_released(
        federation,
        RESEARCH,
        response,
        fields=("benefit", "weekly_amount_pence", "start_date"),
        obligations=(*RELEASE, "secure-setting"),
    )
    secure = next(o for o in response.obligations if o.code == "secure-setting")
    assert dict(secure.parameters) == {"project": "UKSA-2026-0042"}
    for record in response.records:
        assert not record.benefit_award.nino
        assert PSEUDONYM.match(record.pseudonym)
    assert len({record.pseudonym for record in response.records}) == 1


async def test_research_pseudonym_is_stable_within_an_agreement_and_keyed(
    federation: Federation,
) -> None:
    first, second = subjects(federation, "holyrood", "BENEFIT_AWARD", "nino")[:2]
    once = (await send(federation, RESEARCH, first)).records[0].pseudonym
    again = await send(federation, RESEARCH, first)
    other = (await send(federation, RESEARCH, second)).records[0].pseudonym
    assert again.records[0].pseudonym == once
    assert other != once
    # Keyed per agreement with the node's pseudonym key: not a plain hash of the identifier,
    # not the audit log's subject hash, and another agreement would give an unrelated pseudonym.
    key = federation.states["holyrood"].material.pseudonym_key.read_bytes()
    assert once == Pseudonyms(key, RESEARCH.agreement).of("nino", first)
    assert once != Pseudonyms(key, "research-another-agreement").of("nino", first)
    assert once not in {
        hashlib.sha256(first.encode()).hexdigest()[:32],
        hashlib.sha256(f"nino:{first}".encode()).hexdigest()[:32],
    }
    (audited,) = entries(federation, "holyrood", again.exchange_id)
    assert not audited["subject_hash"].startswith(once)


async def test_research_pseudonyms_are_not_keyed_by_the_audit_log_s_subject_hash_key(
    federation: Federation,
) -> None:
    material = federation.states["holyrood"].material
    subject_key = material.subject_hash_key.read_bytes()
    assert subject_key != material.pseudonym_key.read_bytes()
    nino = subjects(federation, "holyrood", "BENEFIT_AWARD", "nino")[0]
    response = await send(federation, RESEARCH, nino)
    # Whoever holds the subject hash key, to search the audit log, cannot make pseudonyms.
    assert response.records[0].pseudonym != Pseudonyms(subject_key, RESEARCH.agreement).of(
        "nino", nino
    )
    (audited,) = entries(federation, "holyrood", response.exchange_id)
    assert audited["subject_hash"] == subject_hash(subject_key, "nino", nino)


def research_extract(subjects: tuple[str, ...] = ()) -> exchange_pb2.StreamRecordsRequest:
    request = exchange_pb2.StreamRecordsRequest(
        record_type=exchange_pb2.RECORD_TYPE_BENEFIT_AWARD,
        purpose=exchange_pb2.PURPOSE_RESEARCH,
        agreement_id=RESEARCH.agreement,
        batch_size=40,
        provider_node=RESEARCH.provider,
    )
    for nino in subjects:
        request.subjects.add(nino=nino)
    request.field_mask.paths.extend(RESEARCH.fields)
    return request


async def extract(
    federation: Federation, request: exchange_pb2.StreamRecordsRequest
) -> list[exchange_pb2.StreamRecordsResponse]:
    client = federation.client(
        RESEARCH.requester, RESEARCH.organisation, accreditations=RESEARCH.accreditations
    )
    try:
        return [batch async for batch in client.stream_records(request)]
    finally:
        await client.close()


async def test_a_research_extract_carries_each_records_pseudonym_and_no_identifier(
    federation: Federation,
) -> None:
    batches = await extract(federation, research_extract())
    assert len(batches) > 1
    assert set(batches[0].released_fields) == {"benefit", "start_date", "weekly_amount_pence"}
    assert {(w.field, w.rule) for w in batches[0].withheld} == {
        ("nino", "common.research_identifying_field")
    }
    records = [record for batch in batches for record in batch.records]
    assert all(not record.benefit_award.nino for record in records)
    assert all(PSEUDONYM.match(record.pseudonym) for record in records)
    # One pseudonym per person the source holds awards for: keyed on each row's own subject,
    # which the source reads for this alone.
    key = federation.states["holyrood"].material.pseudonym_key.read_bytes()
    held = all_ninos_with_awards(federation, "holyrood")
    assert {record.pseudonym for record in records} == {
        Pseudonyms(key, RESEARCH.agreement).of("nino", nino) for nino in held
    }
    # The same person has the same pseudonym in an extract as in a GetRecord under the
    # agreement, so a researcher can link their own releases, and nothing more.
    unary = (await send(federation, RESEARCH, held[0])).records[0].pseudonym
    assert unary in {record.pseudonym for record in records}


def all_ninos_with_awards(federation: Federation, node: str) -> list[str]:
    path = federation.states[node].demo_db
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as connection:
        rows = connection.execute(
            "SELECT DISTINCT claimant_nino FROM benefit_awards WHERE claimant_nino IS NOT NULL"
        ).fetchall()
    return sorted(row[0] for row in rows)


async def test_a_research_extract_over_listed_subjects_pseudonymises_each_subject(
    federation: Federation,
) -> None:
    first, second = subjects(federation, "holyrood", "BENEFIT_AWARD", "nino")[:2]
    batches = await extract(federation, research_extract((first, second)))
    records = [record for batch in batches for record in batch.records]
    key = federation.states["holyrood"].material.pseudonym_key.read_bytes()
    assert records and all(not record.benefit_award.nino for record in records)
    assert {record.pseudonym for record in records} == {
        Pseudonyms(key, RESEARCH.agreement).of("nino", first),
        Pseudonyms(key, RESEARCH.agreement).of("nino", second),
    }


# --- 2. Safeguards ----------------------------------------------------------------------------


async def test_health_summary_leaves_only_under_an_agreement_naming_health_data(
    federation: Federation,
) -> None:
    # psd-sss-nhs-scotland-health-2026 names health data (special_category, PBPP approval);
    # allergies and names are not among its fields, so they stay behind.
    ask = Ask(
        "holyrood",
        "social-security-scotland",
        "holyrood",
        "HEALTH_SUMMARY",
        "chi_number",
        "psd-sss-nhs-scotland-health-2026",
        "PUBLIC_SERVICE_DELIVERY",
        ("chi_number", "given_name", "conditions", "medications", "allergies"),
    )
    response = await send(federation, ask)
    assert_released(
        federation,
        ask,
        response,
        fields=("chi_number", "conditions", "medications"),
        obligations=(*RELEASE, *SPECIAL),
    )
    caldicott = next(o for o in response.obligations if o.code == "caldicott-need-to-know")
    assert dict(caldicott.parameters) == {"lawful_basis": "UK GDPR art. 6(1)(e); art. 9(2)(g)"}


async def test_a_field_outside_the_agreement_is_withheld_before_the_request_leaves(
    federation: Federation,
) -> None:
    ask = Ask(
        "whitehall",
        "dwp",
        "holyrood",
        "BIRTH_REGISTRATION",
        "registration_id",
        "cr-dwp-nrs-births-2026",
        "CIVIL_REGISTRATION",
        ("registration_id", "family_name", "place_of_birth", "mother_family_name"),
    )
    response = await send(federation, ask)
    assert_released(federation, ask, response, fields=("registration_id", "family_name"))
    (mine,) = entries(federation, "whitehall", response.exchange_id)
    (theirs,) = entries(federation, "holyrood", response.exchange_id)
    assert mine["fields_requested"] == list(ask.fields)
    # Whitehall's egress decision narrowed the request: Holyrood never saw the extra fields.
    assert theirs["fields_requested"] == ["registration_id", "family_name"]
    # The caller is told which rule withheld each field it does not get, and so is the audit.
    outside = {
        "place_of_birth": "common.field_not_in_agreement",
        "mother_family_name": "common.field_not_in_agreement",
    }
    assert {w.field: w.rule for w in response.withheld} == outside
    assert mine["fields_withheld"] == outside


async def test_a_cross_node_extract_names_the_fields_withheld_in_its_first_batch(
    federation: Federation,
) -> None:
    # ONS's statistics agreement with GRONI covers deaths without the deceased's names.
    request = exchange_pb2.StreamRecordsRequest(
        record_type=exchange_pb2.RECORD_TYPE_DEATH_REGISTRATION,
        purpose=exchange_pb2.PURPOSE_STATISTICS,
        agreement_id="stats-ons-groni-deaths-2026",
        provider_node="stormont",
        batch_size=25,
    )
    request.field_mask.paths.extend(["registration_district", "family_name"])
    client = federation.client("whitehall", "ons")
    try:
        batches = [batch async for batch in client.stream_records(request)]
    finally:
        await client.close()
    assert list(batches[0].released_fields) == ["registration_district"]
    assert {(w.field, w.rule) for w in batches[0].withheld} == {
        ("family_name", "common.field_not_in_agreement")
    }
    records = [record for batch in batches for record in batch.records]
    assert records and not any(record.death_registration.family_name for record in records)


# --- 1-3. Denials: each names its rule, its node and the agreement ---------------------------


@dataclass(frozen=True)
class Denied:
    ask: Ask
    rule: str
    node: str
    also: tuple[str, ...] = ()


DENIED = {
    "research: a researcher without the accredited-researcher accreditation is refused": Denied(
        Ask(
            "holyrood",
            "adr-scotland",
            "holyrood",
            "BENEFIT_AWARD",
            "nino",
            "research-adrs-sss-benefits-2026",
            "RESEARCH",
            ("benefit",),
        ),
        rule="common.research_requester_not_accredited",
        node="holyrood",
    ),
    "research: a health summary is never released for research": Denied(
        Ask(
            "holyrood",
            "adr-scotland",
            "holyrood",
            "HEALTH_SUMMARY",
            "chi_number",
            "research-adrs-sss-benefits-2026",
            "RESEARCH",
            ("conditions",),
            accreditations=("accredited-researcher",),
        ),
        rule="common.record_type_not_covered",
        node="holyrood",
        also=("common.special_category_not_agreed", "common.special_category_research_excluded"),
    ),
    "statistics: GRONI citing the ONS statistics agreement is not the statistics authority": (
        Denied(
            Ask(
                "stormont",
                "groni",
                "stormont",
                "DEATH_REGISTRATION",
                "registration_id",
                "stats-ons-groni-deaths-2026",
                "STATISTICS",
                ("registration_district",),
            ),
            rule="common.statistics_requester_not_authority",
            node="stormont",
        )
    ),
    "statistics: DWP citing the ONS statistics agreement is refused by Whitehall": Denied(
        Ask(
            "whitehall",
            "dwp",
            "stormont",
            "DEATH_REGISTRATION",
            "registration_id",
            "stats-ons-groni-deaths-2026",
            "STATISTICS",
            ("registration_district",),
        ),
        rule="common.requester_not_party",
        node="whitehall",
        also=("common.statistics_requester_not_authority",),
    ),
    "minimum necessary: asking only for fields the agreement does not list releases nothing": (
        Denied(
            Ask(
                "whitehall",
                "dwp",
                "holyrood",
                "BIRTH_REGISTRATION",
                "registration_id",
                "cr-dwp-nrs-births-2026",
                "CIVIL_REGISTRATION",
                ("place_of_birth", "mother_family_name"),
            ),
            rule="common.no_fields_releasable",
            node="whitehall",
        )
    ),
    "fit and proper: the suspended fraud pilot partner is refused": Denied(
        Ask(
            "whitehall",
            "fraud-pilot-partner",
            "stormont",
            "BENEFIT_AWARD",
            "nino",
            "fraud-fpp-dfc-benefits-2026",
            "FRAUD",
            ("benefit",),
        ),
        rule="common.requester_not_fit_and_proper",
        node="whitehall",
    ),
    "fit and proper: an expired agreement is refused": Denied(
        Ask(
            "whitehall",
            "dwp",
            "holyrood",
            "BENEFIT_AWARD",
            "nino",
            "fraud-dwp-sss-benefits-2023",
            "FRAUD",
            ("benefit",),
        ),
        rule="common.agreement_expired",
        node="whitehall",
        also=("common.agreement_review_overdue",),
    ),
    "fit and proper: an agreement only Whitehall registered is refused by Holyrood's ingress": (
        Denied(
            Ask(
                "whitehall",
                "dwp",
                "holyrood",
                "MARRIAGE_REGISTRATION",
                "registration_id",
                "cr-dwp-nrs-marriages-2026",
                "CIVIL_REGISTRATION",
                ("registration_id", "date_of_ceremony"),
            ),
            rule="common.agreement_unknown",
            node="holyrood",
        )
    ),
}


@pytest.mark.parametrize("case", DENIED.values(), ids=DENIED.keys())
async def test_a_denial_names_its_rule_node_and_agreement_in_error_and_audit(
    federation: Federation, case: Denied
) -> None:
    await assert_denied(federation, case.ask, rule=case.rule, node=case.node, also=case.also)


async def test_a_node_past_the_review_date_refuses_a_debt_agreement_as_review_overdue(
    federation: Federation,
) -> None:
    # The nodes decide as on TEST_TODAY; whitehall restarted as on a later day, after the
    # review date of HMRC's debt agreement but before its end, refuses what it allowed.
    debt = ALLOWED["debt: HMRC gets a Welsh council tax account from Cardiff Council"].ask
    agreement = registered("whitehall", debt.agreement)
    assert agreement["review"] < OVERDUE.isoformat() < agreement["end"]
    federation.restart("whitehall", today=OVERDUE)
    try:
        await assert_denied(
            federation, debt, rule="common.agreement_review_overdue", node="whitehall"
        )
        refused = read_audit(federation.audit_path("whitehall"))[-1]
        assert refused["policy_inputs"]["egress"]["today"] == OVERDUE.isoformat()
    finally:
        federation.restart("whitehall")
    response = await send(federation, debt)
    (allowed,) = entries(federation, "whitehall", response.exchange_id)
    assert allowed["policy_inputs"]["egress"]["today"] == TEST_TODAY.isoformat()


# --- 4. Jurisdiction differences ---------------------------------------------------------------


@dataclass(frozen=True)
class Difference:
    allowed: Allowed
    denied: Denied


NHS_WALES_WITHOUT_CASE_REFERENCE = Denied(
    Ask(
        "whitehall",
        "ons",
        "cardiff",
        "HEALTH_SUMMARY",
        "nhs_number",
        "stats-ons-nhs-wales-health-2026",
        "STATISTICS",
        ("gp_practice", "conditions"),
    ),
    rule="cardiff.case_reference_required",
    node="cardiff",
)

DIFFERENCES = {
    "fuel-poverty benefit awards from DWP: Wales may ask, but the UK objectives do not "
    "extend to Northern Ireland, so Stormont refuses": Difference(
        ALLOWED[
            "public service delivery: Cardiff Council gets DWP benefit awards for fuel poverty, "
            "an objective both Welsh and UK ministers set"
        ],
        Denied(
            Ask(
                "stormont",
                "dfc-ni",
                "whitehall",
                "BENEFIT_AWARD",
                "nino",
                "psd-dfc-dwp-fuel-poverty-2026",
                "PUBLIC_SERVICE_DELIVERY",
                ("nino", "benefit", "status", "start_date"),
            ),
            rule="stormont.psd_not_available",
            node="stormont",
            also=("common.psd_objective_not_listed",),
        ),
    ),
    "ONS special category lookups without a case reference: Stormont releases a death "
    "registration, Cardiff refuses a health summary": Difference(
        ALLOWED["statistics: ONS gets a GRONI death registration with its cause of death"],
        NHS_WALES_WITHOUT_CASE_REFERENCE,
    ),
    "health summaries without a case reference: Holyrood releases under its PBPP approval, "
    "Cardiff refuses": Difference(
        Allowed(
            Ask(
                "holyrood",
                "social-security-scotland",
                "holyrood",
                "HEALTH_SUMMARY",
                "chi_number",
                "psd-sss-nhs-scotland-health-2026",
                "PUBLIC_SERVICE_DELIVERY",
                ("gp_practice", "conditions"),
            ),
            fields=("gp_practice", "conditions"),
            obligations=(*RELEASE, *SPECIAL),
        ),
        NHS_WALES_WITHOUT_CASE_REFERENCE,
    ),
}


@pytest.mark.parametrize("case", DIFFERENCES.values(), ids=DIFFERENCES.keys())
async def test_jurisdictions_decide_alike_requests_differently(
    federation: Federation, case: Difference
) -> None:
    allowed, denied = case.allowed, case.denied
    assert not allowed.ask.case_reference and not denied.ask.case_reference
    response = await send(federation, allowed.ask)
    assert_released(
        federation, allowed.ask, response, fields=allowed.fields, obligations=allowed.obligations
    )
    # The refusal is the deciding jurisdiction's own rule, not a common one.
    assert denied.rule.startswith(f"{denied.node}.")
    await assert_denied(
        federation, denied.ask, rule=denied.rule, node=denied.node, also=denied.also
    )


# --- 5. The provider's meter -----------------------------------------------------------------


async def test_the_provider_meters_released_exchanges_per_requester_and_agreement(
    federation: Federation,
) -> None:
    births = ALLOWED["civil registration: DWP gets a Scottish birth registration from NRS"].ask
    before = provider_meter(federation, births)
    sizes = 0
    for value in subjects(federation, "holyrood", "BIRTH_REGISTRATION", "registration_id")[:2]:
        response = await send(federation, births, value)
        sizes += sum(record.ByteSize() for record in response.records)
    after = provider_meter(federation, births)
    exchanges, released, denied, records, size = (a - b for a, b in zip(after, before, strict=True))
    assert (exchanges, released, denied, records) == (2, 2, 0, 2)
    assert size == sizes > 0
    # Holyrood meters it under the requester it was asked for, in the provider role only.
    rows = read_meter(federation.audit_path("holyrood"), agreement_id=births.agreement)
    assert {(row.requester, row.role) for row in rows} == {("dwp@whitehall", "provider")}
