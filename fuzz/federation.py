"""A three-node federation in one process: directory, certificates, keys and genuine tokens.

Every key is derived from a fixed label, so a certificate or token a seed holds is genuine in
every later run; tokens are signed, and checked, at one fixed instant, so a target's outcome
depends on its input alone and a seed never goes stale.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, tzinfo
from functools import cache
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Self
from unittest import mock

import jwt.api_jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from concordat.exchange.v1 import exchange_pb2
from concordat.federation.v1 import federation_pb2
from gateway.dev.pki import ensure_node_material, issue_node_certificate
from gateway.domain import Requester
from gateway.federation import assertions
from gateway.federation.assertions import (
    AssertionSigner,
    AssertionVerifier,
    ReceiptSigner,
    ReceiptVerifier,
    keyed_request_digest,
    request_digest,
)
from gateway.federation.directory import Directory, public_key_kid, sign_entry, write_directory
from gateway.federation.envelope import ENVELOPE_PREFIX

NODES = ("whitehall", "holyrood", "stormont")
# The node whose checks the federation targets drive, and the peer whose relays it receives.
PROVIDER = "holyrood"
PEER = "whitehall"
PROVIDER_HOLDS = frozenset({"BIRTH_REGISTRATION", "HEALTH_SUMMARY"})
# 2026-09-21T14:13:20Z: when every genuine token was signed and every check runs.
INSTANT = 1_790_000_000.0
EXCHANGE_ID = "f00dfeed" * 4
# The leeway and lifetime a node runs with (gateway/node.py uses the verifier's defaults).
LEEWAY_SECONDS = 5.0

_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
_SERVES: dict[str, list[dict[str, Any]]] = {
    "whitehall": [
        {"record_type": "BENEFIT_AWARD", "subject_kinds": ["nino"]},
        {
            "record_type": "BIRTH_REGISTRATION",
            "subject_kinds": ["registration_id"],
            "registration_prefixes": ["EW-"],
        },
    ],
    "holyrood": [
        {
            "record_type": "BIRTH_REGISTRATION",
            "subject_kinds": ["registration_id"],
            "registration_prefixes": ["SC-"],
        },
        {"record_type": "HEALTH_SUMMARY", "subject_kinds": ["chi_number"]},
    ],
    "stormont": [{"record_type": "HEALTH_SUMMARY", "subject_kinds": ["hc_number"]}],
}


def _secret(label: str) -> bytes:
    return hashlib.sha256(f"concordat fuzz federation: {label}".encode()).digest()


# The one-exchange key of the genuine relays' request digests, sent beside their assertions as
# a requesting node sends it (gateway/federation/assertions.py).
DIGEST_KEY = _secret("request digest")


def ed25519_key(label: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(_secret(label))


def _ec_key(label: str) -> ec.EllipticCurvePrivateKey:
    scalar = int.from_bytes(_secret(label), "big") % (_P256_ORDER - 1) + 1
    return ec.derive_private_key(scalar, ec.SECP256R1())


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey | Ed25519PrivateKey) -> None:
    """Put a derived key where devpki looks for one, so it reuses it instead of making one."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(pem)


