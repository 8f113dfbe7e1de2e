"""The embedded engine and the real OPA decide every input alike, for each jurisdiction.

One corpus of policy inputs is decided by `EmbeddedEngine` (rego-cpp, what a node runs by
default) and by `OpaServerEngine` asking a real `opa run --server` that serves the bundle
`concordat policy build` writes (a node's `engine = "opa"`), and the parsed decisions must
be identical: allow, rule, agreement, released fields, withheld fields with their rules,
obligations, reasons and pseudonymisation. The corpus, per jurisdiction:

- every agreement of its register, asked in both directions by each party that is not the
  provider, built by the node's own builder (`gateway.policy.policy_input`); where the
  jurisdiction decides that direction, also changed one thing at a time (`VARIATIONS`: the
  purpose, the fields, their sensitivities, the record type, the day against the
  agreement's dates, accreditations, identifying fields, case reference, bulk, the
  requester, the agreement id, the nodes, values of the wrong type);
- copies of every agreement with one term changed, missing or of the wrong type
  (`AGREEMENT_CHANGES`: suspended, ended, without dates, objective, record types, protocol
  references, dates as numbers, turned to research...), registered beside the real ones in
  the bundle both engines load, asked as the original would be where the jurisdiction
  decides;
- every request the Rego tests decide (read by evaluating the tests on OPA with their
  decide helpers replaced by ones that print what they are asked), and `{}`.

3,940 inputs in all when written (whitehall 1,298, holyrood 965, stormont 957, cardiff
720), reaching every rule id each bundle defines: 2 to 3 s a jurisdiction, 8 to 10 s for
the four, on a shared two-core machine (rego-cpp in a thread while OPA answers). The
policies as they were before they were proven on OPA decided 1,160 of them differently:
202 allowed by OPA alone, 39 by rego-cpp alone.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import datetime as dt
import json
import shutil
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from gateway import records
from gateway.domain import PURPOSES, Decision, Direction, Requester
from gateway.policy.bundle import load_bundle
from gateway.policy.embedded import EmbeddedEngine
from gateway.policy.opa import OpaServerEngine
from gateway.policy.policy_input import PolicyRequest
from gateway.policy.tools import POLICIES, build_opa_bundle, rule_ids
from gateway.testing import TEST_TODAY, policy_input
from tests.support.real_opa import OpaServer, require_opa, run_opa

JURISDICTIONS = ["whitehall", "holyrood", "stormont", "cardiff"]
DIRECTIONS: tuple[Direction, Direction] = ("egress", "ingress")
SUBJECT_KINDS = {
    "PERSON": "nino",
    "BIRTH_REGISTRATION": "registration_id",
    "DEATH_REGISTRATION": "registration_id",
    "MARRIAGE_REGISTRATION": "registration_id",
    "BENEFIT_AWARD": "nino",
    "COUNCIL_TAX_ACCOUNT": "uprn",
    "HEALTH_SUMMARY": "nhs_number",
}
PROJECT = "P-differential"
# Fewer OPA requests in flight than this gain nothing on two cores.
OPA_CONCURRENCY = 8

Agreement = dict[str, Any]
PolicyInput = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Case:
    """One input to decide with both engines, named for the failure message."""

    name: str
    direction: Direction
    policy_input: PolicyInput


@pytest.fixture(scope="module", autouse=True)
def _opa() -> None:
    require_opa()


# --- policy inputs as the gateway builds them, and variations on them ---------------------


def gateway_request(
    agreement: Agreement, requester: str, direction: Direction, node: str
) -> PolicyRequest:
    """What a node would decide for `requester` asking for every agreed field."""
    organisation, administration = requester.split("@")
    record_type = next(iter(agreement["record_types"]))
    accreditations = {"accredited-researcher"} if agreement["purpose"] == "RESEARCH" else set()
    return PolicyRequest(
        direction=direction,
        node=node,
        requesting_node=administration,
        providing_node=agreement["provider"].split("@")[1],
        requester=Requester(
            organisation, "differential", administration, frozenset(accreditations)
        ),
        record_type=record_type,
        subject_kind=SUBJECT_KINDS[record_type],
        purpose=agreement["purpose"],
        agreement_id=agreement["id"],
        fields=tuple(agreement["record_types"][record_type]),
        case_reference_present=False,
        bulk=False,
        today=TEST_TODAY,
    )


def without(document: PolicyInput, *path: str) -> PolicyInput:
    """The input with the value at `path` missing."""
    changed = copy.deepcopy(document)
    inner = changed
    for key in path[:-1]:
        inner = inner[key]
    del inner[path[-1]]
    return changed


def with_requester(request: PolicyRequest, **changes: Any) -> PolicyInput:
    assert request.requester is not None
    return policy_input(request, requester=dataclasses.replace(request.requester, **changes))


def requester_document(request: PolicyRequest, **changes: Any) -> PolicyInput:
    """The input whose requester is given as a document, with values of any type."""
    document = policy_input(request)
    return {**document, "requester": {**document["requester"], **changes}}


def day(value: str, days: int = 0) -> dt.date:
    return dt.date.fromisoformat(value) + dt.timedelta(days=days)


def another(value: Any, among: Sequence[Any]) -> Any:
    return among[(among.index(value) + 1) % len(among)] if value in among else among[0]


def record_fields(record_type: str) -> list[str]:
    return sorted(records.shape(record_type).sensitivity)


def with_other_record_type(request: PolicyRequest) -> PolicyInput:
    other = "PERSON" if request.record_type != "PERSON" else "BENEFIT_AWARD"
    return policy_input(
        request,
        record_type=other,
        subject_kind=SUBJECT_KINDS[other],
        fields=record_fields(other),
    )


def with_sensitivity(request: PolicyRequest, sensitivity: Any) -> PolicyInput:
    """The input with its first field's sensitivity replaced."""
    sensitivities = policy_input(request)["field_sensitivity"]
    return policy_input(
        request, field_sensitivity={**sensitivities, request.fields[0]: sensitivity}
    )


