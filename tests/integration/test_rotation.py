"""Rotation under load: certificates, CA bundles, peer endpoints and signing keys change under
two running nodes (whitehall asking holyrood, real gRPC and mutual TLS on loopback) while eight
callers keep asking, and not one call fails.

Each test drives the rotation watcher's pass directly (`node.rotation.check()`), the same pass
its poll and SIGHUP run (tests/e2e/test_rotation.py sends the signal to a node process).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import tomllib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from grpc_health.v1 import health_pb2, health_pb2_grpc
from structlog.testing import capture_logs
from typer.testing import CliRunner

from gateway.api.client import ExchangeClient
from gateway.audit.verify import verify_log
from gateway.cli import app
from gateway.config import NodeConfig, parse_config
from gateway.dev.demo import demo_subjects
from gateway.dev.pki import ensure_node_material, issue_node_certificate
from gateway.dev.state import LOCAL_CONFIG_DIR, LocalNodeState, audience, prepare_node
from gateway.federation.directory import public_key_kid, write_directory
from gateway.federation.enrolment import signed_directory_entry
from gateway.federation.envelope import open_envelope
from gateway.federation.peers import peer_server_name
from gateway.node import Node, build_node
from gateway.testing import TEST_CLOCK, get_request, node_config_dict, read_audit
from tests.support.certificates import certificate_of, replace_file, served_certificate

NODES = ("whitehall", "holyrood")
CALLERS = 8
# Calls answered before a rotation, and after it, in each test: a few hundred in all.
BEFORE, AFTER = 80, 220


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class TwoNodes:
    """whitehall and holyrood, each built from its own config, sharing one signed directory."""

    state_dir: Path
    states: dict[str, LocalNodeState]
    configs: dict[str, dict[str, Any]]
    nodes: dict[str, Node] = field(default_factory=dict)
    serials: dict[str, int] = field(default_factory=lambda: dict.fromkeys(NODES, 1))

    @property
    def directory_path(self) -> Path:
        return self.state_dir / "directory.json"

    def config(self, node: str) -> NodeConfig:
        return parse_config(self.configs[node], base=self.state_dir)

    async def start(self, name: str, config: dict[str, Any] | None = None) -> Node:
        node = await build_node(
            parse_config(config or self.configs[name], base=self.state_dir), clock=TEST_CLOCK
        )
        await node.start()
        return node

    def publish(self, **entries: dict[str, Any]) -> None:
        """Re-signs and writes the directory; `entries` replaces a node's config for its entry."""
        signed = []
        for node in NODES:
            self.serials[node] += 1
            config = entries.get(node, self.configs[node])
            signed.append(
                signed_directory_entry(
                    parse_config(config, base=self.state_dir), serial=self.serials[node]
                )
            )
        write_directory(self.directory_path, signed)

    async def check_all(self) -> None:
        for node in self.nodes.values():
            assert node.rotation is not None
            await node.rotation.check()

    def ca(self, node: str) -> Path:
        return self.states[node].material.ca_cert

    def tls(self, node: str) -> tuple[Path, Path]:
        material = self.states[node].material
        return material.tls_cert, material.tls_key


@asynccontextmanager
async def two_nodes(state_dir: Path) -> AsyncIterator[TwoNodes]:
    states = {node: prepare_node(state_dir, node) for node in NODES}
    configs: dict[str, dict[str, Any]] = {}
    for node, state in states.items():
        local = tomllib.loads((LOCAL_CONFIG_DIR / f"{node}.toml").read_text())
        config = node_config_dict(state, state_dir)
        config["node"]["listen"] = f"127.0.0.1:{free_port()}"
        config["federation"] = {
            "listen": f"127.0.0.1:{free_port()}",
            "directory": str(state_dir / "directory.json"),
            "directory_key": str(state_dir / node / "directory_key.pem"),
            "trust_anchors": {n: str(state_dir / n / "directory_public.pem") for n in NODES},
            "serves": local["federation"]["serves"],
            "breaker_reset_seconds": 1.0,
        }
        configs[node] = config
    pair = TwoNodes(state_dir=state_dir, states=states, configs=configs)
    pair.publish()
    try:
        for node in NODES:
            pair.nodes[node] = await pair.start(node)
        yield pair
    finally:
        for running in pair.nodes.values():
            await running.stop(grace=1.0)


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[TwoNodes]:
    async with two_nodes(tmp_path) as running:
        yield running


