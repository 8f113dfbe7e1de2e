"""Signed bundles: OPA serves a bundle only if its signature verifies, and refuses one altered.

Two ways to sign, both verified by the real OPA (`opa run --verification-key`): `opa build
--signing-key` over the folder `concordat policy build` wrote, and `concordat policy build
--signing-key`, which writes OPA's bundle signature format itself.
"""

from __future__ import annotations

import gzip
import io
import json
import shutil
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from typer.testing import CliRunner

from gateway.cli import app
from gateway.dev.state import REPO_ROOT
from gateway.policy.bundle import load_bundle
from gateway.policy.embedded import EmbeddedEngine
from gateway.policy.opa import OpaServerEngine
from gateway.policy.tools import BundleSigning, build_opa_bundle
from tests.integration.conftest import BUNDLE
from tests.support.real_opa import BundleService, OpaServer, run_opa

HOLYROOD = [REPO_ROOT / "policies" / "common", REPO_ROOT / "policies" / "holyrood"]
DEPLOY = REPO_ROOT / "deploy" / "opa"
ASK = {
    "direction": "ingress",
    "node": "whitehall",
    "requesting_node": "whitehall",
    "providing_node": "whitehall",
    "requester": {"organisation": "dwp", "system": "s", "administration": "whitehall"},
    "record_type": "PERSON",
    "subject_kind": "nino",
    "purpose": "FRAUD",
    "fields": ["nino", "given_name", "postcode"],
    "today": "2026-11-21",
}


def write_key(
    path: Path, key: ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
) -> tuple[Path, Path]:
    """The private key's PEM at `path` and its public key's beside it."""
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public = path.with_suffix(".pub.pem")
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return path, public


def verifying(public: Path, algorithm: str) -> list[str]:
    return ["--verification-key", str(public), "--signing-alg", algorithm]


async def decisions_agree(opa: OpaServer, directories: list[Path], agreement: str) -> None:
    """OPA, serving the signed bundle, decides ASK under `agreement` as the embedded engine."""
    ask = {**ASK, "agreement_id": agreement}
    served = OpaServerEngine(url=opa.url)
    embedded = EmbeddedEngine.compile(load_bundle(directories))
    try:
        over_http = await served.decide("ingress", ask)
        in_process = await embedded.decide("ingress", ask)
    finally:
        await served.close()
        await embedded.close()
    assert over_http.rule == in_process.rule
    assert over_http.released_fields == in_process.released_fields


def unpack(tarball: Path, into: Path) -> Path:
    with tarfile.open(tarball) as archive:
        for member in archive.getmembers():
            target = into / member.name.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            extracted = archive.extractfile(member)
            assert extracted is not None
            target.write_bytes(extracted.read())
    return into


