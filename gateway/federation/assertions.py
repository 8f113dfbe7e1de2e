"""On-behalf-of assertions and receipts: the signed envelopes two nodes exchange about a request.

The requesting node signs an assertion naming the original caller and a digest of the request;
the providing node signs a receipt over a digest of what it released. Both are Ed25519-signed
envelopes (gateway/federation/envelope.py) over their exact bytes, carry the signer's key id,
and are checked against the keys the signed directory publishes for the signer, with raw
`cryptography` calls: a JWT library costs about twice the signature it wraps, and what nodes
sign for each other need not be a JWT.

A node of an earlier release signed both as compact JWS (EdDSA JWTs). They are still verified,
with every check they had, so its relays are answered (with a JWT receipt it can read) and the
receipts kept in audit entries before the change still verify.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from google.protobuf.message import Message

from gateway.domain import Requester
from gateway.errors import DeadlineExceeded, PeerRejected
from gateway.federation.envelope import (
    MAX_ENVELOPE_CHARS,
    MalformedEnvelope,
    is_envelope,
    open_envelope,
    seal,
)
from gateway.keys import SigningKeys

DirectoryKeys = Callable[[str, str], Ed25519PublicKey]

# An envelope's `typ` claim: it stops an assertion being passed off as a receipt, or the reverse.
ASSERTION_TYPE = "concordat-assertion"
RECEIPT_TYPE = "concordat-receipt"
# The `typ` header of the JWTs an earlier release signs.
JWT_ASSERTION_TYPE = "concordat-assertion+jwt"
JWT_RECEIPT_TYPE = "concordat-receipt+jwt"
_ALGORITHM = "EdDSA"
_ASSERTION_CLAIMS = ("iss", "aud", "jti", "iat", "nbf", "exp", "nonce", "digest", "requester")
_RECEIPT_CLAIMS = (
    "iss",
    "aud",
    "jti",
    "iat",
    "digest",
    "record_count",
    "released_fields",
    "ingress_decision_id",
)
# Where the provider's entry sits in its chain: present together, or (an extract opened before
# its entry existed, an earlier release) not at all.
_RECEIPT_LOG_CLAIMS = ("log_seq", "log_hash")
# What an envelope carries besides its claims: its type and the signer's key id.
_ENVELOPE_HEADER = ("typ", "kid")
# Header and issuer values are chosen by the sender; only plain ones are echoed into messages.
_PRINTABLE = re.compile(r"[A-Za-z0-9._:-]{1,64}")


# The per-exchange key of an assertion's request digest travels beside the assertion, in the
# call's metadata, and is never stored: a plain SHA-256 of a request about a NINO can be
# reversed by trying every NINO, so the digest a providing node keeps is keyed (HMAC-SHA256).
DIGEST_KEY_METADATA = "concordat-digest-key-bin"


def keyed_request_digest(key: bytes, message: Message) -> str:
    """Hex HMAC-SHA256 of the message's deterministic serialisation under a one-exchange key."""
    return hmac.new(key, message.SerializeToString(deterministic=True), hashlib.sha256).hexdigest()


def new_digest_key() -> bytes:
    return secrets.token_bytes(32)


def request_digest(message: Message) -> str:
    """Hex SHA-256 of the message's deterministic serialisation."""
    return encoded_digest(message.SerializeToString(deterministic=True))


def encoded_digest(encoded: bytes) -> str:
    """Hex SHA-256 of a message already serialised deterministically: its request_digest."""
    return hashlib.sha256(encoded).hexdigest()


class AssertionSigner:
    """Signs short-lived assertions that this node relays a request on a caller's behalf."""

    def __init__(
        self,
        node: str,
        key: Ed25519PrivateKey | SigningKeys,
        kid: str = "",
        ttl_seconds: float = 30,
    ) -> None:
        """`key` is the node's rotating SigningKeys, or one fixed key with its `kid`."""
        if ttl_seconds <= 0:
            raise ValueError("assertion ttl must be positive")
        self._node = node
        self._keys = key if isinstance(key, SigningKeys) else SigningKeys.fixed(key, kid)
        self._ttl = ttl_seconds

    def sign(
        self,
        *,
        exchange_id: str,
        audience_node: str,
        requester: Requester,
        request_digest: str,
        expires_in: float | None = None,
    ) -> str:
        """Sign for one relay of `exchange_id`; `expires_in` (the deadline left) caps its life."""
        lifetime = self._ttl if expires_in is None else min(self._ttl, expires_in)
        if lifetime <= 0:
            raise DeadlineExceeded("the deadline ran out before the request could be relayed")
        now = time.time()
        claims = {
            "iss": self._node,
            "aud": audience_node,
            "jti": exchange_id,
            "iat": now,
            "nbf": now,
            "exp": now + lifetime,
            # Each signature is unique, so a retried relay of the same exchange is not a replay.
            "nonce": secrets.token_urlsafe(12),
            "digest": request_digest,
            "requester": requester.as_policy_input(),
        }
        signing = self._keys.current()
        return seal({**claims, "typ": ASSERTION_TYPE, "kid": signing.kid}, signing.private)


