"""An extract's file resumes to the bytes of an uninterrupted run; a stream resumes only
after it has delivered a batch."""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import pytest
from concordat_client import BenefitAward, HealthSummary, ReleaseChanged, errors
from concordat_client.extract_file import (
    ExtractFile,
    ExtractFileError,
    ExtractRequest,
    sidecar_path,
    summary_path,
)
from concordat_client.messages import Batch, Decisions, Obligation, Resumption, Withheld

from concordat.exchange.v1 import exchange_pb2

REQUEST = ExtractRequest(
    record_type="BENEFIT_AWARD",
    purpose="RESEARCH",
    agreement_id="research-adrs-sss-benefits-2026",
    fields=("nino", "benefit", "weekly_amount_pence"),
)
DECISIONS = Decisions(
    released_fields=("weekly_amount_pence", "benefit"),
    withheld=(Withheld("nino", "common.research_identifying_field"),),
    obligations=(Obligation("retain-max-days", "Delete it.", {"days": "730"}),),
    egress_decision_id="eg",
    ingress_decision_id="in",
)


def batch(
    start: int, count: int, *, exchange: str = "x1", decisions: Decisions | None = None
) -> Batch[BenefitAward]:
    awards = tuple(
        BenefitAward(benefit=f"Benefit, {n}", weekly_amount_pence=n) for n in range(start, count)
    )
    return Batch(
        exchange_id=exchange,
        provider_node="holyrood",
        records=awards,
        pseudonyms=tuple(f"p{n}" for n in range(start, count)),
        resume_token=f"after-{count}",
        decisions=decisions,
    )


BATCHES = [batch(0, 3, decisions=DECISIONS), batch(3, 6), batch(6, 9)]


def started(out: Path) -> None:
    """An extract of which one batch was written when its process died."""
    extract = ExtractFile.open(out, REQUEST)
    extract.add(BATCHES[0])
    extract.close()


def write(out: Path, batches: list[Batch[BenefitAward]], request: ExtractRequest = REQUEST) -> None:
    extract = ExtractFile.open(out, request)
    for each in batches:
        extract.add(each)
    extract.finish()


def test_a_file_cut_after_a_batch_and_resumed_is_the_uninterrupted_file(tmp_path: Path) -> None:
    whole = tmp_path / "whole.csv"
    write(whole, BATCHES)
    out = tmp_path / "out.csv"
    first = ExtractFile.open(out, REQUEST)
    first.add(BATCHES[0])
    # Killed after writing a second batch to the file but before the sidecar said so.
    state = json.loads(sidecar_path(out).read_text())
    first.close()
    with out.open("ab") as file:
        file.write(b"Benefit, 3,3,p3\nBenefit, 4,4,p")
    assert state["resume_token"] == "after-3"
    again = ExtractFile.open(out, REQUEST)
    assert again.resume_token == "after-3" and again.records == 3
    resumed = batch(3, 6, exchange="x2", decisions=DECISIONS)
    for each in (resumed, BATCHES[2]):
        again.add(each)
    summary = again.finish()
    assert out.read_bytes() == whole.read_bytes()
    assert out.read_text().splitlines()[:2] == [
        "benefit,weekly_amount_pence,pseudonym",
        '"Benefit, 0",0,p0',
    ]
    assert not sidecar_path(out).exists()
    assert summary.records == 9
    assert [e["exchange_id"] for e in summary.exchanges] == ["x1", "x2"]
    assert summary.withheld == DECISIONS.withheld
    assert summary.obligations == DECISIONS.obligations
    assert json.loads(summary_path(out).read_text())["obligations"][0]["parameters"] == {
        "days": "730"
    }


def test_json_lines_carry_the_released_fields_and_repeated_ones_as_lists(tmp_path: Path) -> None:
    out = tmp_path / "health.jsonl"
    request = ExtractRequest(
        record_type="HEALTH_SUMMARY",
        purpose="STATISTICS",
        agreement_id="stats",
        fields=("gp_practice", "conditions"),
        format="jsonl",
    )
    extract = ExtractFile.open(out, request)
    summary = HealthSummary(gp_practice="W1", conditions=["asthma", "gout"])
    decisions = Decisions(("gp_practice", "conditions"), (), (), "", "")
    extract.add(Batch("x", "cardiff", (summary,), ("",), "t", decisions))
    extract.finish()
    assert json.loads(out.read_text()) == {"gp_practice": "W1", "conditions": ["asthma", "gout"]}


def test_a_sidecar_resumes_only_its_own_extract_and_a_finished_file_is_kept(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out.csv"
    started(out)
    other = ExtractRequest(**{**REQUEST.__dict__, "agreement_id": "another"})
    with pytest.raises(ExtractFileError, match="different extract"):
        ExtractFile.open(out, other)
    ExtractFile.open(out, other, restart=True).finish()
    with pytest.raises(ExtractFileError, match="--restart"):
        ExtractFile.open(out, other)


def test_a_resumed_extract_released_differently_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "out.csv"
    started(out)
    resumed = ExtractFile.open(out, REQUEST)
    fewer = Decisions(("benefit",), (), (), "", "")
    with pytest.raises(ReleaseChanged):
        resumed.add(batch(3, 6, decisions=fewer))
    resumed.close()


def response(start: int, count: int, released: tuple[str, ...] = ()) -> object:
    message = exchange_pb2.StreamRecordsResponse(
        exchange_id="x", resume_token=f"after-{count}", released_fields=released
    )
    for n in range(start, count):
        message.records.add().benefit_award.weekly_amount_pence = n
    return message


UNAVAILABLE = errors.Unavailable("gone", status=grpc.StatusCode.UNAVAILABLE, metadata={})


def test_a_stream_resumes_after_a_delivered_batch_from_its_token_and_not_before() -> None:
    request = exchange_pb2.StreamRecordsRequest(agreement_id="a")
    resumption = Resumption(BenefitAward, request, timeout=None)
    resumption.next_call()
    # Failing before any batch: gRPC's retries were spent already.
    assert not resumption.resumes_after(UNAVAILABLE)
    resumption.next_call()
    first = resumption.batch(response(0, 2, ("weekly_amount_pence",)))
    assert first.decisions is not None
    assert [a.weekly_amount_pence for a in first.records] == [0, 1]
    assert resumption.batch(response(2, 4)).decisions is None
    assert resumption.resumes_after(UNAVAILABLE)
    denied = errors.PolicyDenied("no", status=grpc.StatusCode.PERMISSION_DENIED, metadata={})
    assert not resumption.resumes_after(denied)
    again, _ = resumption.next_call()
    assert again.resume_token == "after-4"
    with pytest.raises(ReleaseChanged):
        resumption.batch(response(4, 6, ("benefit",)))
