"""What rotation swaps in is checked first, and an audit log sealed under two keys still proves
itself with both: real certificates from the development PKI, real Ed25519 keys, real files."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.api.server import ServerCertificates
from gateway.audit.sqlite_log import SqliteAuditLog
from gateway.audit.verify import Problem, verify_log
from gateway.config import ConfigError
from gateway.dev.pki import ensure_node_material, issue_node_certificate
from gateway.keys import SigningKey, SigningKeys, load_tls_material
from gateway.testing import running_node


def test_tls_material_of_the_node_from_its_own_ca_is_accepted(tmp_path: Path) -> None:
    material = ensure_node_material(tmp_path, "whitehall")

    loaded = load_tls_material(
        key=material.tls_key, cert=material.tls_cert, ca_cert=material.ca_cert, node="whitehall"
    )

    assert loaded.cert_pem == material.tls_cert.read_bytes()


def test_a_certificate_naming_another_node_is_refused(tmp_path: Path) -> None:
    material = ensure_node_material(tmp_path, "whitehall")
    cert, key = issue_node_certificate(
        material.ca_cert, material.ca_key, "holyrood", tmp_path / "other"
    )

    with pytest.raises(ValueError, match="names node 'holyrood', not 'whitehall'"):
        load_tls_material(key=key, cert=cert, ca_cert=material.ca_cert, node="whitehall")


def test_a_certificate_from_another_ca_is_refused(tmp_path: Path) -> None:
    material = ensure_node_material(tmp_path / "current", "whitehall")
    stranger = ensure_node_material(tmp_path / "stranger", "whitehall")

    with pytest.raises(ValueError, match="not issued by the certificate authority"):
        load_tls_material(
            key=stranger.tls_key,
            cert=stranger.tls_cert,
            ca_cert=material.ca_cert,
            node="whitehall",
        )


def test_a_key_that_is_not_the_certificates_is_refused(tmp_path: Path) -> None:
    material = ensure_node_material(tmp_path, "whitehall")
    other_cert, _ = issue_node_certificate(
        material.ca_cert, material.ca_key, "whitehall", tmp_path / "other"
    )

    with pytest.raises(ValueError, match="is not the certificate of the key"):
        load_tls_material(
            key=material.tls_key, cert=other_cert, ca_cert=material.ca_cert, node="whitehall"
        )


def test_a_port_is_offered_new_material_once_and_the_same_material_not_at_all(
    tmp_path: Path,
) -> None:
    material = ensure_node_material(tmp_path, "whitehall")
    key, cert = material.tls_key.read_bytes(), material.tls_cert.read_bytes()
    port = ServerCertificates(key_pem=key, cert_pem=cert, client_roots=b"roots")

    assert port.offer(key_pem=key, cert_pem=cert) is False
    assert port._fetch() is None
    assert port.offer(client_roots=b"other roots") is True
    assert port._fetch() is not None
    assert port._fetch() is None


async def _append(log: SqliteAuditLog, number: int) -> int:
    return await log.append({"exchange_id": f"ex-{number}", "outcome": "allowed"})


async def test_each_batch_is_sealed_with_the_key_current_when_it_is_written(
    tmp_path: Path,
) -> None:
    path = tmp_path / "audit.db"
    first, second = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    keys = SigningKeys(SigningKey.of(first, "holyrood-1"))
    log = await SqliteAuditLog.open(path, node="holyrood", signing_key=keys)
    for number in (1, 2):
        await _append(log, number)
    keys.replace(SigningKey.of(second, "holyrood-2"))
    for number in (3, 4):
        await _append(log, number)
    await log.close()

    assert verify_log(path, [first.public_key(), second.public_key()]).ok
    assert verify_log(path).ok
    only_first = verify_log(path, first.public_key())
    assert Problem(3, "seal signature does not verify") in only_first.problems
    assert only_first.sealed_upto == 2


async def test_a_seal_key_record_pointed_at_another_key_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    first, second = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    keys = SigningKeys(SigningKey.of(first, "holyrood-1"))
    log = await SqliteAuditLog.open(path, node="holyrood", signing_key=keys)
    await _append(log, 1)
    keys.replace(SigningKey.of(second, "holyrood-2"))
    await _append(log, 2)
    await log.close()
    forger = SigningKey.of(Ed25519PrivateKey.generate(), "forger")
    with closing(sqlite3.connect(path)) as raw, raw:
        raw.execute("UPDATE seal_keys SET public_key = ?", (forger.public_hex,))

    trusted = verify_log(path, [first.public_key(), second.public_key()])
    assert Problem(2, "rotated signing key in the log does not match any of those supplied") in (
        trusted.problems
    )
    assert Problem(2, "seal signature does not verify") in verify_log(path).problems


async def test_a_node_refuses_to_start_on_a_certificate_that_is_not_its_keys(
    tmp_path: Path,
) -> None:
    material = ensure_node_material(tmp_path, "whitehall")
    other_cert, _ = issue_node_certificate(
        material.ca_cert, material.ca_key, "whitehall", tmp_path / "other"
    )

    with pytest.raises(ConfigError, match=r"^tls: .* is not the certificate of the key"):
        async with running_node(tmp_path, "whitehall", sources={}, tls={"cert": str(other_cert)}):
            pass
