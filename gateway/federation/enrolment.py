"""Joining the federation: a node's own directory entry, made from its configuration.

Each administration runs `concordat directory entry --config FILE` to produce its entry,
signed with its directory key; the entries of all members, assembled into one file, are the
directory every node loads.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway.config import ConfigError, NodeConfig
from gateway.federation.directory import public_key_kid, sign_entry
from gateway.keys import load_public_key, load_signing_key

ADMINISTRATION_NAMES = {
    "whitehall": "UK Government",
    "holyrood": "Scottish Government",
    "stormont": "Northern Ireland Executive",
    "cardiff": "Welsh Government",
}


def _published_key(node: str, key: Ed25519PublicKey) -> dict[str, str]:
    pem = key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    return {"kid": public_key_kid(node, key), "public_key_pem": pem}


def directory_entry(config: NodeConfig, *, serial: int) -> dict[str, Any]:
    fed = config.federation
    if fed is None:
        raise ConfigError("this node has no [federation] section")
    node = config.node.name
    keys = [load_signing_key(config.keys.signing_key).public_key()]
    keys += [load_public_key(path) for path in fed.publish_signing_keys]
    return {
        "node": node,
        "name": ADMINISTRATION_NAMES[node],
        "exchange_endpoint": fed.advertise_exchange or config.node.listen,
        "federation_endpoint": fed.advertise_federation or fed.listen,
        "ca_cert_pem": config.tls.ca_cert.read_text(),
        "signing_keys": [_published_key(node, key) for key in keys],
        "serves": [rule.model_dump() for rule in fed.serves],
        "serial": serial,
        "issued_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def signed_directory_entry(config: NodeConfig, *, serial: int) -> dict[str, Any]:
    fed = config.federation
    if fed is None or fed.directory_key is None:
        raise ConfigError("federation.directory_key is needed to sign this node's entry")
    return sign_entry(directory_entry(config, serial=serial), load_signing_key(fed.directory_key))


def write_public_key(private_key_path: Path, public_path: Path) -> None:
    public = load_signing_key(private_key_path).public_key()
    public_path.write_bytes(
        public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
