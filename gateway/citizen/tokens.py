"""A citizen's bearer JWT, from the citizen identity provider, becomes a `Citizen`.

The same rules as a departmental token (gateway/identity.py): asymmetric algorithms only, the
key fitting the algorithm, a bounded lifetime, and each token used once. The identifiers a
citizen may ask about are the ones the provider verified and put in the token.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jwt

from gateway.domain import Subject
from gateway.errors import InvalidRequest, Unauthenticated
from gateway.identifiers import validate_subject

# The key and decode checks are the departmental verifier's, so the two never disagree.
from gateway.identity import (
    ASYMMETRIC_ALGORITHMS,
    JwksSource,
    _decode_error,
    _key_fits,
    _shown,
)
from gateway.state import ReplayGuard

# Identifiers that name one person. A UPRN names a household and a registration id an event
# (a marriage has two people in it): a lookup by either would show other people's business.
CITIZEN_KINDS = ("nino", "nhs_number", "chi_number", "hc_number")
# More identifiers than anyone holds is a malformed token, and would make a search costly.
MAX_IDENTIFIERS = 8
_REQUIRED_CLAIMS = ("exp", "iat", "iss", "aud", "sub", "jti", "identifiers")


@dataclass(frozen=True, slots=True)
class Citizen:
    """A person as their verified token says: the provider's id for them, their identifiers."""

    subject: str
    identifiers: frozenset[Subject]
    token_id: str
    token_expires_at: float


class CitizenTokenVerifier:
    """Checks a citizen's token and returns who they are, or raises Unauthenticated."""

    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        jwks: JwksSource,
        algorithms: Sequence[str],
        leeway_seconds: float,
        max_lifetime_seconds: float,
        replay: ReplayGuard,
    ) -> None:
        refused = sorted(set(algorithms) - ASYMMETRIC_ALGORITHMS)
        if refused or not algorithms:
            raise ValueError(f"citizen token algorithms {refused} are not allowed")
        self._issuer = issuer
        self._audience = audience
        self._jwks = jwks
        self._algorithms = tuple(algorithms)
        self._leeway = leeway_seconds
        self._max_lifetime = max_lifetime_seconds
        self._replay = replay

    async def verify(self, token: str) -> Citizen:
        claims = self._claims(token)
        citizen = Citizen(
            subject=_text(claims, "sub"),
            identifiers=identifiers_of(claims["identifiers"]),
            token_id=_text(claims, "jti"),
            token_expires_at=float(claims["exp"]),
        )
        # Only a genuine, valid token may use up its id.
        if not await self._replay.first_use(citizen.token_id, citizen.token_expires_at):
            raise Unauthenticated("token jti has already been used")
        return citizen

    def _claims(self, token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise Unauthenticated("token is malformed") from exc
        alg, kid = header.get("alg"), header.get("kid")
        if alg not in self._algorithms:
            raise Unauthenticated(f"token algorithm {_shown(alg)} is not allowed")
        if not isinstance(kid, str) or not kid:
            raise Unauthenticated("token header has no 'kid'")
        key = self._jwks.key_for(kid).key
        if not _key_fits(alg, key):
            raise Unauthenticated(f"token key {_shown(kid)} cannot be used with algorithm {alg!r}")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": list(_REQUIRED_CLAIMS)},
            )
        except jwt.PyJWTError as exc:
            raise _decode_error(exc) from exc
        if not all(isinstance(claims[name], int | float) for name in ("exp", "iat")):
            raise Unauthenticated("token claims 'exp' and 'iat' must be numbers")
        if claims["exp"] - claims["iat"] > self._max_lifetime:
            raise Unauthenticated(f"token lifetime exceeds the allowed {self._max_lifetime:g}s")
        return claims


def identifiers_of(claim: object) -> frozenset[Subject]:
    """The `identifiers` claim: an object of kind to identifier (or a list of them)."""
    if not isinstance(claim, Mapping) or not claim:
        raise Unauthenticated("token claim 'identifiers' must be a non-empty object")
    found: set[Subject] = set()
    for kind, values in claim.items():
        if kind not in CITIZEN_KINDS:
            raise Unauthenticated(f"token claim 'identifiers' names kind {_shown(kind)}")
        for value in values if isinstance(values, list) else [values]:
            if not isinstance(value, str):
                raise Unauthenticated("token claim 'identifiers' holds a value that is not text")
            try:
                found.add(validate_subject(kind, value))
            except InvalidRequest as exc:
                # The identifier itself is never quoted: error messages reach logs.
                raise Unauthenticated(
                    f"token claim 'identifiers' holds a malformed {kind}"
                ) from exc
    if len(found) > MAX_IDENTIFIERS:
        raise Unauthenticated(f"token claim 'identifiers' holds more than {MAX_IDENTIFIERS}")
    return frozenset(found)


def _text(claims: Mapping[str, Any], name: str) -> str:
    value = claims.get(name)
    if not isinstance(value, str) or not value:
        raise Unauthenticated(f"token claim {name!r} must be a non-empty string")
    return value
