"""A peer is who its certificate says, vouched by its own CA; assertions cannot be bent."""

from __future__ import annotations

import time
from pathlib import Path

import grpc
import jwt
import pytest

from concordat.exchange.v1 import exchange_pb2
from concordat.federation.v1 import federation_pb2, federation_pb2_grpc
from gateway.dev.pki import ensure_node_material, issue_node_certificate
from gateway.domain import Requester
from gateway.exchange import new_exchange_id
from gateway.federation.assertions import (
    ASSERTION_TYPE,
    DIGEST_KEY_METADATA,
    JWT_ASSERTION_TYPE,
    AssertionSigner,
    ReceiptVerifier,
    keyed_request_digest,
    request_digest,
)
from gateway.federation.directory import Directory, public_key_kid
from gateway.federation.envelope import is_envelope, seal
from gateway.federation.peers import peer_server_name
from gateway.keys import load_public_key, load_signing_key
from gateway.testing import get_request, read_audit
from tests.e2e.conftest import Federation
from tests.e2e.test_federation import subject
from tests.support.hostile import HOSTILE_BODIES, assert_clean_refusal

pytestmark = pytest.mark.slow

DWP = Requester(organisation="dwp", system="e2e", administration="whitehall")


def _channel(federation: Federation, target: str, cert: Path, key: Path) -> grpc.aio.Channel:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=federation.states[target].material.ca_cert.read_bytes(),
        private_key=key.read_bytes(),
        certificate_chain=cert.read_bytes(),
    )
    return grpc.aio.secure_channel(
        federation.federation_address(target),
        credentials,
        options=(("grpc.ssl_target_name_override", peer_server_name(target)),),
    )


def _birth_request(federation: Federation) -> exchange_pb2.GetRecordRequest:
    value = subject(federation, "holyrood", "BIRTH_REGISTRATION", "registration_id")
    request = get_request(
        "BIRTH_REGISTRATION",
        registration_id=str(value),
        purpose="CIVIL_REGISTRATION",
        agreement_id="cr-dwp-nrs-births-2026",
        fields=["registration_id", "family_name"],
    )
    request.provider_node = "holyrood"
    return request


# The one-exchange key of these relays' request digests (gateway/federation/assertions.py).
DIGEST_KEY = b"e2e request digest key, 32 bytes"


def _whitehall_signer(federation: Federation, ttl: float = 30) -> AssertionSigner:
    key = load_signing_key(federation.states["whitehall"].material.signing_key)
    return AssertionSigner(
        "whitehall", key, public_key_kid("whitehall", key.public_key()), ttl_seconds=ttl
    )


def _signed_birth_request(
    federation: Federation,
) -> tuple[exchange_pb2.GetRecordRequest, str, str]:
    """A relay request for holyrood with whitehall's genuine assertion over it."""
    request = _birth_request(federation)
    exchange_id = new_exchange_id()
    assertion = _whitehall_signer(federation).sign(
        exchange_id=exchange_id,
        audience_node="holyrood",
        requester=DWP,
        request_digest=keyed_request_digest(DIGEST_KEY, request),
    )
    return request, exchange_id, assertion


async def _relay(
    channel: grpc.aio.Channel,
    assertion: str,
    request: exchange_pb2.GetRecordRequest,
    exchange_id: str,
) -> federation_pb2.RelayResponse:
    stub = federation_pb2_grpc.FederationServiceStub(channel)
    return await stub.Relay(
        federation_pb2.RelayRequest(exchange_id=exchange_id, assertion=assertion, request=request),
        timeout=5,
        # The key of the assertion's request digest travels beside it, as a node sends it.
        metadata=((DIGEST_KEY_METADATA, DIGEST_KEY),),
    )


async def test_the_real_whitehall_identity_and_assertion_are_accepted(
    federation: Federation,
) -> None:
    material = federation.states["whitehall"].material
    request, exchange_id, assertion = _signed_birth_request(federation)
    channel = _channel(federation, "holyrood", material.tls_cert, material.tls_key)
    reply = await _relay(channel, assertion, request, exchange_id)
    await channel.close()
    assert reply.response.records and reply.receipt


async def test_a_certificate_from_an_unknown_ca_is_refused(
    federation: Federation, tmp_path: Path
) -> None:
    rogue = ensure_node_material(tmp_path, "whitehall")  # a CA nobody in the directory trusts
    request, exchange_id, assertion = _signed_birth_request(federation)
    channel = _channel(federation, "holyrood", rogue.tls_cert, rogue.tls_key)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _relay(channel, assertion, request, exchange_id)
    await channel.close()
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE  # the TLS handshake fails