class AssertionVerifier:
    """Checks a peer's assertion and returns the caller it speaks for, or raises PeerRejected."""

    def __init__(
        self,
        node: str,
        directory_keys: DirectoryKeys,
        leeway_seconds: float = 5,
        *,
        max_lifetime_seconds: float = 120,
    ) -> None:
        if leeway_seconds < 0 or max_lifetime_seconds <= 0:
            raise ValueError("leeway must be >= 0 and max lifetime > 0 seconds")
        self._node = node
        self._directory_keys = directory_keys
        self._leeway = leeway_seconds
        self._max_lifetime = max_lifetime_seconds

    def verify(
        self, token: str, *, peer_node: str, exchange_id: str, request_digest: str
    ) -> Requester:
        """Check signer, signature, audience, freshness, exchange and digest; return the caller.

        `peer_node` is the identity from the peer's mTLS certificate: one node cannot speak for
        another.
        """
        claims = _verified_claims(
            token,
            kind="assertion",
            token_types=(ASSERTION_TYPE, JWT_ASSERTION_TYPE),
            signer=peer_node,
            signer_role="the calling peer",
            directory_keys=self._directory_keys,
            audience=self._node,
            leeway=self._leeway,
            required=_ASSERTION_CLAIMS,
        )
        for name in ("iat", "nbf", "exp"):
            if not _is_number(claims[name]):
                raise PeerRejected(f"assertion claim {name!r} must be a number")
        if claims["exp"] - claims["iat"] > self._max_lifetime:
            raise PeerRejected(f"assertion lifetime exceeds the allowed {self._max_lifetime:g}s")
        if claims["jti"] != exchange_id:
            raise PeerRejected("assertion was issued for a different exchange")
        if claims["digest"] != request_digest:
            raise PeerRejected("assertion does not cover this request")
        requester = _requester_from(claims["requester"])
        if requester.administration != peer_node:
            raise PeerRejected(
                f"assertion speaks for a caller of {_shown(requester.administration)}, "
                f"not of the issuing node {peer_node}"
            )
        nonce = claims["nonce"]
        if not isinstance(nonce, str) or not nonce:
            raise PeerRejected("assertion claim 'nonce' must be a non-empty string")
        # The id the replay guard remembers (AuthenticatePeer asks it): a retried relay of the
        # same exchange carries a fresh nonce, so it is not a replay.
        return replace(
            requester, token_id=f"{exchange_id} {nonce}", token_expires_at=float(claims["exp"])
        )


class ReceiptSigner:
    """Signs the receipt a providing node returns over a digest of what it released."""

    def __init__(self, node: str, key: Ed25519PrivateKey | SigningKeys, kid: str = "") -> None:
        """`key` is the node's rotating SigningKeys, or one fixed key with its `kid`."""
        self._node = node
        self._keys = key if isinstance(key, SigningKeys) else SigningKeys.fixed(key, kid)

    def sign(
        self,
        *,
        exchange_id: str,
        requesting_node: str,
        response_digest: str,
        record_count: int,
        released_fields: Sequence[str],
        ingress_decision_id: str,
        log_position: tuple[int, str] | None = None,
        as_jwt: bool = False,
    ) -> str:
        """Sign a receipt; it names only a digest of the records, never the records.

        `log_position` is where this node's own entry of the exchange sits in its audit chain
        (seq, hash): the requesting node keeps it, and reconciliation holds this node to it.
        `as_jwt` signs the JWT a requesting node of an earlier release reads (it sent a JWT).
        """
        claims: dict[str, Any] = {
            "iss": self._node,
            "aud": requesting_node,
            "jti": exchange_id,
            "iat": time.time(),
            "digest": response_digest,
            "record_count": record_count,
            "released_fields": list(released_fields),
            "ingress_decision_id": ingress_decision_id,
        }
        if log_position is not None:
            claims["log_seq"], claims["log_hash"] = log_position
        signing = self._keys.current()
        if as_jwt:
            return jwt.encode(
                claims,
                signing.private,
                algorithm=_ALGORITHM,
                headers={"kid": signing.kid, "typ": JWT_RECEIPT_TYPE},
            )
        return seal({**claims, "typ": RECEIPT_TYPE, "kid": signing.kid}, signing.private)


