"""Holyrood decides through the real OPA: the federation gives the answers it gives on the
embedded engine.

Whitehall (embedded engine) and Holyrood run as `concordat node` processes, as in the other
end-to-end tests; Holyrood's config says `engine = "opa"` and points at `opa run --server`
serving the tarball `concordat policy build` wrote from policies/common + policies/holyrood,
with deploy/opa's decision-log config and mask. Every exchange below is asked once so, then
again after Holyrood restarts on the embedded engine, and the two sets of answers must be
the same. Only the two nodes these exchanges cross are started.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import grpc
import pytest

from concordat.exchange.v1 import exchange_pb2
from gateway.api.status import error_info
from gateway.dev.state import REPO_ROOT
from gateway.policy.tools import build_opa_bundle
from gateway.testing import get_request, read_audit
from tests.e2e.conftest import Federation, build_federation
from tests.e2e.test_legal_model import RESEARCH, Ask, subjects
from tests.support.real_opa import OpaServer

pytestmark = pytest.mark.slow

DEPLOY = REPO_ROOT / "deploy" / "opa"
HOLYROOD = [REPO_ROOT / "policies" / "common", REPO_ROOT / "policies" / "holyrood"]


ASKS = {
    "whitehall gets a scottish birth registration, less two fields outside the agreement": Ask(
        "whitehall",
        "dwp",
        "holyrood",
        "BIRTH_REGISTRATION",
        "registration_id",
        "cr-dwp-nrs-births-2026",
        "CIVIL_REGISTRATION",
        ("registration_id", "family_name", "place_of_birth", "mother_family_name"),
    ),
    "holyrood's ingress refuses an agreement only whitehall registered": Ask(
        "whitehall",
        "dwp",
        "holyrood",
        "MARRIAGE_REGISTRATION",
        "registration_id",
        "cr-dwp-nrs-marriages-2026",
        "CIVIL_REGISTRATION",
        ("registration_id", "date_of_ceremony"),
    ),
    "holyrood's egress lets social security scotland ask whitehall for a death": Ask(
        "holyrood",
        "social-security-scotland",
        "whitehall",
        "DEATH_REGISTRATION",
        "registration_id",
        "cr-sss-gro-deaths-2026",
        "CIVIL_REGISTRATION",
        ("registration_id", "date_of_death"),
    ),
    "holyrood's egress refuses a purpose the agreement does not give": Ask(
        "holyrood",
        "social-security-scotland",
        "whitehall",
        "DEATH_REGISTRATION",
        "registration_id",
        "cr-sss-gro-deaths-2026",
        "FRAUD",
        ("registration_id", "date_of_death"),
    ),
    "research at holyrood withholds the identifying field and pseudonymises": RESEARCH,
    "a health summary leaves holyrood without the fields its agreement does not name": Ask(
        "holyrood",
        "social-security-scotland",
        "holyrood",
        "HEALTH_SUMMARY",
        "chi_number",
        "psd-sss-nhs-scotland-health-2026",
        "PUBLIC_SERVICE_DELIVERY",
        ("chi_number", "given_name", "conditions", "medications", "allergies"),
    ),
}
EXTRACT = "research extract over two subjects"


async def answer(federation: Federation, ask: Ask) -> tuple[Any, ...]:
    """What the caller is told, less the ids that differ on every exchange."""
    value = subjects(federation, ask.provider, ask.record_type, ask.kind)[0]
    client = federation.client(ask.requester, ask.organisation, accreditations=ask.accreditations)
    request = get_request(
        ask.record_type,
        purpose=ask.purpose,
        agreement_id=ask.agreement,
        fields=list(ask.fields),
        **{ask.kind: value},
    )
    request.provider_node = ask.provider
    try:
        response = await client.get_record(request)
    except grpc.aio.AioRpcError as error:
        info = error_info(error)
        return ("refused", error.code().name, info["reason"], info["rule"], info["node"],
                info["agreement_id"])  # fmt: skip
    finally:
        await client.close()
    return (
        "released",
        response.provider_node,
        tuple(response.released_fields),
        tuple((w.field, w.rule) for w in response.withheld),
        tuple((o.code, tuple(sorted(o.parameters.items()))) for o in response.obligations),
        tuple(r.SerializeToString(deterministic=True) for r in response.records),
    )


async def extract(federation: Federation) -> tuple[Any, ...]:
    """A research extract at Holyrood over two listed subjects (the bulk decisions)."""
    research = ASKS["research at holyrood withholds the identifying field and pseudonymises"]
    request = exchange_pb2.StreamRecordsRequest(
        record_type=exchange_pb2.RECORD_TYPE_BENEFIT_AWARD,
        purpose=exchange_pb2.PURPOSE_RESEARCH,
        agreement_id=research.agreement,
        provider_node="holyrood",
    )
    for nino in subjects(federation, "holyrood", "BENEFIT_AWARD", "nino")[:2]:
        request.subjects.add(nino=nino)
    request.field_mask.paths.extend(research.fields)
    client = federation.client(
        "holyrood", research.organisation, accreditations=research.accreditations
    )
    try:
        batches = [batch async for batch in client.stream_records(request)]
    finally:
        await client.close()
    return (
        tuple(batches[0].released_fields),
        tuple((w.field, w.rule) for w in batches[0].withheld),
        tuple(r.SerializeToString(deterministic=True) for b in batches for r in b.records),
    )


async def all_answers(federation: Federation) -> dict[str, tuple[Any, ...]]:
    answers = {name: await answer(federation, ask) for name, ask in ASKS.items()}
    answers[EXTRACT] = await extract(federation)
    return answers


def decide_with(federation: Federation, node: str, policy: dict[str, Any]) -> None:
    """Rewrite the node's config file with these policy settings (read at its next start)."""
    config = federation.configs[node]
    config["policy"] = {"bundle": config["policy"]["bundle"], **policy}
    federation.config_path(node).write_text(json.dumps(config))


