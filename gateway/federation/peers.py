"""Channels to peer nodes over mutual TLS, one per peer, each behind its circuit breaker."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import grpc
from cryptography import x509
from cryptography.exceptions import InvalidSignature

from concordat.federation.v1 import federation_pb2_grpc
from gateway.config import TlsConfig
from gateway.errors import PeerRejected
from gateway.federation.breaker import CircuitBreaker
from gateway.federation.directory import DirectoryLookup
from gateway.keys import node_identity_from_certificate

PEER_CHANNEL_OPTIONS = (
    ("grpc.max_receive_message_length", 16 * 1024 * 1024),
    ("grpc.keepalive_time_ms", 20_000),
)


def peer_server_name(node: str) -> str:
    return f"{node}.concordat.test"


@dataclass
class Peer:
    node: str
    channel: grpc.aio.Channel
    stub: federation_pb2_grpc.FederationServiceStub
    breaker: CircuitBreaker


class PeerClients:
    """Opens a channel to a peer on first use and keeps it; a peer's own CA is its only root."""

    def __init__(
        self,
        *,
        directory: DirectoryLookup,
        tls: TlsConfig,
        breaker_failures: int,
        breaker_reset_seconds: float,
    ) -> None:
        self._directory = directory
        self._key = tls.key.read_bytes()
        self._cert = tls.cert.read_bytes()
        self._breaker_failures = breaker_failures
        self._breaker_reset = breaker_reset_seconds
        self._peers: dict[str, Peer] = {}

    def get(self, node: str) -> Peer:
        peer = self._peers.get(node)
        if peer is None:
            entry = self._directory.entry(node)
            credentials = grpc.ssl_channel_credentials(
                root_certificates=entry.ca_cert_pem,
                private_key=self._key,
                certificate_chain=self._cert,
            )
            channel = grpc.aio.secure_channel(
                entry.federation_endpoint,
                credentials,
                options=(
                    *PEER_CHANNEL_OPTIONS,
                    ("grpc.ssl_target_name_override", peer_server_name(node)),
                ),
            )
            peer = Peer(
                node=node,
                channel=channel,
                stub=federation_pb2_grpc.FederationServiceStub(channel),
                breaker=CircuitBreaker(
                    node,
                    failure_threshold=self._breaker_failures,
                    reset_after_seconds=self._breaker_reset,
                ),
            )
            self._peers[node] = peer
        return peer

    def breakers(self) -> dict[str, CircuitBreaker]:
        """Each peer called so far, by node, and its circuit breaker (read by the metrics)."""
        return {node: peer.breaker for node, peer in list(self._peers.items())}

    async def close(self) -> None:
        for peer in self._peers.values():
            await peer.channel.close()
        self._peers.clear()


def peer_identity(certificate_pem: bytes | None, directory: DirectoryLookup) -> str:
    """The node a calling peer is, from its certificate, checked against its own CA.

    TLS already checked the chain against every member's CA; this also requires the CA to be
    the one of the node the certificate claims to be, so one member's CA cannot mint another.
    """
    if not certificate_pem:
        raise PeerRejected("the calling peer presented no client certificate")
    try:
        node = _node_named(certificate_pem)
        if node is None:
            raise PeerRejected("the calling peer's certificate names no Concordat node")
        if _issued_by(certificate_pem, directory.entry(node).ca_cert_pem):
            return node
    except ValueError as exc:
        # TLS accepted it, yet it does not parse here (or is not PEM): refused, never trusted.
        raise PeerRejected("the calling peer's certificate cannot be read") from exc
    raise PeerRejected(
        f"the calling peer's certificate claims to be {node} but is not issued by {node}'s "
        "certificate authority"
    )


# Parsing a certificate and checking its issuer's signature costs more than the rest of a
# provider's exchange bookkeeping. Both answers are pure functions of the PEM bytes (the CA's
# included, so a directory change is a new key), and a peer presents the same certificate on
# every call of a connection, so they are remembered.
@functools.lru_cache(maxsize=256)
def _node_named(certificate_pem: bytes) -> str | None:
    return node_identity_from_certificate(certificate_pem)


@functools.lru_cache(maxsize=256)
def _issued_by(certificate_pem: bytes, ca_cert_pem: bytes) -> bool:
    certificate = x509.load_pem_x509_certificate(certificate_pem)
    for authority in x509.load_pem_x509_certificates(ca_cert_pem):
        try:
            certificate.verify_directly_issued_by(authority)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return True
    return False
