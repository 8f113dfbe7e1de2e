"""Loading the keys and reading the certificates a node runs with (its operator provides them).

Development keys and certificates are made by gateway/dev/pki.py; everything here is what a
production node needs from files an operator put in place.
"""

from __future__ import annotations

import re
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

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