@dataclass(frozen=True)
class Run:
    revision: str
    on_opa: dict[str, tuple[Any, ...]]
    on_embedded: dict[str, tuple[Any, ...]]
    opa_log: str
    # Holyrood's audit entries written while it decided through OPA.
    audited_on_opa: list[dict[str, Any]]
    # What Holyrood printed from its SIGTERM (on OPA) to its start on the embedded engine.
    stop_log: str


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    state_dir = tmp_path_factory.mktemp("federation-opa")
    federation = build_federation(state_dir)
    built = build_opa_bundle(HOLYROOD, state_dir / "holyrood.tar.gz")
    opa = OpaServer(
        [built.path, DEPLOY / "mask"],
        arguments=["--config-file", str(DEPLOY / "config.yaml")],
        workdir=state_dir,
    )
    try:
        with opa:
            decide_with(federation, "holyrood", {"engine": "opa", "opa_url": opa.url})
            federation.start_many(["whitehall", "holyrood"])
            on_opa = asyncio.run(all_answers(federation))
            audited = read_audit(federation.audit_path("holyrood"))
            log = state_dir / "holyrood.log"
            before_restart = log.stat().st_size
            decide_with(federation, "holyrood", {"engine": "embedded"})
            federation.restart("holyrood")
            stop_log = log.read_bytes()[before_restart:].decode(errors="replace")
            on_embedded = asyncio.run(all_answers(federation))
            return Run(built.revision, on_opa, on_embedded, opa.output(), audited, stop_log)
    finally:
        federation.stop_all()


def test_holyrood_on_opa_gives_every_answer_it_gives_on_the_embedded_engine(run: Run) -> None:
    assert run.on_opa == run.on_embedded


def test_holyrood_s_decisions_were_taken_by_opa_and_logged_without_identifiers(
    run: Run,
) -> None:
    logged = {}
    for line in run.opa_log.splitlines():
        if '"Decision Log"' in line:
            event = json.loads(line)
            logged[event["decision_id"]] = event
    decided = [
        entry[direction]["decision_id"]
        for entry in run.audited_on_opa
        for direction in ("egress", "ingress")
        if entry.get(direction)
    ]
    # Every exchange but the extract's subjects decided once per request; each of Holyrood's
    # decisions carries OPA's own decision id, found in OPA's decision log.
    assert len(decided) >= len(ASKS)
    assert set(decided) <= set(logged)
    assert {logged[d]["path"] for d in decided} == {
        "concordat/egress/decision",
        "concordat/ingress/decision",
    }
    assert {entry["policy_revision"] for entry in run.audited_on_opa} == {run.revision}
    assert {
        bundle["revision"]
        for d in decided
        for bundle in logged[d]["bundles"].values()
        if "revision" in bundle
    } == {run.revision}
    assert not any("erased" in logged[d] or "masked" in logged[d] for d in decided)


def test_cross_node_answers_on_opa_name_rules_nodes_and_agreements(run: Run) -> None:
    answers = run.on_opa
    released = answers[
        "whitehall gets a scottish birth registration, less two fields outside the agreement"
    ]
    assert released[:4] == (
        "released",
        "holyrood",
        ("registration_id", "family_name"),
        (
            ("mother_family_name", "common.field_not_in_agreement"),
            ("place_of_birth", "common.field_not_in_agreement"),
        ),
    )
    assert answers["holyrood's ingress refuses an agreement only whitehall registered"] == (
        "refused",
        "PERMISSION_DENIED",
        "policy-denied",
        "common.agreement_unknown",
        "holyrood",
        "cr-dwp-nrs-marriages-2026",
    )
    assert answers["holyrood's egress lets social security scotland ask whitehall for a death"][
        :3
    ] == ("released", "whitehall", ("registration_id", "date_of_death"))
    refused = answers["holyrood's egress refuses a purpose the agreement does not give"]
    assert refused[:3] == ("refused", "PERMISSION_DENIED", "policy-denied")
    assert refused[4:] == ("holyrood", "cr-sss-gro-deaths-2026")
    research = answers["research at holyrood withholds the identifying field and pseudonymises"]
    assert research[3] == (("nino", "common.research_identifying_field"),)
    health = answers[
        "a health summary leaves holyrood without the fields its agreement does not name"
    ]
    assert health[2] == ("chi_number", "conditions", "medications")
    assert answers[EXTRACT][1] == (("nino", "common.research_identifying_field"),)


def test_holyrood_on_opa_stops_cleanly_closing_its_opa_session(run: Run) -> None:
    assert '"node_stopped"' in run.stop_log
    assert "Unclosed" not in run.stop_log