async def test_a_bundle_signed_by_opa_build_is_verified_and_served_with_the_signed_mask(
    tmp_path: Path,
) -> None:
    # --verification-key verifies every --bundle, so the decision-log mask is signed too.
    key, public = write_key(tmp_path / "rsa.pem", rsa.generate_private_key(65537, 2048))
    built = build_opa_bundle(HOLYROOD, tmp_path / "holyrood.tar.gz")
    folder = unpack(built.path, tmp_path / "holyrood")
    signed, mask = tmp_path / "holyrood-signed.tar.gz", tmp_path / "mask-signed.tar.gz"
    for bundle, out, cwd in ((folder, signed, tmp_path), (Path("mask"), mask, DEPLOY)):
        done = run_opa(
            "build", "--bundle", str(bundle), "--signing-key", str(key),
            "--signing-alg", "RS256", "--output", str(out), cwd=cwd,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        with tarfile.open(out) as archive:
            assert "/.signatures.json" in archive.getnames()
    arguments = [*verifying(public, "RS256"), "--config-file", str(DEPLOY / "config.yaml")]
    with OpaServer([signed, mask], arguments=arguments) as opa:
        await decisions_agree(opa, HOLYROOD, "cr-dwp-nrs-births-2026")
        engine = OpaServerEngine(url=opa.url)
        try:
            decision = await engine.decide("ingress", {**ASK, "subject": {"nino": "AB123456C"}})
        finally:
            await engine.close()
        logged = [json.loads(line) for line in opa.output().splitlines() if "Decision Log" in line]
    (masked,) = [event for event in logged if event["decision_id"] == decision.decision_id]
    assert masked["erased"] == ["/input/subject"]


TRICKY = {
    "html": "<a href='x'>&amp;</a>",
    "welsh": "Dŵr Cymru \u2013 Caerdydd",
    "separators": "a\u2028b\u2029c",
    "controls": '\b\f\n\r\t\u0001\u001f\u007f "\\/',
    "numbers": [0.1, 1e-07, 1.5e300, -0.0, 1.0, 12345678901234567890, -3],
    "flags": [True, False, None],
    "é": "keys sort by code point",
    "Z": "upper case sorts first",
}


def with_tricky_data(root: Path) -> list[Path]:
    """The integration bundle, its data.json also holding values that JSON encoders differ on."""
    folder = shutil.copytree(BUNDLE, root / "bundle")
    data = json.loads((folder / "data.json").read_text())
    data["tricky"] = TRICKY
    (folder / "data.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return [folder]


@pytest.mark.parametrize(
    ("make_key", "algorithm", "signed_with"),
    [
        (ed25519.Ed25519PrivateKey.generate, None, "EdDSA"),
        (lambda: ec.generate_private_key(ec.SECP256R1()), None, "ES256"),
        (lambda: rsa.generate_private_key(65537, 2048), "PS256", "PS256"),
    ],
    ids=["Ed25519", "P-256", "RSA-PSS"],
)
async def test_a_bundle_signed_by_concordat_policy_build_is_verified_by_opa(
    tmp_path: Path, make_key: Callable[[], object], algorithm: str | None, signed_with: str
) -> None:
    key, public = write_key(tmp_path / "key.pem", make_key())  # type: ignore[arg-type]
    directories = with_tricky_data(tmp_path)
    out = tmp_path / "signed.tar.gz"
    arguments = ["policy", "build", "--bundle", str(directories[0]), "--out", str(out)]
    arguments += ["--signing-key", str(key)]
    arguments += ["--signing-alg", algorithm] if algorithm else []
    result = CliRunner().invoke(app, arguments)
    assert result.exit_code == 0, result.output
    assert f"signed {signed_with} (key id default)" in result.output
    with OpaServer([out], arguments=verifying(public, signed_with)) as opa:
        await decisions_agree(opa, directories, "TEST-FRAUD-1")


async def test_a_signed_bundle_from_a_bundle_service_is_verified_with_the_configured_key(
    tmp_path: Path,
) -> None:
    # OPA's `keys` configuration takes RSA, ECDSA and HMAC keys (it refuses EdDSA there,
    # though --verification-key takes it), so a service-fed sidecar verifies ES256 here.
    key, public = write_key(tmp_path / "ec.pem", ec.generate_private_key(ec.SECP256R1()))
    signed = tmp_path / "holyrood.tar.gz"
    result = CliRunner().invoke(
        app,
        [
            "policy", "build", "--jurisdiction", "holyrood", "--out", str(signed),
            "--signing-key", str(key), "--key-id", "holyrood-bundles",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    with BundleService(tmp_path / "served") as service:
        service.publish(signed, "holyrood.tar.gz")
        config = {
            "services": {"bundles": {"url": service.url}},
            "keys": {"holyrood-bundles": {"algorithm": "ES256", "key": public.read_text()}},
            "bundles": {
                "concordat": {
                    "service": "bundles",
                    "resource": "holyrood.tar.gz",
                    "signing": {"keyid": "holyrood-bundles"},
                }
            },
        }
        # Verification belongs to the service's bundle; the local mask loads unsigned.
        with OpaServer([DEPLOY / "mask"], config=config, workdir=tmp_path) as opa:
            await decisions_agree(opa, HOLYROOD, "cr-dwp-nrs-births-2026")


def test_the_same_folders_and_ed25519_key_give_the_same_signed_tarball(tmp_path: Path) -> None:
    key, _ = write_key(tmp_path / "ed.pem", ed25519.Ed25519PrivateKey.generate())
    signing = BundleSigning.from_pem(key)
    first = build_opa_bundle([BUNDLE], tmp_path / "first.tar.gz", signing=signing)
    second = build_opa_bundle([BUNDLE], tmp_path / "second.tar.gz", signing=signing)
    assert first.path.read_bytes() == second.path.read_bytes()
    assert signing.algorithm == "EdDSA"


def rewritten(tarball: Path, out: Path, change: Callable[[dict[str, bytes]], None]) -> Path:
    """A copy of the tarball with `change` applied to its files (names as stored)."""
    with tarfile.open(tarball) as archive:
        files = {m.name: archive.extractfile(m).read() for m in archive.getmembers()}  # type: ignore[union-attr]
    change(files)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as archive:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    out.write_bytes(gzip.compress(raw.getvalue()))
    return out


def reactivate_suspended_agreement(files: dict[str, bytes]) -> None:
    data = files["/data.json"].decode()
    files["/data.json"] = data.replace('"suspended"', '"active"').encode()


def loosen_a_rule(files: dict[str, bytes]) -> None:
    files["/bundle/test_ingress.rego"] = files["/bundle/test_ingress.rego"].replace(
        b'agreement.status == "active"', b"true"
    )


def add_a_module(files: dict[str, bytes]) -> None:
    files["/extra.rego"] = b"package concordat.extra\n\nallow := true\n"


def strip_the_signature(files: dict[str, bytes]) -> None:
    del files["/.signatures.json"]


TAMPERING = {
    "data changed": (reactivate_suspended_agreement, "data.json: digest mismatch"),
    "module changed": (loosen_a_rule, "bundle/test_ingress.rego: digest mismatch"),
    "module added": (add_a_module, "file extra.rego not included in bundle signature"),
    "signature removed": (strip_the_signature, "bundle missing .signatures.json file"),
}


@pytest.mark.parametrize(("change", "refusal"), TAMPERING.values(), ids=TAMPERING.keys())
def test_opa_refuses_a_signed_bundle_altered_after_signing(
    tmp_path: Path, change: Callable[[dict[str, bytes]], None], refusal: str
) -> None:
    key, public = write_key(tmp_path / "ed.pem", ed25519.Ed25519PrivateKey.generate())
    signed = tmp_path / "signed.tar.gz"
    result = CliRunner().invoke(
        app,
        [
            "policy",
            "build",
            "--bundle",
            str(BUNDLE),
            "--out",
            str(signed),
            "--signing-key",
            str(key),
        ],
    )
    assert result.exit_code == 0, result.output
    tampered = rewritten(signed, tmp_path / "tampered.tar.gz", change)
    with pytest.raises(RuntimeError, match="OPA exited with 1") as refused:
        OpaServer([tampered], arguments=verifying(public, "EdDSA")).start()
    assert refusal in str(refused.value)


def test_opa_refuses_a_bundle_signed_with_another_key(tmp_path: Path) -> None:
    key, _ = write_key(tmp_path / "ours.pem", ed25519.Ed25519PrivateKey.generate())
    _, theirs = write_key(tmp_path / "theirs.pem", ed25519.Ed25519PrivateKey.generate())
    signed = tmp_path / "signed.tar.gz"
    result = CliRunner().invoke(
        app,
        [
            "policy",
            "build",
            "--bundle",
            str(BUNDLE),
            "--out",
            str(signed),
            "--signing-key",
            str(key),
        ],
    )
    assert result.exit_code == 0, result.output
    with pytest.raises(RuntimeError, match="OPA exited with 1") as refused:
        OpaServer([signed], arguments=verifying(theirs, "EdDSA")).start()
    assert "signature" in str(refused.value).lower()


def test_a_signing_algorithm_that_does_not_suit_the_key_is_refused(tmp_path: Path) -> None:
    key, _ = write_key(tmp_path / "ed.pem", ed25519.Ed25519PrivateKey.generate())
    result = CliRunner().invoke(
        app,
        [
            "policy", "build", "--bundle", str(BUNDLE), "--out", str(tmp_path / "b.tar.gz"),
            "--signing-key", str(key), "--signing-alg", "RS256",
        ],
    )  # fmt: skip
    assert result.exit_code == 1
    assert "--signing-alg RS256 does not suit the key" in result.output
    assert not (tmp_path / "b.tar.gz").exists()
