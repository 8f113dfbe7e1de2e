"""Caller authentication: a bearer JWT from the caller's identity provider becomes a Requester.

Only asymmetric algorithms are accepted, the key must belong to the token's algorithm family, and
every token is single-use (its `jti` is remembered until it expires). Error messages describe
what was wrong with a token and never contain the token.
"""

from __future__ import annotations

import base64
import hashlib
import heapq
import json
import math
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from jwt.exceptions import InvalidJTIError, InvalidSubjectError
from jwt.types import Options

from gateway.domain import Requester
from gateway.errors import Unauthenticated, Unavailable

ASYMMETRIC_ALGORITHMS = frozenset(
    {"EdDSA", "ES256", "ES384", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}
)
_MIN_RSA_BITS = 2048
_UNKNOWN_KID_REFRESH_SECONDS = 30.0
_REQUIRED_CLAIMS = ("exp", "iat", "iss", "aud", "sub", "jti", "organisation", "system")
# Header values are attacker-chosen; only short plain ones are echoed into messages and logs.
_PRINTABLE = re.compile(r"[A-Za-z0-9._:-]{1,64}")
# A compact JWS: three base64url segments (PyJWT accepts padding, so the header may carry it).
_COMPACT_JWS = re.compile(r"[A-Za-z0-9_-]+={0,2}\.[A-Za-z0-9_=-]*\.[A-Za-z0-9_=-]*")
# Distinct token headers whose checked reading is kept; any more and the readings start over.
_HEADERS_KEPT = 64


class JwksSource(Protocol):
    """Where the identity provider's public signing keys come from."""

    def key_for(self, kid: str) -> jwt.PyJWK:
        """Return the key with this id, or raise Unauthenticated if there is none."""
        ...