class Load:
    """CALLERS callers asking whitehall for a Scottish birth registration, over and over.

    Each caller opens a new channel every few calls, so handshakes keep happening across a
    rotation, not only calls on connections made before it.
    """

    def __init__(self, pair: TwoNodes, *, roots: bytes | None = None) -> None:
        self._pair = pair
        self._roots = roots or pair.ca("whitehall").read_bytes()
        examples = demo_subjects(f"sqlite:///{pair.states['holyrood'].demo_db}", "holyrood")
        self._registration = str(
            next(v for k, v in examples["BIRTH_REGISTRATION"] if k == "registration_id")
        )
        self.answered = 0
        self.failures: list[BaseException] = []
        self._stop = asyncio.Event()
        self._progress = asyncio.Condition()
        self._tasks: list[asyncio.Task[None]] = []

    def _client(self) -> ExchangeClient:
        issuer = self._pair.states["whitehall"].issuer
        channel = grpc.aio.secure_channel(
            self._pair.nodes["whitehall"].address,
            grpc.ssl_channel_credentials(root_certificates=self._roots),
        )
        return ExchangeClient(
            channel,
            lambda: issuer.mint(
                audience=audience("whitehall"), organisation="dwp", system="rotation-load"
            ),
        )

    async def _caller(self) -> None:
        request = get_request(
            "BIRTH_REGISTRATION",
            registration_id=self._registration,
            purpose="CIVIL_REGISTRATION",
            agreement_id="cr-dwp-nrs-births-2026",
            fields=["registration_id", "family_name"],
        )
        request.provider_node = "holyrood"
        while not self._stop.is_set():
            client = self._client()
            try:
                for _ in range(5):
                    try:
                        response = await client.get_record(request, timeout=20)
                        assert response.records[0].birth_registration.registration_id
                    except Exception as exc:  # noqa: BLE001 - every failure is the finding
                        self.failures.append(exc)
                    async with self._progress:
                        self.answered += 1
                        self._progress.notify_all()
            finally:
                await client.close()

    async def reach(self, calls: int) -> None:
        """Waits until `calls` more calls have been answered (or failed)."""
        async with self._progress:
            target = self.answered + calls
            await self._progress.wait_for(lambda: self.answered >= target or bool(self.failures))

    async def __aenter__(self) -> Load:
        self._tasks = [asyncio.create_task(self._caller()) for _ in range(CALLERS)]
        await self.reach(CALLERS)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)


def _messages(failures: list[BaseException]) -> list[str]:
    return [repr(failure)[:300] for failure in failures]


async def test_new_certificate_and_key_are_served_on_both_ports_with_no_failed_call(
    pair: TwoNodes, tmp_path: Path
) -> None:
    holyrood = pair.nodes["holyrood"]
    whitehall = pair.nodes["whitehall"]
    assert holyrood.federation_port is not None
    before = served_certificate(whitehall.port)
    peer_before = whitehall.peers.get("holyrood") if whitehall.peers else None
    async with Load(pair) as load:
        await load.reach(BEFORE)
        for node in NODES:
            material = pair.states[node].material
            # A new key, and a new certificate for it from the node's own CA.
            cert, key = issue_node_certificate(
                material.ca_cert, material.ca_key, node, tmp_path / f"{node}-next"
            )
            replace_file(material.tls_key, key.read_bytes())
            replace_file(material.tls_cert, cert.read_bytes())
        with capture_logs() as logs:
            await pair.check_all()
        await load.reach(AFTER)

    assert _messages(load.failures) == []
    assert load.answered >= BEFORE + AFTER
    assert [e["event"] for e in logs].count("tls_rotated") == 2
    after = served_certificate(whitehall.port)
    assert after.serial_number != before.serial_number
    assert after == certificate_of(pair.tls("whitehall")[0])
    federation_served = served_certificate(holyrood.federation_port, client=pair.tls("whitehall"))
    assert federation_served == certificate_of(pair.tls("holyrood")[0])
    # whitehall now presents its new certificate to holyrood, on a channel of its own.
    assert whitehall.peers is not None
    assert whitehall.peers.get("holyrood") is not peer_before


