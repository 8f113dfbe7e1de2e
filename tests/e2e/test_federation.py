"""The four-node federation end to end: separate processes, mutual TLS, two decisions."""

from __future__ import annotations

import grpc
import pytest

from gateway.api.status import error_info
from gateway.config import ADMINISTRATIONS
from gateway.dev.demo import demo_subjects
from gateway.testing import get_request, read_audit
from tests.e2e.conftest import Federation

pytestmark = pytest.mark.slow


def subject(federation: Federation, node: str, record_type: str, kind: str) -> str | int:
    examples = demo_subjects(f"sqlite:///{federation.states[node].demo_db}", node)[record_type]
    return next(value for k, value in examples if k == kind)


async def test_whitehall_gets_a_scottish_birth_registration_from_holyrood(
    federation: Federation,
) -> None:
    registration = subject(federation, "holyrood", "BIRTH_REGISTRATION", "registration_id")
    client = federation.client("whitehall", "dwp")
    response = await client.get_record(
        get_request(
            "BIRTH_REGISTRATION",
            registration_id=str(registration),
            purpose="CIVIL_REGISTRATION",
            agreement_id="cr-dwp-nrs-births-2026",
            fields=["registration_id", "given_name", "family_name", "date_of_birth"],
        )
    )
    await client.close()
    assert response.provider_node == "holyrood"
    assert response.records[0].birth_registration.registration_id == registration
    assert response.egress_decision_id and response.ingress_decision_id
    requester_side = [
        e
        for e in read_audit(federation.audit_path("whitehall"))
        if e["exchange_id"] == response.exchange_id
    ]
    provider_side = [
        e
        for e in read_audit(federation.audit_path("holyrood"))
        if e["exchange_id"] == response.exchange_id
    ]
    assert len(requester_side) == len(provider_side) == 1
    assert requester_side[0]["role"] == "caller"
    assert provider_side[0]["role"] == "provider"
    assert requester_side[0]["receipt"] and provider_side[0]["assertion"]


# (requester node, organisation, provider node, record type, subject kind, agreement)
PAIRS = [
    (
        "whitehall",
        "dwp",
        "holyrood",
        "BIRTH_REGISTRATION",
        "registration_id",
        "cr-dwp-nrs-births-2026",
    ),
    ("whitehall", "dwp", "stormont", "BENEFIT_AWARD", "nino", "fraud-dwp-dfc-benefits-2026"),
    (
        "whitehall",
        "hmrc",
        "cardiff",
        "COUNCIL_TAX_ACCOUNT",
        "uprn",
        "debt-hmrc-cardiff-council-ctax-2026",
    ),
    (
        "holyrood",
        "social-security-scotland",
        "whitehall",
        "DEATH_REGISTRATION",
        "registration_id",
        "cr-sss-gro-deaths-2026",
    ),
    (
        "holyrood",
        "nrs",
        "stormont",
        "DEATH_REGISTRATION",
        "registration_id",
        "cr-nrs-groni-deaths-2026",
    ),
    (
        "holyrood",
        "social-security-scotland",
        "cardiff",
        "COUNCIL_TAX_ACCOUNT",
        "uprn",
        "debt-sss-cardiff-council-ctax-2026",
    ),
    ("stormont", "dfc-ni", "whitehall", "BENEFIT_AWARD", "nino", "fraud-dfc-dwp-benefits-2026"),
    (
        "stormont",
        "groni",
        "holyrood",
        "BIRTH_REGISTRATION",
        "registration_id",
        "cr-groni-nrs-births-2026",
    ),
    # Only the research and statistics chapters of DEA 2017 Part 5 are in force in Northern
    # Ireland, so Stormont's one lawful ask of Cardiff here is an accredited researcher's.
    (
        "stormont",
        "adr-ni",
        "cardiff",
        "COUNCIL_TAX_ACCOUNT",
        "uprn",
        "research-adrni-cardiff-council-ctax-2026",
    ),
    (
        "cardiff",
        "cardiff-council",
        "whitehall",
        "DEATH_REGISTRATION",
        "registration_id",
        "cr-cardiff-council-gro-deaths-2026",
    ),
    (
        "cardiff",
        "cardiff-council",
        "holyrood",
        "DEATH_REGISTRATION",
        "registration_id",
        "cr-cardiff-council-nrs-deaths-2026",
    ),
    (
        "cardiff",
        "cardiff-council",
        "stormont",
        "DEATH_REGISTRATION",
        "registration_id",
        "cr-cardiff-council-groni-deaths-2026",
    ),
]
FIELDS = {
    "BIRTH_REGISTRATION": ["registration_id", "family_name"],
    "DEATH_REGISTRATION": ["registration_id", "date_of_death"],
    "BENEFIT_AWARD": ["award_id", "benefit"],
    "COUNCIL_TAX_ACCOUNT": ["account_ref", "arrears_pence"],
}
# The purpose an agreement serves, by the prefix of its id.
PURPOSE_OF_PREFIX = {
    "cr": "CIVIL_REGISTRATION",
    "fraud": "FRAUD",
    "debt": "DEBT",
    "research": "RESEARCH",
}
# What a researcher's token must carry for a research agreement.
ACCREDITATIONS = {"research": ("accredited-researcher",)}


