"""Citizens ask who used their data, through the four-node federation as node processes.

A Cardiff resident (a synthetic council-tax payer, found by NINO) has their council tax
account read by bodies of the three other administrations: HMRC and Social Security Scotland
under debt agreements, which delay disclosure by 30 days, and ADR NI's accredited
researchers, whose agreement sets no delay. Their own node, cardiff, asks every node to
search its own log.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import grpc
import pytest
from typer.testing import CliRunner

from concordat.exchange.v1 import exchange_pb2
from concordat.transparency.v1 import transparency_pb2, transparency_pb2_grpc
from gateway.api.client import ExchangeClient, secure_channel
from gateway.api.status import error_info
from gateway.cli import app
from gateway.config import ADMINISTRATIONS
from gateway.dev.demo import demo_subjects
from gateway.dev.state import citizen_issuer
from gateway.testing import TEST_TODAY, get_request, read_audit
from tests.e2e.conftest import Federation, build_federation

pytestmark = pytest.mark.slow

# The debt agreements' disclosure delay in every register (policies/*/data.json).
DEBT_DELAY = timedelta(days=30)
CASE = "CASE-0042"
RESEARCH_AGREEMENT = "research-adrni-cardiff-council-ctax-2026"
# Bodies asking Cardiff Council for the resident's council tax account to recover a debt.
DEBT_ASKS = [
    ("whitehall", "hmrc", "debt-hmrc-cardiff-council-ctax-2026"),
    ("holyrood", "social-security-scotland", "debt-sss-cardiff-council-ctax-2026"),
]


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    running = build_federation(tmp_path_factory.mktemp("citizens"))
    for node, config in running.configs.items():
        issuer = citizen_issuer(running.state_dir, node)
        config["citizens"] = {
            "issuer": issuer.issuer,
            "audience": f"concordat-citizens:{node}",
            "jwks_file": str(issuer.jwks_path),
            "lookup_burst": 4,
            "lookups_per_hour": 1,
            "holds_file": str(running.state_dir / node / "holds.json"),
        }
        running.config_path(node).write_text(json.dumps(config))
    try:
        running.start_many(ADMINISTRATIONS)
        yield running
    finally:
        running.stop_all()


def resident_nino(federation: Federation, index: int = 0) -> str:
    subjects = demo_subjects(f"sqlite:///{federation.states['cardiff'].demo_db}", "cardiff")
    ninos = [value for kind, value in subjects["COUNCIL_TAX_ACCOUNT"] if kind == "nino"]
    return str(ninos[index])


async def list_my_exchanges(
    federation: Federation,
    *,
    person: str,
    nino: str,
    ask_about: str | None = None,
    node: str = "cardiff",
) -> transparency_pb2.ListMyExchangesResponse:
    token = citizen_issuer(federation.state_dir, node).mint_citizen(
        audience=f"concordat-citizens:{node}", person=person, identifiers={"nino": nino}
    )
    request = transparency_pb2.ListMyExchangesRequest()
    if ask_about is not None:
        request.subjects.add(nino=ask_about)
    async with secure_channel(
        federation.address(node), federation.states[node].material.ca_cert
    ) as channel:
        stub = transparency_pb2_grpc.TransparencyServiceStub(channel)
        response: transparency_pb2.ListMyExchangesResponse = await stub.ListMyExchanges(
            request, metadata=(("authorization", f"Bearer {token}"),), timeout=10
        )
    return response


async def ask_for_council_tax(
    federation: Federation, node: str, organisation: str, agreement: str, nino: str, case: str = ""
) -> str:
    client = federation.client(node, organisation)
    request = get_request(
        "COUNCIL_TAX_ACCOUNT",
        purpose="DEBT",
        agreement_id=agreement,
        fields=["account_ref", "arrears_pence"],
        case_reference=case,
        nino=nino,
    )
    return await _send(client, request)


async def research_council_tax(federation: Federation, nino: str, case: str = "") -> str:
    """ADR NI's accredited researchers read the account, de-identified (no delay applies)."""
    client = federation.client("stormont", "adr-ni", accreditations=["accredited-researcher"])
    request = get_request(
        "COUNCIL_TAX_ACCOUNT",
        purpose="RESEARCH",
        agreement_id=RESEARCH_AGREEMENT,
        fields=["band", "arrears_pence"],
        case_reference=case,
        nino=nino,
    )
    return await _send(client, request)


async def _send(client: ExchangeClient, request: exchange_pb2.GetRecordRequest) -> str:
    request.provider_node = "cardiff"
    try:
        response = await client.get_record(request)
    finally:
        await client.close()
    return str(response.exchange_id)


def lookups_in(federation: Federation, node: str, rpc: str) -> list[dict[str, object]]:
    return [e for e in read_audit(federation.audit_path(node)) if e.get("rpc") == rpc]


def restart_all(federation: Federation, *, days_later: timedelta) -> None:
    for node in ADMINISTRATIONS:
        federation.restart(node, today=TEST_TODAY + days_later)