# A variation changes one thing in the request as built: `policy_input` keeps what derives
# from a changed request in step (the fields' sensitivities follow the fields) and sets any
# other key as given. It also sees the agreement asked for.
Variation = Callable[[PolicyRequest, Agreement], PolicyInput]

VARIATIONS: dict[str, Variation] = {
    "as the gateway builds it": lambda r, a: policy_input(r),
    "another purpose": lambda r, a: policy_input(r, purpose=another(r.purpose, PURPOSES)),
    "an unknown purpose": lambda r, a: policy_input(r, purpose="MARKETING"),
    "no purpose": lambda r, a: without(policy_input(r), "purpose"),
    "one field": lambda r, a: policy_input(r, fields=r.fields[:1]),
    "every field of the record": lambda r, a: policy_input(r, fields=record_fields(r.record_type)),
    "only fields not agreed": lambda r, a: policy_input(
        r, fields=[f for f in record_fields(r.record_type) if f not in r.fields]
    ),
    "only identifying fields": lambda r, a: policy_input(
        r, fields=policy_input(r)["identifying_fields"]
    ),
    "a field asked for twice": lambda r, a: policy_input(r, fields=[*r.fields, r.fields[0]]),
    "no fields": lambda r, a: policy_input(r, fields=[]),
    "no field list": lambda r, a: without(policy_input(r), "fields"),
    "a field of unknown sensitivity": lambda r, a: policy_input(r, fields=[*r.fields, "notes"]),
    "no field sensitivities": lambda r, a: without(policy_input(r), "field_sensitivity"),
    "an agreed field of special category": lambda r, a: with_sensitivity(r, "SPECIAL_CATEGORY"),
    "a record type not agreed": lambda r, a: with_other_record_type(r),
    "no record type": lambda r, a: without(policy_input(r), "record_type"),
    "the day before it starts": lambda r, a: policy_input(r, today=day(a["start"], -1)),
    "its first day": lambda r, a: policy_input(r, today=day(a["start"])),
    "its last day": lambda r, a: policy_input(r, today=day(a["end"])),
    "the day after it ends": lambda r, a: policy_input(r, today=day(a["end"], 1)),
    "the day after its review": lambda r, a: policy_input(r, today=day(a["review"], 1)),
    "a day that is not a date": lambda r, a: {**policy_input(r), "today": "2026"},
    "no day": lambda r, a: without(policy_input(r), "today"),
    "an accredited researcher": lambda r, a: with_requester(
        r, accreditations=frozenset({"accredited-researcher"})
    ),
    "no accreditations": lambda r, a: without(policy_input(r), "requester", "accreditations"),
    "no identifying fields list": lambda r, a: without(policy_input(r), "identifying_fields"),
    "a case reference": lambda r, a: policy_input(r, case_reference_present=True),
    "no case reference flag": lambda r, a: without(policy_input(r), "case_reference_present"),
    "a bulk extract": lambda r, a: policy_input(r, bulk=True),
    "a requester of another administration": lambda r, a: with_requester(
        r, administration=another(r.requesting_node, JURISDICTIONS)
    ),
    "an unregistered requester": lambda r, a: with_requester(r, organisation="stranger"),
    "a requester without an organisation": lambda r, a: without(
        policy_input(r), "requester", "organisation"
    ),
    "the provider asking": lambda r, a: with_requester(
        dataclasses.replace(r, requesting_node=r.providing_node),
        organisation=a["provider"].split("@")[0],
        administration=r.providing_node,
    ),
    "an unknown agreement": lambda r, a: policy_input(r, agreement_id="no-such-agreement"),
    "the other direction in the input": lambda r, a: {
        **policy_input(r),
        "direction": another(r.direction, DIRECTIONS),
    },
    "another deciding node": lambda r, a: policy_input(r, node=another(r.node, JURISDICTIONS)),
    "another providing node": lambda r, a: policy_input(
        r, providing_node=another(r.providing_node, JURISDICTIONS)
    ),
    # Values of the wrong type, as a hand-made input could carry them.
    "bulk not a boolean": lambda r, a: {**policy_input(r), "bulk": "yes"},
    "fields as a string": lambda r, a: {**policy_input(r), "fields": ",".join(r.fields)},
    "a field that is a number": lambda r, a: {**policy_input(r), "fields": [*r.fields, 7]},
    "field sensitivities as a list": lambda r, a: {
        **policy_input(r),
        "field_sensitivity": list(r.fields),
    },
    "a sensitivity that is a number": lambda r, a: with_sensitivity(r, 1),
    "accreditations as a string": lambda r, a: requester_document(
        r, accreditations="accredited-researcher"
    ),
    "an administration that is a number": lambda r, a: requester_document(r, administration=1),
    "a requester that is a string": lambda r, a: {**policy_input(r), "requester": "dwp@whitehall"},
    "identifying fields as a string": lambda r, a: {
        **policy_input(r),
        "identifying_fields": "nino",
    },
    "a purpose that is a number": lambda r, a: {**policy_input(r), "purpose": 3},
    "a record type that is a number": lambda r, a: {**policy_input(r), "record_type": 5},
    "a day that is a number": lambda r, a: {**policy_input(r), "today": 20261121},
    "a case reference flag that is a string": lambda r, a: {
        **policy_input(r),
        "case_reference_present": "yes",
    },
    "an agreement id that is not a string": lambda r, a: {**policy_input(r), "agreement_id": 7},
    "an agreement id that is null": lambda r, a: {**policy_input(r), "agreement_id": None},
    "a node that is null": lambda r, a: {**policy_input(r), "node": None},
}


