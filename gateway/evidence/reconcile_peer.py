"""Reads a peer's side of reconciliation over the federation, or from its export file.

Over the federation this node calls the peer's evidence service with its own node
certificate (mutual TLS, the peer's CA from the signed directory as the only root) and pages
through the peer's entries of their exchanges, by exchange id.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import grpc

from concordat.evidence.v1 import evidence_pb2, evidence_pb2_grpc
from gateway.audit.chain import ExchangeHash
from gateway.audit.reconcile import PeerLog, exported_hashes, peer_log
from gateway.config import NodeConfig
from gateway.federation.directory import DirectoryLookup
from gateway.federation.peers import PEER_CHANNEL_OPTIONS, peer_server_name

EXPORT_FORMAT = "concordat.audit.exchange-hashes/v1"


async def fetch_peer_log(
    config: NodeConfig,
    directory: DirectoryLookup,
    peer: str,
    *,
    page_size: int = 10_000,
    timeout_seconds: float = 30.0,
) -> PeerLog:
    """The peer's head and its entries of exchanges with this node, page by page."""
    entry = directory.entry(peer)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=entry.ca_cert_pem,
        private_key=config.tls.key.read_bytes(),
        certificate_chain=config.tls.cert.read_bytes(),
    )
    async with grpc.aio.secure_channel(
        entry.federation_endpoint,
        credentials,
        options=(*PEER_CHANNEL_OPTIONS, ("grpc.ssl_target_name_override", peer_server_name(peer))),
    ) as channel:
        stub = evidence_pb2_grpc.EvidenceServiceStub(channel)
        entries: list[ExchangeHash] = []
        head: tuple[int, str] | None = None
        after = ""
        while True:
            page: evidence_pb2.ListExchangeHashesResponse = await stub.ListExchangeHashes(
                evidence_pb2.ListExchangeHashesRequest(
                    after_exchange_id=after, page_size=page_size
                ),
                timeout=timeout_seconds,
            )
            if head is None:
                # The head as the first page saw it: what later pages list is no older.
                head = (page.head.seq, page.head.entry_hash)
            entries.extend(
                ExchangeHash(item.exchange_id, item.seq, item.entry_hash) for item in page.entries
            )
            if not page.next_after_exchange_id:
                break
            after = page.next_after_exchange_id
    return peer_log(peer, head or (0, ""), entries)


def write_export(path: Path, node: str, audit_log: Path, peer: str) -> int:
    """Writes this node's head and entry hashes of its exchanges with `peer`; returns the count."""
    head, entries = exported_hashes(audit_log, peer)
    document = {
        "format": EXPORT_FORMAT,
        "node": node,
        "for": peer,
        "head": {"seq": head[0], "hash": head[1]},
        "entries": [[entry.exchange_id, entry.seq, entry.hash] for entry in entries],
    }
    path.write_text(json.dumps(document))
    return len(entries)


def read_export(path: Path) -> PeerLog:
    """A peer's export (`concordat audit export-hashes`), checked for its shape."""
    document = json.loads(path.read_text())
    if not isinstance(document, dict) or document.get("format") != EXPORT_FORMAT:
        raise ValueError(f"{path} is not an export of exchange hashes ({EXPORT_FORMAT})")
    head = document["head"]
    return peer_log(
        str(document["node"]), (int(head["seq"]), str(head["hash"])), _entries(document)
    )


def _entries(document: dict[str, object]) -> Iterator[ExchangeHash]:
    entries = document.get("entries")
    if not isinstance(entries, list):
        raise ValueError("the export has no list of entries")
    for exchange_id, seq, chain_hash in entries:
        yield ExchangeHash(str(exchange_id), int(seq), str(chain_hash))