# Before the tests that restart and kill nodes: it asks whitehall as the fixture started it.
async def test_server_reflection_lists_the_citizens_service_where_it_is_served(
    federation: Federation,
) -> None:
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    async with secure_channel(
        federation.address("whitehall"), federation.states["whitehall"].material.ca_cert
    ) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        answers = stub.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")])
        )
        services = {
            service.name
            async for answer in answers
            for service in answer.list_services_response.service
        }

    assert "concordat.transparency.v1.TransparencyService" in services, services
    assert "concordat.exchange.v1.ExchangeService" in services


async def test_asking_about_another_persons_identifier_is_refused_and_audited(
    federation: Federation,
) -> None:
    mine, theirs = resident_nino(federation, 0), resident_nino(federation, 1)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await list_my_exchanges(federation, person="citizen-nosy", nino=mine, ask_about=theirs)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error_info(refused.value)["reason"] == "not-your-subject"
    entry = lookups_in(federation, "cardiff", "ListMyExchanges")[-1]
    assert entry["exchange_id"] == error_info(refused.value)["exchange_id"]
    assert entry["outcome"] == "refused" and entry["error_code"] == "not-your-subject"
    # The identifier asked about is kept as a keyed hash, never in clear.
    assert entry["subject_kinds"] == ["nino"] and len(entry["subject_hashes"]) == 1
    assert theirs not in json.dumps(entry) and mine not in json.dumps(entry)


async def test_lookups_beyond_the_rate_limit_are_refused_and_every_one_is_audited(
    federation: Federation,
) -> None:
    nino = resident_nino(federation, 2)
    before = len(lookups_in(federation, "cardiff", "ListMyExchanges"))
    for _ in range(4):  # the fixture's burst
        await list_my_exchanges(federation, person="citizen-eager", nino=nino)
    with pytest.raises(grpc.aio.AioRpcError) as limited:
        await list_my_exchanges(federation, person="citizen-eager", nino=nino)
    assert limited.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error_info(limited.value)["reason"] == "rate-limited"
    # Another citizen is not held back by the first one's lookups.
    await list_my_exchanges(federation, person="citizen-patient", nino=nino)
    entries = lookups_in(federation, "cardiff", "ListMyExchanges")[before:]
    assert [e["outcome"] for e in entries] == ["answered"] * 4 + ["refused", "answered"]
    assert entries[4]["error_code"] == "rate-limited"


async def test_a_delayed_exchange_is_absent_before_its_date_and_present_after(
    federation: Federation,
) -> None:
    nino = resident_nino(federation, 0)
    made = [
        await ask_for_council_tax(federation, node, organisation, agreement, nino)
        for node, organisation, agreement in DEBT_ASKS
    ]
    research = await research_council_tax(federation, nino)
    before = await list_my_exchanges(federation, person="citizen-0", nino=nino)
    # Only the research is shown; the answer is what it would be had no debt ask been made.
    assert [e.exchange_id for e in before.exchanges] == [research]
    assert not before.unanswered_administrations

    restart_all(federation, days_later=DEBT_DELAY)
    after = await list_my_exchanges(federation, person="citizen-0", nino=nino)
    shown = {e.exchange_id: e for e in after.exchanges}
    # Newest first.
    assert [e.exchange_id for e in after.exchanges] == [research, *made[::-1]]
    whitehall_ask = shown[made[0]]
    assert (whitehall_ask.requester.id, whitehall_ask.requester.administration) == (
        "hmrc",
        "whitehall",
    )
    assert whitehall_ask.requester.name == "HM Revenue and Customs"
    assert whitehall_ask.provider.id == "cardiff-council"
    assert whitehall_ask.purpose == exchange_pb2.PURPOSE_DEBT
    assert whitehall_ask.agreement.id == "debt-hmrc-cardiff-council-ctax-2026"
    assert whitehall_ask.agreement.legal_power
    assert list(whitehall_ask.fields_released) == ["account_ref", "arrears_pence"]


async def test_the_answer_holds_entries_from_all_four_administrations_logs(
    federation: Federation,
) -> None:
    nino = resident_nino(federation, 0)
    answer = await list_my_exchanges(federation, person="citizen-0b", nino=nino)
    lookup_id = lookups_in(federation, "cardiff", "ListMyExchanges")[-1]["exchange_id"]
    assert {e.requester.administration for e in answer.exchanges} >= {
        "whitehall",
        "holyrood",
        "stormont",
    }
    # Each other node searched its own log for the lookup and found the exchanges it made.
    for node in ("whitehall", "holyrood", "stormont"):
        search = next(
            e for e in lookups_in(federation, node, "SubjectSearch") if e["lookup_id"] == lookup_id
        )
        assert search["requesting_node"] == "cardiff" and search["exchanges_listed"] >= 1
    # The identifier crossed the federation inside mutual TLS only: no node logged it.
    for node in ADMINISTRATIONS:
        assert nino not in (federation.state_dir / f"{node}.log").read_text()


