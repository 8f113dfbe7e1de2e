"""Channels to peer nodes over mutual TLS, one per peer, each behind its circuit breaker."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
from dataclasses import dataclass

import grpc
import structlog
from cryptography import x509
from cryptography.exceptions import InvalidSignature

from concordat.federation.v1 import federation_pb2_grpc
from gateway.config import TlsConfig
from gateway.errors import PeerRejected
from gateway.federation.breaker import CircuitBreaker
from gateway.federation.directory import DirectoryEntry, DirectoryLookup
from gateway.keys import node_identity_from_certificate

PEER_CHANNEL_OPTIONS = (
    ("grpc.max_receive_message_length", 16 * 1024 * 1024),
    ("grpc.keepalive_time_ms", 20_000),
)


log = structlog.get_logger("concordat.peers")


def peer_server_name(node: str) -> str:
    return f"{node}.concordat.test"


# A replaced channel keeps taking calls this long (a relay retrying on the peer it looked up
# before the swap), then closes, letting calls still running finish for as long again. Calls
# are bounded by their deadline; a bulk extract cut after that resumes from its token.
RETIRED_CHANNEL_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class Peer:
    """One channel to a peer; a new endpoint, CA or client certificate makes a new Peer."""

    node: str
    channel: grpc.aio.Channel
    stub: federation_pb2_grpc.FederationServiceStub
    breaker: CircuitBreaker
    # What the channel was built from: a lookup compares these to see whether it still fits.
    entry: DirectoryEntry | None = None
    identity: int = 0


class PeerClients:
    """A channel to each peer, opened on first use and kept while it fits.

    A peer's own CA is its only root. When the directory moves a peer (new endpoint or CA)
    or this node's own client certificate is rotated, the next lookup builds a new channel
    and swaps it in; the old one serves the calls already on it and is closed after
    RETIRED_CHANNEL_SECONDS. A peer keeps its circuit breaker across channels.
    """

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
        # Counts client certificate rotations: a channel built under an older one is rebuilt.
        self._identity = 0
        self._breaker_failures = breaker_failures
        self._breaker_reset = breaker_reset_seconds
        self._peers: dict[str, Peer] = {}
        self._breakers: dict[str, CircuitBreaker] = {}
        # Replaced channels still serving their last calls, each with the task closing it.
        self._retiring: dict[asyncio.Task[None], grpc.aio.Channel] = {}

    def get(self, node: str) -> Peer:
        entry = self._directory.entry(node)
        peer = self._peers.get(node)
        # Identity first: a directory that did not change hands back the very same entry.
        if peer is not None and peer.entry is entry and peer.identity == self._identity:
            return peer
        if (
            peer is not None
            and peer.entry is not None
            and peer.identity == self._identity
            and peer.entry.federation_endpoint == entry.federation_endpoint
            and peer.entry.ca_cert_pem == entry.ca_cert_pem
        ):
            # The directory was re-read but says the same of this peer: keep the channel.
            peer = dataclasses.replace(peer, entry=entry)
        else:
            if peer is not None:
                self._retire(peer)
                log.info("peer_channel_replaced", peer=node, endpoint=entry.federation_endpoint)
            peer = self._connect(node, entry)
        self._peers[node] = peer
        return peer

    def use_client_identity(self, *, key_pem: bytes, cert_pem: bytes) -> None:
        """Presents this key and certificate to peers from each peer's next call on."""
        if (key_pem, cert_pem) == (self._key, self._cert):
            return
        self._key, self._cert = key_pem, cert_pem
        self._identity += 1

    def _connect(self, node: str, entry: DirectoryEntry) -> Peer:
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
        breaker = self._breakers.get(node)
        if breaker is None:
            breaker = CircuitBreaker(
                node,
                failure_threshold=self._breaker_failures,
                reset_after_seconds=self._breaker_reset,
            )
            self._breakers[node] = breaker
        return Peer(
            node=node,
            channel=channel,
            stub=federation_pb2_grpc.FederationServiceStub(channel),
            breaker=breaker,
            entry=entry,
            identity=self._identity,
        )

    def _retire(self, peer: Peer) -> None:
        async def close_later() -> None:
            await asyncio.sleep(RETIRED_CHANNEL_SECONDS)
            await peer.channel.close(grace=RETIRED_CHANNEL_SECONDS)

        task = asyncio.get_running_loop().create_task(
            close_later(), name=f"concordat-retire-channel-{peer.node}"
        )
        self._retiring[task] = peer.channel
        task.add_done_callback(self._retiring.pop)

    def breakers(self) -> dict[str, CircuitBreaker]:
        """Each peer called so far, by node, and its circuit breaker (read by the metrics)."""
        return dict(self._breakers)

    async def close(self) -> None:
        """Closes every channel, retired ones too; the node stops only after its calls ended."""
        retired = list(self._retiring.items())
        for task, _ in retired:
            task.cancel()
        for _, channel in retired:
            await channel.close()
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
