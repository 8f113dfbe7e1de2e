"""Assembles the citizens' part of a node; the composition root (gateway/node.py) calls it.

Every federated node answers SubjectSearch, on its federation port (mutual TLS; the peer's
certificate is checked against the directory as a relay's is). A node whose config names a
citizen identity provider also serves ListMyExchanges to its citizens on the exchange port.
"""

from __future__ import annotations

import grpc

from gateway.audit import AuditLog
from gateway.citizen.disclosure import Disclosure
from gateway.citizen.holds import LiveCaseHolds
from gateway.citizen.limits import LookupLimiter
from gateway.citizen.lookup import CitizenLookup, FederationSearch, PeerSearchAnswer
from gateway.citizen.register import RegisterSource
from gateway.citizen.search import LogSearch
from gateway.citizen.service import (
    SUBJECT_SEARCH_SERVICE,
    TRANSPARENCY_SERVICE,
    SubjectSearchService,
    TransparencyService,
    add_service,
    subject_search_handlers,
    transparency_handlers,
)
from gateway.citizen.tokens import CitizenTokenVerifier
from gateway.clock import Clock
from gateway.config import CitizensConfig, NodeConfig
from gateway.federation.directory import DirectoryLookup
from gateway.federation.peers import PeerClients
from gateway.identity import JwksFile, JwksUrl
from gateway.policy import PolicyEngine
from gateway.policy.bundle import load_bundle
from gateway.policy.reloading import LivePolicy
from gateway.state import RateLimiter, ReplayGuard


def add_citizen_services(
    server: grpc.aio.Server,
    *,
    config: NodeConfig,
    audit: AuditLog,
    subject_key: bytes,
    register: RegisterSource,
    clock: Clock,
    directory: DirectoryLookup | None,
    peers: PeerClients | None,
    replay: ReplayGuard,
    limiter: RateLimiter | None = None,
) -> None:
    """`limiter` stands in for the per-process one of [citizens] (a shared, stored one)."""
    citizens = config.citizens or CitizensConfig()
    search = LogSearch(
        audit=audit,
        subject_key=subject_key,
        register=register,
        disclosure=Disclosure(holds=LiveCaseHolds(citizens.holds_file), clock=clock),
    )
    name = config.node.name
    if directory is not None:
        answer = PeerSearchAnswer(
            node=name, directory=directory, search=search, audit=audit, subject_key=subject_key
        )
        add_service(
            server,
            SUBJECT_SEARCH_SERVICE,
            subject_search_handlers(SubjectSearchService(answer)),
        )
    if not citizens.serves_citizens:
        return
    federation = (
        FederationSearch(
            node=name,
            directory=directory,
            peers=peers,
            timeout_seconds=citizens.peer_timeout_seconds,
        )
        if directory is not None and peers is not None
        else None
    )
    lookup = CitizenLookup(
        node=name,
        verifier=_verifier(citizens, replay),
        limiter=limiter
        or LookupLimiter(per_hour=citizens.lookups_per_hour, burst=citizens.lookup_burst),
        search=search,
        federation=federation,
        audit=audit,
        subject_key=subject_key,
    )
    add_service(server, TRANSPARENCY_SERVICE, transparency_handlers(TransparencyService(lookup)))


def running_register(engine: PolicyEngine, config: NodeConfig) -> RegisterSource:
    """The register of the bundle the node decides by: the live one, reloaded as it changes."""
    if isinstance(engine, LivePolicy):
        live = engine
        return lambda: live.bundle
    # An OPA sidecar loads the same folders, so their register is the one it decides by.
    bundle = load_bundle(list(config.policy.bundle))
    return lambda: bundle


def _verifier(citizens: CitizensConfig, replay: ReplayGuard) -> CitizenTokenVerifier:
    assert citizens.issuer is not None and citizens.audience is not None  # noqa: S101 - serves_citizens
    jwks = JwksFile(citizens.jwks_file) if citizens.jwks_file else JwksUrl(citizens.jwks_url or "")
    return CitizenTokenVerifier(
        issuer=citizens.issuer,
        audience=citizens.audience,
        jwks=jwks,
        algorithms=citizens.algorithms,
        leeway_seconds=citizens.leeway_seconds,
        max_lifetime_seconds=citizens.max_token_lifetime_seconds,
        replay=replay,
    )
