"""Development keys and certificates for a local federation, created once in a state folder.

Each administration runs its own certificate authority, so a node's certificate chains only to
its own CA. Files are created when absent and reused afterwards; an existing key is never
overwritten.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gateway.keys import NODE_NAME, NODE_URI_PREFIX, load_signing_key

DEV_DOMAIN = "concordat.test"

_CA_VALIDITY = dt.timedelta(days=3650)
_NODE_VALIDITY = dt.timedelta(days=365)
# Certificates start slightly in the past so a peer whose clock runs behind still accepts them.
_BACKDATE = dt.timedelta(hours=1)
_PEM = serialization.Encoding.PEM


@dataclass(frozen=True, slots=True)
class NodeMaterial:
    """Where one node's development keys, certificates and caller identity provider live."""

    node: str
    ca_cert: Path
    ca_key: Path
    tls_cert: Path
    tls_key: Path
    signing_key: Path
    signing_public: Path
    subject_hash_key: Path
    pseudonym_key: Path
    issuer_dir: Path


def ensure_node_material(state_dir: Path, node: str) -> NodeMaterial:
    """Create whatever of `node`'s material is missing under `state_dir/node` and return the paths.

    `issuer_dir` is only created here; `gateway.identity.DevIssuer.load_or_create` fills it.
    """
    _check_node_name(node)
    node_dir = Path(state_dir) / node
    material = NodeMaterial(
        node=node,
        ca_cert=node_dir / "ca.pem",
        ca_key=node_dir / "ca_key.pem",
        tls_cert=node_dir / "tls.pem",
        tls_key=node_dir / "tls_key.pem",
        signing_key=node_dir / "signing_key.pem",
        signing_public=node_dir / "signing_public.pem",
        subject_hash_key=node_dir / "subject_hash.key",
        pseudonym_key=node_dir / "pseudonym.key",
        issuer_dir=node_dir / "issuer",
    )
    material.issuer_dir.mkdir(mode=0o700, parents=True, exist_ok=True)

    ca_key = _ensure_ec_key(material.ca_key)
    if not material.ca_cert.exists():
        material.ca_cert.write_bytes(_self_signed_ca(ca_key, node).public_bytes(_PEM))
    if not material.tls_cert.exists():
        issue_node_certificate(material.ca_cert, material.ca_key, node, node_dir)

    signing_key = ensure_signing_key(material.signing_key)
    if not material.signing_public.exists():
        material.signing_public.write_bytes(
            signing_key.public_key().public_bytes(
                _PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
    # Two independent keys: audit subject hashes and research pseudonyms never share one.
    for secret in (material.subject_hash_key, material.pseudonym_key):
        if not secret.exists():
            _write_private(secret, secrets.token_bytes(32))
    return material


def issue_node_certificate(
    ca_cert_path: Path, ca_key_path: Path, node_name: str, out_dir: Path
) -> tuple[Path, Path]:
    """Issue a TLS certificate naming `node_name`, signed by the given CA, into `out_dir`.

    Writes `tls.pem` and, unless it already exists, `tls_key.pem`; returns both paths.
    """
    _check_node_name(node_name)
    out_dir = Path(out_dir)
    out_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    cert_path, key_path = out_dir / "tls.pem", out_dir / "tls_key.pem"

    ca_cert = x509.load_pem_x509_certificate(Path(ca_cert_path).read_bytes())
    ca_key = serialization.load_pem_private_key(Path(ca_key_path).read_bytes(), password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{ca_key_path} is not an ECDSA CA key")
    key = _ensure_ec_key(key_path)

    now = dt.datetime.now(dt.UTC)
    names = x509.SubjectAlternativeName(
        [
            x509.DNSName(f"{node_name}.{DEV_DOMAIN}"),
            x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.IPv4Address("127.0.0.1")),
            x509.UniformResourceIdentifier(f"{NODE_URI_PREFIX}{node_name}"),
        ]
    )
    usage = x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )
    certificate = (
        x509.CertificateBuilder()
        .subject_name(_name(node_name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + _NODE_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(names, critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    cert_path.write_bytes(certificate.public_bytes(_PEM))
    return cert_path, key_path


def ensure_signing_key(path: Path) -> Ed25519PrivateKey:
    """Load the Ed25519 key at `path`, creating it (mode 0600) if absent."""
    _ensure_private_key(Path(path), Ed25519PrivateKey.generate)
    return load_signing_key(path)


def _self_signed_ca(key: ec.EllipticCurvePrivateKey, node: str) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    subject = _name(f"Concordat {node} development CA")
    usage = x509.KeyUsage(
        digital_signature=False,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + _CA_VALIDITY)
        # path_length=0: a development CA signs node certificates only, never another CA.
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Concordat development"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _check_node_name(node: str) -> None:
    # The name becomes a directory, a DNS label and a URI path, so keep it to one safe label.
    if not NODE_NAME.fullmatch(node):
        raise ValueError(f"node name {node!r} must be a lowercase DNS label")


def _ensure_ec_key(path: Path) -> ec.EllipticCurvePrivateKey:
    key = _ensure_private_key(path, lambda: ec.generate_private_key(ec.SECP256R1()))
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{path} does not hold an ECDSA key")
    return key


def _ensure_private_key(path: Path, generate: Callable[[], PrivateKeyTypes]) -> PrivateKeyTypes:
    if path.exists():
        return serialization.load_pem_private_key(path.read_bytes(), password=None)
    key = generate()
    _write_private(
        path,
        key.private_bytes(_PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    )
    return key


def _write_private(path: Path, data: bytes) -> None:
    # O_EXCL refuses to replace an existing file, and the mode is set at creation, so the secret
    # is never readable by others, not even for a moment.
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(data)
