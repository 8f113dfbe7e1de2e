"""Loading the keys and reading the certificates a node runs with (its operator provides them).

Development keys and certificates are made by gateway/dev/pki.py; everything here is what a
production node needs from files an operator put in place.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

# A node's certificate names it as a URI SAN: concordat://node/<name>.
NODE_URI_PREFIX = "concordat://node/"
# The name becomes a directory, a DNS label and a URI path, so it is one safe label.
NODE_NAME = re.compile(r"[a-z][a-z0-9-]{0,62}")


def load_signing_key(path: Path) -> Ed25519PrivateKey:
    """Load an Ed25519 private key from a PEM file."""
    key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} does not hold an Ed25519 private key")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    """Load an Ed25519 public key from a PEM file."""
    key = serialization.load_pem_public_key(Path(path).read_bytes())
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"{path} does not hold an Ed25519 public key")
    return key


def node_identity_from_certificate(der_or_pem: bytes) -> str | None:
    """Return the node named by the certificate's `concordat://node/<name>` URI, or None.

    A certificate naming two different nodes names none. Raises ValueError if it cannot be parsed.
    """
    if der_or_pem.lstrip().startswith(b"-----BEGIN"):
        certificate = x509.load_pem_x509_certificate(der_or_pem)
    else:
        certificate = x509.load_der_x509_certificate(der_or_pem)
    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    nodes = {
        uri.removeprefix(NODE_URI_PREFIX)
        for uri in names.get_values_for_type(x509.UniformResourceIdentifier)
        if uri.startswith(NODE_URI_PREFIX)
    }
    if len(nodes) != 1:
        return None
    (node,) = nodes
    return node if NODE_NAME.fullmatch(node) else None


@dataclass(frozen=True, slots=True)
class SigningKey:
    """An Ed25519 private key, the id peers find its public half under, and that half's bytes."""

    private: Ed25519PrivateKey
    kid: str
    # The raw public key in hex: what the audit log records beside the seals it made.
    public_hex: str

    @classmethod
    def of(cls, private: Ed25519PrivateKey, kid: str) -> SigningKey:
        public = private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return cls(private=private, kid=kid, public_hex=public.hex())


class SigningKeys:
    """The node's signing key of the moment, read by every signer on every use.

    Rotation (gateway/rotation.py) replaces it whole, so a signature never pairs one key with
    another key's id; reading it costs an attribute lookup, and no signer touches the file.
    """

    def __init__(self, current: SigningKey) -> None:
        self._current = current

    @classmethod
    def fixed(cls, private: Ed25519PrivateKey, kid: str = "") -> SigningKeys:
        """A key that never rotates: for tools and tests that sign with one key."""
        return cls(SigningKey.of(private, kid))

    def current(self) -> SigningKey:
        return self._current

    def replace(self, key: SigningKey) -> None:
        self._current = key


@dataclass(frozen=True, slots=True)
class TlsMaterial:
    """A node's TLS key and certificate chain and its administration's CA, checked together."""

    key_pem: bytes
    cert_pem: bytes
    ca_pem: bytes


def load_tls_material(*, key: Path, cert: Path, ca_cert: Path, node: str) -> TlsMaterial:
    """Reads and checks the node's TLS files; raises ValueError saying what is wrong.

    The certificate must be the key's, name `node` and be issued by a certificate in `ca_cert`
    (the CA peers check it against), and be valid now: anything less would be served, and
    every peer would refuse it.
    """
    material = TlsMaterial(
        key_pem=Path(key).read_bytes(),
        cert_pem=Path(cert).read_bytes(),
        ca_pem=Path(ca_cert).read_bytes(),
    )
    try:
        chain = x509.load_pem_x509_certificates(material.cert_pem)
        private = serialization.load_pem_private_key(material.key_pem, password=None)
        authorities = x509.load_pem_x509_certificates(material.ca_pem)
    except ValueError as exc:
        raise ValueError(f"cannot read the TLS files ({cert}, {key}, {ca_cert}): {exc}") from exc
    leaf = chain[0]
    if _spki(leaf.public_key()) != _spki(private.public_key()):
        raise ValueError(f"{cert} is not the certificate of the key in {key}")
    named = node_identity_from_certificate(leaf.public_bytes(serialization.Encoding.PEM))
    if named != node:
        raise ValueError(f"{cert} names node {named!r}, not {node!r}")
    if not any(_directly_issued_by(leaf, authority) for authority in authorities):
        raise ValueError(f"{cert} is not issued by the certificate authority in {ca_cert}")
    now = datetime.now(UTC)
    if not leaf.not_valid_before_utc <= now < leaf.not_valid_after_utc:
        raise ValueError(
            f"{cert} is valid from {leaf.not_valid_before_utc:%Y-%m-%dT%H:%M:%SZ} "
            f"to {leaf.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ}, not now"
        )
    return material


def _spki(key: PublicKeyTypes) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _directly_issued_by(certificate: x509.Certificate, authority: x509.Certificate) -> bool:
    try:
        certificate.verify_directly_issued_by(authority)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True