class ReceiptVerifier:
    """Checks a providing node's receipt against what was received; returns its claims."""

    def __init__(self, directory_keys: DirectoryKeys) -> None:
        self._directory_keys = directory_keys

    def verify(
        self, token: str, *, provider_node: str, exchange_id: str, response_digest: str
    ) -> dict[str, Any]:
        """Raise PeerRejected unless `provider_node` signed this receipt for these records."""
        claims = _verified_claims(
            token,
            kind="receipt",
            token_types=(RECEIPT_TYPE, JWT_RECEIPT_TYPE),
            signer=provider_node,
            signer_role="the providing node",
            directory_keys=self._directory_keys,
            # A receipt is evidence, not a credential: it never expires, a provider clock running
            # ahead must not void it, and the exchange id and digest already bind it to us.
            audience=None,
            leeway=None,
            required=_RECEIPT_CLAIMS,
            optional=_RECEIPT_LOG_CLAIMS,
        )
        if not _is_number(claims["iat"]):
            raise PeerRejected("receipt claim 'iat' must be a number")
        if claims["jti"] != exchange_id:
            raise PeerRejected("receipt is for a different exchange")
        if claims["digest"] != response_digest:
            raise PeerRejected("receipt does not match the records received")
        count = claims["record_count"]
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise PeerRejected("receipt claim 'record_count' must be a non-negative integer")
        fields = claims["released_fields"]
        if not isinstance(fields, list) or not all(isinstance(field, str) for field in fields):
            raise PeerRejected("receipt claim 'released_fields' must be a list of strings")
        if not isinstance(claims["ingress_decision_id"], str):
            raise PeerRejected("receipt claim 'ingress_decision_id' must be a string")
        if not isinstance(claims["aud"], str):
            raise PeerRejected("receipt claim 'aud' must be a string")
        _check_log_position(claims)
        return claims


def _check_log_position(claims: dict[str, Any]) -> None:
    """A receipt pins a position whole (a sequence number and an entry hash) or not at all."""
    present = [name for name in _RECEIPT_LOG_CLAIMS if name in claims]
    if not present:
        return
    seq, chain_hash = claims.get("log_seq"), claims.get("log_hash")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
        raise PeerRejected("receipt claim 'log_seq' must be a non-negative integer")
    if not isinstance(chain_hash, str) or not chain_hash:
        raise PeerRejected("receipt claim 'log_hash' must be a non-empty string")


def _verified_claims(
    token: str,
    *,
    kind: str,
    token_types: tuple[str, str],
    signer: str,
    signer_role: str,
    directory_keys: DirectoryKeys,
    audience: str | None,
    leeway: float | None,
    required: Sequence[str],
    optional: Sequence[str] = (),
) -> dict[str, Any]:
    """The claims of a token `signer` signed; `leeway=None` skips the freshness checks.

    `token_types` is the envelope's type and the type of an earlier release's JWT.
    """
    envelope_type, jwt_type = token_types
    # The envelope's bound holds for an earlier release's JWT too: neither is ever near it.
    if not isinstance(token, str) or len(token) > MAX_ENVELOPE_CHARS:
        raise PeerRejected(f"{kind} is malformed")
    if is_envelope(token):
        return _envelope_claims(
            token,
            kind=kind,
            token_type=envelope_type,
            signer=signer,
            signer_role=signer_role,
            directory_keys=directory_keys,
            audience=audience,
            leeway=leeway,
            claims=(*_ENVELOPE_HEADER, *required),
            optional=optional,
        )
    return _jwt_claims(
        token,
        kind=kind,
        token_type=jwt_type,
        signer=signer,
        signer_role=signer_role,
        directory_keys=directory_keys,
        audience=audience,
        leeway=leeway,
        required=required,
    )


def _envelope_claims(
    token: str,
    *,
    kind: str,
    token_type: str,
    signer: str,
    signer_role: str,
    directory_keys: DirectoryKeys,
    audience: str | None,
    leeway: float | None,
    claims: Sequence[str],
    optional: Sequence[str],
) -> dict[str, Any]:
    """Open an envelope, check its type and signer, verify its signature, then its claims.

    The type and issuer are read before the signature is checked, so a refusal can say that an
    envelope is of the wrong kind or from someone else rather than merely that a key failed;
    nothing else is believed before the signature holds.
    """
    try:
        opened = open_envelope(token)
    except MalformedEnvelope as exc:
        raise PeerRejected(f"{kind} is malformed") from exc
    found = opened.claims
    if found.get("typ") != token_type:
        raise PeerRejected(f"{kind} has the wrong token type")
    issuer = found.get("iss")
    if issuer != signer:
        raise PeerRejected(f"{kind} issuer {_shown(issuer)} does not match {signer_role} {signer}")
    kid = found.get("kid")
    if not isinstance(kid, str) or not kid:
        raise PeerRejected(f"{kind} has no 'kid'")
    if not opened.signed_by(directory_keys(signer, kid)):
        raise PeerRejected(f"{kind} signature is invalid")
    for name in claims:
        if name not in found:
            raise PeerRejected(f"{kind} is missing required claim {name!r}")
    if len(found) > len(claims) and not set(found) <= {*claims, *optional}:
        # Signed by the right key, but not a claim set this version writes: fail closed.
        raise PeerRejected(f"{kind} carries a claim this node does not know")
    if audience is not None and found["aud"] != audience:
        raise PeerRejected(f"{kind} is addressed to another node, not {audience}")
    if leeway is not None:
        _check_fresh(found, kind=kind, leeway=leeway)
    return found


