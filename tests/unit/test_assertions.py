"""On-behalf-of assertions and receipts, signed and checked with real Ed25519 keys."""

from __future__ import annotations

import base64
import json
import time
import uuid
from dataclasses import replace

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from concordat.exchange.v1 import exchange_pb2
from gateway.audit.reconcile import pinned_position
from gateway.domain import Requester
from gateway.errors import DeadlineExceeded, PeerRejected
from gateway.federation.assertions import (
    AssertionSigner,
    AssertionVerifier,
    ReceiptSigner,
    ReceiptVerifier,
    request_digest,
)
from gateway.federation.directory import public_key_kid
from gateway.federation.envelope import MAX_ENVELOPE_CHARS, canonical_json, open_envelope
from gateway.identity import ReplayCache

REQUESTER = Requester(
    organisation="dwp",
    system="universal-credit",
    administration="whitehall",
    accreditations=frozenset({"fraud-investigator"}),
)


class Keys:
    """A stand-in for the directory's (node, kid) -> public key lookup."""

    def __init__(self) -> None:
        self.private: dict[str, Ed25519PrivateKey] = {}
        self._public: dict[tuple[str, str], Ed25519PublicKey] = {}

    def add(self, node: str) -> tuple[Ed25519PrivateKey, str]:
        key = Ed25519PrivateKey.generate()
        kid = public_key_kid(node, key.public_key())
        self._public[(node, kid)] = key.public_key()
        return key, kid

    def __call__(self, node: str, kid: str) -> Ed25519PublicKey:
        try:
            return self._public[(node, kid)]
        except KeyError:
            raise PeerRejected(f"node {node} has no signing key {kid!r}") from None


@pytest.fixture
def keys() -> Keys:
    return Keys()


@pytest.fixture
def signer(keys: Keys) -> AssertionSigner:
    key, kid = keys.add("whitehall")
    return AssertionSigner("whitehall", key, kid)


@pytest.fixture
def verifier(keys: Keys) -> AssertionVerifier:
    return AssertionVerifier("holyrood", keys)


def a_request(agreement: str = "DSA-2026-014") -> exchange_pb2.GetRecordRequest:
    return exchange_pb2.GetRecordRequest(
        idempotency_key="k-1",
        record_type=exchange_pb2.RECORD_TYPE_BIRTH_REGISTRATION,
        subject=exchange_pb2.SubjectIdentifier(registration_id="SC-2021-000123"),
        agreement_id=agreement,
    )


def sign(signer: AssertionSigner, exchange_id: str, **overrides: object) -> str:
    options: dict = {
        "exchange_id": exchange_id,
        "audience_node": "holyrood",
        "requester": REQUESTER,
        "request_digest": request_digest(a_request()),
        **overrides,
    }
    return signer.sign(**options)


def verify(
    verifier: AssertionVerifier, token: str, exchange_id: str, **overrides: str
) -> Requester:
    options = {
        "peer_node": "whitehall",
        "exchange_id": exchange_id,
        "request_digest": request_digest(a_request()),
        **overrides,
    }
    return verifier.verify(token, **options)


def caller(requester: Requester) -> Requester:
    """The caller an assertion speaks for, without the id and expiry the replay guard keeps."""
    return replace(requester, token_id="", token_expires_at=0.0)


def with_claims(token: str, **changes: object) -> str:
    """The envelope with its claims changed (canonically encoded) but its signature kept."""
    return with_payload(token, canonical_json({**open_envelope(token).claims, **changes}))


def with_payload(token: str, payload: bytes) -> str:
    """The envelope with these payload bytes in place of its own, its signature kept."""
    version, _, signature = token.split(".")
    return f"{version}.{b64(payload)}.{signature}"


def resealed(token: str, key: Ed25519PrivateKey, payload: bytes) -> str:
    """An envelope of exactly these payload bytes, genuinely signed with `key`."""
    signed = f"{token.split('.')[0]}.{b64(payload)}"
    return f"{signed}.{b64(key.sign(signed.encode()))}"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def test_the_digest_is_stable_and_covers_every_field() -> None:
    assert request_digest(a_request()) == request_digest(a_request())
    assert request_digest(a_request()) != request_digest(a_request("DSA-2026-015"))
    assert len(request_digest(a_request())) == 64


