"""Bulk extracts from sources that cannot give one: the caller gets UNAVAILABLE, not a fault."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import grpc
import pytest

from adapters.base import AdapterError, Batch, Row
from concordat.exchange.v1 import exchange_pb2
from gateway.api.status import error_info
from gateway.testing import running_node
from tests.integration.conftest import BUNDLE


class PerSubjectOnly:
    """Like the REST adapter: answers per subject, refuses a bulk extract when asked."""

    record_types = frozenset({"BENEFIT_AWARD"})

    async def fetch(
        self, record_type: str, subject_kind: str, subject_value: str, fields: Sequence[str]
    ) -> list[Row]:
        return []

    def stream(
        self,
        record_type: str,
        fields: Sequence[str],
        *,
        batch_size: int,
        after: str | None,
        with_subjects: bool = False,
    ) -> AsyncIterator[Batch]:
        raise AdapterError("bulk extract is not supported by this source")

    async def close(self) -> None:
        return None


async def test_a_source_that_refuses_a_bulk_extract_is_unavailable_and_audited(
    tmp_path: Path,
) -> None:
    async with running_node(
        tmp_path, sources={"BENEFIT_AWARD": PerSubjectOnly()}, policy={"bundle": [str(BUNDLE)]}
    ) as node:
        client = node.client(organisation="dwp")
        request = exchange_pb2.StreamRecordsRequest(
            record_type=exchange_pb2.RECORD_TYPE_BENEFIT_AWARD,
            purpose=exchange_pb2.PURPOSE_FRAUD,
            agreement_id="TEST-FRAUD-1",
        )
        request.field_mask.paths.extend(["award_id"])
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            async for _ in client.stream_records(request):
                pass
        await client.close()
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert error_info(caught.value)["reason"] == "unavailable"
        assert "not supported" not in caught.value.details()
        last = node.audit_entries()[-1]
        assert last["outcome"] == "failed" and last["error_code"] == "unavailable"