class JwksFile:
    """Keys from a JWKS file, re-read when the file changes so keys rotate without a restart.

    The file is looked at (one `stat`) at most every `check_every_seconds`, not on every
    call: a key removed from the file stops verifying within that time. A key id not yet
    known is looked for at once, so a token signed with a freshly published key is never
    refused for want of a look.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        check_every_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if check_every_seconds < 0:
            raise ValueError("check_every_seconds must be >= 0")
        self._path = Path(path)
        self._check_every = check_every_seconds
        self._clock = clock
        self._keys: dict[str, jwt.PyJWK] = {}
        self._version: tuple[int, int, int] | None = None
        self._checked_at = -math.inf

    def key_for(self, kid: str) -> jwt.PyJWK:
        now = self._clock()
        if kid not in self._keys or now - self._checked_at >= self._check_every:
            self._reload_if_changed(now)
        return _lookup(self._keys, kid)

    def _reload_if_changed(self, now: float) -> None:
        try:
            stat = self._path.stat()
            version = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
            if version == self._version:
                self._checked_at = now
                return
            keys = parse_jwks(self._path.read_text(encoding="utf-8"))
        except (OSError, ValueError, jwt.PyJWTError) as exc:
            if self._version is None:
                raise Unavailable("the identity provider's signing keys cannot be read") from exc
            # A file caught mid-rotation keeps the last good keys; the next look tries again.
            return
        self._keys, self._version, self._checked_at = keys, version, now


class JwksUrl:
    """Keys from the identity provider's JWKS endpoint, cached and refreshed at a bounded rate."""

    def __init__(
        self,
        url: str,
        *,
        cache_seconds: float = 300,
        timeout: float = 2.0,
        client: httpx.Client | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._url = url
        self._cache_seconds = cache_seconds
        self._timeout = timeout
        self._client = client if client is not None else httpx.Client()
        self._owns_client = client is None
        self._clock = clock
        # Bounds how often unknown kids, or an unreachable provider, can cause a fetch.
        self._min_refresh_interval = min(_UNKNOWN_KID_REFRESH_SECONDS, cache_seconds)
        self._keys: dict[str, jwt.PyJWK] | None = None
        self._fetched_at = -math.inf
        self._attempted_at = -math.inf

    def key_for(self, kid: str) -> jwt.PyJWK:
        now = self._clock()
        stale = now - self._fetched_at >= self._cache_seconds
        if stale or self._keys is None or kid not in self._keys:
            self._refresh(now)
        if self._keys is None:
            raise Unavailable("the identity provider's signing keys cannot be fetched")
        return _lookup(self._keys, kid)

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

    def _refresh(self, now: float) -> None:
        if now - self._attempted_at < self._min_refresh_interval:
            return
        self._attempted_at = now
        try:
            response = self._client.get(self._url, timeout=self._timeout)
            response.raise_for_status()
            keys = parse_jwks(response.text)
        except (httpx.HTTPError, ValueError, jwt.PyJWTError) as exc:
            if self._keys is None:
                raise Unavailable("the identity provider's signing keys cannot be fetched") from exc
            # A provider that is briefly down must not lock callers out: keep the last good set.
            return
        self._keys, self._fetched_at = keys, now


class ReplayCache:
    """A `ReplayGuard` in process memory: each token id is accepted once, until it expires.

    Expired ids are forgotten oldest first. When `max_entries` live ids are held, new tokens are
    refused as Unavailable rather than forgetting a live id, which would reopen it to replay.
    Replicas do not share it and a restart forgets it; gateway/state/postgres.py does neither.
    """

    def __init__(
        self,
        *,
        leeway_seconds: float = 30,
        max_entries: int = 1_000_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._leeway = leeway_seconds
        self._max_entries = max_entries
        self._clock = clock
        self._forget_at: dict[str, float] = {}
        self._queue: list[tuple[float, str]] = []

    def __len__(self) -> int:
        return len(self._forget_at)

    async def first_use(self, token_id: str, expires_at: float) -> bool:
        self._forget_expired(self._clock())
        if token_id in self._forget_at:
            return False
        if len(self._forget_at) >= self._max_entries:
            raise Unavailable("too many live tokens to guard against replay; retry shortly")
        forget_at = expires_at + self._leeway
        self._forget_at[token_id] = forget_at
        heapq.heappush(self._queue, (forget_at, token_id))
        return True

    def _forget_expired(self, now: float) -> None:
        # Each id is queued exactly once (a second sighting is refused), so queue and dict agree.
        while self._queue and self._queue[0][0] <= now:
            _, token_id = heapq.heappop(self._queue)
            del self._forget_at[token_id]


class TokenVerifier:
    """Turns a caller's bearer JWT into a Requester, or raises Unauthenticated saying why not."""

    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        administration: str,
        jwks: JwksSource,
        algorithms: Sequence[str] = ("EdDSA", "ES256", "RS256", "PS256"),
        leeway_seconds: float = 30,
        max_lifetime_seconds: float = 3600,
    ) -> None:
        if not algorithms:
            raise ValueError("at least one token algorithm must be allowed")
        refused = sorted(set(algorithms) - ASYMMETRIC_ALGORITHMS)
        if refused:
            raise ValueError(
                f"token algorithms {refused} are not allowed; "
                f"choose from {sorted(ASYMMETRIC_ALGORITHMS)}"
            )
        if not (issuer and audience and administration):
            raise ValueError("issuer, audience and administration must be non-empty")
        if leeway_seconds < 0 or max_lifetime_seconds <= 0:
            raise ValueError("leeway must be >= 0 and max lifetime > 0 seconds")
        self._issuer = issuer
        self._audience = audience
        self._administration = administration
        self._jwks = jwks
        self._algorithms = tuple(algorithms)
        self._leeway = leeway_seconds
        self._max_lifetime = max_lifetime_seconds
        self._headers: dict[str, tuple[str, str]] = {}
        # Built once: PyJWT only reads them.
        self._decode_options: Options = {"require": list(_REQUIRED_CLAIMS)}
        self._only = {alg: [alg] for alg in self._algorithms}

    @property
    def leeway_seconds(self) -> float:
        return self._leeway

    def verify(self, token: str) -> Requester:
        """Check the token's algorithm, key, signature, claims and freshness; return its caller.

        Whether the token was used before is the replay guard's question (the Authenticate
        stage asks it), since only the state store knows what other replicas have seen.
        """
        alg, kid = self._read_header(token)
        key = self._key_for(kid, alg)
        claims = self._decode(token, key, alg)
        return self._requester_from(claims)

    def _read_header(self, token: str) -> tuple[str, str]:
        # One identity provider's tokens share a header byte for byte, so its checked reading
        # is kept by segment; PyJWT's decode reads and checks the whole token again anyway.
        segment = token.partition(".")[0]
        known = self._headers.get(segment)
        if known is None:
            known = self._checked_header(token, segment)
            if len(self._headers) >= _HEADERS_KEPT:
                self._headers.clear()
            self._headers[segment] = known
        return known

    def _checked_header(self, token: str, segment: str) -> tuple[str, str]:
        header = _unverified_header(token, segment)
        alg = header.get("alg")
        if alg is None:
            raise Unauthenticated("token header has no 'alg'")
        if alg not in self._algorithms:
            raise Unauthenticated(f"token algorithm {_shown(alg)} is not allowed")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise Unauthenticated("token header has no 'kid'")
        return alg, kid

    def _key_for(self, kid: str, alg: str) -> Any:
        key = self._jwks.key_for(kid).key
        # An HMAC or wrong-curve key must never verify a token, whatever the token claims to be.
        if not _key_fits(alg, key):
            raise Unauthenticated(f"token key {_shown(kid)} cannot be used with algorithm {alg!r}")
        return key

    def _decode(self, token: str, key: Any, alg: str) -> dict[str, Any]:
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=self._only[alg],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options=self._decode_options,
            )
        except jwt.PyJWTError as exc:
            raise _decode_error(exc) from exc
        for name in ("exp", "iat", "nbf"):
            if name in claims and not _is_number(claims[name]):
                raise Unauthenticated(f"token claim {name!r} must be a number")
        lifetime = claims["exp"] - claims["iat"]
        if lifetime > self._max_lifetime:
            raise Unauthenticated(
                f"token lifetime of {lifetime:g}s exceeds the allowed {self._max_lifetime:g}s"
            )
        return claims

    def _requester_from(self, claims: dict[str, Any]) -> Requester:
        accreditations = claims.get("accreditations", [])
        if not isinstance(accreditations, list) or not all(
            isinstance(item, str) for item in accreditations
        ):
            raise Unauthenticated("token claim 'accreditations' must be a list of strings")
        return Requester(
            organisation=_text_claim(claims, "organisation"),
            system=_text_claim(claims, "system"),
            administration=self._administration,
            accreditations=frozenset(accreditations),
            token_id=_text_claim(claims, "jti"),
            token_expires_at=float(claims["exp"]),
        )


