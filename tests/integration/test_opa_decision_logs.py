"""OPA's decision log, configured as deploy/opa ships it, never holds an identifier in clear.

The real OPA runs with deploy/opa/config.yaml (decision logs on its console) and the mask
bundle deploy/opa/mask (`system.log.mask`) beside the node's bundle, as docs/opa-sidecar.md
tells operators to run it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.dev.demo import demo_subjects
from gateway.dev.state import REPO_ROOT
from gateway.policy.opa import OpaServerEngine
from gateway.policy.tools import build_opa_bundle
from gateway.testing import get_request, running_node
from tests.support.real_opa import OpaServer

DEPLOY = REPO_ROOT / "deploy" / "opa"
WHITEHALL = [REPO_ROOT / "policies" / "common", REPO_ROOT / "policies" / "whitehall"]


@pytest.fixture(scope="module")
def opa(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpaServer]:
    workdir = tmp_path_factory.mktemp("opa")
    # The node's bundle declares its roots (policies/*/.manifest), so the mask bundle's
    # `system/log` can be activated beside it.
    built = build_opa_bundle(WHITEHALL, workdir / "whitehall.tar.gz")
    with OpaServer(
        [built.path, DEPLOY / "mask"],
        arguments=["--config-file", str(DEPLOY / "config.yaml")],
        workdir=workdir,
    ) as server:
        yield server


def logged_decisions(opa: OpaServer) -> dict[str, dict[str, Any]]:
    """OPA's console decision log so far, by decision id."""
    decisions = {}
    for line in opa.output().splitlines():
        if '"Decision Log"' in line:
            event = json.loads(line)
            decisions[event["decision_id"]] = event
    return decisions


async def test_a_node_s_decisions_are_logged_by_opa_without_the_subject_or_case_reference(
    tmp_path: Path, opa: OpaServer
) -> None:
    case_reference = "DWP-DEATHS-20261121-0042"
    async with running_node(
        tmp_path,
        "whitehall",
        policy={"bundle": [str(d) for d in WHITEHALL], "engine": "opa", "opa_url": opa.url},
    ) as node:
        held = demo_subjects(f"sqlite:///{node.state.demo_db}", "whitehall")
        nino = next(value for kind, value in held["DEATH_REGISTRATION"] if kind == "nino")
        client = node.client(organisation="dwp")
        response = await client.get_record(
            get_request(
                "DEATH_REGISTRATION",
                nino=nino,
                purpose="CIVIL_REGISTRATION",
                agreement_id="cr-dwp-gro-deaths-2026",
                fields=["registration_id", "date_of_death"],
                case_reference=case_reference,
            )
        )
        await client.close()
        (entry,) = node.audit_entries()
    logged = logged_decisions(opa)
    # The node audits OPA's own decision ids, so each audit entry finds its OPA log lines.
    egress = logged[response.egress_decision_id]
    ingress = logged[response.ingress_decision_id]
    assert entry["egress"]["decision_id"] == response.egress_decision_id
    assert entry["ingress"]["decision_id"] == response.ingress_decision_id
    for event in (egress, ingress):
        assert event["input"]["subject_kind"] == "nino"
        assert event["input"]["case_reference_present"] is True
        assert event["input"]["agreement_id"] == "cr-dwp-gro-deaths-2026"
        # A node's input carries nothing the mask has to take out.
        assert "erased" not in event and "masked" not in event
    assert ingress["result"]["fields"] == ["date_of_death", "registration_id"]
    assert nino not in opa.output()
    assert case_reference not in opa.output()


async def test_identifiers_in_an_input_to_opa_are_erased_or_masked_before_they_are_logged(
    opa: OpaServer,
) -> None:
    # Whoever asks OPA, and whatever a future input carried: what is not part of a node's
    # policy input is erased, and an identifier pasted into a known field is masked.
    nino, chi = "AB123456C", "0101011234"
    engine = OpaServerEngine(url=opa.url)
    try:
        decision = await engine.decide(
            "egress",
            {
                "direction": "egress",
                "node": "whitehall",
                "requester": {"organisation": "dwp", "system": chi, "sub": "j.bloggs"},
                "record_type": "DEATH_REGISTRATION",
                "purpose": "CIVIL_REGISTRATION",
                "agreement_id": nino,
                "fields": ["nino"],
                "subject": {"nino": nino},
                "case_reference": "FRAUD-CASE-20261121-0043",
            },
        )
        odd_key = await engine.decide(
            "egress", {"direction": "egress", "notes/free text": f"about {nino}"}
        )
    finally:
        await engine.close()
    logged = logged_decisions(opa)
    event = logged[decision.decision_id]
    assert decision.agreement_id == nino  # the caller is still told what it cited
    assert event["erased"] == ["/input/case_reference", "/input/requester/sub", "/input/subject"]
    assert sorted(event["masked"]) == [
        "/input/agreement_id",
        "/input/requester/system",
        "/result/agreement_id",
    ]
    assert event["input"]["agreement_id"] == event["result"]["agreement_id"] == "**REDACTED**"
    # A key JSON Pointer cannot name erases the whole input.
    assert logged[odd_key.decision_id]["erased"] == ["/input"]
    assert "input" not in logged[odd_key.decision_id]
    output = opa.output()
    for identifier in (nino, chi, "j.bloggs", "FRAUD-CASE-20261121-0043"):
        assert identifier not in output