def test_an_assertion_round_trips_to_the_requester(
    signer: AssertionSigner, verifier: AssertionVerifier
) -> None:
    exchange_id = str(uuid.uuid4())

    assert caller(verify(verifier, sign(signer, exchange_id), exchange_id)) == REQUESTER


def test_a_tampered_assertion_is_refused(
    signer: AssertionSigner, verifier: AssertionVerifier
) -> None:
    exchange_id = str(uuid.uuid4())
    token = with_claims(
        sign(signer, exchange_id),
        requester={**REQUESTER.as_policy_input(), "accreditations": ["researcher"]},
    )

    with pytest.raises(PeerRejected, match=r"^assertion signature is invalid$"):
        verify(verifier, token, exchange_id)


def test_an_expired_assertion_is_refused(keys: Keys, signer: AssertionSigner) -> None:
    exchange_id = str(uuid.uuid4())
    token = sign(signer, exchange_id, expires_in=0.01)
    time.sleep(0.05)

    with pytest.raises(PeerRejected, match=r"^assertion has expired$"):
        verify(AssertionVerifier("holyrood", keys, leeway_seconds=0), token, exchange_id)


def test_the_callers_deadline_caps_the_assertion_lifetime(signer: AssertionSigner) -> None:
    token = sign(signer, "x", expires_in=2.5)
    claims = open_envelope(token).claims

    assert claims["exp"] - claims["iat"] == pytest.approx(2.5)


def test_a_deadline_already_passed_signs_nothing(signer: AssertionSigner) -> None:
    with pytest.raises(DeadlineExceeded):
        sign(signer, "x", expires_in=0)


def test_an_assertion_for_another_node_is_refused(
    signer: AssertionSigner, verifier: AssertionVerifier
) -> None:
    exchange_id = str(uuid.uuid4())
    token = sign(signer, exchange_id, audience_node="stormont")

    with pytest.raises(PeerRejected, match="addressed to another node, not holyrood"):
        verify(verifier, token, exchange_id)


def test_one_node_cannot_speak_for_another(
    signer: AssertionSigner, verifier: AssertionVerifier
) -> None:
    exchange_id = str(uuid.uuid4())

    with pytest.raises(PeerRejected) as caught:
        verify(verifier, sign(signer, exchange_id), exchange_id, peer_node="cardiff")
    assert caught.value.message == (
        "assertion issuer whitehall does not match the calling peer cardiff"
    )


def test_an_assertion_for_a_different_request_is_refused(
    signer: AssertionSigner, verifier: AssertionVerifier
) -> None:
    exchange_id = str(uuid.uuid4())
    other = request_digest(a_request("DSA-2026-999"))

    with pytest.raises(PeerRejected, match=r"^assertion does not cover this request$"):
        verify(verifier, sign(signer, exchange_id), exchange_id, request_digest=other)


def test_an_assertion_for_a_different_exchange_is_refused(
    signer: AssertionSigner, verifier: AssertionVerifier
) -> None:
    token = sign(signer, str(uuid.uuid4()))

    with pytest.raises(PeerRejected, match="different exchange"):
        verify(verifier, token, str(uuid.uuid4()))


def test_an_assertion_under_an_unknown_key_is_refused(verifier: AssertionVerifier) -> None:
    exchange_id = str(uuid.uuid4())
    unpublished = AssertionSigner("whitehall", Ed25519PrivateKey.generate(), "whitehall-unknown")

    with pytest.raises(PeerRejected, match="no signing key 'whitehall-unknown'"):
        verify(verifier, sign(unpublished, exchange_id), exchange_id)


def test_a_requester_from_another_administration_is_refused(
    signer: AssertionSigner, verifier: AssertionVerifier
) -> None:
    exchange_id = str(uuid.uuid4())
    scottish = Requester(organisation="sg", system="benefits", administration="holyrood")

    with pytest.raises(PeerRejected, match="caller of holyrood, not of the issuing node whitehall"):
        verify(verifier, sign(signer, exchange_id, requester=scottish), exchange_id)