# --- agreements with one term changed, registered beside the real ones --------------------

# A change gives the changed copy (an agreement, or anything a register could wrongly hold),
# or None where it does not apply to the agreement.
Change = Callable[[Agreement], Any]


def dropped(term: str) -> Change:
    return lambda a: {k: v for k, v in a.items() if k != term} if term in a else None


def replaced(term: str, value: Any) -> Change:
    return lambda a: {**a, term: value}


def unregistered_provider(a: Agreement) -> Agreement:
    ghost = "ghost@" + a["provider"].split("@")[1]
    return {
        **a,
        "provider": ghost,
        "parties": [p if p != a["provider"] else ghost for p in a["parties"]],
    }


AGREEMENT_CHANGES: dict[str, Change] = {
    "suspended": replaced("status", "suspended"),
    "ended": replaced("status", "ended"),
    "without-start": dropped("start"),
    "without-end": dropped("end"),
    "without-review": dropped("review"),
    "without-status": dropped("status"),
    "without-power": dropped("power"),
    "no-retention": replaced("retention_days", 0),
    "without-record-types": dropped("record_types"),
    "fields-not-a-list": lambda a: {**a, "record_types": {t: "all" for t in a["record_types"]}},
    "without-objective": dropped("objective"),
    "objective-not-listed": lambda a: (
        {**a, "objective": "not-an-objective"} if "objective" in a else None
    ),
    "without-accredited-project": dropped("accredited_project"),
    "unknown-accredited-project": lambda a: (
        {**a, "accredited_project": "P-unknown"} if "accredited_project" in a else None
    ),
    "without-isp-reference": dropped("isp_reference"),
    "without-pbpp-reference": dropped("pbpp_reference"),
    "special-category-flipped": lambda a: {**a, "special_category": not a["special_category"]},
    "bulk-flipped": lambda a: {**a, "bulk": not a["bulk"]},
    "provider-unregistered": unregistered_provider,
    "requester-not-a-party": lambda a: {**a, "parties": [a["provider"]]},
    "not-an-object": lambda a: "not an agreement",
    # Terms of the wrong type, as a faulty register could hold them.
    "parties-as-a-string": lambda a: {**a, "parties": ",".join(a["parties"])},
    "record-types-as-a-list": lambda a: {**a, "record_types": list(a["record_types"])},
    "start-as-a-number": replaced("start", 20260401),
    "end-as-a-number": replaced("end", 20290331),
    "status-as-a-boolean": replaced("status", True),
    "retention-fractional": replaced("retention_days", 30.5),
    "retention-as-a-string": replaced("retention_days", "90"),
    "bulk-as-a-string": replaced("bulk", "yes"),
    "special-category-as-a-string": replaced("special_category", "yes"),
    "objective-as-a-number": lambda a: {**a, "objective": 1} if "objective" in a else None,
    "a-party-that-is-a-number": lambda a: {**a, "parties": [*a["parties"], 1]},
    "a-field-that-is-a-number": lambda a: {
        **a,
        "record_types": {t: [*fields, 1] for t, fields in a["record_types"].items()},
    },
    "power-as-a-number": replaced("power", 56),
    # Research under the project every changed register accredits, so that each register
    # has a research release to make (only holyrood's registers one of its own).
    "for-research": lambda a: {**a, "purpose": "RESEARCH", "accredited_project": PROJECT},
}


