"""Development PKI: one CA per administration, node certificates that name their node."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.verification import DNSName, PolicyBuilder, Store, VerificationError

from gateway.dev.pki import NodeMaterial, ensure_node_material, issue_node_certificate
from gateway.keys import load_public_key, load_signing_key, node_identity_from_certificate


def files_of(material: NodeMaterial) -> dict[Path, bytes]:
    root = material.ca_cert.parent
    return {path: path.read_bytes() for path in root.rglob("*") if path.is_file()}


def certificate(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def verify_chain(leaf_path: Path, ca_path: Path, dns_name: str) -> None:
    verifier = (
        PolicyBuilder()
        .store(Store([certificate(ca_path)]))
        .build_server_verifier(DNSName(dns_name))
    )
    verifier.verify(certificate(leaf_path), [])


def test_second_call_reuses_every_file_unchanged(tmp_path: Path) -> None:
    first = ensure_node_material(tmp_path, "whitehall")
    before = files_of(first)

    second = ensure_node_material(tmp_path, "whitehall")

    assert second == first
    assert files_of(second) == before
    assert {first.ca_cert, first.tls_key, first.signing_key, first.subject_hash_key} <= set(before)


def test_missing_certificate_is_reissued_for_the_existing_key(tmp_path: Path) -> None:
    material = ensure_node_material(tmp_path, "cardiff")
    key_before = material.tls_key.read_bytes()
    material.tls_cert.unlink()

    ensure_node_material(tmp_path, "cardiff")

    assert material.tls_key.read_bytes() == key_before
    verify_chain(material.tls_cert, material.ca_cert, "cardiff.concordat.test")


def test_private_keys_and_hash_keys_are_readable_by_owner_only(tmp_path: Path) -> None:
    material = ensure_node_material(tmp_path, "stormont")

    for secret in (
        material.ca_key,
        material.tls_key,
        material.signing_key,
        material.subject_hash_key,
        material.pseudonym_key,
    ):
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600, secret
    assert len(material.subject_hash_key.read_bytes()) == 32


def test_the_pseudonym_key_is_its_own_32_random_bytes_kept_across_calls(tmp_path: Path) -> None:
    material = ensure_node_material(tmp_path, "holyrood")
    key = material.pseudonym_key.read_bytes()

    assert material.pseudonym_key.name == "pseudonym.key"
    assert len(key) == 32 and key != material.subject_hash_key.read_bytes()
    assert ensure_node_material(tmp_path, "holyrood").pseudonym_key.read_bytes() == key


def test_node_certificate_chains_to_its_own_ca(tmp_path: Path) -> None:
    material = ensure_node_material(tmp_path, "holyrood")

    for name in ("holyrood.concordat.test", "localhost"):
        verify_chain(material.tls_cert, material.ca_cert, name)


def test_node_certificate_does_not_chain_to_another_administrations_ca(tmp_path: Path) -> None:
    holyrood = ensure_node_material(tmp_path, "holyrood")
    whitehall = ensure_node_material(tmp_path, "whitehall")

    with pytest.raises(VerificationError):
        verify_chain(holyrood.tls_cert, whitehall.ca_cert, "holyrood.concordat.test")


def test_node_certificate_serves_both_ends_of_mutual_tls(tmp_path: Path) -> None:
    material = ensure_node_material(tmp_path, "whitehall")
    verifier = PolicyBuilder().store(Store([certificate(material.ca_cert)])).build_client_verifier()

    verified = verifier.verify(certificate(material.tls_cert), [])

    assert x509.UniformResourceIdentifier("concordat://node/whitehall") in verified.subjects


def test_node_identity_is_read_from_the_uri_san_in_pem_or_der(tmp_path: Path) -> None:
    material = ensure_node_material(tmp_path, "stormont")
    pem = material.tls_cert.read_bytes()
    der = certificate(material.tls_cert).public_bytes(serialization.Encoding.DER)

    assert node_identity_from_certificate(pem) == "stormont"
    assert node_identity_from_certificate(der) == "stormont"


def test_ca_certificate_carries_no_node_identity(tmp_path: Path) -> None:
    material = ensure_node_material(tmp_path, "stormont")

    assert node_identity_from_certificate(material.ca_cert.read_bytes()) is None


def test_forged_certificate_claims_a_node_but_chains_only_to_the_forgers_ca(
    tmp_path: Path,
) -> None:
    whitehall = ensure_node_material(tmp_path / "state", "whitehall")
    rogue = ensure_node_material(tmp_path / "state", "cardiff")

    forged_cert, forged_key = issue_node_certificate(
        rogue.ca_cert, rogue.ca_key, "whitehall", tmp_path / "forged"
    )

    assert node_identity_from_certificate(forged_cert.read_bytes()) == "whitehall"
    assert stat.S_IMODE(forged_key.stat().st_mode) == 0o600
    verify_chain(forged_cert, rogue.ca_cert, "whitehall.concordat.test")
    with pytest.raises(VerificationError):
        verify_chain(forged_cert, whitehall.ca_cert, "whitehall.concordat.test")


def test_signing_key_pair_loads_and_matches(tmp_path: Path) -> None:
    material = ensure_node_material(tmp_path, "cardiff")

    private_key = load_signing_key(material.signing_key)
    signature = private_key.sign(b"audit seal")

    assert isinstance(private_key, Ed25519PrivateKey)
    load_public_key(material.signing_public).verify(signature, b"audit seal")


def test_tls_key_is_not_accepted_as_a_signing_key(tmp_path: Path) -> None:
    material = ensure_node_material(tmp_path, "cardiff")

    with pytest.raises(ValueError, match="Ed25519"):
        load_signing_key(material.tls_key)


@pytest.mark.parametrize("name", ["", "Whitehall", "../etc", "a/b", "node.example"])
def test_unsafe_node_names_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match="lowercase DNS label"):
        ensure_node_material(tmp_path, name)
