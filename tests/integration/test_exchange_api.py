"""The exchange API of one node, through a real gRPC server with TLS on loopback."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from datetime import date
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from adapters.memory import MemorySource
from concordat.exchange.v1 import exchange_pb2, exchange_pb2_grpc
from gateway.api.client import secure_channel
from gateway.api.status import error_info
from gateway.clock import FixedClock
from gateway.testing import TEST_TODAY, RunningNode, get_request, running_node
from tests.integration.conftest import BUNDLE


def fraud_request(nino: str, fields: list[str], **extra: str) -> exchange_pb2.GetRecordRequest:
    return get_request(
        "PERSON", nino=nino, purpose="FRAUD", agreement_id="TEST-FRAUD-1", fields=fields, **extra
    )


async def test_allowed_request_returns_only_the_released_fields_with_obligations(
    node: RunningNode, people: list[dict[str, object]], source: MemorySource
) -> None:
    client = node.client(organisation="dwp")
    nino = str(people[3]["nino"])
    response = await client.get_record(
        fraud_request(nino, ["nino", "given_name", "date_of_birth", "postcode"])
    )
    await client.close()
    assert len(response.records) == 1
    person = response.records[0].person
    assert person.nino == nino and person.given_name == "Given3"
    assert not person.date_of_birth and not person.postcode
    assert list(response.released_fields) == ["nino", "given_name"]
    assert {o.code for o in response.obligations} == {"no-onward-disclosure", "retain-max-days"}
    assert response.egress_decision_id and response.ingress_decision_id
    assert response.provider_node == "whitehall"
    # Minimised at the source: the adapter was asked only for the released fields.
    assert source.reads[-1] == ("PERSON", ("nino", "given_name"))


async def test_denied_request_is_permission_denied_naming_its_rule(
    node: RunningNode, people: list[dict[str, object]]
) -> None:
    client = node.client(organisation="dwp")
    request = fraud_request(str(people[0]["nino"]), ["nino"])
    request.agreement_id = "TEST-SUSPENDED"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await client.get_record(request)
    await client.close()
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "test.ingress.agreement_suspended" in caught.value.details()
    info = error_info(caught.value)
    assert info["reason"] == "policy-denied"
    assert info["rule"] == "test.ingress.agreement_suspended"
    assert info["agreement_id"] == "TEST-SUSPENDED"


async def test_egress_denial_for_an_unknown_agreement_names_the_egress_rule(
    node: RunningNode, people: list[dict[str, object]]
) -> None:
    client = node.client(organisation="hmrc")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await client.get_record(fraud_request(str(people[0]["nino"]), ["nino"]))
    await client.close()
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error_info(caught.value)["rule"] == "test.egress.no_such_agreement"


@pytest.mark.parametrize(
    ("subject", "message"),
    [
        ({"nino": "DA123456A"}, "subject.nino is not a well-formed National Insurance number"),
        ({"nino": "GB123456A"}, "subject.nino is not a well-formed National Insurance number"),
        ({"nhs_number": "9434765918"}, "subject.nhs_number fails its modulus 11 check digit"),
        ({"nhs_number": "94347659"}, "subject.nhs_number must be 10 digits"),
        ({"chi_number": "3213801234"}, "subject.chi_number does not start with a valid date"),
        ({"chi_number": "0105806065"}, "fails both its modulus 11 and modulus 10 checks"),
        ({"hc_number": "1234567881"}, "outside the Health and Care number range"),
        ({"uprn": 10**12}, "subject.uprn must be a positive number of at most 12 digits"),
        ({"registration_id": "../../etc/passwd"}, "subject.registration_id must look like"),
    ],
)
async def test_malformed_identifiers_are_invalid_argument_before_any_policy_runs(
    node: RunningNode, subject: dict[str, object], message: str
) -> None:
    client = node.client(organisation="dwp")
    request = get_request(
        "PERSON", purpose="FRAUD", agreement_id="TEST-FRAUD-1", fields=["nino"], **subject
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await client.get_record(request)
    await client.close()
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in caught.value.details()
    last = node.audit_entries()[-1]
    assert last["outcome"] == "refused" and last["egress"] is None and last["ingress"] is None


async def test_both_chi_check_digit_schemes_are_accepted(node: RunningNode) -> None:
    client = node.client(organisation="dwp")
    for chi in ("0105806064", "0105802664"):  # modulus 11, then the newer modulus 10
        request = get_request(
            "PERSON",
            chi_number=chi,
            purpose="FRAUD",
            agreement_id="TEST-FRAUD-1",
            fields=["nino"],
        )
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await client.get_record(request)
        # Valid identifier: it reaches the adapter, which holds no person by CHI number.
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    await client.close()


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda r: r.field_mask.ClearField("paths"), "field_mask must list the fields you need"),
        (lambda r: r.field_mask.paths.append("shoe_size"), "does not have: shoe_size"),
        (lambda r: setattr(r, "agreement_id", ""), "agreement_id is required"),
        (lambda r: setattr(r, "agreement_id", "x' OR 1=1"), "agreement_id is required"),
        (lambda r: setattr(r, "record_type", 0), "record_type must name a known record type"),
        (lambda r: setattr(r, "record_type", 99), "record_type must name a known record type"),
        (lambda r: setattr(r, "purpose", 0), "purpose must name one of the Digital Economy"),
        (lambda r: r.ClearField("subject"), "subject is required"),
        (lambda r: setattr(r, "case_reference", "é" * 3), "case_reference must be printable"),
    ],
)
async def test_malformed_requests_are_refused_with_a_precise_message(
    node: RunningNode, people: list[dict[str, object]], mutate: object, message: str
) -> None:
    client = node.client(organisation="dwp")
    request = fraud_request(str(people[0]["nino"]), ["nino"])
    mutate(request)  # type: ignore[operator]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await client.get_record(request)
    await client.close()
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in caught.value.details()


async def test_every_request_leaves_one_audit_entry_with_no_identifier_in_clear(
    node: RunningNode, people: list[dict[str, object]]
) -> None:
    nino = str(people[5]["nino"])
    good = node.client(organisation="dwp")
    await good.get_record(fraud_request(nino, ["nino", "family_name"], case_reference="CASE-1"))
    with pytest.raises(grpc.aio.AioRpcError):
        await good.get_record(
            get_request(
                "PERSON", nino="BAD", purpose="FRAUD", agreement_id="TEST-FRAUD-1", fields=["nino"]
            )
        )
    await good.close()
    stranger = node.client(organisation="hmrc")
    with pytest.raises(grpc.aio.AioRpcError):
        await stranger.get_record(fraud_request(nino, ["nino"]))
    await stranger.close()
    anonymous = secure_channel(node.node.address, node.config.tls.ca_cert)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await exchange_pb2_grpc.ExchangeServiceStub(anonymous).GetRecord(
            fraud_request(nino, ["nino"])
        )
    await anonymous.close()
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED

    entries = node.audit_entries()
    assert [e["outcome"] for e in entries] == ["released", "refused", "denied", "refused"]
    released = entries[0]
    assert released["requester"]["organisation"] == "dwp"
    assert released["record_type"] == "PERSON" and released["purpose"] == "FRAUD"
    assert released["agreement_id"] == "TEST-FRAUD-1"
    assert released["fields_released"] == ["nino", "family_name"]
    assert released["ingress"]["rule"] == "test.ingress.allow"
    assert released["subject_kind"] == "nino" and len(released["subject_hash"]) == 64
    assert released["records"] == 1 and released["duration_ms"] > 0
    assert entries[1]["error_code"] == "invalid-request"
    assert entries[2]["egress"]["rule"] == "test.egress.no_such_agreement"
    assert entries[3]["error_code"] == "unauthenticated" and entries[3]["requester"] is None
    raw = node.audit_path.read_bytes() + b"".join(
        p.read_bytes() for p in node.audit_path.parent.glob("audit.db-*")
    )
    assert nino.encode() not in raw and b"Family5" not in raw


async def test_health_and_reflection_are_served(node: RunningNode) -> None:
    channel = secure_channel(node.node.address, node.config.tls.ca_cert)
    reply = await health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service="concordat.exchange.v1.ExchangeService")
    )
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)

    async def one() -> reflection_pb2.ServerReflectionResponse:
        call = stub.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")])
        )
        async for item in call:
            return item
        raise AssertionError("no reflection reply")

    services = {s.name for s in (await one()).list_services_response.service}
    await channel.close()
    assert "concordat.exchange.v1.ExchangeService" in services
    assert "grpc.health.v1.Health" in services


async def test_repeated_idempotency_key_is_answered_once(
    node: RunningNode, people: list[dict[str, object]], source: MemorySource
) -> None:
    client = node.client(organisation="dwp")
    request = fraud_request(str(people[1]["nino"]), ["nino"], idempotency_key="key-1")
    first = await client.get_record(request)
    reads = len(source.reads)
    second = await client.get_record(request)
    assert second == first and len(source.reads) == reads
    changed = fraud_request(str(people[2]["nino"]), ["nino"], idempotency_key="key-1")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await client.get_record(changed)
    await client.close()
    assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS
    outcomes = [e["outcome"] for e in node.audit_entries()]
    assert outcomes == ["released", "replayed", "refused"]
    assert node.audit_entries()[1]["replay_of"] == first.exchange_id


async def test_bulk_extract_arrives_in_batches_and_resumes_without_gaps_or_duplicates(
    node: RunningNode,
) -> None:
    client = node.client(organisation="dwp")
    request = exchange_pb2.StreamRecordsRequest(
        record_type=exchange_pb2.RECORD_TYPE_BENEFIT_AWARD,
        purpose=exchange_pb2.PURPOSE_FRAUD,
        agreement_id="TEST-FRAUD-1",
        batch_size=1000,
    )
    request.field_mask.paths.extend(["award_id", "weekly_amount_pence", "start_date"])
    batches = [b async for b in client.stream_records(request)]
    assert [len(b.records) for b in batches] == [1000, 1000, 500]
    assert list(batches[0].released_fields) == ["award_id", "weekly_amount_pence"]
    assert not batches[0].records[0].benefit_award.start_date
    resumed_request = exchange_pb2.StreamRecordsRequest()
    resumed_request.CopyFrom(request)
    resumed_request.resume_token = batches[0].resume_token
    resumed = [b async for b in client.stream_records(resumed_request)]
    ids = [r.benefit_award.award_id for b in batches[:1] + resumed for r in b.records]
    assert len(ids) == 2500 == len(set(ids))
    forged = exchange_pb2.StreamRecordsRequest()
    forged.CopyFrom(request)
    forged.resume_token = batches[0].resume_token[:-4] + "AAA="
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for _ in client.stream_records(forged):
            pass
    await client.close()
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    # Each extract's closing entry (an extract that started also left an opening one).
    stream_entries = [
        e
        for e in node.audit_entries()
        if e["rpc"] == "StreamRecords" and e.get("phase") != "opening"
    ]
    assert [e["records"] for e in stream_entries] == [2500, 1500, 0]


class _BrokenSource:
    record_types = frozenset({"PERSON"})

    def __init__(self, row: dict[str, object] | None = None) -> None:
        self._row = row

    async def fetch(self, *args: object) -> list[dict[str, object]]:
        if self._row is None:
            raise RuntimeError("connection string postgres://secret@db leaked?")
        return [self._row]

    async def stream(self, *args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        raise RuntimeError("unused")

    async def close(self) -> None:
        return None


async def test_an_internal_fault_is_internal_without_leaking_details(tmp_path: Path) -> None:
    async with running_node(
        tmp_path, sources={"PERSON": _BrokenSource()}, policy={"bundle": [str(BUNDLE)]}
    ) as node:
        client = node.client(organisation="dwp")
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await client.get_record(fraud_request("ZX123456A", ["nino"]))
        # The node keeps serving after the fault.
        with pytest.raises(grpc.aio.AioRpcError) as again:
            await client.get_record(fraud_request("ZX123456A", ["nino"]))
        await client.close()
        assert caught.value.code() == grpc.StatusCode.INTERNAL
        assert "secret" not in caught.value.details()
        assert "quote exchange id" in caught.value.details()
        assert again.value.code() == grpc.StatusCode.INTERNAL
        assert [e["outcome"] for e in node.audit_entries()] == ["failed", "failed"]


async def test_hostile_local_data_is_a_clear_error_recorded_in_the_audit(tmp_path: Path) -> None:
    broken = _BrokenSource({"nino": "ZX123456A", "given_name": 12345})
    async with running_node(
        tmp_path, sources={"PERSON": broken}, policy={"bundle": [str(BUNDLE)]}
    ) as node:
        client = node.client(organisation="dwp")
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await client.get_record(fraud_request("ZX123456A", ["nino", "given_name"]))
        await client.close()
        assert caught.value.code() == grpc.StatusCode.INTERNAL
        assert error_info(caught.value)["reason"] == "local-data-invalid"
        assert node.audit_entries()[-1]["error_code"] == "local-data-invalid"


async def test_a_stream_that_fails_part_way_audits_the_records_it_released(
    tmp_path: Path,
) -> None:
    awards: list[dict[str, object]] = [
        {"award_id": f"AW{i:06d}", "nino": "ZX123456A", "weekly_amount_pence": 10000 + i}
        for i in range(2500)
    ]
    awards[1500]["weekly_amount_pence"] = "not a number"
    hostile = MemorySource({"BENEFIT_AWARD": awards})
    async with running_node(
        tmp_path, sources={"BENEFIT_AWARD": hostile}, policy={"bundle": [str(BUNDLE)]}
    ) as node:
        client = node.client(organisation="dwp")
        request = exchange_pb2.StreamRecordsRequest(
            record_type=exchange_pb2.RECORD_TYPE_BENEFIT_AWARD,
            purpose=exchange_pb2.PURPOSE_FRAUD,
            agreement_id="TEST-FRAUD-1",
            batch_size=1000,
        )
        request.field_mask.paths.extend(["award_id", "weekly_amount_pence"])
        received = []
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            async for batch in client.stream_records(request):
                received.append(len(batch.records))
        await client.close()
    assert received == [1000]
    assert error_info(caught.value)["reason"] == "local-data-invalid"
    opening, entry = node.audit_entries()
    assert opening["phase"] == "opening"
    assert entry["outcome"] == "failed"
    assert entry["records"] == 1000
    assert entry["bytes"] > 0


def _verify(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", "audit", "verify", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


async def test_audit_verify_detects_an_altered_entry_and_says_where(
    node: RunningNode, people: list[dict[str, object]]
) -> None:
    client = node.client(organisation="dwp")
    for person in people[:4]:
        await client.get_record(fraud_request(str(person["nino"]), ["nino"]))
    await client.close()
    public = node.state.material.signing_public
    ok = _verify("--db", str(node.audit_path), "--public-key", str(public))
    assert ok.returncode == 0, ok.stderr
    assert "4 entries" in ok.stdout
    with sqlite3.connect(node.audit_path) as db:
        db.execute(
            "UPDATE entries SET event = replace(event, 'TEST-FRAUD-1', 'TEST-FRAUD-2') "
            "WHERE seq = 3"
        )
    bad = _verify("--db", str(node.audit_path), "--public-key", str(public))
    assert bad.returncode == 1
    assert "entry 3" in bad.stderr


async def test_a_test_node_decides_as_on_the_pinned_test_day(
    node: RunningNode, people: list[dict[str, object]]
) -> None:
    client = node.client(organisation="dwp")
    await client.get_record(fraud_request(str(people[0]["nino"]), ["nino"]))
    await client.close()
    inputs = node.audit_entries()[-1]["policy_inputs"]
    assert inputs["egress"]["today"] == inputs["ingress"]["today"] == TEST_TODAY.isoformat()


async def test_both_decisions_are_taken_as_on_the_node_s_clock_day(
    tmp_path: Path, people: list[dict[str, object]], source: MemorySource
) -> None:
    async with running_node(
        tmp_path,
        sources={t: source for t in source.record_types},
        policy={"bundle": [str(BUNDLE)]},
        clock=FixedClock(date(2031, 2, 3)),
    ) as node:
        client = node.client(organisation="dwp")
        await client.get_record(fraud_request(str(people[0]["nino"]), ["nino"]))
        await client.close()
        inputs = node.audit_entries()[-1]["policy_inputs"]
    assert inputs["egress"]["today"] == inputs["ingress"]["today"] == "2031-02-03"