def _public_pem(key: Ed25519PrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


class _AtInstant(datetime):
    @classmethod
    def now(cls, tz: tzinfo | None = None) -> Self:
        return cls.fromtimestamp(INSTANT, tz)


_CLOCK_AT_INSTANT = SimpleNamespace(time=lambda: INSTANT)


@contextmanager
def at_instant() -> Iterator[None]:
    """Pin the clocks tokens are checked by: the envelope checks read assertions.time, PyJWT
    (an earlier release's JWTs) reads the datetime inside jwt.api_jwt.

    Patched by hand rather than with mock.patch, which would cost a fifth of an execution.
    """
    # api_jwt imports datetime without re-exporting it; that name is the one it reads.
    assert jwt.api_jwt.datetime is datetime  # type: ignore[attr-defined]  # noqa: S101
    clock = assertions.time
    jwt.api_jwt.datetime = _AtInstant  # type: ignore[attr-defined]
    assertions.time = _CLOCK_AT_INSTANT  # type: ignore[assignment]  # time.time alone is read
    try:
        yield
    finally:
        jwt.api_jwt.datetime = datetime  # type: ignore[attr-defined]
        assertions.time = clock


@contextmanager
def _signing_at_instant() -> Iterator[None]:
    """The signers read time.time() and a random nonce; both fixed, their tokens are too."""
    nonces = SimpleNamespace(token_urlsafe=lambda _: "fuzz-nonce")
    with (
        mock.patch.object(assertions, "time", _CLOCK_AT_INSTANT),
        mock.patch.object(assertions, "secrets", nonces),
    ):
        yield


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def sign_compact(header: bytes, payload: bytes, key: Ed25519PrivateKey) -> str:
    """A compact JWS over exactly these header and payload bytes, whatever they hold."""
    signing_input = f"{b64url(header)}.{b64url(payload)}"
    return f"{signing_input}.{b64url(key.sign(signing_input.encode()))}"


def sign_envelope(payload: bytes, key: Ed25519PrivateKey) -> str:
    """An envelope over exactly these payload bytes, whatever they hold."""
    signed = f"{ENVELOPE_PREFIX}{b64url(payload)}"
    return f"{signed}.{b64url(key.sign(signed.encode()))}"


def signed_part(token: str) -> str:
    """What an envelope's or a compact JWS's signature covers: everything before its last dot."""
    return token.rpartition(".")[0]


def get_request() -> exchange_pb2.GetRecordRequest:
    """A Scottish birth registration, as whitehall relays it to holyrood."""
    request = exchange_pb2.GetRecordRequest(
        record_type=exchange_pb2.RECORD_TYPE_BIRTH_REGISTRATION,
        purpose=exchange_pb2.PURPOSE_CIVIL_REGISTRATION,
        agreement_id="cr-dwp-nrs-births-2026",
        case_reference="UC-2026-000417",
        idempotency_key="k-0001",
        provider_node=PROVIDER,
    )
    request.subject.registration_id = "SC-B-1931-000037"
    request.field_mask.paths.extend(["registration_id", "given_name", "family_name"])
    return request


def stream_request() -> exchange_pb2.StreamRecordsRequest:
    """A research extract of health summaries by CHI number, as whitehall relays it."""
    request = exchange_pb2.StreamRecordsRequest(
        record_type=exchange_pb2.RECORD_TYPE_HEALTH_SUMMARY,
        purpose=exchange_pb2.PURPOSE_RESEARCH,
        agreement_id="res-ons-health-2026",
        batch_size=500,
        provider_node=PROVIDER,
    )
    for chi in ("0101701233", "1503851230", "2902004569"):
        request.subjects.add(chi_number=chi)
    request.field_mask.paths.extend(["date_of_birth", "conditions"])
    return request


def response() -> exchange_pb2.GetRecordResponse:
    """What holyrood answers the relayed GetRecord with (only its digest is signed)."""
    return exchange_pb2.GetRecordResponse(
        exchange_id=EXCHANGE_ID,
        released_fields=["registration_id", "given_name"],
        ingress_decision_id="ingress-0001",
        provider_node=PROVIDER,
        withheld=[exchange_pb2.WithheldField(field="family_name", rule="common.not_in_dsa")],
    )


@dataclass(frozen=True)
class Federation:
    """What the federation targets check against, built once per process."""

    directory: Directory
    # The certificates a calling peer may present, by what they are.
    certificates: dict[str, bytes]
    signing_keys: dict[str, Ed25519PrivateKey]
    kids: dict[str, str]
    requesters: dict[str, Requester]
    genuine_get: federation_pb2.RelayRequest
    genuine_stream: federation_pb2.RelayStreamRequest
    # A relay from stormont, whose certificate and key are genuine but not whitehall's.
    stormont_get: federation_pb2.RelayRequest
    genuine_receipt: str
    # The signed parts of every token the genuine signers made, by signing node.
    signed_parts: dict[str, frozenset[str]]

    def assertion_verifier(self) -> AssertionVerifier:
        """A verifier of assertions (replays are the replay guard's, which is not fuzzed here)."""
        return AssertionVerifier(PROVIDER, self.directory.signing_key, LEEWAY_SECONDS)

    def receipt_verifier(self) -> ReceiptVerifier:
        return ReceiptVerifier(self.directory.signing_key)


def _sign_assertion(
    signer: AssertionSigner, requester: Requester, request: Any, audience: str = PROVIDER
) -> str:
    with _signing_at_instant():
        return signer.sign(
            exchange_id=EXCHANGE_ID,
            audience_node=audience,
            requester=requester,
            request_digest=keyed_request_digest(DIGEST_KEY, request),
        )


def _pki(state: Path) -> tuple[dict[str, bytes], dict[str, bytes]]:
    """Each node's CA and TLS certificate, made by devpki from derived keys; and a forgery."""
    certificates: dict[str, bytes] = {}
    cas: dict[str, bytes] = {}
    materials = {}
    for node in NODES:
        node_dir = state / node
        _write_key(node_dir / "ca_key.pem", _ec_key(f"{node} ca"))
        _write_key(node_dir / "tls_key.pem", _ec_key(f"{node} tls"))
        _write_key(node_dir / "signing_key.pem", ed25519_key(f"{node} signing"))
        materials[node] = ensure_node_material(state, node)
        certificates[node] = materials[node].tls_cert.read_bytes()
        cas[node] = materials[node].ca_cert.read_bytes()
    # stormont's CA minting a certificate that names whitehall: TLS would accept it (every
    # member's CA is a root), the providing node must not.
    forged = state / "forged"
    _write_key(forged / "tls_key.pem", _ec_key("forged tls"))
    cert_path, _ = issue_node_certificate(
        materials["stormont"].ca_cert, materials["stormont"].ca_key, PEER, forged
    )
    certificates["forged-whitehall"] = cert_path.read_bytes()
    return certificates, cas


@cache
def federation() -> Federation:
    with tempfile.TemporaryDirectory(prefix="concordat-fuzz-") as temporary:
        state = Path(temporary)
        certificates, cas = _pki(state)
        signing_keys = {node: ed25519_key(f"{node} signing") for node in NODES}
        kids = {node: public_key_kid(node, key.public_key()) for node, key in signing_keys.items()}
        entries = [
            sign_entry(
                {
                    "node": node,
                    "name": f"{node.title()} administration",
                    "exchange_endpoint": f"127.0.0.1:74{index:02d}",
                    "federation_endpoint": f"127.0.0.1:75{index:02d}",
                    "ca_cert_pem": cas[node].decode(),
                    "signing_keys": [
                        {"kid": kids[node], "public_key_pem": _public_pem(signing_keys[node])}
                    ],
                    "serves": _SERVES[node],
                    "serial": 1,
                    "issued_at": "2026-09-01T00:00:00Z",
                },
                ed25519_key(f"{node} directory"),
            )
            for index, node in enumerate(NODES, start=1)
        ]
        write_directory(state / "directory.json", entries)
        anchors = {node: ed25519_key(f"{node} directory").public_key() for node in NODES}
        directory = Directory.load(state / "directory.json", anchors)

    requesters = {
        node: Requester(
            organisation="dwp" if node == PEER else "doh",
            system="universal-credit" if node == PEER else "hsc-records",
            administration=node,
            accreditations=frozenset({"civil-registration", "approved-researcher"}),
        )
        for node in NODES
    }
    signers = {node: AssertionSigner(node, signing_keys[node], kids[node]) for node in NODES}
    get, stream = get_request(), stream_request()
    genuine_get = federation_pb2.RelayRequest(
        exchange_id=EXCHANGE_ID,
        assertion=_sign_assertion(signers[PEER], requesters[PEER], get),
        request=get,
    )
    genuine_stream = federation_pb2.RelayStreamRequest(
        exchange_id=EXCHANGE_ID,
        assertion=_sign_assertion(signers[PEER], requesters[PEER], stream),
        request=stream,
        accepts_encoded_batch=True,
    )
    stormont_get = federation_pb2.RelayRequest(
        exchange_id=EXCHANGE_ID,
        assertion=_sign_assertion(signers["stormont"], requesters["stormont"], get),
        request=get,
    )
    answer = response()
    with _signing_at_instant():
        receipt = ReceiptSigner(PROVIDER, signing_keys[PROVIDER], kids[PROVIDER]).sign(
            exchange_id=EXCHANGE_ID,
            requesting_node=PEER,
            response_digest=request_digest(answer),
            record_count=1,
            released_fields=list(answer.released_fields),
            ingress_decision_id=answer.ingress_decision_id,
        )
    signed_parts = {
        PEER: frozenset(
            {signed_part(genuine_get.assertion), signed_part(genuine_stream.assertion)}
        ),
        "stormont": frozenset({signed_part(stormont_get.assertion)}),
        PROVIDER: frozenset({signed_part(receipt)}),
    }
    return Federation(
        directory=directory,
        certificates=certificates,
        signing_keys=signing_keys,
        kids=kids,
        requesters=requesters,
        genuine_get=genuine_get,
        genuine_stream=genuine_stream,
        stormont_get=stormont_get,
        genuine_receipt=receipt,
        signed_parts=signed_parts,
    )


def claims_of(token: str) -> dict[str, Any]:
    """The payload of an envelope or a compact JWS, read without checking anything (for the
    harness's oracle): both carry it between their first and last dots."""
    payload = token.split(".")[1]
    claims: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return claims
