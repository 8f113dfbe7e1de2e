"""A node on OPA reports NOT_SERVING until its OPA has activated its bundles, and again
whenever OPA stops saying so; decisions still go to OPA meanwhile, and are denials.

The real OPA fetches the bundle from a bundle service, as in production: a small HTTP server
here (tests/support/real_opa.py) that answers 404 until the tarball `concordat policy build`
wrote is published.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from adapters.memory import MemorySource
from gateway.api.client import secure_channel
from gateway.api.status import error_info
from gateway.policy.tools import build_opa_bundle
from gateway.testing import RunningNode, get_request, running_node
from tests.integration.conftest import BUNDLE
from tests.support.real_opa import BundleService, OpaServer

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def opa_config(service_url: str) -> dict[str, Any]:
    return {
        "services": {"bundles": {"url": service_url}},
        "bundles": {
            "concordat": {
                "service": "bundles",
                "resource": "bundle.tar.gz",
                "polling": {"min_delay_seconds": 1, "max_delay_seconds": 1},
            }
        },
    }


async def health(node: RunningNode, service: str = "") -> int:
    async with secure_channel(node.node.address, node.config.tls.ca_cert) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
    return int(reply.status)


async def until_health(node: RunningNode, status: int, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while await health(node) != status:
        assert time.monotonic() < deadline, f"health never became {status}"
        await asyncio.sleep(0.05)
    assert await health(node, "concordat.exchange.v1.ExchangeService") == status


async def ask(node: RunningNode, nino: str) -> Any:
    """One GetRecord: the response, or the error's code, rule and cited agreement."""
    client = node.client(organisation="dwp")
    try:
        return await client.get_record(
            get_request(
                "PERSON", nino=nino, purpose="FRAUD", agreement_id="TEST-FRAUD-1", fields=["nino"]
            )
        )
    except grpc.aio.AioRpcError as error:
        info = error_info(error)
        return (error.code(), info["rule"], info["agreement_id"])
    finally:
        await client.close()


async def test_health_follows_opa_bundle_activation_and_decisions_fail_closed_meanwhile(
    tmp_path: Path, source: MemorySource, people: list[dict[str, object]]
) -> None:
    built = build_opa_bundle([BUNDLE], tmp_path / "bundle.tar.gz")
    nino = str(people[0]["nino"])
    with (
        BundleService(tmp_path / "served") as service,
        OpaServer(
            [], config=opa_config(service.url), workdir=tmp_path, wait_for_bundles=False
        ) as opa,
    ):
        async with running_node(
            tmp_path / "node",
            sources={t: source for t in source.record_types},
            policy={
                "bundle": [str(BUNDLE)],
                "engine": "opa",
                "opa_url": opa.url,
                "opa_health_interval_seconds": 0.1,
            },
        ) as node:
            # OPA is up but has no bundle: the node does not serve, and OPA, asked anyway,
            # has no decision to give.
            assert opa.health(bundles=True) == 500
            await until_health(node, NOT_SERVING)
            assert await ask(node, nino) == (
                grpc.StatusCode.PERMISSION_DENIED,
                "concordat.decision_undefined",
                "TEST-FRAUD-1",
            )

            service.publish(built.path, "bundle.tar.gz")
            await until_health(node, SERVING)
            assert list((await ask(node, nino)).released_fields) == ["nino"]

            opa.stop()
            await until_health(node, NOT_SERVING)
            assert await ask(node, nino) == (
                grpc.StatusCode.PERMISSION_DENIED,
                "concordat.engine_unavailable",
                "TEST-FRAUD-1",
            )

            opa.start()
            await until_health(node, SERVING)
            assert list((await ask(node, nino)).released_fields) == ["nino"]
