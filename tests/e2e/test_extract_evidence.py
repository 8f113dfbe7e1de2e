"""A providing node killed (SIGKILL) in the middle of a bulk extract has already written the
extract's opening entry: its log still verifies, and its meter counts the extract as
interrupted. The requesting node's own entry holds the receipts of the batches it got."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest

from concordat.exchange.v1 import exchange_pb2
from gateway.audit.meter import read_meter
from gateway.audit.verify import verify_log
from gateway.testing import read_audit
from tests.e2e.conftest import Federation, build_federation

pytestmark = pytest.mark.slow

PROVIDER = "stormont"


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    running = build_federation(tmp_path_factory.mktemp("killed-extract"))
    try:
        running.start_many(["whitehall", PROVIDER])
        yield running
    finally:
        running.stop_all()


async def test_sigkill_of_the_providing_node_mid_extract_leaves_an_opening_entry_counted_as_interrupted(  # noqa: E501 - the behaviour, whole
    federation: Federation,
) -> None:
    client = federation.client("whitehall", "dwp")
    request = exchange_pb2.StreamRecordsRequest(
        record_type=exchange_pb2.RECORD_TYPE_BENEFIT_AWARD,
        purpose=exchange_pb2.PURPOSE_FRAUD,
        agreement_id="fraud-dwp-dfc-benefits-2026",
        batch_size=1,
        provider_node=PROVIDER,
    )
    request.field_mask.paths.extend(["award_id"])
    received = []
    with pytest.raises(grpc.aio.AioRpcError) as cut:
        async for batch in client.stream_records(request):
            received.append(batch)
            if len(received) == 1:
                federation.kill(PROVIDER)
    await client.close()

    assert cut.value.code() == grpc.StatusCode.UNAVAILABLE
    exchange_id = received[0].exchange_id
    path = federation.audit_path(PROVIDER)
    report = verify_log(path)
    assert report.ok, report.problems
    assert report.interrupted == [exchange_id]
    (opening,) = [e for e in read_audit(path) if e["exchange_id"] == exchange_id]
    assert opening["phase"] == "opening"
    (metered,) = [row for row in read_meter(path) if row.interrupted]
    assert (metered.role, metered.interrupted, metered.exchanges) == ("provider", 1, 0)
    # The requesting node closed its side, with the provider's receipts for what it got.
    mine = [
        e for e in read_audit(federation.audit_path("whitehall")) if e["exchange_id"] == exchange_id
    ]
    assert [e.get("phase") for e in mine] == ["opening", "closing"]
    assert mine[-1]["receipts"] >= len(received)
    assert mine[-1]["peer_log"]["seq"] == report.entries
