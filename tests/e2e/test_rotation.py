"""A node process takes up a new certificate on SIGHUP at once, and without a signal by polling.

The rotations themselves, under load and with peers, are proved on in-process nodes
(tests/integration/test_rotation.py); this proves the two triggers of `concordat node`.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway.dev.pki import issue_node_certificate
from gateway.dev.state import REPO_ROOT, LocalNodeState, prepare_node
from gateway.testing import TEST_TODAY, node_config_dict
from tests.e2e.conftest import _wait_serving, free_port
from tests.support.certificates import replace_file, served_certificate

pytestmark = pytest.mark.slow

CALLERS = 8


@dataclass
class NodeProcess:
    state: LocalNodeState
    port: int
    process: subprocess.Popen[bytes]
    log: Path


@pytest.fixture
def node_process(tmp_path: Path) -> Iterator[NodeProcess]:
    state = prepare_node(tmp_path, "whitehall", seed_demo=True)
    port = free_port()
    config = node_config_dict(state, tmp_path)
    config["node"]["listen"] = f"127.0.0.1:{port}"
    config_path = tmp_path / "whitehall.json"
    config_path.write_text(json.dumps(config))
    log_path = tmp_path / "whitehall.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.support.pinned_node",
                "--today",
                TEST_TODAY.isoformat(),
                "--config",
                str(config_path),
            ],
            stdout=log,
            stderr=log,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            cwd=REPO_ROOT,
        )
    try:
        _wait_serving(f"127.0.0.1:{port}", state.material.ca_cert)
        yield NodeProcess(state, port, process, log_path)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def _next_certificate(state: LocalNodeState, folder: Path) -> x509.Certificate:
    """Issues a certificate with a new key and puts both in the node's TLS files."""
    material = state.material
    cert, key = issue_node_certificate(material.ca_cert, material.ca_key, "whitehall", folder)
    replace_file(material.tls_key, key.read_bytes())
    replace_file(material.tls_cert, cert.read_bytes())
    return x509.load_pem_x509_certificate(cert.read_bytes())


async def _serves(port: int, certificate: x509.Certificate) -> None:
    while served_certificate(port) != certificate:
        await asyncio.sleep(0.05)


async def _check_health(port: int, ca_cert: Path, stop: asyncio.Event) -> list[grpc.RpcError]:
    """Health checks, each on a new connection (a new handshake), until `stop`."""
    failures: list[grpc.RpcError] = []
    credentials = grpc.ssl_channel_credentials(root_certificates=ca_cert.read_bytes())
    while not stop.is_set():
        async with grpc.aio.secure_channel(f"127.0.0.1:{port}", credentials) as channel:
            try:
                await health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(), timeout=5
                )
            except grpc.RpcError as exc:
                failures.append(exc)
    return failures


async def test_sighup_re_reads_the_files_at_once_and_polling_picks_up_the_next_change(
    node_process: NodeProcess, tmp_path: Path
) -> None:
    state, port = node_process.state, node_process.port
    stop = asyncio.Event()
    callers = [
        asyncio.create_task(_check_health(port, state.material.ca_cert, stop))
        for _ in range(CALLERS)
    ]

    signalled = _next_certificate(state, tmp_path / "signalled")
    node_process.process.send_signal(signal.SIGHUP)
    await asyncio.wait_for(_serves(port, signalled), timeout=30)
    # SIGHUP's default would have ended the process: the node handled it, and said so.
    await asyncio.wait_for(_logged(node_process.log, "rotation_reloaded"), timeout=30)

    polled = _next_certificate(state, tmp_path / "polled")
    await asyncio.wait_for(_serves(port, polled), timeout=30)

    stop.set()
    failures = [failure for found in await asyncio.gather(*callers) for failure in found]
    assert failures == []
    assert node_process.process.poll() is None


async def _logged(log: Path, event: str) -> None:
    while event not in log.read_text():
        await asyncio.sleep(0.05)
