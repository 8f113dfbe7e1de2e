"""A node whose PostgreSQL state store goes away and comes back, under load: it fails closed
with UNAVAILABLE, says NOT_SERVING meanwhile, and serves again without a restart."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sized
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from psycopg import sql as pgsql

from gateway.api.client import secure_channel
from gateway.audit.postgres_log import export_to_sqlite
from gateway.audit.reader import read_events
from gateway.audit.verify import verify_log
from gateway.dev.demo import demo_subjects
from gateway.keys import load_signing_key
from gateway.testing import RunningNode, get_request, running_node
from tests.support.postgres import fresh_database, server_connection

pytestmark = pytest.mark.postgres

FIELDS = ["registration_id", "given_name", "family_name", "date_of_death"]


def _database_name(url: str) -> str:
    return url.rsplit("/", 1)[1]


def take_database_away(url: str) -> None:
    """The server refuses the node's database and drops the sessions it had: an outage."""
    name = pgsql.Identifier(_database_name(url))
    with server_connection() as server:
        server.execute(pgsql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(name))
        server.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
            (_database_name(url),),
        )


def give_database_back(url: str) -> None:
    name = pgsql.Identifier(_database_name(url))
    with server_connection() as server:
        server.execute(pgsql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS true").format(name))


async def _health(node: RunningNode) -> int:
    channel = secure_channel(node.node.address, node.config.tls.ca_cert)
    try:
        reply = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="concordat.exchange.v1.ExchangeService"),
            timeout=2,
        )
    finally:
        await channel.close()
    return int(reply.status)


async def _until(check: Callable[[], Awaitable[bool]], timeout: float = 20) -> None:
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.1)


async def test_an_unreachable_state_store_fails_calls_closed_and_health_follows_it_back(
    tmp_path: Path,
) -> None:
    with fresh_database() as url:
        async with running_node(
            tmp_path,
            "whitehall",
            state={"url": url, "probe_interval_seconds": 0.2, "statement_timeout_seconds": 1},
        ) as node:
            subjects = demo_subjects(f"sqlite:///{node.state.demo_db}", "whitehall")
            kind, value = subjects["DEATH_REGISTRATION"][0]
            request = get_request(
                "DEATH_REGISTRATION",
                purpose="CIVIL_REGISTRATION",
                agreement_id="cr-dwp-gro-deaths-2026",
                fields=FIELDS,
                **{kind: value},
            )
            answered: list[str] = []
            # A refused call carries no records: whatever is refused has released nothing.
            refused: list[grpc.StatusCode] = []
            stop = asyncio.Event()

            async def caller() -> None:
                client = node.client(organisation="dwp")
                try:
                    while not stop.is_set():
                        try:
                            response = await client.get_record(request, timeout=5)
                        except grpc.aio.AioRpcError as exc:
                            refused.append(exc.code())
                        else:
                            answered.append(response.exchange_id)
                        await asyncio.sleep(0.02)
                finally:
                    await client.close()

            load = [asyncio.create_task(caller()) for _ in range(4)]
            await asyncio.sleep(0.5)
            assert await _health(node) == health_pb2.HealthCheckResponse.SERVING
            await asyncio.to_thread(take_database_away, url)
            try:
                await _until(lambda: _is(node, health_pb2.HealthCheckResponse.NOT_SERVING))
                # Calls go on being refused while it is down (each may wait out the pool's
                # timeout first, so the next refusal can take a while on a loaded host).
                during = len(refused)
                await _until(lambda: _more(refused, during))
            finally:
                await asyncio.to_thread(give_database_back, url)
            await _until(lambda: _is(node, health_pb2.HealthCheckResponse.SERVING))
            answered_before = len(answered)
            await _until(lambda: _more(answered, answered_before))
            stop.set()
            await asyncio.gather(*load)

        assert refused and set(refused) == {grpc.StatusCode.UNAVAILABLE}
        exported = tmp_path / "exported.db"
        export_to_sqlite(
            url, exported, public_key=load_signing_key(node.config.keys.signing_key).public_key()
        )
        assert verify_log(exported).ok
        recorded = {recorded.event["exchange_id"] for recorded in read_events(exported)}
        assert set(answered) <= recorded


async def _is(node: RunningNode, status: int) -> bool:
    with contextlib.suppress(grpc.aio.AioRpcError):
        return await _health(node) == status
    return False


async def _more(seen: Sized, before: int) -> bool:
    return len(seen) > before
