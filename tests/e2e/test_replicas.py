"""A node as N replicas on shared PostgreSQL state: real `concordat node` processes on loopback.

Each test gets a database of its own. Replicas either listen on ports of their own (as pods
behind a Kubernetes Service do) or share one port through SO_REUSEPORT (as processes on one
machine do; grpc sets the option on every listening socket it opens on Linux).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from typer.testing import CliRunner

from concordat.exchange.v1 import exchange_pb2
from gateway.api.client import ExchangeClient, secure_channel
from gateway.audit.postgres_log import export_to_sqlite
from gateway.audit.reader import read_events
from gateway.audit.verify import verify_log
from gateway.cli import app
from gateway.dev.demo import demo_subjects
from gateway.dev.state import REPO_ROOT, LocalNodeState, audience, prepare_node
from gateway.keys import load_signing_key
from gateway.testing import TEST_TODAY, get_request, node_config_dict
from tests.e2e.conftest import _wait_serving, free_port
from tests.support.postgres import fresh_database

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

AGREEMENT = "cr-dwp-gro-deaths-2026"
FIELDS = ["registration_id", "given_name", "family_name", "date_of_death"]
# Retries a call refused before it started (a connection to a replica that has just gone):
# what a departmental client's channel is configured with (docs/departmental-developers.md).
RETRY_UNAVAILABLE = json.dumps(
    {
        "methodConfig": [
            {
                "name": [{"service": "concordat.exchange.v1.ExchangeService"}],
                "retryPolicy": {
                    "maxAttempts": 5,
                    "initialBackoff": "0.05s",
                    "maxBackoff": "0.5s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ]
    }
)


@dataclass
class Replicas:
    """Replicas of whitehall sharing one PostgreSQL database."""

    state_dir: Path
    state: LocalNodeState
    database: str
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    addresses: dict[str, str] = field(default_factory=dict)

    def start(self, name: str, port: int, **node: Any) -> None:
        config = node_config_dict(
            self.state,
            self.state_dir,
            node={
                "name": "whitehall",
                "listen": f"127.0.0.1:{port}",
                # Long enough for a call in flight to finish on a loaded host; a quiet stop
                # takes far less.
                "shutdown_grace_seconds": 20,
                "share_port": True,
                **node,
            },
        )
        config["state"] = {"url": self.database}
        del config["audit"]["path"]
        path = self.config(name)
        path.write_text(json.dumps(config))
        log_path = self.state_dir / f"{name}.log"
        log = log_path.open("ab")
        logged_before = log.tell()
        self.processes[name] = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.support.pinned_node",
                "--today",
                TEST_TODAY.isoformat(),
                "--config",
                str(path),
            ],
            stdout=log,
            stderr=log,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            cwd=REPO_ROOT,
        )
        self.addresses[name] = f"127.0.0.1:{port}"
        # Another replica on the same port would answer a health check for this one: wait
        # for this process to say it has started, then for the port to serve.
        deadline = time.monotonic() + 30
        while b"node_started" not in log_path.read_bytes()[logged_before:]:
            if self.processes[name].poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"replica {name} did not start; see {log_path}")
            time.sleep(0.05)
        _wait_serving(self.addresses[name], self.state.material.ca_cert)

    def entries_written(self, name: str) -> int:
        """Audit entries this replica has committed, as its log lines say."""
        lines = (self.state_dir / f"{name}.log").read_text().splitlines()
        return sum('"event":"audit"' in line.replace(" ", "") for line in lines)

    def config(self, name: str) -> Path:
        return self.state_dir / f"{name}.json"

    def stop(self, name: str) -> int:
        """SIGTERM, as Kubernetes stops a pod; returns the exit code."""
        process = self.processes.pop(name)
        process.send_signal(signal.SIGTERM)
        return process.wait(timeout=30)

    def kill(self, name: str) -> None:
        process = self.processes.pop(name)
        process.kill()
        process.wait(timeout=10)

    def stop_all(self) -> None:
        for name in list(self.processes):
            try:
                self.stop(name)
            except subprocess.TimeoutExpired:
                self.kill(name)

    def client(self, name: str, token: str | None = None, *, retry: bool = False) -> ExchangeClient:
        issuer = self.state.issuer

        def mint() -> str:
            return issuer.mint(audience=audience("whitehall"), organisation="dwp", system="e2e")

        channel = secure_channel(self.addresses[name], self.state.material.ca_cert)
        if retry:
            credentials = grpc.ssl_channel_credentials(
                root_certificates=self.state.material.ca_cert.read_bytes()
            )
            channel = grpc.aio.secure_channel(
                self.addresses[name],
                credentials,
                options=[("grpc.service_config", RETRY_UNAVAILABLE), ("grpc.enable_retries", 1)],
            )
        return ExchangeClient(channel, (lambda: token) if token else mint)

    def request(self, index: int = 0, **extra: str) -> exchange_pb2.GetRecordRequest:
        subjects = demo_subjects(f"sqlite:///{self.state.demo_db}", "whitehall")
        kind, value = subjects["DEATH_REGISTRATION"][index % 3]
        return get_request(
            "DEATH_REGISTRATION",
            purpose="CIVIL_REGISTRATION",
            agreement_id=AGREEMENT,
            fields=FIELDS,
            **extra,
            **{kind: value},
        )

    def exported_log(self, name: str = "export") -> Path:
        path = self.state_dir / f"{name}.db"
        key = load_signing_key(self.state.material.signing_key)
        export_to_sqlite(self.database, path, public_key=key.public_key())
        return path


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[Replicas]:
    with fresh_database("concordat_replicas") as database:
        running = Replicas(tmp_path, prepare_node(tmp_path, "whitehall"), database)
        try:
            yield running
        finally:
            running.stop_all()


def _events(path: Path) -> list[dict[str, Any]]:
    return [dict(recorded.event) for recorded in read_events(path)]


async def test_a_token_used_at_one_replica_is_refused_at_the_other_and_after_a_restart(
    replicas: Replicas,
) -> None:
    replicas.start("a", free_port())
    replicas.start("b", free_port())
    token = replicas.state.issuer.mint(
        audience=audience("whitehall"), organisation="dwp", system="e2e"
    )

    first = replicas.client("a", token)
    response = await first.get_record(replicas.request())
    await first.close()
    assert response.records

    async def refused(name: str) -> grpc.StatusCode:
        client = replicas.client(name, token)
        try:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await client.get_record(replicas.request())
        finally:
            await client.close()
        assert "already been used" in (caught.value.details() or "")
        return caught.value.code()

    assert await refused("b") == grpc.StatusCode.UNAUTHENTICATED
    port = int(replicas.addresses["a"].rsplit(":", 1)[1])
    assert replicas.stop("a") == 0
    replicas.start("a", port)
    assert await refused("a") == grpc.StatusCode.UNAUTHENTICATED


async def test_one_idempotency_key_sent_to_two_replicas_is_answered_once(
    replicas: Replicas,
) -> None:
    replicas.start("a", free_port())
    replicas.start("b", free_port())
    clients = [replicas.client("a"), replicas.client("b")]
    request = replicas.request(idempotency_key="dwp-case-1234-attempt")

    answers = await asyncio.gather(*(client.get_record(request) for client in clients))
    for client in clients:
        await client.close()

    assert answers[0] == answers[1]
    outcomes = Counter(event["outcome"] for event in _events(replicas.exported_log()))
    assert outcomes == {"released": 1, "replayed": 1}


async def _load(
    replicas: Replicas, name: str, *, workers: int, calls: int, retry: bool
) -> tuple[list[str], list[grpc.StatusCode]]:
    """Callers on channels of their own; returns the exchange ids answered OK and the failures."""
    answered: list[str] = []
    failures: list[grpc.StatusCode] = []

    async def caller(worker: int) -> None:
        client = replicas.client(name, retry=retry)
        try:
            for call in range(calls):
                request = replicas.request(worker + call)
                try:
                    try:
                        response = await client.get_record(request)
                    except grpc.aio.AioRpcError as exc:
                        # A stopping gRPC server cancels the calls it has accepted but not yet
                        # handed to the node; the caller asks again, with a fresh token. Had
                        # the node handled such a call, its entry would be one too many below.
                        if not (retry and exc.code() == grpc.StatusCode.CANCELLED):
                            raise
                        response = await client.get_record(request)
                except grpc.aio.AioRpcError as exc:
                    failures.append(exc.code())
                else:
                    answered.append(response.exchange_id)
                await asyncio.sleep(0.01)
        finally:
            await client.close()

    await asyncio.gather(*(caller(worker) for worker in range(workers)))
    return answered, failures


async def _meanwhile(delay: float, action: Any) -> None:
    await asyncio.sleep(delay)
    await asyncio.to_thread(action)


async def test_sigkill_of_one_replica_under_load_loses_no_answered_exchange(
    replicas: Replicas,
) -> None:
    port = free_port()
    replicas.start("a", port)
    replicas.start("b", port)

    load = asyncio.create_task(_load(replicas, "a", workers=6, calls=40, retry=True))
    await _meanwhile(1.0, lambda: replicas.kill("a"))
    answered, _failures = await load
    log = replicas.exported_log()

    report = verify_log(log)
    assert report.ok, report.problems
    recorded = Counter(event["exchange_id"] for event in _events(log))
    assert set(answered) <= set(recorded)
    assert max(recorded.values()) == 1
    assert len(answered) > 100


async def test_a_rolling_restart_of_two_replicas_under_load_fails_no_request(
    replicas: Replicas,
) -> None:
    port = free_port()
    replicas.start("a", port)
    replicas.start("b", port)

    def roll() -> None:
        for name in ("a", "b"):
            assert replicas.stop(name) == 0
            replicas.start(name, port)
            time.sleep(0.5)

    load = asyncio.create_task(_load(replicas, "a", workers=6, calls=60, retry=True))
    await _meanwhile(0.5, roll)
    answered, failures = await load

    assert failures == []
    assert len(answered) == 360
    # The operator's commands read the log straight from PostgreSQL.
    verified = CliRunner().invoke(app, ["audit", "verify", "--config", str(replicas.config("a"))])
    assert verified.exit_code == 0, verified.output
    assert "ok: 360 entries, chain intact, sealed up to 360" in verified.output
    metered = CliRunner().invoke(
        app, ["audit", "meter", "--config", str(replicas.config("b")), "--json"]
    )
    assert metered.exit_code == 0, metered.output
    (row,) = [json.loads(line) for line in metered.stdout.splitlines() if line.startswith("{")]
    assert (row["exchanges"], row["released"]) == (360, 360)


async def test_one_callers_connection_is_spread_over_the_replicas_as_it_ages(
    replicas: Replicas,
) -> None:
    port = free_port()
    replicas.start("a", port, connection_max_age_seconds=0.5)
    replicas.start("b", port, connection_max_age_seconds=0.5)

    # One channel, as a peer node keeps: without a connection age it would stay on one replica.
    client = replicas.client("a", retry=True)
    for call in range(60):
        await client.get_record(replicas.request(call))
        await asyncio.sleep(0.05)
    await client.close()

    assert replicas.entries_written("a") > 0
    assert replicas.entries_written("b") > 0
    assert replicas.entries_written("a") + replicas.entries_written("b") == 60