def changed_agreements(register: dict[str, Any]) -> dict[str, tuple[Agreement, Any]]:
    """Each changed copy by its id `<id>~<change>`, with the agreement it was made from."""
    copies = {}
    for agreement_id, agreement in register["agreements"].items():
        for change_name, change in AGREEMENT_CHANGES.items():
            changed = change(agreement)
            if changed is None:
                continue
            copy_id = f"{agreement_id}~{change_name}"
            if isinstance(changed, dict):
                changed = {**changed, "id": copy_id}
            copies[copy_id] = (agreement, changed)
    return copies


def bundle_folders(
    jurisdiction: str, root: Path
) -> tuple[list[Path], dict[str, tuple[Agreement, Any]]]:
    """Common plus a copy of the jurisdiction's folder whose register holds the changed copies."""
    own = shutil.copytree(POLICIES / jurisdiction, root / jurisdiction)
    data = json.loads((own / "data.json").read_text())
    copies = changed_agreements(data["register"])
    data["register"]["agreements"].update({k: changed for k, (_, changed) in copies.items()})
    project = {"title": "Differential", "status": "active", "expires": "2030-12-31"}
    data["register"]["accredited_projects"][PROJECT] = project
    (own / "data.json").write_text(json.dumps(data))
    return [POLICIES / "common", own], copies


# --- the corpus ---------------------------------------------------------------------------


def requesters(agreement: Agreement) -> list[str]:
    return [party for party in agreement["parties"] if party != agreement["provider"]]


def decides(request: PolicyRequest) -> bool:
    """Whether the request's node is the one that decides its direction."""
    deciding = request.requesting_node if request.direction == "egress" else request.providing_node
    return request.node == deciding


def agreement_cases(register: dict[str, Any], jurisdiction: str) -> Iterator[Case]:
    """Each variation where the jurisdiction decides; where it does not, the input as built
    (every variation of it is refused as `common.not_deciding_node` first)."""
    for agreement_id, agreement in sorted(register["agreements"].items()):
        for requester in requesters(agreement):
            for direction in DIRECTIONS:
                base = gateway_request(agreement, requester, direction, jurisdiction)
                variations = VARIATIONS if decides(base) else dict(list(VARIATIONS.items())[:1])
                for name, vary in variations.items():
                    varied = vary(base, agreement)
                    yield Case(
                        f"{agreement_id} {direction} by {requester}: {name}", direction, varied
                    )


def changed_agreement_cases(
    copies: dict[str, tuple[Agreement, Any]], jurisdiction: str
) -> Iterator[Case]:
    for copy_id, (original, changed) in sorted(copies.items()):
        # Asked for as the original was, under the copy's id and purpose.
        purpose = changed.get("purpose", original["purpose"]) if isinstance(changed, dict) else None
        asked_for = {**original, "id": copy_id, "purpose": purpose or original["purpose"]}
        for requester in requesters(original):
            for direction in DIRECTIONS:
                asked = gateway_request(asked_for, requester, direction, jurisdiction)
                if decides(asked):
                    name = f"{copy_id} {direction} by {requester}"
                    yield Case(name, direction, policy_input(asked))


