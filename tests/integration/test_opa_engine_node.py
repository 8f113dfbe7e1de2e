"""A node configured with `engine = "opa"` decides through the real OPA.

OPA is the pinned release (tests/support/real_opa.py) running `opa run --server` on the
tarball `concordat policy build` writes from the node's own bundle folders, as an operator
runs the sidecar (docs/opa-sidecar.md).
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
from structlog.testing import capture_logs

from adapters.memory import MemorySource
from gateway.api.client import ExchangeClient, secure_channel
from gateway.api.status import error_info
from gateway.config import parse_config
from gateway.dev.state import audience, prepare_node
from gateway.node import serve
from gateway.policy.tools import build_opa_bundle
from gateway.testing import TEST_CLOCK, get_request, node_config_dict, running_node
from tests.integration.conftest import BUNDLE
from tests.support.real_opa import OpaServer, free_port


@pytest.fixture(scope="module")
def opa(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpaServer]:
    workdir = tmp_path_factory.mktemp("opa")
    built = build_opa_bundle([BUNDLE], workdir / "bundle.tar.gz")
    with OpaServer([built.path]) as server:
        yield server


def on_opa(opa: OpaServer) -> dict[str, Any]:
    return {"bundle": [str(BUNDLE)], "engine": "opa", "opa_url": opa.url}


ASKS = {
    "released, fields narrowed by the agreement": ("TEST-FRAUD-1", ["nino", "postcode"]),
    "denied by the provider's rule for a suspended agreement": ("TEST-SUSPENDED", ["nino"]),
    "denied by a default decision that names no agreement": ("TEST-NO-SUCH", ["nino"]),
}


async def answers(node: Any, nino: str) -> dict[str, tuple[Any, ...]]:
    """What a caller is told for each of ASKS, less the ids that differ on every call."""
    client = node.client(organisation="dwp")
    told: dict[str, tuple[Any, ...]] = {}
    try:
        for name, (agreement, fields) in ASKS.items():
            request = get_request(
                "PERSON", nino=nino, purpose="FRAUD", agreement_id=agreement, fields=fields
            )
            try:
                response = await client.get_record(request)
            except grpc.aio.AioRpcError as error:
                info = error_info(error)
                told[name] = (error.code(), info["rule"], info["node"], info["agreement_id"])
            else:
                told[name] = (
                    tuple(response.released_fields),
                    tuple((o.code, dict(o.parameters)) for o in response.obligations),
                    tuple(r.SerializeToString(deterministic=True) for r in response.records),
                )
    finally:
        await client.close()
    return told


async def test_a_node_on_the_real_opa_gives_the_answers_of_the_embedded_engine(
    tmp_path: Path, source: MemorySource, people: list[dict[str, object]], opa: OpaServer
) -> None:
    nino = str(people[0]["nino"])
    sources = {t: source for t in source.record_types}
    async with running_node(tmp_path / "opa", sources=sources, policy=on_opa(opa)) as node:
        on_opa_answers = await answers(node, nino)
    async with running_node(
        tmp_path / "embedded", sources=sources, policy={"bundle": [str(BUNDLE)]}
    ) as node:
        embedded_answers = await answers(node, nino)
    assert on_opa_answers == embedded_answers
    released = on_opa_answers["released, fields narrowed by the agreement"]
    assert released[0] == ("nino",)
    assert on_opa_answers["denied by the provider's rule for a suspended agreement"] == (
        grpc.StatusCode.PERMISSION_DENIED,
        "test.ingress.agreement_suspended",
        "whitehall",
        "TEST-SUSPENDED",
    )
    # The policy's default denial leaves agreement_id empty; the caller is still told which
    # agreement its request cited.
    assert on_opa_answers["denied by a default decision that names no agreement"] == (
        grpc.StatusCode.PERMISSION_DENIED,
        "test.egress.no_such_agreement",
        "whitehall",
        "TEST-NO-SUCH",
    )


async def test_the_node_s_decisions_are_opa_s_own_and_audited_with_its_bundle_revision(
    tmp_path: Path, source: MemorySource, people: list[dict[str, object]], opa: OpaServer
) -> None:
    sources = {t: source for t in source.record_types}
    async with running_node(tmp_path, sources=sources, policy=on_opa(opa)) as node:
        await answers(node, str(people[0]["nino"]))
        entries = node.audit_entries()
    revision = build_opa_bundle([BUNDLE], tmp_path / "again.tar.gz").revision
    assert [e["policy_revision"] for e in entries] == [revision] * len(ASKS)
    allowed = entries[0]
    assert allowed["egress"]["rule"] == "test.egress.allow"
    assert allowed["ingress"]["rule"] == "test.ingress.allow"


async def test_an_unreachable_opa_server_fails_closed_naming_the_cited_agreement(
    tmp_path: Path, source: MemorySource, people: list[dict[str, object]]
) -> None:
    async with running_node(
        tmp_path,
        sources={t: source for t in source.record_types},
        policy={
            "bundle": [str(BUNDLE)],
            "engine": "opa",
            "opa_url": f"http://127.0.0.1:{free_port()}",
        },
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
    info = error_info(caught.value)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert (info["rule"], info["agreement_id"]) == ("concordat.engine_unavailable", "TEST-FRAUD-1")


async def test_a_node_on_opa_stopped_like_ctrl_c_closes_its_opa_session(
    tmp_path: Path, opa: OpaServer
) -> None:
    # `concordat node` cancels serve() on SIGINT/SIGTERM. That used to cut node.stop() short
    # (grpc's cancelled wait took its shutdown with it): the engine's HTTP session to OPA was
    # never closed, and aiohttp printed "Unclosed client session" at exit.
    state = prepare_node(tmp_path, "whitehall")
    address = f"127.0.0.1:{free_port()}"
    config = parse_config(
        node_config_dict(state, tmp_path, node={"listen": address}, policy=on_opa(opa)),
        base=tmp_path,
    )
    earlier = {id(session) for session in open_sessions()}
    ready = asyncio.Event()
    with capture_logs() as logs:
        running = asyncio.create_task(serve(config, ready=ready, clock=TEST_CLOCK))
        await asyncio.wait_for(ready.wait(), 30)
        client = ExchangeClient(
            secure_channel(address, state.material.ca_cert),
            lambda: state.issuer.mint(
                audience=audience("whitehall"), organisation="dwp", system="test", accreditations=()
            ),
        )
        with pytest.raises(grpc.aio.AioRpcError) as denied:
            await client.get_record(
                get_request(
                    "PERSON", nino="AB123456C", purpose="FRAUD", agreement_id="X", fields=["nino"]
                )
            )
        await client.close()
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
    # The decision came from OPA, so the engine had opened its session.
    assert error_info(denied.value)["rule"] == "test.egress.no_such_agreement"
    assert [s for s in open_sessions() if id(s) not in earlier] == []
    assert [e["event"] for e in logs if e["event"].startswith("node_")] == [
        "node_started",
        "node_stopped",
    ]


def open_sessions() -> list[aiohttp.ClientSession]:
    gc.collect()
    return [o for o in gc.get_objects() if isinstance(o, aiohttp.ClientSession) and not o.closed]
