"""The signed envelope two nodes exchange about one request: canonical JSON, one Ed25519 signature.

Text form (it travels in proto string fields and is stored as it is in audit entries):

    ce1.<base64url(payload)>.<base64url(signature)>

`payload` is the claims as canonical JSON (keys sorted, no whitespace, ASCII only, no NaN) and
the signature is Ed25519 over the ASCII bytes `ce1.<base64url(payload)>`, exactly as sent: the
verifier checks the bytes it received, never a re-encoding. The version tag is inside what is
signed, and a JWS signing input starts with base64 of `{`, so a JWT signature can never pass as
an envelope's. Parsing is strict: one spelling per envelope (canonical JSON, canonical
base64url, no padding), a bounded size, and anything else is malformed. What the claims must
say is gateway/federation/assertions.py's business; this module only seals and opens.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

ENVELOPE_PREFIX = "ce1."
# Far above any assertion or receipt (about 500-700 characters; a receipt grows with the
# released field names), far below what parsing it could cost.
MAX_ENVELOPE_CHARS = 16_384
_SIGNATURE_CHARS = 86  # 64 bytes in unpadded base64url
_BASE64URL = re.compile(r"[A-Za-z0-9_-]+")


def _no_constant(name: str) -> None:
    raise MalformedEnvelope(f"JSON constant {name} is not allowed")


# Built once: json.dumps and json.loads with options build a new coder on every call.
_ENCODER = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
)
_DECODER = json.JSONDecoder(parse_constant=_no_constant)


class MalformedEnvelope(ValueError):
    """The text is not one well-formed envelope; the caller says which kind it expected."""


@dataclass(frozen=True, slots=True)
class OpenedEnvelope:
    """An envelope's claims, not yet verified, with the exact bytes its signature covers."""

    claims: dict[str, Any]
    signed: bytes
    signature: bytes

    def signed_by(self, key: Ed25519PublicKey) -> bool:
        try:
            key.verify(self.signature, self.signed)
        except InvalidSignature:
            return False
        return True


def is_envelope(text: str) -> bool:
    """Whether `text` claims to be an envelope (rather than a JWT from an earlier release)."""
    return text.startswith(ENVELOPE_PREFIX)


def seal(claims: dict[str, Any], key: Ed25519PrivateKey) -> str:
    """The envelope of `claims`, signed with `key`; claims must be JSON values without NaN."""
    signed = ENVELOPE_PREFIX + _encode(canonical_json(claims))
    return f"{signed}.{_encode(key.sign(signed.encode('ascii')))}"


def canonical_json(claims: dict[str, Any]) -> bytes:
    return _ENCODER.encode(claims).encode("ascii")


def open_envelope(text: str) -> OpenedEnvelope:
    """Parse `text` strictly, without checking its signature; raise MalformedEnvelope."""
    if len(text) > MAX_ENVELOPE_CHARS or not text.startswith(ENVELOPE_PREFIX):
        raise MalformedEnvelope("not an envelope of this version, or too long")
    parts = text[len(ENVELOPE_PREFIX) :].split(".")
    if len(parts) != 2:
        raise MalformedEnvelope("an envelope has a payload and a signature")
    payload_text, signature_text = parts
    if len(signature_text) != _SIGNATURE_CHARS:
        raise MalformedEnvelope("the signature is not 64 bytes")
    payload = _decode(payload_text)
    signature = _decode(signature_text)
    try:
        claims = _DECODER.decode(payload.decode("ascii"))
        canonical = isinstance(claims, dict) and canonical_json(claims) == payload
    except (ValueError, RecursionError) as exc:
        raise MalformedEnvelope("the payload is not JSON") from exc
    if not canonical:
        # Duplicate keys, spacing, key order, escapes or number spellings: a second spelling
        # of the same claims is refused, so there is one text per signed set of claims.
        raise MalformedEnvelope("the payload is not one canonical JSON object")
    return OpenedEnvelope(
        claims=claims,
        signed=text[: len(ENVELOPE_PREFIX) + len(payload_text)].encode("ascii"),
        signature=signature,
    )


def _encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _decode(text: str) -> bytes:
    if not text.isascii() or not _BASE64URL.fullmatch(text):
        raise MalformedEnvelope("not unpadded base64url")
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise MalformedEnvelope("not base64url") from exc
    # Unused trailing bits would give one value several spellings.
    if _encode(data) != text:
        raise MalformedEnvelope("not canonical base64url")
    return data