def _check_fresh(claims: dict[str, Any], *, kind: str, leeway: float) -> None:
    """The checks a JWT library makes of iat, nbf and exp, with the same leeway."""
    for name in ("iat", "nbf", "exp"):
        if not _is_number(claims[name]):
            raise PeerRejected(f"{kind} claim {name!r} must be a number")
    now = time.time()
    if claims["iat"] > now + leeway or claims["nbf"] > now + leeway:
        raise PeerRejected(f"{kind} is not yet valid")
    if claims["exp"] <= now - leeway:
        raise PeerRejected(f"{kind} has expired")


def _jwt_claims(
    token: str,
    *,
    kind: str,
    token_type: str,
    signer: str,
    signer_role: str,
    directory_keys: DirectoryKeys,
    audience: str | None,
    leeway: float | None,
    required: Sequence[str],
) -> dict[str, Any]:
    """Decode an earlier release's JWT with the signer's key.

    The token is decoded once, with the signer's key. Only when that fails is it read again
    unverified, so the refusal can say who actually spoke (an issuer other than the peer)
    rather than merely that a key or signature failed.
    """
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise PeerRejected(f"{kind} is malformed") from exc
    if header.get("alg") != _ALGORITHM:
        raise PeerRejected(f"{kind} must be signed with {_ALGORITHM}")
    if header.get("typ") != token_type:
        raise PeerRejected(f"{kind} has the wrong token type")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise PeerRejected(f"{kind} header has no 'kid'")
    try:
        key = directory_keys(signer, kid)
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=[_ALGORITHM],
            audience=audience,
            issuer=signer,
            leeway=leeway or 0,
            options={
                "require": list(required),
                "verify_aud": audience is not None,
                "verify_iat": leeway is not None,
            },
        )
    except PeerRejected:
        _refuse_another_issuer(token, kind=kind, signer=signer, signer_role=signer_role)
        raise
    except jwt.PyJWTError as exc:
        _refuse_another_issuer(token, kind=kind, signer=signer, signer_role=signer_role)
        raise _decode_error(kind, exc, audience) from exc
    return claims


def _refuse_another_issuer(token: str, *, kind: str, signer: str, signer_role: str) -> None:
    """Raise PeerRejected naming the issuer if the token claims to come from someone else."""
    try:
        issuer = jwt.decode(token, options={"verify_signature": False}).get("iss")
    except jwt.PyJWTError:
        return  # malformed: the caller's own refusal says so
    if issuer != signer:
        raise PeerRejected(f"{kind} issuer {_shown(issuer)} does not match {signer_role} {signer}")


def _decode_error(kind: str, exc: jwt.PyJWTError, audience: str | None) -> PeerRejected:
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return PeerRejected(f"{kind} is missing required claim {exc.claim!r}")
    messages: tuple[tuple[type[jwt.PyJWTError], str], ...] = (
        (jwt.InvalidSignatureError, f"{kind} signature is invalid"),
        (jwt.ExpiredSignatureError, f"{kind} has expired"),
        (jwt.ImmatureSignatureError, f"{kind} is not yet valid"),
        (jwt.InvalidAudienceError, f"{kind} is addressed to another node, not {audience}"),
    )
    for error_type, message in messages:
        if isinstance(exc, error_type):
            return PeerRejected(message)
    return PeerRejected(f"{kind} is malformed")


def _requester_from(value: object) -> Requester:
    if not isinstance(value, dict):
        raise PeerRejected("assertion claim 'requester' must be an object")
    for name in ("organisation", "system", "administration"):
        if not isinstance(value.get(name), str) or not value[name]:
            raise PeerRejected(f"assertion requester {name!r} must be a non-empty string")
    accreditations = value.get("accreditations")
    if not isinstance(accreditations, list) or not all(
        isinstance(item, str) for item in accreditations
    ):
        raise PeerRejected("assertion requester 'accreditations' must be a list of strings")
    return Requester(
        organisation=value["organisation"],
        system=value["system"],
        administration=value["administration"],
        accreditations=frozenset(accreditations),
    )


def _is_number(value: object) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        # An integer too large for a float (a signed claim of 10**309) is no time.
        return False


def _shown(value: object) -> str:
    return value if isinstance(value, str) and _PRINTABLE.fullmatch(value) else "(unprintable)"
