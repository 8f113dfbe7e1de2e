"""A node configured with `engine = "opa"` decides through an OPA Data API server.

No OPA binary can be installed here; the server is tests/support/opa_server.py, which speaks
OPA's Data API and evaluates the same bundle with rego-cpp.
"""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from adapters.memory import MemorySource
from gateway.policy.bundle import load_bundle
from gateway.status import error_info
from gateway.testing import get_request, running_node
from tests.integration.conftest import BUNDLE
from tests.support.opa_server import OpaDataApiServer


async def test_a_node_on_the_opa_engine_releases_and_denies_like_the_embedded_one(
    tmp_path: Path, source: MemorySource, people: list[dict[str, object]]
) -> None:
    nino = str(people[0]["nino"])
    with OpaDataApiServer(load_bundle([BUNDLE])) as opa:
        async with running_node(
            tmp_path,
            sources={t: source for t in source.record_types},
            policy={"bundle": [str(BUNDLE)], "engine": "opa", "opa_url": opa.url},
        ) as node:
            client = node.client(organisation="dwp")
            response = await client.get_record(
                get_request(
                    "PERSON",
                    nino=nino,
                    purpose="FRAUD",
                    agreement_id="TEST-FRAUD-1",
                    fields=["nino", "postcode"],
                )
            )
            with pytest.raises(grpc.aio.AioRpcError) as denied:
                await client.get_record(
                    get_request(
                        "PERSON",
                        nino=nino,
                        purpose="FRAUD",
                        agreement_id="TEST-SUSPENDED",
                        fields=["nino"],
                    )
                )
            await client.close()
    assert list(response.released_fields) == ["nino"]
    assert error_info(denied.value)["rule"] == "test.ingress.agreement_suspended"


async def test_an_unreachable_opa_server_fails_closed(
    tmp_path: Path, source: MemorySource, people: list[dict[str, object]]
) -> None:
    async with running_node(
        tmp_path,
        sources={t: source for t in source.record_types},
        policy={"bundle": [str(BUNDLE)], "engine": "opa", "opa_url": "http://127.0.0.1:9"},
    ) as node:
        client = node.client(organisation="dwp")
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await client.get_record(
                get_request(
                    "PERSON",
                    nino=str(people[0]["nino"]),
                    purpose="FRAUD",
                    agreement_id="TEST-FRAUD-1",
                    fields=["nino"],
                )
            )
        await client.close()
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error_info(caught.value)["rule"] == "concordat.engine_unavailable"