async def test_a_valid_certificate_claiming_another_nodes_identity_is_refused(
    federation: Federation, tmp_path: Path
) -> None:
    stormont = federation.states["stormont"].material
    cert, key = issue_node_certificate(stormont.ca_cert, stormont.ca_key, "whitehall", tmp_path)
    request, exchange_id, assertion = _signed_birth_request(federation)
    channel = _channel(federation, "holyrood", cert, key)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _relay(channel, assertion, request, exchange_id)
    await channel.close()
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "not issued by whitehall's certificate authority" in caught.value.details()


async def test_a_tampered_assertion_is_refused(federation: Federation) -> None:
    material = federation.states["whitehall"].material
    request, exchange_id, assertion = _signed_birth_request(federation)
    request.field_mask.paths.append("mother_family_name")  # changed after signing
    channel = _channel(federation, "holyrood", material.tls_cert, material.tls_key)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _relay(channel, assertion, request, exchange_id)
    header, payload, signature = assertion.split(".")
    forged = f"{header}.{payload}.{signature[:-6]}AAAAAA"
    with pytest.raises(grpc.aio.AioRpcError) as forged_caught:
        await _relay(channel, forged, _birth_request(federation), exchange_id)
    await channel.close()
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "does not cover this request" in caught.value.details()
    assert forged_caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_an_expired_assertion_is_refused(federation: Federation) -> None:
    material = federation.states["whitehall"].material
    key = load_signing_key(material.signing_key)
    request = _birth_request(federation)
    exchange_id = new_exchange_id()
    now = time.time()
    claims = {
        "iss": "whitehall",
        "aud": "holyrood",
        "jti": exchange_id,
        "iat": now - 120,
        "nbf": now - 120,
        "exp": now - 60,
        "nonce": "n",
        "digest": keyed_request_digest(DIGEST_KEY, request),
        "requester": DWP.as_policy_input(),
    }
    kid = public_key_kid("whitehall", key.public_key())
    expired = seal({**claims, "typ": ASSERTION_TYPE, "kid": kid}, key)
    channel = _channel(federation, "holyrood", material.tls_cert, material.tls_key)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _relay(channel, expired, request, exchange_id)
    await channel.close()
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "expired" in caught.value.details()


async def test_a_relay_from_an_earlier_release_signed_as_a_jwt_is_answered_with_a_jwt_receipt(
    federation: Federation,
) -> None:
    material = federation.states["whitehall"].material
    key = load_signing_key(material.signing_key)
    request = _birth_request(federation)
    exchange_id = new_exchange_id()
    now = time.time()
    claims = {
        "iss": "whitehall",
        "aud": "holyrood",
        "jti": exchange_id,
        "iat": now,
        "nbf": now,
        "exp": now + 30,
        "nonce": "earlier-release",
        "digest": keyed_request_digest(DIGEST_KEY, request),
        "requester": DWP.as_policy_input(),
    }
    headers = {"kid": public_key_kid("whitehall", key.public_key()), "typ": JWT_ASSERTION_TYPE}
    earlier = jwt.encode(claims, key, algorithm="EdDSA", headers=headers)
    channel = _channel(federation, "holyrood", material.tls_cert, material.tls_key)
    reply = await _relay(channel, earlier, request, exchange_id)
    await channel.close()

    assert reply.response.records
    assert not is_envelope(reply.receipt)
    assert jwt.get_unverified_header(reply.receipt)["typ"] == "concordat-receipt+jwt"
    section = federation.configs["whitehall"]["federation"]
    anchors = {name: load_public_key(Path(path)) for name, path in section["trust_anchors"].items()}
    directory = Directory.load(Path(section["directory"]), anchors)
    ReceiptVerifier(directory.signing_key).verify(
        reply.receipt,
        provider_node="holyrood",
        exchange_id=exchange_id,
        response_digest=request_digest(reply.response),
    )


async def test_undecodable_relays_are_refused_and_audited_once_naming_the_peer(
    federation: Federation,
) -> None:
    material = federation.states["whitehall"].material
    channel = _channel(federation, "holyrood", material.tls_cert, material.tls_key)
    audit = federation.audit_path("holyrood")
    for method in ("Relay", "RelayStream"):
        path = f"/concordat.federation.v1.FederationService/{method}"
        for what, body in HOSTILE_BODIES.items():
            before = len(read_audit(audit))
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                if method == "Relay":
                    await channel.unary_unary(path)(body, timeout=10)
                else:
                    async for _ in channel.unary_stream(path)(body, timeout=10):
                        pass
            exchange_id = assert_clean_refusal(caught.value, f"{method} with {what}")
            entries = read_audit(audit)[before:]
            assert len(entries) == 1, (method, what, entries)
            assert entries[0]["exchange_id"] == exchange_id
            assert entries[0]["requesting_node"] == "whitehall"
            assert entries[0]["error_code"] == "invalid-request"
    request, exchange_id, assertion = _signed_birth_request(federation)
    reply = await _relay(channel, assertion, request, exchange_id)
    await channel.close()
    assert reply.response.records