def bearer_token(metadata: Iterable[tuple[str, str | bytes]]) -> str:
    """Return the token of the single `authorization: Bearer <token>` metadata entry."""
    values = [value for key, value in metadata if key.lower() == "authorization"]
    if not values:
        raise Unauthenticated("missing bearer token in 'authorization' metadata")
    if len(values) > 1:
        raise Unauthenticated("more than one 'authorization' metadata entry")
    value = values[0]
    if isinstance(value, bytes):
        try:
            value = value.decode("ascii")
        except UnicodeDecodeError as exc:
            raise Unauthenticated("malformed bearer token in 'authorization' metadata") from exc
    parts = value.split()
    if not parts or parts[0].lower() != "bearer":
        raise Unauthenticated("'authorization' metadata must use the Bearer scheme")
    if len(parts) != 2:
        raise Unauthenticated("malformed bearer token in 'authorization' metadata")
    return parts[1]


def parse_jwks(text: str) -> dict[str, jwt.PyJWK]:
    document = json.loads(text)
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("a JWKS document is an object with a 'keys' list")
    keys: dict[str, jwt.PyJWK] = {}
    for key in jwt.PyJWKSet(document["keys"]):
        # Keys published for encryption must not verify signatures.
        if key.key_id and key.public_key_use in (None, "sig"):
            keys.setdefault(key.key_id, key)
    return keys


def _unverified_header(token: str, segment: str) -> dict[str, Any]:
    """The token's header as a JSON object, read without trusting it: only to pick the key."""
    if not _COMPACT_JWS.fullmatch(token):
        raise Unauthenticated("token is malformed")
    try:
        header = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (ValueError, RecursionError) as exc:
        raise Unauthenticated("token is malformed") from exc
    if not isinstance(header, dict):
        raise Unauthenticated("token is malformed")
    return header


def _lookup(keys: Mapping[str, jwt.PyJWK], kid: str) -> jwt.PyJWK:
    try:
        return keys[kid]
    except KeyError:
        raise Unauthenticated(f"token key id {_shown(kid)} is not known") from None


def _key_fits(alg: str, key: object) -> bool:
    if alg == "EdDSA":
        return isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey)
    if alg in ("ES256", "ES384"):
        curve = ec.SECP256R1 if alg == "ES256" else ec.SECP384R1
        return isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, curve)
    return isinstance(key, rsa.RSAPublicKey) and key.key_size >= _MIN_RSA_BITS


# Most specific first: InvalidSignatureError is a DecodeError, and all are InvalidTokenErrors.
_DECODE_ERRORS: tuple[tuple[type[jwt.PyJWTError], str], ...] = (
    (jwt.InvalidSignatureError, "token signature is invalid"),
    (jwt.ExpiredSignatureError, "token has expired"),
    (jwt.ImmatureSignatureError, "token is not yet valid"),
    (jwt.InvalidIssuerError, "token issuer is not trusted"),
    (jwt.InvalidAudienceError, "token audience does not match this node"),
    (jwt.InvalidIssuedAtError, "token claim 'iat' must be a number"),
    (InvalidSubjectError, "token claim 'sub' must be a string"),
    (InvalidJTIError, "token claim 'jti' must be a non-empty string"),
)


def _decode_error(exc: jwt.PyJWTError) -> Unauthenticated:
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return Unauthenticated(f"token is missing required claim {exc.claim!r}")
    for kind, message in _DECODE_ERRORS:
        if isinstance(exc, kind):
            return Unauthenticated(message)
    return Unauthenticated("token is malformed")


def _text_claim(claims: Mapping[str, Any], name: str) -> str:
    value = claims.get(name)
    if not isinstance(value, str) or not value:
        raise Unauthenticated(f"token claim {name!r} must be a non-empty string")
    return value


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _shown(value: object) -> str:
    return (
        repr(value) if isinstance(value, str) and _PRINTABLE.fullmatch(value) else "(unprintable)"
    )


def jwk_thumbprint(jwk: Mapping[str, Any]) -> str:
    # RFC 7638: the key's required members, sorted, without whitespace, hashed with SHA-256.
    canonical = json.dumps(
        {"crv": jwk["crv"], "kty": jwk["kty"], "x": jwk["x"]}, separators=(",", ":"), sort_keys=True
    )
    digest = hashlib.sha256(canonical.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")[:16]