async def test_a_replayed_assertion_carries_the_id_the_replay_guard_refuses_the_second_time(
    signer: AssertionSigner, verifier: AssertionVerifier
) -> None:
    exchange_id = str(uuid.uuid4())
    token = sign(signer, exchange_id)
    first, again = (verify(verifier, token, exchange_id) for _ in range(2))
    guard = ReplayCache(leeway_seconds=5)

    assert await guard.first_use(first.token_id, first.token_expires_at)
    assert again.token_id == first.token_id
    assert not await guard.first_use(again.token_id, again.token_expires_at)


def test_a_retry_signs_a_fresh_assertion_for_the_same_exchange(
    signer: AssertionSigner, verifier: AssertionVerifier
) -> None:
    exchange_id = str(uuid.uuid4())
    first = verify(verifier, sign(signer, exchange_id), exchange_id)
    retry = verify(verifier, sign(signer, exchange_id), exchange_id)

    assert caller(retry) == REQUESTER
    assert retry.token_id != first.token_id


def test_an_earlier_releases_jwt_is_refused_unless_signed_with_eddsa(
    keys: Keys, verifier: AssertionVerifier
) -> None:
    exchange_id = str(uuid.uuid4())
    token = jwt.encode(
        {"iss": "whitehall", "aud": "holyrood", "jti": exchange_id},
        "a-shared-secret-that-is-long-enough-for-hs256",
        algorithm="HS256",
        headers={"kid": "whitehall-1", "typ": "concordat-assertion+jwt"},
    )

    with pytest.raises(PeerRejected, match="must be signed with EdDSA"):
        verify(verifier, token, exchange_id)


def test_a_receipt_cannot_pass_as_an_assertion(keys: Keys, verifier: AssertionVerifier) -> None:
    key, kid = keys.add("whitehall")
    receipt = ReceiptSigner("whitehall", key, kid).sign(
        exchange_id="e-1",
        requesting_node="holyrood",
        response_digest=request_digest(a_request()),
        record_count=1,
        released_fields=["name"],
        ingress_decision_id="d-1",
    )

    with pytest.raises(PeerRejected, match="wrong token type"):
        verify(verifier, receipt, "e-1")


def test_garbage_is_a_malformed_assertion(verifier: AssertionVerifier) -> None:
    with pytest.raises(PeerRejected, match=r"^assertion is malformed$"):
        verify(verifier, "not.a.token", "e-1")


@pytest.fixture
def receipts(keys: Keys) -> tuple[ReceiptSigner, ReceiptVerifier]:
    key, kid = keys.add("holyrood")
    return ReceiptSigner("holyrood", key, kid), ReceiptVerifier(keys)


def sign_receipt(signer: ReceiptSigner, exchange_id: str, digest: str) -> str:
    return signer.sign(
        exchange_id=exchange_id,
        requesting_node="whitehall",
        response_digest=digest,
        record_count=2,
        released_fields=["registration_id", "date_of_birth"],
        ingress_decision_id="dec-holyrood-1",
    )


def test_a_receipt_round_trips_to_its_claims(
    receipts: tuple[ReceiptSigner, ReceiptVerifier],
) -> None:
    signer, verifier = receipts
    token = sign_receipt(signer, "e-1", "ab" * 32)

    claims = verifier.verify(
        token, provider_node="holyrood", exchange_id="e-1", response_digest="ab" * 32
    )

    assert claims["aud"] == "whitehall"
    assert claims["record_count"] == 2
    assert claims["released_fields"] == ["registration_id", "date_of_birth"]
    assert claims["ingress_decision_id"] == "dec-holyrood-1"


def test_a_receipt_for_other_records_is_refused(
    receipts: tuple[ReceiptSigner, ReceiptVerifier],
) -> None:
    signer, verifier = receipts
    token = sign_receipt(signer, "e-1", "ab" * 32)

    with pytest.raises(PeerRejected, match=r"^receipt does not match the records received$"):
        verifier.verify(
            token, provider_node="holyrood", exchange_id="e-1", response_digest="cd" * 32
        )


