"""The four-node federation, each node its own process, on loopback with real mTLS.

Each node runs `concordat node` through tests/support/pinned_node.py, deciding as on
TEST_TODAY, so the registered agreements stay in date however long these tests live.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway.api.client import ExchangeClient, secure_channel
from gateway.config import ADMINISTRATIONS, parse_config
from gateway.dev.state import (
    LOCAL_CONFIG_DIR,
    REPO_ROOT,
    LocalNodeState,
    audience,
    prepare_federation,
)
from gateway.testing import TEST_TODAY, node_config_dict


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_serving(address: str, ca_cert: Path, timeout: float = 30) -> None:
    credentials = grpc.ssl_channel_credentials(root_certificates=ca_cert.read_bytes())
    deadline = time.monotonic() + timeout
    with grpc.secure_channel(address, credentials) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            try:
                if stub.Check(health_pb2.HealthCheckRequest(), timeout=0.5).status == 1:
                    return
            except grpc.RpcError:
                time.sleep(0.1)
    raise TimeoutError(f"node at {address} did not become ready")


@dataclass
class Federation:
    state_dir: Path
    states: dict[str, LocalNodeState]
    configs: dict[str, dict[str, Any]]
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def config_path(self, node: str) -> Path:
        return self.state_dir / f"{node}.json"

    def address(self, node: str) -> str:
        return str(self.configs[node]["node"]["listen"])

    def federation_address(self, node: str) -> str:
        return str(self.configs[node]["federation"]["listen"])

    def audit_path(self, node: str) -> Path:
        return Path(self.configs[node]["audit"]["path"])

    def start(self, node: str, *, today: date = TEST_TODAY) -> None:
        """Starts the node's process: `concordat node`, deciding as on `today`."""
        self.start_many([node], today=today)

    def start_many(self, nodes: Sequence[str], *, today: date = TEST_TODAY) -> None:
        """Starts the nodes' processes together, then waits until each serves."""
        for node in nodes:
            self._spawn(node, today)
        for node in nodes:
            _wait_serving(self.address(node), self.states[node].material.ca_cert)

    def _spawn(self, node: str, today: date) -> None:
        log = (self.state_dir / f"{node}.log").open("ab")
        self.processes[node] = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.support.pinned_node",
                "--today",
                today.isoformat(),
                "--config",
                str(self.config_path(node)),
            ],
            stdout=log,
            stderr=log,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            cwd=REPO_ROOT,
        )

    def restart(self, node: str, *, today: date = TEST_TODAY) -> None:
        """Stops the node gracefully and starts it again, deciding as on `today`."""
        process = self.processes.pop(node)
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)
        self.start(node, today=today)

    def kill(self, node: str) -> None:
        process = self.processes.pop(node)
        process.kill()
        process.wait(timeout=10)

    def stop_all(self) -> None:
        for process in self.processes.values():
            process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        self.processes.clear()

    def client(
        self,
        node: str,
        organisation: str,
        *,
        system: str = "e2e",
        accreditations: Sequence[str] = (),
    ) -> ExchangeClient:
        issuer = self.states[node].issuer
        return ExchangeClient(
            secure_channel(self.address(node), self.states[node].material.ca_cert),
            lambda: issuer.mint(
                audience=audience(node),
                organisation=organisation,
                system=system,
                accreditations=accreditations,
            ),
        )


def build_federation(state_dir: Path) -> Federation:
    from gateway.dev.state import prepare_node

    states = {node: prepare_node(state_dir, node) for node in ADMINISTRATIONS}
    configs: dict[str, dict[str, Any]] = {}
    for node, state in states.items():
        local = tomllib.loads((LOCAL_CONFIG_DIR / f"{node}.toml").read_text())
        config = node_config_dict(state, state_dir)
        config["node"]["listen"] = f"127.0.0.1:{free_port()}"
        config["federation"] = {
            "listen": f"127.0.0.1:{free_port()}",
            "directory": str(state_dir / "directory.json"),
            "directory_key": str(state_dir / node / "directory_key.pem"),
            "trust_anchors": {
                n: str(state_dir / n / "directory_public.pem") for n in ADMINISTRATIONS
            },
            "serves": local["federation"]["serves"],
            "breaker_reset_seconds": 1.0,
        }
        configs[node] = config
    federation = Federation(state_dir=state_dir, states=states, configs=configs)
    for node, config in configs.items():
        federation.config_path(node).write_text(json.dumps(config))
    prepare_federation(
        state_dir, config_for=lambda n: parse_config(configs[n], base=state_dir), seed_demo=False
    )
    return federation


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    running = build_federation(tmp_path_factory.mktemp("federation"))
    try:
        running.start_many(ADMINISTRATIONS)
        yield running
    finally:
        running.stop_all()