def test_every_administration_is_paired_with_every_other() -> None:
    pairs = {(a, b) for a, _, b, *_ in PAIRS}
    assert pairs == {(a, b) for a in ADMINISTRATIONS for b in ADMINISTRATIONS if a != b}


@pytest.mark.parametrize(
    ("requester", "organisation", "provider", "record_type", "kind", "agreement"),
    PAIRS,
    ids=[f"{a}-to-{b}" for a, _, b, *_ in PAIRS],
)
async def test_a_request_crosses_from_one_administration_to_another(
    federation: Federation,
    requester: str,
    organisation: str,
    provider: str,
    record_type: str,
    kind: str,
    agreement: str,
) -> None:
    value = subject(federation, provider, record_type, kind)
    prefix = agreement.split("-")[0]
    client = federation.client(
        requester, organisation, accreditations=ACCREDITATIONS.get(prefix, ())
    )
    request = get_request(
        record_type,
        purpose=PURPOSE_OF_PREFIX[prefix],
        agreement_id=agreement,
        fields=FIELDS[record_type],
        **{kind: value},
    )
    request.provider_node = provider
    response = await client.get_record(request)
    await client.close()
    assert response.provider_node == provider
    assert response.records and set(response.released_fields) <= set(FIELDS[record_type])
    assert {o.code for o in response.obligations} >= {"no-onward-disclosure"}
    mine = [
        e
        for e in read_audit(federation.audit_path(requester))
        if e["exchange_id"] == response.exchange_id
    ]
    theirs = [
        e
        for e in read_audit(federation.audit_path(provider))
        if e["exchange_id"] == response.exchange_id
    ]
    assert [e["outcome"] for e in mine] == [e["outcome"] for e in theirs] == ["released"]
    assert mine[0]["egress"]["allow"] and theirs[0]["ingress"]["allow"]
    # The provider signs its receipt once its entry is stored: the receipt pins that entry.
    assert mine[0]["receipt"] and mine[0]["peer_log"] and theirs[0]["assertion"]


async def test_egress_denial_at_the_requesting_node_names_its_rule(
    federation: Federation,
) -> None:
    value = subject(federation, "holyrood", "BENEFIT_AWARD", "nino")
    client = federation.client("whitehall", "dwp")
    request = get_request(
        "BENEFIT_AWARD",
        nino=str(value),
        purpose="FRAUD",
        agreement_id="fraud-dwp-sss-benefits-2023",
        fields=["benefit"],
    )
    request.provider_node = "holyrood"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await client.get_record(request)
    await client.close()
    info = error_info(caught.value)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert info["node"] == "whitehall" and "expired" in info["rule"]
    exchange = info["exchange_id"]
    assert not [
        e for e in read_audit(federation.audit_path("holyrood")) if e["exchange_id"] == exchange
    ]


async def test_ingress_denial_at_the_providing_node_names_its_rule(
    federation: Federation,
) -> None:
    # Registered at whitehall only: holyrood has never agreed to it, so holyrood refuses.
    value = subject(federation, "holyrood", "MARRIAGE_REGISTRATION", "registration_id")
    client = federation.client("whitehall", "dwp")
    request = get_request(
        "MARRIAGE_REGISTRATION",
        registration_id=str(value),
        purpose="CIVIL_REGISTRATION",
        agreement_id="cr-dwp-nrs-marriages-2026",
        fields=["registration_id", "date_of_ceremony"],
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await client.get_record(request)
    await client.close()
    info = error_info(caught.value)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert info["node"] == "holyrood" and info["rule"]
    entries = {
        n: e
        for n in ("whitehall", "holyrood")
        for e in read_audit(federation.audit_path(n))
        if e["exchange_id"] == info["exchange_id"]
    }
    assert [e["outcome"] for e in entries.values()] == ["denied", "denied"]
    # The requesting node's evidence keeps the peer's refusal as data, not only as text.
    peer_error = entries["whitehall"]["peer_error"]
    assert peer_error["peer"] == peer_error["node"] == "holyrood"
    assert peer_error["rule"] == info["rule"] == entries["holyrood"]["ingress"]["rule"]
    assert peer_error["decision_id"] == entries["holyrood"]["ingress"]["decision_id"]