async def test_a_peer_with_a_certificate_from_its_new_ca_is_accepted_once_the_directory_lists_it(
    pair: TwoNodes, tmp_path: Path
) -> None:
    holyrood, whitehall = pair.nodes["holyrood"], pair.nodes["whitehall"]
    assert holyrood.federation_port is not None
    # whitehall's next CA, and a certificate (with a key of its own) issued by it.
    following = ensure_node_material(tmp_path / "next-ca", "whitehall")
    new_client = (following.tls_cert, following.tls_key)
    bundle = pair.ca("whitehall").read_bytes() + following.ca_cert.read_bytes()
    assert not await _admitted_by_holyrood(pair, new_client)

    async with Load(pair, roots=bundle) as load:
        await load.reach(BEFORE)
        # Publish both CAs in whitehall's entry: holyrood's federation port trusts the new one.
        replace_file(pair.ca("whitehall"), bundle)
        pair.publish()
        with capture_logs() as logs:
            await pair.check_all()
        assert await _admitted_by_holyrood(pair, new_client)
        # Then whitehall switches to the new CA's certificate; its relays keep being accepted.
        assert whitehall.peers is not None
        channel_before = whitehall.peers.get("holyrood")
        material = pair.states["whitehall"].material
        replace_file(material.tls_key, following.tls_key.read_bytes())
        replace_file(material.tls_cert, following.tls_cert.read_bytes())
        await pair.check_all()
        await load.reach(AFTER)

    assert _messages(load.failures) == []
    assert "federation_roots_rotated" in [e["event"] for e in logs]
    # The calls after the switch went out on a channel presenting the new certificate.
    assert whitehall.peers.get("holyrood") is not channel_before


async def _admitted_by_holyrood(pair: TwoNodes, client: tuple[Path, Path]) -> bool:
    """Whether a peer presenting `client` gets through holyrood's federation port."""
    port = pair.nodes["holyrood"].federation_port
    server_ca = pair.ca("holyrood")
    cert, key = client
    credentials = grpc.ssl_channel_credentials(
        root_certificates=server_ca.read_bytes(),
        private_key=key.read_bytes(),
        certificate_chain=cert.read_bytes(),
    )
    channel = grpc.aio.secure_channel(
        f"127.0.0.1:{port}",
        credentials,
        options=(("grpc.ssl_target_name_override", peer_server_name("holyrood")),),
    )
    try:
        await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    except grpc.aio.AioRpcError as exc:
        assert exc.code() == grpc.StatusCode.UNAVAILABLE
        return False
    finally:
        await channel.close()
    return True


async def test_calls_follow_a_peer_to_its_new_endpoint_and_none_fails_as_the_old_one_stops(
    pair: TwoNodes, tmp_path: Path
) -> None:
    # holyrood starts again at a new federation address (its own audit file there), and its
    # re-signed entry says so; the old process stops only after whitehall has moved.
    moved = json.loads(json.dumps(pair.configs["holyrood"]))
    moved["node"]["listen"] = f"127.0.0.1:{free_port()}"
    moved["federation"]["listen"] = f"127.0.0.1:{free_port()}"
    moved["audit"]["path"] = str(tmp_path / "holyrood-moved-audit.db")
    new_holyrood = await pair.start("holyrood", moved)
    try:
        async with Load(pair) as load:
            await load.reach(BEFORE)
            pair.publish(holyrood=moved)
            with capture_logs() as logs:
                await pair.check_all()
                await load.reach(40)
            old_holyrood = pair.nodes.pop("holyrood")
            await old_holyrood.stop(grace=5.0)
            await load.reach(AFTER)
    finally:
        await new_holyrood.stop(grace=1.0)

    assert _messages(load.failures) == []
    assert "peer_channel_replaced" in [e["event"] for e in logs]
    served_there = read_audit(Path(moved["audit"]["path"]))
    assert len(served_there) >= 80


