"""A development identity provider: an Ed25519 key per administration and its public JWKS."""

from __future__ import annotations

import json
import os
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ed25519
from jwt.algorithms import OKPAlgorithm

from gateway.dev.pki import ensure_signing_key
from gateway.identity import jwk_thumbprint, parse_jwks


class DevIssuer:
    """A development identity provider for one administration: an Ed25519 key and its JWKS."""

    KEY_FILE = "issuer_key.pem"
    JWKS_FILE = "jwks.json"

    def __init__(
        self, *, issuer: str, kid: str, private_key: ed25519.Ed25519PrivateKey, directory: Path
    ) -> None:
        self.issuer = issuer
        self.kid = kid
        self._private_key = private_key
        self._directory = directory

    @classmethod
    def load_or_create(cls, directory: Path, *, issuer: str, kid_prefix: str) -> DevIssuer:
        """Load the issuer kept in `directory`, creating its key and public JWKS where absent."""
        directory = Path(directory)
        private_key = ensure_signing_key(directory / cls.KEY_FILE)
        jwk = OKPAlgorithm.to_jwk(private_key.public_key(), as_dict=True)
        kid = f"{kid_prefix}-{jwk_thumbprint(jwk)}"
        dev_issuer = cls(issuer=issuer, kid=kid, private_key=private_key, directory=directory)
        dev_issuer._publish_jwks({**jwk, "kid": kid, "use": "sig", "alg": "EdDSA"})
        return dev_issuer

    @property
    def jwks_path(self) -> Path:
        return self._directory / self.JWKS_FILE

    def mint(
        self,
        *,
        audience: str,
        organisation: str,
        system: str,
        accreditations: Sequence[str] = (),
        ttl_seconds: int = 300,
        subject: str | None = None,
        extra_claims: Mapping[str, Any] | None = None,
    ) -> str:
        """Sign a single-use token for a departmental system; `extra_claims` override the rest."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": subject if subject is not None else system,
            "aud": audience,
            "iat": now,
            "nbf": now,
            "exp": now + ttl_seconds,
            "jti": str(uuid.uuid4()),
            "organisation": organisation,
            "system": system,
            "accreditations": list(accreditations),
        }
        claims.update(extra_claims or {})
        return jwt.encode(claims, self._private_key, algorithm="EdDSA", headers={"kid": self.kid})

    def mint_citizen(
        self,
        *,
        audience: str,
        person: str,
        identifiers: Mapping[str, str | Sequence[str]],
        ttl_seconds: int = 300,
    ) -> str:
        """Sign a single-use token for a citizen: who they are to this provider (`person`)
        and the identifiers it verified as theirs, by kind (gateway/citizen/tokens.py)."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": person,
            "aud": audience,
            "iat": now,
            "nbf": now,
            "exp": now + ttl_seconds,
            "jti": str(uuid.uuid4()),
            "identifiers": {
                kind: value if isinstance(value, str) else list(value)
                for kind, value in identifiers.items()
            },
        }
        return jwt.encode(claims, self._private_key, algorithm="EdDSA", headers={"kid": self.kid})

    def _publish_jwks(self, jwk: dict[str, Any]) -> None:
        try:
            if jwk["kid"] in parse_jwks(self.jwks_path.read_text(encoding="utf-8")):
                return
        except (OSError, ValueError, jwt.PyJWTError):
            # Absent or unusable: the fresh set written below replaces it.
            pass
        # Replace atomically so a JwksFile watching this path never reads half a file.
        fd, temporary = tempfile.mkstemp(dir=self._directory, suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            json.dump({"keys": [jwk]}, file, indent=2)
        os.chmod(temporary, 0o644)  # mkstemp makes it 0600; a JWKS is public by design
        os.replace(temporary, self.jwks_path)
