"""Caller authentication through the real verifier, with real signed tokens."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import stat
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import get_default_algorithms

from gateway.dev.issuer import DevIssuer
from gateway.domain import Requester
from gateway.errors import Unauthenticated, Unavailable
from gateway.exchange import Exchange
from gateway.identity import (
    JwksFile,
    JwksUrl,
    ReplayCache,
    TokenVerifier,
    bearer_token,
)
from gateway.keys import load_signing_key
from gateway.pipeline.stages import Authenticate

ISSUER = "https://idp.whitehall.concordat.test"
AUDIENCE = "concordat://node/whitehall"


@pytest.fixture
def issuer(tmp_path: Path) -> DevIssuer:
    return DevIssuer.load_or_create(tmp_path / "idp", issuer=ISSUER, kid_prefix="whitehall")


@pytest.fixture
def verifier(issuer: DevIssuer) -> TokenVerifier:
    return make_verifier(JwksFile(issuer.jwks_path))


def make_verifier(jwks: Any, **options: Any) -> TokenVerifier:
    return TokenVerifier(
        issuer=ISSUER, audience=AUDIENCE, administration="whitehall", jwks=jwks, **options
    )


def mint(issuer: DevIssuer, **extra: Any) -> str:
    return issuer.mint(
        audience=AUDIENCE,
        organisation="dwp",
        system="universal-credit",
        accreditations=["fraud-investigator"],
        extra_claims=extra,
    )


def at(offset: int) -> Callable[[int], int]:
    """A time claim resolved when the token is built, `offset` seconds from then."""
    return lambda now: now + offset


def claims(**overrides: Any) -> dict[str, Any]:
    """Valid claims, with overrides; callable overrides (see `at`) receive the current time."""
    now = int(time.time())
    base = {
        "iss": ISSUER,
        "sub": "universal-credit",
        "aud": AUDIENCE,
        "iat": now,
        "nbf": now,
        "exp": now + 300,
        "jti": str(uuid.uuid4()),
        "organisation": "dwp",
        "system": "universal-credit",
    }
    base.update(
        {name: value(now) if callable(value) else value for name, value in overrides.items()}
    )
    return base


def issuer_sign(issuer: DevIssuer, payload: dict[str, Any]) -> str:
    key = load_signing_key(issuer.jwks_path.parent / DevIssuer.KEY_FILE)
    return jwt.encode(payload, key, algorithm="EdDSA", headers={"kid": issuer.kid})


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def b64json(value: Any) -> str:
    return b64(json.dumps(value).encode())


def write_jwks(path: Path, keys: dict[str, tuple[str, Any]]) -> None:
    """Publish public keys as {kid: (alg, public_key)}."""
    entries = []
    for kid, (alg, public_key) in keys.items():
        jwk = get_default_algorithms()[alg].to_jwk(public_key, as_dict=True)
        entries.append({**jwk, "kid": kid, "use": "sig"})
    path.write_text(json.dumps({"keys": entries}))


def refused(verifier: TokenVerifier, token: str) -> str:
    with pytest.raises(Unauthenticated) as caught:
        verifier.verify(token)
    assert not token or token not in caught.value.message
    return caught.value.message


def test_valid_eddsa_token_becomes_requester_of_the_verifiers_administration(
    issuer: DevIssuer, verifier: TokenVerifier
) -> None:
    token = mint(issuer)
    unverified = jwt.decode(token, options={"verify_signature": False})

    assert verifier.verify(token) == Requester(
        organisation="dwp",
        system="universal-credit",
        administration="whitehall",
        accreditations=frozenset({"fraud-investigator"}),
        token_id=unverified["jti"],
        token_expires_at=unverified["exp"],
    )


@pytest.mark.parametrize(
    ("alg", "private_key"),
    [
        ("ES256", ec.generate_private_key(ec.SECP256R1())),
        ("RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048)),
        ("PS256", rsa.generate_private_key(public_exponent=65537, key_size=2048)),
    ],
)
def test_ecdsa_and_rsa_tokens_are_accepted(tmp_path: Path, alg: str, private_key: Any) -> None:
    jwks_path = tmp_path / "jwks.json"
    write_jwks(jwks_path, {"k1": (alg, private_key.public_key())})
    token = jwt.encode(claims(accreditations=[]), private_key, algorithm=alg, headers={"kid": "k1"})

    requester = make_verifier(JwksFile(jwks_path)).verify(token)

    assert (requester.organisation, requester.accreditations) == ("dwp", frozenset())


def test_unsigned_alg_none_token_is_refused(issuer: DevIssuer, verifier: TokenVerifier) -> None:
    token = f"{b64json({'alg': 'none', 'kid': issuer.kid})}.{b64json(claims())}."

    assert refused(verifier, token) == "token algorithm 'none' is not allowed"


def test_hs256_token_keyed_with_the_public_key_is_refused(
    issuer: DevIssuer, verifier: TokenVerifier
) -> None:
    public_pem = load_signing_key(issuer.jwks_path.parent / DevIssuer.KEY_FILE).public_key()
    secret = public_pem.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    signing_input = f"{b64json({'alg': 'HS256', 'kid': issuer.kid})}.{b64json(claims())}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()

    assert refused(verifier, f"{signing_input}.{b64(signature)}") == (
        "token algorithm 'HS256' is not allowed"
    )


@pytest.mark.parametrize("alg", ["HS256", "none", "ES512"])
def test_verifier_refuses_to_be_configured_with_a_non_allowlisted_algorithm(
    issuer: DevIssuer, alg: str
) -> None:
    with pytest.raises(ValueError, match="not allowed"):
        make_verifier(JwksFile(issuer.jwks_path), algorithms=("EdDSA", alg))


def test_key_of_another_algorithm_family_cannot_verify_a_token(tmp_path: Path) -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    jwks_path = tmp_path / "jwks.json"
    write_jwks(jwks_path, {"rsa": ("RS256", rsa_key.public_key())})
    # The header names the RSA key but claims ECDSA; it must not reach signature checking.
    token = jwt.encode(claims(), ec_key, algorithm="ES256", headers={"kid": "rsa"})

    assert refused(make_verifier(JwksFile(jwks_path)), token) == (
        "token key 'rsa' cannot be used with algorithm 'ES256'"
    )


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
def test_short_rsa_key_is_not_trusted(tmp_path: Path) -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 - the point
    jwks_path = tmp_path / "jwks.json"
    write_jwks(jwks_path, {"weak": ("RS256", weak.public_key())})
    token = jwt.encode(claims(), weak, algorithm="RS256", headers={"kid": "weak"})

    assert "cannot be used" in refused(make_verifier(JwksFile(jwks_path)), token)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"exp": at(-120)}, "token has expired"),
        ({"nbf": at(600)}, "token is not yet valid"),
        ({"iat": at(600)}, "token is not yet valid"),
        ({"iss": "https://idp.elsewhere.test"}, "token issuer is not trusted"),
        ({"aud": "concordat://node/holyrood"}, "token audience does not match this node"),
        ({"exp": at(7200)}, "token lifetime of 7200s exceeds the allowed 3600s"),
        (
            {"accreditations": "researcher"},
            "token claim 'accreditations' must be a list of strings",
        ),
        ({"accreditations": ["ok", 7]}, "token claim 'accreditations' must be a list of strings"),
        ({"organisation": 42}, "token claim 'organisation' must be a non-empty string"),
        ({"system": ""}, "token claim 'system' must be a non-empty string"),
        ({"jti": ""}, "token claim 'jti' must be a non-empty string"),
        ({"exp": lambda now: str(now + 60)}, "token claim 'exp' must be a number"),
    ],
)
def test_invalid_claims_are_refused_with_a_precise_reason(
    issuer: DevIssuer, verifier: TokenVerifier, overrides: dict[str, Any], message: str
) -> None:
    assert refused(verifier, issuer_sign(issuer, claims(**overrides))) == message


@pytest.mark.parametrize("claim", ["jti", "exp", "iat", "sub", "organisation", "system"])
def test_token_missing_a_required_claim_is_refused(
    issuer: DevIssuer, verifier: TokenVerifier, claim: str
) -> None:
    payload = claims()
    del payload[claim]

    assert refused(verifier, issuer_sign(issuer, payload)) == (
        f"token is missing required claim '{claim}'"
    )


async def test_replayed_token_is_refused(issuer: DevIssuer, verifier: TokenVerifier) -> None:
    authenticate = Authenticate(verifier, ReplayCache())
    token = mint(issuer)
    await authenticate(exchange_with(token))

    with pytest.raises(Unauthenticated, match=r"^token jti has already been used$"):
        await authenticate(exchange_with(token))


async def test_invalid_token_does_not_use_up_its_jti(
    issuer: DevIssuer, verifier: TokenVerifier
) -> None:
    authenticate = Authenticate(verifier, ReplayCache())
    payload = claims()
    with pytest.raises(Unauthenticated):
        await authenticate(exchange_with(issuer_sign(issuer, {**payload, "aud": "elsewhere"})))

    exchange = exchange_with(issuer_sign(issuer, payload))
    await authenticate(exchange)
    assert exchange.requester is not None
    assert exchange.requester.token_id == payload["jti"]


def exchange_with(token: str) -> Exchange:
    return Exchange(
        rpc="GetRecord",
        role="local",
        request=None,
        metadata=(("authorization", f"Bearer {token}"),),
        deadline_seconds=None,
    )


def test_token_from_an_unknown_key_is_refused(tmp_path: Path, verifier: TokenVerifier) -> None:
    stranger = DevIssuer.load_or_create(tmp_path / "stranger", issuer=ISSUER, kid_prefix="rogue")

    assert refused(verifier, mint(stranger)) == f"token key id {stranger.kid!r} is not known"


def test_token_signed_by_another_key_under_a_known_kid_is_refused(
    issuer: DevIssuer, verifier: TokenVerifier
) -> None:
    impostor = ed25519.Ed25519PrivateKey.generate()
    token = jwt.encode(claims(), impostor, algorithm="EdDSA", headers={"kid": issuer.kid})

    assert refused(verifier, token) == "token signature is invalid"


def test_tampered_token_is_refused(issuer: DevIssuer, verifier: TokenVerifier) -> None:
    header, _, signature = mint(issuer).split(".")
    forged_payload = b64json(claims(organisation="hmrc"))

    assert refused(verifier, f"{header}.{forged_payload}.{signature}") == (
        "token signature is invalid"
    )


@pytest.mark.parametrize("token", ["", "not-a-jwt", "a.b.c", "e30.e30.", "x" * 40 + ".."])
def test_garbage_is_refused_as_malformed(verifier: TokenVerifier, token: str) -> None:
    assert refused(verifier, token) in {"token is malformed", "token header has no 'alg'"}


def test_token_without_kid_is_refused(issuer: DevIssuer, verifier: TokenVerifier) -> None:
    key = load_signing_key(issuer.jwks_path.parent / DevIssuer.KEY_FILE)
    token = jwt.encode(claims(), key, algorithm="EdDSA")

    assert refused(verifier, token) == "token header has no 'kid'"


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        ([("authorization", "Bearer abc.def.ghi")], "abc.def.ghi"),
        ([("x-other", "1"), ("authorization", "bearer abc.def.ghi")], "abc.def.ghi"),
        ([("Authorization", b"BEARER abc.def.ghi")], "abc.def.ghi"),
    ],
)
def test_bearer_token_is_read_from_authorization_metadata(
    metadata: list[tuple[str, str | bytes]], expected: str
) -> None:
    assert bearer_token(metadata) == expected


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ([], "missing bearer token in 'authorization' metadata"),
        ([("x-other", "Bearer abc")], "missing bearer token in 'authorization' metadata"),
        (
            [("authorization", "Bearer a"), ("authorization", "Bearer b")],
            "more than one 'authorization' metadata entry",
        ),
        (
            [("authorization", "Basic dXNlcjpwdw==")],
            "'authorization' metadata must use the Bearer scheme",
        ),
        ([("authorization", "")], "'authorization' metadata must use the Bearer scheme"),
        ([("authorization", "Bearer")], "malformed bearer token in 'authorization' metadata"),
        ([("authorization", "Bearer a b")], "malformed bearer token in 'authorization' metadata"),
        ([("authorization", b"Bearer \xff")], "malformed bearer token in 'authorization' metadata"),
    ],
)
def test_bad_authorization_metadata_is_refused(
    metadata: list[tuple[str, str | bytes]], message: str
) -> None:
    with pytest.raises(Unauthenticated) as caught:
        bearer_token(metadata)

    assert caught.value.message == message


def test_jwks_file_picks_up_a_rotated_key_without_restart(tmp_path: Path) -> None:
    old, new = ed25519.Ed25519PrivateKey.generate(), ed25519.Ed25519PrivateKey.generate()
    jwks_path = tmp_path / "jwks.json"
    write_jwks(jwks_path, {"old": ("EdDSA", old.public_key())})
    verifier = make_verifier(JwksFile(jwks_path))
    verifier.verify(jwt.encode(claims(), old, algorithm="EdDSA", headers={"kid": "old"}))
    new_token = jwt.encode(claims(), new, algorithm="EdDSA", headers={"kid": "new"})
    refused(verifier, new_token)

    write_jwks(jwks_path, {"new": ("EdDSA", new.public_key())})
    later = jwks_path.stat().st_mtime + 5
    os.utime(jwks_path, (later, later))

    assert verifier.verify(new_token).system == "universal-credit"
    old_token = jwt.encode(claims(), old, algorithm="EdDSA", headers={"kid": "old"})
    assert refused(verifier, old_token) == "token key id 'old' is not known"


def test_jwks_file_keeps_its_last_good_keys_when_the_file_is_damaged(tmp_path: Path) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    jwks_path = tmp_path / "jwks.json"
    write_jwks(jwks_path, {"k": ("EdDSA", key.public_key())})
    jwks = JwksFile(jwks_path)
    jwks.key_for("k")

    jwks_path.write_text('{"keys": [')

    assert jwks.key_for("k").key_id == "k"


def test_missing_jwks_file_makes_authentication_unavailable(tmp_path: Path) -> None:
    with pytest.raises(Unavailable):
        JwksFile(tmp_path / "absent.json").key_for("k")


def test_jwks_file_is_looked_at_again_only_after_its_check_interval(tmp_path: Path) -> None:
    kept, removed = ed25519.Ed25519PrivateKey.generate(), ed25519.Ed25519PrivateKey.generate()
    jwks_path = tmp_path / "jwks.json"
    write_jwks(
        jwks_path,
        {"kept": ("EdDSA", kept.public_key()), "removed": ("EdDSA", removed.public_key())},
    )
    clock = FakeClock()
    verifier = make_verifier(JwksFile(jwks_path, check_every_seconds=1.0, clock=clock))
    token = jwt.encode(claims(), removed, algorithm="EdDSA", headers={"kid": "removed"})
    verifier.verify(token)

    write_jwks(jwks_path, {"kept": ("EdDSA", kept.public_key())})
    later = jwks_path.stat().st_mtime + 5
    os.utime(jwks_path, (later, later))
    clock.now += 0.5
    still_served = jwt.encode(claims(), removed, algorithm="EdDSA", headers={"kid": "removed"})
    verifier.verify(still_served)

    clock.now += 0.5
    withdrawn = jwt.encode(claims(), removed, algorithm="EdDSA", headers={"kid": "removed"})
    assert refused(verifier, withdrawn) == "token key id 'removed' is not known"


def test_a_token_sharing_a_known_header_is_still_checked_whole(
    issuer: DevIssuer, verifier: TokenVerifier
) -> None:
    header, payload, signature = mint(issuer).split(".")
    verifier.verify(mint(issuer))
    forged = base64.urlsafe_b64encode(
        json.dumps({**json.loads(base64.urlsafe_b64decode(payload + "==")), "system": "x"}).encode()
    )

    assert refused(verifier, f"{header}.{forged.decode().rstrip('=')}.{signature}") == (
        "token signature is invalid"
    )
    assert refused(verifier, f"{header}.!!!!.{signature}") == "token is malformed"
    assert refused(verifier, f"{header}.{payload}") == "token is malformed"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeIdentityProvider:
    """Serves a JWKS over httpx.MockTransport and counts the fetches."""

    def __init__(self, keys: dict[str, Any]) -> None:
        self.keys = keys
        self.fetches = 0
        self.down = False

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.fetches += 1
        if self.down:
            return httpx.Response(503)
        entries = [
            {**get_default_algorithms()["EdDSA"].to_jwk(key.public_key(), as_dict=True), "kid": kid}
            for kid, key in self.keys.items()
        ]
        return httpx.Response(200, json={"keys": entries})

    def source(self, clock: FakeClock) -> JwksUrl:
        client = httpx.Client(transport=httpx.MockTransport(self.handle))
        return JwksUrl("https://idp.test/jwks", client=client, clock=clock, cache_seconds=300)


def test_jwks_url_fetches_lazily_and_serves_from_cache() -> None:
    provider, clock = FakeIdentityProvider({"a": ed25519.Ed25519PrivateKey.generate()}), FakeClock()
    jwks = provider.source(clock)
    assert provider.fetches == 0

    jwks.key_for("a")
    clock.now += 299
    jwks.key_for("a")
    assert provider.fetches == 1

    clock.now += 1
    jwks.key_for("a")
    assert provider.fetches == 2


def test_jwks_url_refreshes_for_an_unknown_kid_at_most_every_30_seconds() -> None:
    provider, clock = FakeIdentityProvider({"a": ed25519.Ed25519PrivateKey.generate()}), FakeClock()
    jwks = provider.source(clock)
    jwks.key_for("a")
    clock.now += 30

    for _ in range(5):
        with pytest.raises(Unauthenticated, match="token key id 'b' is not known"):
            jwks.key_for("b")
    assert provider.fetches == 2

    provider.keys["b"] = ed25519.Ed25519PrivateKey.generate()
    clock.now += 29
    with pytest.raises(Unauthenticated):
        jwks.key_for("b")
    clock.now += 1
    assert jwks.key_for("b").key_id == "b"
    assert provider.fetches == 3


def test_jwks_url_keeps_the_last_good_keys_when_a_refresh_fails() -> None:
    provider, clock = FakeIdentityProvider({"a": ed25519.Ed25519PrivateKey.generate()}), FakeClock()
    jwks = provider.source(clock)
    jwks.key_for("a")

    provider.down = True
    clock.now += 301

    assert jwks.key_for("a").key_id == "a"


def test_jwks_url_without_any_keys_makes_authentication_unavailable() -> None:
    provider, clock = FakeIdentityProvider({}), FakeClock()
    provider.down = True

    with pytest.raises(Unavailable):
        provider.source(clock).key_for("a")


async def test_replay_cache_forgets_a_jti_once_its_token_has_expired() -> None:
    clock = FakeClock()
    cache = ReplayCache(leeway_seconds=30, clock=clock)
    assert await cache.first_use("j1", expires_at=clock.now + 60)

    clock.now += 89
    assert not await cache.first_use("j1", expires_at=clock.now + 60)
    clock.now += 1
    assert await cache.first_use("j2", expires_at=clock.now + 60)

    assert len(cache) == 1


async def test_full_replay_cache_refuses_new_tokens_rather_than_forget_live_ones() -> None:
    clock = FakeClock()
    cache = ReplayCache(max_entries=2, clock=clock)
    assert await cache.first_use("j1", expires_at=clock.now + 10)
    assert await cache.first_use("j2", expires_at=clock.now + 60)

    with pytest.raises(Unavailable):
        await cache.first_use("j3", expires_at=clock.now + 60)
    assert not await cache.first_use("j1", expires_at=clock.now + 10)

    clock.now += 41
    assert await cache.first_use("j3", expires_at=clock.now + 60)


def test_dev_issuer_is_reloaded_with_the_same_key_and_private_key_file_is_0600(
    tmp_path: Path, issuer: DevIssuer, verifier: TokenVerifier
) -> None:
    jwks_before = issuer.jwks_path.read_bytes()

    again = DevIssuer.load_or_create(tmp_path / "idp", issuer=ISSUER, kid_prefix="whitehall")

    assert again.kid == issuer.kid
    assert again.jwks_path.read_bytes() == jwks_before
    assert stat.S_IMODE((tmp_path / "idp" / DevIssuer.KEY_FILE).stat().st_mode) == 0o600
    assert verifier.verify(mint(again)).organisation == "dwp"


def test_dev_issuer_tokens_are_single_use_with_fresh_ids(issuer: DevIssuer) -> None:
    first, second = (jwt.decode(mint(issuer), options={"verify_signature": False}) for _ in "12")

    assert first["jti"] != second["jti"]
    assert first["exp"] - first["iat"] == 300