async def test_a_new_signing_key_signs_once_published_and_both_keys_verify(
    pair: TwoNodes, tmp_path: Path
) -> None:
    holyrood = pair.nodes["holyrood"]
    material = pair.states["holyrood"].material
    old_kid = public_key_kid("holyrood", _public(material.signing_key))
    new_key = Ed25519PrivateKey.generate()
    new_kid = public_key_kid("holyrood", new_key.public_key())
    old_public = tmp_path / "holyrood-old-signing.pem"
    shutil.copy(material.signing_public, old_public)
    new_public = tmp_path / "holyrood-new-signing.pem"
    new_public.write_bytes(
        new_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    async with Load(pair) as load:
        await load.reach(BEFORE)
        # The key file is replaced before the directory publishes the key: not used yet.
        replace_file(
            material.signing_key,
            new_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        )
        with capture_logs() as waiting:
            await pair.check_all()
        await load.reach(40)
        assert _receipt_kids(pair)[-1] == old_kid
        # Published beside the old one (as the entry tool does with publish_signing_keys).
        holyrood_config = pair.configs["holyrood"]
        holyrood_config["federation"]["publish_signing_keys"] = [str(old_public)]
        pair.publish()
        with capture_logs() as rotated:
            await pair.check_all()
        await load.reach(AFTER)

    assert _messages(load.failures) == []
    assert [e["event"] for e in waiting if e["event"].startswith("signing_key")] == [
        "signing_key_rotation_waiting"
    ]
    assert {"event": "signing_key_rotated", "kid": new_kid, "previous_kid": old_kid} in [
        {k: e[k] for k in ("event", "kid", "previous_kid") if k in e} for e in rotated
    ]
    kids = _receipt_kids(pair)
    assert kids[0] == old_kid and kids[-1] == new_kid
    # holyrood's seals: some under each key; the log verifies with both and not with one.
    audit_path = holyrood.config.audit.path
    await holyrood.stop(grace=1.0)
    pair.nodes.pop("holyrood")
    assert verify_log(audit_path, [_public(old_public), new_key.public_key()]).ok
    assert not verify_log(audit_path, new_key.public_key()).ok
    # `audit verify --config` trusts the node's key and the keys its entry publishes beside it.
    config_file = tmp_path / "holyrood.json"
    config_file.write_text(json.dumps(holyrood_config))
    result = CliRunner().invoke(app, ["audit", "verify", "--config", str(config_file)])
    assert result.exit_code == 0, result.output
    assert "chain intact" in result.output


def _public(path: Path) -> Ed25519PublicKey:
    """The public half of the Ed25519 key in `path` (a private or a public PEM)."""
    pem = path.read_bytes()
    key = (
        serialization.load_pem_private_key(pem, password=None).public_key()
        if b"PRIVATE" in pem
        else serialization.load_pem_public_key(pem)
    )
    assert isinstance(key, Ed25519PublicKey)
    return key


def _receipt_kids(pair: TwoNodes) -> list[str]:
    """The key id of each receipt whitehall keeps from holyrood, oldest first."""
    entries = read_audit(pair.nodes["whitehall"].config.audit.path)
    return [open_envelope(e["receipt"]).claims["kid"] for e in entries if e.get("receipt")]


async def test_a_certificate_not_matching_its_key_and_an_unverifiable_directory_are_refused(
    pair: TwoNodes, tmp_path: Path
) -> None:
    whitehall = pair.nodes["whitehall"]
    assert whitehall.rotation is not None and whitehall.peers is not None
    served_before = served_certificate(whitehall.port)
    directory_before = pair.directory_path.read_bytes()
    async with Load(pair) as load:
        await load.reach(BEFORE)
        material = pair.states["whitehall"].material
        # A certificate for another key, with the old key left in place.
        cert, _ = issue_node_certificate(
            material.ca_cert, material.ca_key, "whitehall", tmp_path / "other-key"
        )
        replace_file(material.tls_cert, cert.read_bytes())
        # holyrood's entry moved to a port of an attacker's choosing, without its signature.
        forged = json.loads(directory_before)
        for item in forged["entries"]:
            if item["entry"]["node"] == "holyrood":
                item["entry"]["federation_endpoint"] = f"127.0.0.1:{free_port()}"
        replace_file(pair.directory_path, json.dumps(forged).encode())
        with capture_logs() as logs:
            await whitehall.rotation.check()
            await load.reach(AFTER)

    assert _messages(load.failures) == []
    refusals = {e["event"]: e["error"] for e in logs if e["event"].endswith("_refused")}
    assert "is not the certificate of the key" in refusals["tls_rotation_refused"]
    assert "not signed by holyrood's directory key" in refusals["directory_reload_refused"]
    assert served_certificate(whitehall.port) == served_before
    assert (
        whitehall.peers.get("holyrood").entry.federation_endpoint
        == (pair.configs["holyrood"]["federation"]["listen"])
    )
