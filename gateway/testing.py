"""Test helpers for Concordat and for projects that build on it.

`running_node` starts a real node (real gRPC server on loopback, TLS, embedded policy engine,
SQLite audit log) in the current event loop; `RunningNode.call` mints a fresh token per call.
Test nodes decide as on `TEST_TODAY` unless given another clock, so tests do not start failing
as the registered agreements reach their review and end dates.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, fields, replace
from datetime import date
from pathlib import Path
from typing import Any

from adapters.base import RecordSource
from concordat.exchange.v1 import exchange_pb2
from gateway.api.client import ExchangeClient, secure_channel
from gateway.audit.reader import read_events
from gateway.clock import Clock, FixedClock
from gateway.config import NodeConfig, parse_config
from gateway.dev.demo import demo_source_config
from gateway.dev.state import REPO_ROOT, LocalNodeState, audience, issuer_url, prepare_node
from gateway.domain import Requester
from gateway.node import Node, build_node
from gateway.policy.policy_input import PolicyRequest, build_policy_input

# Inside every agreement registered under policies/ (from 2026-04-01, reviews due 2028-03-31).
TEST_TODAY = date(2026, 11, 21)
TEST_CLOCK = FixedClock(TEST_TODAY)


def node_config_dict(state: LocalNodeState, state_dir: Path, /, **overrides: Any) -> dict[str, Any]:
    """A complete node configuration for a prepared node state, listening on a free port."""
    material = state.material
    node = state.node
    config: dict[str, Any] = {
        "node": {"name": node, "listen": "127.0.0.1:0"},
        "tls": {
            "ca_cert": str(material.ca_cert),
            "cert": str(material.tls_cert),
            "key": str(material.tls_key),
        },
        "auth": {
            "issuer": issuer_url(node),
            "audience": audience(node),
            "jwks_file": str(state.issuer.jwks_path),
        },
        "keys": {
            "signing_key": str(material.signing_key),
            "subject_hash_key": str(material.subject_hash_key),
            "pseudonym_key": str(material.pseudonym_key),
        },
        "policy": {
            "engine": "embedded",
            "bundle": [str(REPO_ROOT / "policies" / "common"), str(REPO_ROOT / "policies" / node)],
        },
        "audit": {"path": str(state_dir / node / "audit.db")},
        "sources": {"demo": demo_source_config(f"sqlite:///{state.demo_db}", node)},
    }
    for section, values in overrides.items():
        if isinstance(values, Mapping) and isinstance(config.get(section), dict):
            config[section] = {**config[section], **values}
        else:
            config[section] = values
    return config


@dataclass
class RunningNode:
    node: Node
    state: LocalNodeState
    config: NodeConfig

    @property
    def audit_path(self) -> Path:
        assert self.config.audit.path is not None  # noqa: S101 - an embedded node's log
        return self.config.audit.path

    def token(
        self, *, organisation: str, system: str = "test-system", accreditations: Sequence[str] = ()
    ) -> str:
        return self.state.issuer.mint(
            audience=audience(self.state.node),
            organisation=organisation,
            system=system,
            accreditations=accreditations,
        )

    def client(
        self, *, organisation: str, system: str = "test-system", accreditations: Sequence[str] = ()
    ) -> ExchangeClient:
        channel = secure_channel(self.node.address, self.config.tls.ca_cert)
        return ExchangeClient(
            channel,
            lambda: self.token(
                organisation=organisation, system=system, accreditations=accreditations
            ),
        )

    def audit_entries(self) -> list[dict[str, Any]]:
        return read_audit(self.audit_path)


def read_audit(path: Path) -> list[dict[str, Any]]:
    """Every audit event in sequence order, as stored (for assertions in tests)."""
    return [dict(recorded.event) for recorded in read_events(path)]


@asynccontextmanager
async def running_node(
    state_dir: Path,
    name: str = "whitehall",
    *,
    sources: Mapping[str, RecordSource] | None = None,
    clock: Clock = TEST_CLOCK,
    **overrides: Any,
) -> AsyncIterator[RunningNode]:
    # A demo database only for a node that reads the demo sources.
    state = prepare_node(state_dir, name, seed_demo=sources is None)
    config = parse_config(node_config_dict(state, state_dir, **overrides), base=state_dir)
    node = await build_node(config, sources=sources, clock=clock)
    await node.start()
    try:
        yield RunningNode(node=node, state=state, config=config)
    finally:
        await node.stop(grace=0.5)


# DWP's fraud team asking, at Whitehall, for a Northern Ireland benefit award.
DWP_FRAUD_REQUEST = PolicyRequest(
    direction="egress",
    node="whitehall",
    requesting_node="whitehall",
    providing_node="stormont",
    requester=Requester(organisation="dwp", system="fraud-referrals", administration="whitehall"),
    record_type="BENEFIT_AWARD",
    subject_kind="nino",
    purpose="FRAUD",
    agreement_id="fraud-dwp-dfc-benefits-2026",
    fields=("nino", "benefit", "weekly_amount_pence"),
    case_reference_present=False,
    bulk=False,
    today=TEST_TODAY,
)
_REQUEST_FIELDS = frozenset(f.name for f in fields(PolicyRequest))


def policy_input(base: PolicyRequest = DWP_FRAUD_REQUEST, **changes: Any) -> dict[str, Any]:
    """The policy input a node builds for `base` with `changes`.

    A change naming a PolicyRequest field replaces it, so what derives from it follows (the
    fields' sensitivities follow `fields`). Any other key, and a `requester` given as a plain
    mapping, is set on the document as given: an input no node would send, for a policy to
    be tested against.
    """

    def on_request(key: str, value: Any) -> bool:
        return key in _REQUEST_FIELDS and not (key == "requester" and isinstance(value, Mapping))

    document = build_policy_input(
        replace(base, **{k: v for k, v in changes.items() if on_request(k, v)})
    )
    document.update({k: v for k, v in changes.items() if not on_request(k, v)})
    return document


def get_request(
    record_type: str,
    *,
    purpose: str,
    agreement_id: str,
    fields: Sequence[str],
    case_reference: str = "",
    idempotency_key: str = "",
    **subject: str | int,
) -> exchange_pb2.GetRecordRequest:
    """A GetRecordRequest from plain names: get_request("PERSON", nino=..., purpose=...)."""
    request = exchange_pb2.GetRecordRequest(
        # protobuf takes an enum's value by its name, and raises ValueError for an unknown one.
        record_type=f"RECORD_TYPE_{record_type}",
        purpose=f"PURPOSE_{purpose}",
        agreement_id=agreement_id,
        case_reference=case_reference,
        idempotency_key=idempotency_key,
    )
    for kind, value in subject.items():
        setattr(request.subject, kind, value)
    request.field_mask.paths.extend(fields)
    return request