def test_a_receipt_for_another_exchange_or_from_another_node_is_refused(
    receipts: tuple[ReceiptSigner, ReceiptVerifier],
) -> None:
    signer, verifier = receipts
    token = sign_receipt(signer, "e-1", "ab" * 32)

    with pytest.raises(PeerRejected, match="different exchange"):
        verifier.verify(
            token, provider_node="holyrood", exchange_id="e-2", response_digest="ab" * 32
        )
    with pytest.raises(PeerRejected, match="does not match the providing node stormont"):
        verifier.verify(
            token, provider_node="stormont", exchange_id="e-1", response_digest="ab" * 32
        )


def test_a_tampered_receipt_is_refused(receipts: tuple[ReceiptSigner, ReceiptVerifier]) -> None:
    signer, verifier = receipts
    token = with_claims(sign_receipt(signer, "e-1", "ab" * 32), record_count=0)

    with pytest.raises(PeerRejected, match=r"^receipt signature is invalid$"):
        verifier.verify(
            token, provider_node="holyrood", exchange_id="e-1", response_digest="ab" * 32
        )


def test_an_envelope_in_another_spelling_of_its_signed_claims_is_refused(
    keys: Keys, verifier: AssertionVerifier
) -> None:
    key, kid = keys.add("whitehall")
    token = sign(AssertionSigner("whitehall", key, kid), "e-1")
    claims = open_envelope(token).claims
    spaced = json.dumps(claims, sort_keys=True).encode()
    duplicated = canonical_json(claims)[:-1] + b',"aud":"holyrood"}'

    for payload in (spaced, duplicated):
        with pytest.raises(PeerRejected, match=r"^assertion is malformed$"):
            verify(verifier, resealed(token, key, payload), "e-1")


def test_an_envelope_with_a_claim_this_version_does_not_write_is_refused(
    keys: Keys, verifier: AssertionVerifier
) -> None:
    key, kid = keys.add("whitehall")
    token = sign(AssertionSigner("whitehall", key, kid), "e-1")
    extra = canonical_json({**open_envelope(token).claims, "scope": "everything"})

    with pytest.raises(PeerRejected, match=r"^assertion carries a claim this node does not know$"):
        verify(verifier, resealed(token, key, extra), "e-1")


def test_an_envelope_missing_a_claim_is_refused_even_when_genuinely_signed(
    keys: Keys, verifier: AssertionVerifier
) -> None:
    key, kid = keys.add("whitehall")
    token = sign(AssertionSigner("whitehall", key, kid), "e-1")
    claims = open_envelope(token).claims
    del claims["nonce"]

    with pytest.raises(PeerRejected, match=r"^assertion is missing required claim 'nonce'$"):
        verify(verifier, resealed(token, key, canonical_json(claims)), "e-1")


def test_an_envelope_over_the_size_bound_is_malformed_before_anything_is_parsed(
    signer: AssertionSigner, verifier: AssertionVerifier
) -> None:
    token = sign(signer, "e-1")
    padded = with_claims(token, nonce="n" * MAX_ENVELOPE_CHARS)

    with pytest.raises(PeerRejected, match=r"^assertion is malformed$"):
        verify(verifier, padded, "e-1")


def test_a_signature_with_unused_bits_set_is_a_second_spelling_and_refused(
    signer: AssertionSigner, verifier: AssertionVerifier
) -> None:
    token = sign(signer, "e-1")
    # 64 bytes take 86 base64url characters, the last carrying 4 unused bits, so it is one of
    # A, Q, g, w; the next letter decodes to the same bytes.
    second_spelling = token[:-1] + {"A": "B", "Q": "R", "g": "h", "w": "x"}[token[-1]]

    with pytest.raises(PeerRejected, match=r"^assertion is malformed$"):
        verify(verifier, second_spelling, "e-1")


def test_a_jwt_signature_cannot_be_replayed_as_an_envelope(
    keys: Keys, verifier: AssertionVerifier
) -> None:
    key, kid = keys.add("whitehall")
    envelope = sign(AssertionSigner("whitehall", key, kid), "e-1")
    claims = open_envelope(envelope).claims
    legacy = jwt.encode(claims, key, algorithm="EdDSA", headers={"kid": kid, "typ": "x"})
    _, payload, signature = legacy.split(".")

    with pytest.raises(PeerRejected, match=r"^assertion (is malformed|signature is invalid)$"):
        verify(verifier, f"ce1.{payload}.{signature}", "e-1")


