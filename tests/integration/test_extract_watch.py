"""A running extract is held to its agreement: a suspension made while it runs stops it at the
next batch with PERMISSION_DENIED naming the rule, and the extract's two entries say so."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import grpc
import pytest

from adapters.base import Batch
from adapters.memory import MemorySource
from concordat.exchange.v1 import exchange_pb2
from gateway.api.status import error_info
from gateway.policy.reloading import LivePolicy
from gateway.testing import RunningNode, running_node
from tests.integration.conftest import BUNDLE


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    """A private copy of the test bundle, to suspend an agreement in while a node runs."""
    return Path(shutil.copytree(BUNDLE, tmp_path / "bundle"))


class GatedSource(MemorySource):
    """Holds an extract after its first batch until the test opens the gate, so that what
    happens meanwhile is known to come before the second batch is even read."""

    def __init__(self, rows: dict[str, list[dict[str, object]]]) -> None:
        super().__init__(rows)
        self.gate = asyncio.Event()

    async def stream(
        self,
        record_type: str,
        fields: Sequence[str],
        *,
        batch_size: int,
        after: str | None,
        with_subjects: bool = False,
    ) -> AsyncIterator[Batch]:
        first = True
        async for batch in super().stream(
            record_type, fields, batch_size=batch_size, after=after, with_subjects=with_subjects
        ):
            if not first:
                await self.gate.wait()
            first = False
            yield batch


@pytest.fixture
def gated() -> GatedSource:
    awards = [{"award_id": f"AW{i:06d}", "benefit": "universal-credit"} for i in range(1000)]
    return GatedSource({"BENEFIT_AWARD": awards})


@pytest.fixture
async def node(tmp_path: Path, gated: GatedSource, bundle: Path) -> AsyncIterator[RunningNode]:
    async with running_node(
        tmp_path / "state",
        "whitehall",
        sources={"BENEFIT_AWARD": gated},
        # Reloaded when the test says, not by a timer.
        policy={"bundle": [str(bundle)], "reload_interval_seconds": 0},
    ) as running:
        yield running


async def test_a_suspension_during_an_extract_stops_it_at_the_next_batch_with_the_rule_named(
    node: RunningNode, bundle: Path, gated: GatedSource
) -> None:
    client = node.client(organisation="dwp")
    request = exchange_pb2.StreamRecordsRequest(
        record_type=exchange_pb2.RECORD_TYPE_BENEFIT_AWARD,
        purpose=exchange_pb2.PURPOSE_FRAUD,
        agreement_id="TEST-FRAUD-1",
        batch_size=100,
    )
    request.field_mask.paths.extend(["award_id"])
    received: list[int] = []
    with pytest.raises(grpc.aio.AioRpcError) as stopped:
        async for batch in client.stream_records(request):
            received.append(len(batch.records))
            if len(received) == 1:
                _suspend(bundle / "data.json", "TEST-FRAUD-1")
                engine = node.node.engine
                assert isinstance(engine, LivePolicy)
                await engine.reload()
                gated.gate.set()
    await client.close()

    assert received == [100]
    assert stopped.value.code() == grpc.StatusCode.PERMISSION_DENIED
    info = error_info(stopped.value)
    assert info["rule"] == "test.ingress.agreement_suspended"
    assert info["node"] == "whitehall"
    assert "stopped the extract: test.ingress.agreement_suspended" in (
        stopped.value.details() or ""
    )
    opening, closing = node.audit_entries()
    assert opening["phase"] == "opening"
    assert closing["opening"]["seq"] == 1
    assert closing["outcome"] == "denied"
    assert closing["records"] == sum(received)


def _suspend(register_file: Path, agreement: str) -> None:
    data = json.loads(register_file.read_text())
    data["register"]["agreements"][agreement]["status"] = "suspended"
    staged = register_file.with_suffix(".staged")
    staged.write_text(json.dumps(data))
    staged.replace(register_file)
