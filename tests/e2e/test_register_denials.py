"""The register's hard cases, proved through the real four-node federation.

Northern Ireland: only the research and statistics chapters of DEA 2017 Part 5 are in force
there (policies/stormont/local.rego cites the sources), so Stormont refuses a debt or fraud
agreement resting on DEA ss.48 or 56 whichever side its body is on, while the other node
decides by its own law. And the demo register's suspended and ended agreements are refused,
each with its own rule, at the requesting node before anything leaves it.
"""

from __future__ import annotations

import pytest

from gateway.testing import read_audit
from tests.e2e.conftest import Federation
from tests.e2e.test_legal_model import Ask, assert_denied, send

pytestmark = pytest.mark.slow

DFC_ASKS_CARDIFF_UNDER_DEA_DEBT = Ask(
    "stormont",
    "dfc-ni",
    "cardiff",
    "COUNCIL_TAX_ACCOUNT",
    "uprn",
    "debt-dfc-cardiff-council-ctax-2026",
    "DEBT",
    ("account_ref", "arrears_pence"),
)
HMRC_ASKS_DFC_UNDER_DEA_DEBT = Ask(
    "whitehall",
    "hmrc",
    "stormont",
    "BENEFIT_AWARD",
    "nino",
    "debt-hmrc-dfc-benefits-2026",
    "DEBT",
    ("nino", "benefit", "status"),
)
DFC_ASKS_DWP_UNDER_SOCIAL_SECURITY_LAW = Ask(
    "stormont",
    "dfc-ni",
    "whitehall",
    "BENEFIT_AWARD",
    "nino",
    "fraud-dfc-dwp-benefits-2026",
    "FRAUD",
    ("nino", "benefit"),
)
SUSPENDED = Ask(
    "whitehall",
    "dwp",
    "cardiff",
    "COUNCIL_TAX_ACCOUNT",
    "uprn",
    "debt-dwp-cardiff-council-ctax-2026",
    "DEBT",
    ("account_ref", "arrears_pence"),
)
ENDED = Ask(
    "whitehall",
    "dwp",
    "stormont",
    "DEATH_REGISTRATION",
    "registration_id",
    "cr-dwp-groni-deaths-2023",
    "CIVIL_REGISTRATION",
    ("registration_id", "date_of_death"),
)


async def test_stormont_refuses_to_ask_under_the_dea_debt_gateway(federation: Federation) -> None:
    await assert_denied(
        federation,
        DFC_ASKS_CARDIFF_UNDER_DEA_DEBT,
        rule="stormont.dea_gateway_not_in_force",
        node="stormont",
    )


async def test_stormont_refuses_to_disclose_under_the_dea_debt_gateway_that_whitehall_allows(
    federation: Federation,
) -> None:
    await assert_denied(
        federation,
        HMRC_ASKS_DFC_UNDER_DEA_DEBT,
        rule="stormont.dea_gateway_not_in_force",
        node="stormont",
    )
    asked = [
        e
        for e in read_audit(federation.audit_path("whitehall"))
        if e["agreement_id"] == HMRC_ASKS_DFC_UNDER_DEA_DEBT.agreement
    ][-1]
    # DEA 2017 s.48 is in force for HMRC in Great Britain: whitehall's own law let it go.
    assert asked["egress"]["allow"]


async def test_stormont_still_shares_benefit_fraud_checks_under_social_security_law(
    federation: Federation,
) -> None:
    response = await send(federation, DFC_ASKS_DWP_UNDER_SOCIAL_SECURITY_LAW)
    assert response.records
    assert set(response.released_fields) == {"nino", "benefit"}


async def test_a_suspended_agreement_is_denied_with_its_rule(federation: Federation) -> None:
    await assert_denied(federation, SUSPENDED, rule="common.agreement_not_active", node="whitehall")


async def test_an_ended_agreement_is_denied_as_ended_with_its_rule(federation: Federation) -> None:
    await assert_denied(
        federation,
        ENDED,
        rule="common.agreement_ended",
        node="whitehall",
        also=("common.agreement_not_active", "common.agreement_expired"),
    )