SPY = """\
package differential.spy

import rego.v1

import data.concordat.common.tests.fixtures
import data.concordat.common.tests.requests

decide_with(req, register) := d if {
	print(json.marshal({"direction": req.direction, "input": req}))
	d := requests.decide_with(req, register)
}

decide_as(req, reg, direction) := d if {
	print(json.marshal({"direction": direction, "input": req}))
	d := fixtures.decide_as(req, reg, direction)
}
"""
SPIED = (
    "[data.concordat.tests, data.concordat.common.tests]"
    " with data.concordat.common.tests.requests.decide_with as data.differential.spy.decide_with"
    " with data.concordat.common.tests.fixtures.decide_as as data.differential.spy.decide_as"
)


def rego_test_cases(jurisdiction: str, workdir: Path) -> list[Case]:
    """Every request the bundle's Rego tests decide, read by running them on OPA."""
    spy = workdir / "spy.rego"
    spy.write_text(SPY)
    folders = [str(POLICIES / "common"), str(POLICIES / jurisdiction)]
    evaluated = run_opa(
        "eval", "--format=json", *(f"--data={f}" for f in [*folders, str(spy)]), SPIED
    )
    assert evaluated.returncode == 0, evaluated.stdout + evaluated.stderr
    asked = {line for line in evaluated.stderr.splitlines() if line.startswith("{")}
    cases = []
    for index, line in enumerate(sorted(asked)):
        recorded = json.loads(line)
        if recorded["direction"] in DIRECTIONS:
            cases.append(
                Case(f"Rego test request {index}", recorded["direction"], recorded["input"])
            )
    return cases


def corpus(
    jurisdiction: str, folders: list[Path], copies: dict[str, tuple[Agreement, Any]], workdir: Path
) -> list[Case]:
    register = json.loads((POLICIES / jurisdiction / "data.json").read_text())["register"]
    return [
        *agreement_cases(register, jurisdiction),
        *changed_agreement_cases(copies, jurisdiction),
        *rego_test_cases(jurisdiction, workdir),
        *(Case(f"an empty input, {d}", d, {}) for d in DIRECTIONS),
    ]


# --- both engines -------------------------------------------------------------------------


def comparable(decision: Decision) -> Decision:
    """The decision without its id, which each engine makes up."""
    return dataclasses.replace(decision, decision_id="")


def decide_embedded(folders: list[Path], cases: list[Case]) -> list[Decision]:
    """Compile and decide in the calling thread, which the engine then belongs to."""

    async def decide_all() -> list[Decision]:
        engine = EmbeddedEngine.compile(load_bundle(folders))
        try:
            return [comparable(await engine.decide(c.direction, c.policy_input)) for c in cases]
        finally:
            await engine.close()

    return asyncio.run(decide_all())


async def decide_on_opa(engine: OpaServerEngine, cases: list[Case]) -> list[Decision]:
    gate = asyncio.Semaphore(OPA_CONCURRENCY)

    async def one(case: Case) -> Decision:
        async with gate:
            return comparable(await engine.decide(case.direction, case.policy_input))

    return list(await asyncio.gather(*(one(case) for case in cases)))


def rules_reached(decisions: list[Decision]) -> set[str]:
    return {r for d in decisions for r in (d.rule, *d.reasons, *d.withheld.values())}


@pytest.mark.parametrize("jurisdiction", JURISDICTIONS)
async def test_embedded_engine_and_real_opa_decide_every_input_alike(
    jurisdiction: str, tmp_path: Path
) -> None:
    folders, copies = bundle_folders(jurisdiction, tmp_path / "bundle")
    cases = corpus(jurisdiction, folders, copies, tmp_path)
    built = build_opa_bundle(folders, tmp_path / f"{jurisdiction}.tar.gz")
    with OpaServer([built.path]) as opa:
        engine = OpaServerEngine(url=opa.url, timeout_seconds=30, revision=built.revision)
        try:
            # rego-cpp decides in a thread of its own (its calls release the GIL) while OPA
            # answers over HTTP: the two take about as long, so together they take half.
            on_embedded, on_opa = await asyncio.gather(
                asyncio.to_thread(decide_embedded, folders, cases), decide_on_opa(engine, cases)
            )
        finally:
            await engine.close()

    differing = [
        f"{case.name}:\n  embedded {e}\n  opa      {o}\n  input {json.dumps(case.policy_input)}"
        for case, e, o in zip(cases, on_embedded, on_opa, strict=True)
        if e != o
    ]
    assert differing == [], f"{len(differing)} of {len(cases)} decided differently:\n" + "\n".join(
        differing[:10]
    )
    # The corpus is worth comparing: it allows and denies, and reaches every rule id.
    assert sum(d.allow for d in on_embedded) >= 20
    assert set(rule_ids(load_bundle(folders))) - rules_reached(on_embedded) == set()
    assert not rules_reached(on_embedded) & {
        "concordat.engine_error",
        "concordat.engine_unavailable",
    }