def test_an_earlier_releases_jwt_assertion_still_verifies_with_every_check(
    keys: Keys, verifier: AssertionVerifier
) -> None:
    key, kid = keys.add("whitehall")
    now = time.time()
    claims = {
        "iss": "whitehall",
        "aud": "holyrood",
        "jti": "e-1",
        "iat": now,
        "nbf": now,
        "exp": now + 30,
        "nonce": "n-1",
        "digest": request_digest(a_request()),
        "requester": REQUESTER.as_policy_input(),
    }
    headers = {"kid": kid, "typ": "concordat-assertion+jwt"}
    legacy = jwt.encode(claims, key, algorithm="EdDSA", headers=headers)
    elsewhere = jwt.encode({**claims, "aud": "stormont"}, key, algorithm="EdDSA", headers=headers)

    assert caller(verify(verifier, legacy, "e-1")) == REQUESTER
    with pytest.raises(PeerRejected, match="addressed to another node, not holyrood"):
        verify(verifier, elsewhere, "e-1")


def test_an_earlier_releases_jwt_receipt_still_verifies(
    receipts: tuple[ReceiptSigner, ReceiptVerifier],
) -> None:
    signer, verifier = receipts
    token = signer.sign(
        exchange_id="e-1",
        requesting_node="whitehall",
        response_digest="ab" * 32,
        record_count=1,
        released_fields=["name"],
        ingress_decision_id="d-1",
        log_position=(7, "cd" * 32),
        as_jwt=True,
    )

    assert jwt.get_unverified_header(token)["typ"] == "concordat-receipt+jwt"
    claims = verifier.verify(
        token, provider_node="holyrood", exchange_id="e-1", response_digest="ab" * 32
    )
    assert (claims["log_seq"], claims["log_hash"]) == (7, "cd" * 32)


def test_a_receipt_kept_as_text_pins_the_providers_entry_and_verifies_later(
    receipts: tuple[ReceiptSigner, ReceiptVerifier],
) -> None:
    signer, verifier = receipts
    kept = json.loads(
        json.dumps(
            {
                "receipt": signer.sign(
                    exchange_id="e-1",
                    requesting_node="whitehall",
                    response_digest="ab" * 32,
                    record_count=1,
                    released_fields=["name"],
                    ingress_decision_id="d-1",
                    log_position=(7, "cd" * 32),
                )
            }
        )
    )["receipt"]

    assert pinned_position(kept) == (7, "cd" * 32)
    assert (
        verifier.verify(
            kept, provider_node="holyrood", exchange_id="e-1", response_digest="ab" * 32
        )["log_seq"]
        == 7
    )


def test_a_receipt_pinning_half_a_position_is_refused(
    keys: Keys, receipts: tuple[ReceiptSigner, ReceiptVerifier]
) -> None:
    key, kid = keys.add("holyrood")
    token = ReceiptSigner("holyrood", key, kid).sign(
        exchange_id="e-1",
        requesting_node="whitehall",
        response_digest="ab" * 32,
        record_count=1,
        released_fields=["name"],
        ingress_decision_id="d-1",
        log_position=(7, "cd" * 32),
    )
    claims = open_envelope(token).claims
    del claims["log_hash"]
    _, verifier = receipts

    with pytest.raises(
        PeerRejected, match=r"^receipt claim 'log_hash' must be a non-empty string$"
    ):
        verifier.verify(
            resealed(token, key, canonical_json(claims)),
            provider_node="holyrood",
            exchange_id="e-1",
            response_digest="ab" * 32,
        )


def test_an_assertion_cannot_pass_as_a_receipt(
    signer: AssertionSigner, receipts: tuple[ReceiptSigner, ReceiptVerifier]
) -> None:
    _, verifier = receipts

    with pytest.raises(PeerRejected, match=r"^receipt has the wrong token type$"):
        verifier.verify(
            sign(signer, "e-1"), provider_node="whitehall", exchange_id="e-1", response_digest="x"
        )