async def test_a_held_live_case_stays_out_until_released_and_nothing_shows_it_was_there(
    federation: Federation,
) -> None:
    # An agreement with no delay: only the hold keeps its exchange out.
    nino = resident_nino(federation, 0)
    earlier = await list_my_exchanges(federation, person="citizen-0c", nino=nino)
    runner = CliRunner()
    case = ["--agreement", RESEARCH_AGREEMENT, "--case-reference", CASE]
    stormont = ["--config", str(federation.config_path("stormont"))]
    held = runner.invoke(app, ["citizen", "hold", *stormont, *case])
    assert held.exit_code == 0, held.output
    exchange_id = await research_council_tax(federation, nino, case=CASE)

    # Stormont holds it; Cardiff's record of the same exchange is left out with it.
    during = await list_my_exchanges(federation, person="citizen-0d", nino=nino)
    # The answer is the one given before the held exchange was made: nothing tells of it.
    assert during == earlier

    released = runner.invoke(app, ["citizen", "release", *stormont, *case])
    assert released.exit_code == 0, released.output
    after = await list_my_exchanges(federation, person="citizen-0e", nino=nino)
    assert [e.exchange_id for e in after.exchanges] == [
        exchange_id,
        *(e.exchange_id for e in earlier.exchanges),
    ]


async def test_a_node_that_cannot_be_asked_is_named_and_its_exchanges_are_left_out(
    federation: Federation,
) -> None:
    nino = resident_nino(federation, 0)
    federation.kill("whitehall")
    answer = await list_my_exchanges(federation, person="citizen-0f", nino=nino)
    assert list(answer.unanswered_administrations) == ["whitehall"]
    # Whitehall might be holding its exchanges back: Cardiff's records of them stay out too.
    assert answer.exchanges
    assert all(e.requester.administration != "whitehall" for e in answer.exchanges)


def test_the_citizen_servicers_run_inside_the_edge_wrapper_with_raw_request_bytes() -> None:
    from concordat.transparency.v1 import subject_search_pb2
    from gateway.api.edge import is_wrapped
    from gateway.citizen.service import (
        SubjectSearchService,
        TransparencyService,
        subject_search_handlers,
        transparency_handlers,
    )

    for servicer, descriptor, handlers in (
        (
            TransparencyService,
            transparency_pb2.DESCRIPTOR.services_by_name["TransparencyService"],
            transparency_handlers,
        ),
        (
            SubjectSearchService,
            subject_search_pb2.DESCRIPTOR.services_by_name["SubjectSearchService"],
            subject_search_handlers,
        ),
    ):
        public = {name for name in vars(servicer) if name[:1].isupper()}
        assert public == set(descriptor.methods_by_name)
        registered = handlers(object.__new__(servicer))  # type: ignore[arg-type]  # each servicer with its own handlers
        assert set(registered) == public
        for handler in registered.values():
            assert is_wrapped(handler.unary_unary)
            # The edge decodes: an undecodable body is answered and audited by us.
            assert handler.request_deserializer is None


def test_disclosure_fails_closed_on_an_unreadable_holds_file_and_an_unknown_or_odd_delay(
    tmp_path: Path,
) -> None:
    from gateway.citizen.disclosure import Disclosure
    from gateway.citizen.holds import LiveCaseHolds
    from gateway.clock import FixedClock

    def agreement(**terms: object) -> dict[str, object]:
        return {"agreements": {"debt-x": {"status": "active", **terms}}}

    event = {
        "agreement_id": "debt-x",
        "case_reference": "C-1",
        "policy_inputs": {"egress": {"today": TEST_TODAY.isoformat()}},
    }
    later = FixedClock(TEST_TODAY + timedelta(days=365))
    holds_file = tmp_path / "holds.json"
    shown = Disclosure(holds=LiveCaseHolds(holds_file), clock=later)
    assert shown.disclosed(event, agreement(disclosure_delay_days=30))
    assert not shown.disclosed(event, {"agreements": {}})
    for odd in (-1, 1.5, "30", True, None):
        assert not shown.disclosed(event, agreement(disclosure_delay_days=odd)), odd

    holds_file.write_text("{not json")
    unreadable = Disclosure(holds=LiveCaseHolds(holds_file), clock=later)
    assert not unreadable.disclosed(event, agreement())
    assert unreadable.disclosed({**event, "case_reference": ""}, agreement())


async def test_a_citizens_lookups_refill_at_the_configured_rate() -> None:
    from gateway.citizen.limits import LookupLimiter
    from gateway.errors import RateLimited

    now = [0.0]
    limiter = LookupLimiter(per_hour=60, burst=2, clock=lambda: now[0])
    await limiter.take("a")
    await limiter.take("a")
    with pytest.raises(RateLimited):
        await limiter.take("a")
    await limiter.take("b")
    now[0] = 60.0  # one lookup a minute
    await limiter.take("a")
    with pytest.raises(RateLimited):
        await limiter.take("a")
