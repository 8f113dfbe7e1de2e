"""The seed corpus, made from real requests and the in-process federation's genuine tokens.

`python -m fuzz seeds` writes each seed as fuzz/corpus/<target>/seed-<what-it-is>, replacing
earlier seed-* files and leaving any other file (a regression input) in place.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from concordat.exchange.v1 import exchange_pb2
from concordat.federation.v1 import federation_pb2
from fuzz.federation import (
    EXCHANGE_ID,
    PEER,
    PROVIDER,
    b64url,
    claims_of,
    federation,
    get_request,
    stream_request,
)
from fuzz.targets import (
    AS_EARLIER_RELEASE_JWT,
    ASSERTION_KEYS,
    HARNESS_SIGNS,
    RECEIPT_KEYS,
    SUBJECT_KINDS,
)
from gateway.federation.envelope import canonical_json

CORPUS = Path(__file__).resolve().parent / "corpus"

Seed = tuple[str, bytes]


def _get(record_type: str, purpose: str, fields: list[str], **options: object) -> bytes:
    subject = options.pop("subject", {})
    request = exchange_pb2.GetRecordRequest(
        record_type=f"RECORD_TYPE_{record_type}",
        purpose=f"PURPOSE_{purpose}",
        **options,  # type: ignore[arg-type]
    )
    for kind, value in subject.items():  # type: ignore[attr-defined]
        setattr(request.subject, kind, value)
    request.field_mask.paths.extend(fields)
    return request.SerializeToString(deterministic=True)


def get_record_seeds() -> Iterator[Seed]:
    yield "birth-registration", get_request().SerializeToString(deterministic=True)
    yield (
        "person-by-nino-spaced",
        _get(
            "PERSON",
            "FRAUD",
            ["nino", "given_name", "family_name", "date_of_birth"],
            subject={"nino": "ab 12 34 56 c"},
            agreement_id="fraud-dwp-sss-benefits-2023",
            case_reference="FR/2026/0001",
            idempotency_key="3f2a9c",
        ),
    )
    yield (
        "benefit-award-by-nino",
        _get(
            "BENEFIT_AWARD",
            "DEBT",
            ["award_id", "benefit", "weekly_amount_pence", "status"],
            subject={"nino": "ZX249523B"},
            agreement_id="debt-hmrc-dwp:2026.1",
            provider_node="whitehall",
        ),
    )
    yield (
        "health-summary-by-nhs-hyphenated",
        _get(
            "HEALTH_SUMMARY",
            "PUBLIC_SERVICE_DELIVERY",
            ["nhs_number", "gp_practice", "allergies"],
            subject={"nhs_number": "943-476-5919"},
            agreement_id="psd-nhs-2026",
        ),
    )
    yield (
        "health-summary-by-chi-luhn",
        _get(
            "HEALTH_SUMMARY",
            "RESEARCH",
            ["date_of_birth", "conditions", "medications"],
            subject={"chi_number": "150385 1238"},
            agreement_id="res-ons-health-2026",
        ),
    )
    yield (
        "health-summary-by-hc",
        _get(
            "HEALTH_SUMMARY",
            "STATISTICS",
            ["hc_number", "last_updated"],
            subject={"hc_number": "320 000 1232"},
            agreement_id="stats-nisra-2026",
            provider_node="stormont",
        ),
    )
    yield (
        "council-tax-by-uprn",
        _get(
            "COUNCIL_TAX_ACCOUNT",
            "DEBT",
            ["account_ref", "band", "arrears_pence", "liable_nino"],
            subject={"uprn": 100023336956},
            agreement_id="debt-cardiff-ctax-2026",
            provider_node="cardiff",
        ),
    )
    yield (
        "death-registration-lowercase",
        _get(
            "DEATH_REGISTRATION",
            "CIVIL_REGISTRATION",
            ["registration_id", "date_of_death", "nino"],
            subject={"registration_id": "ew-d-2019-000123"},
            agreement_id="cr-dwp-gro-deaths-2026",
        ),
    )
    yield (
        "marriage-registration",
        _get(
            "MARRIAGE_REGISTRATION",
            "CIVIL_REGISTRATION",
            ["registration_id", "kind", "party_one_name", "party_two_name", "date_of_ceremony"],
            subject={"registration_id": "NI-M-2004-004711"},
            agreement_id="cr-nisra-marriages",
        ),
    )
    # Refused ones, so that the fuzzer starts next to each refusal too.
    yield (
        "refused-unknown-fields",
        _get(
            "PERSON",
            "FRAUD",
            ["nino", "shoe_size", "favourite_colour", "blood_group", "star_sign"],
            subject={"nino": "AB123456C"},
            agreement_id="fraud-dwp-sss-benefits-2023",
        ),
    )
    yield (
        "refused-check-digit",
        _get(
            "HEALTH_SUMMARY",
            "PUBLIC_SERVICE_DELIVERY",
            ["nhs_number"],
            subject={"nhs_number": "9434765918"},
            agreement_id="psd-nhs-2026",
        ),
    )
    yield (
        "refused-no-subject",
        _get("PERSON", "FRAUD", ["nino"], agreement_id="fraud-dwp-sss-benefits-2023"),
    )


def stream_records_seeds() -> Iterator[Seed]:
    yield "health-by-chi", stream_request().SerializeToString(deterministic=True)
    request = exchange_pb2.StreamRecordsRequest(
        record_type=exchange_pb2.RECORD_TYPE_BENEFIT_AWARD,
        purpose=exchange_pb2.PURPOSE_STATISTICS,
        agreement_id="stats-dwp-ons-2026",
        batch_size=1000,
        case_reference="ONS-EXTRACT-7",
        idempotency_key="extract-7",
    )
    for nino in ("ZX249523B", "ab 12 34 56 c", "ZX000001A"):
        request.subjects.add(nino=nino)
    request.field_mask.paths.extend(["benefit", "weekly_amount_pence", "start_date"])
    yield "benefit-awards-by-nino", request.SerializeToString(deterministic=True)
    resumed = exchange_pb2.StreamRecordsRequest()
    resumed.CopyFrom(request)
    resumed.resume_token = "eyJ2IjoxLCJhZnRlciI6MTAwMH0.c2lnbmF0dXJl"  # noqa: S105 - not a secret
    yield "benefit-awards-resumed", resumed.SerializeToString(deterministic=True)
    everyone = exchange_pb2.StreamRecordsRequest(
        record_type=exchange_pb2.RECORD_TYPE_COUNCIL_TAX_ACCOUNT,
        purpose=exchange_pb2.PURPOSE_DEBT,
        agreement_id="debt-cardiff-ctax-2026",
        provider_node="cardiff",
    )
    everyone.subjects.add(uprn=100023336956)
    everyone.subjects.add(registration_id="EW-B-2019-000123")
    everyone.field_mask.paths.extend(["band", "arrears_pence"])
    yield "council-tax-mixed-subjects", everyone.SerializeToString(deterministic=True)


def identifier_seeds() -> Iterator[Seed]:
    spellings = {
        "nino": ["AB123456C", "ab 12 34 56 c", "ZX249523B"],
        "nhs_number": ["9434765919", "943 476 5919", "943-476-5919"],
        "chi_number": ["0101701233", "1503851238", "150385-1230"],
        "hc_number": ["3200001232", "320 000 1232"],
        "registration_id": ["SC-B-1931-000037", "ew-d-2019-000123", "NI M 2004 004711"],
    }
    for kind, values in spellings.items():
        for index, value in enumerate(values):
            yield f"{kind}-{index}", bytes([SUBJECT_KINDS.index(kind)]) + value.encode()
    uprn = SUBJECT_KINDS.index("uprn")
    yield "uprn-0", bytes([uprn]) + (100023336956).to_bytes(8, "big")
    yield "uprn-1", bytes([uprn]) + (1).to_bytes(8, "big")


def _certificate_in_input(certificate: bytes, message: bytes, *, stream: bool) -> bytes:
    return bytes([(6 << 1) | stream]) + len(certificate).to_bytes(2, "big") + certificate + message


def relay_seeds() -> Iterator[Seed]:
    fed = federation()
    get = fed.genuine_get.SerializeToString(deterministic=True)
    stream = fed.genuine_stream.SerializeToString(deterministic=True)
    yield "genuine-get", bytes([0]) + get
    yield "genuine-stream", bytes([1]) + stream
    yield (
        "stormont-genuine",
        bytes([1 << 1]) + fed.stormont_get.SerializeToString(deterministic=True),
    )
    yield "whitehall-relay-stormont-certificate", bytes([1 << 1]) + get
    yield "whitehall-relay-own-certificate", bytes([2 << 1]) + get
    yield "forged-certificate", bytes([3 << 1]) + get
    yield "no-certificate", bytes([4 << 1 | 1]) + stream
    # devpki gives each certificate a random serial, so this seed differs each time seeds are
    # written; it stays genuine, for the CA's key is derived.
    pem = fed.certificates[PEER]
    yield "certificate-pem-in-input", _certificate_in_input(pem, get, stream=False)
    uppercase = federation_pb2.RelayRequest()
    uppercase.CopyFrom(fed.genuine_get)
    uppercase.exchange_id = EXCHANGE_ID.upper()
    yield "exchange-id-uppercase", bytes([0]) + uppercase.SerializeToString(deterministic=True)
    other = federation_pb2.RelayRequest()
    other.CopyFrom(fed.genuine_get)
    other.exchange_id = "ab" * 16
    yield "exchange-id-not-asserted", bytes([0]) + other.SerializeToString(deterministic=True)


def _as_earlier_release_jwt(envelope: str) -> str:
    """The JWT header and payload an earlier release signed for the same claims."""
    claims = claims_of(envelope)
    header = {"alg": "EdDSA", "kid": claims.pop("kid"), "typ": f"{claims.pop('typ')}+jwt"}
    return json.dumps(header, separators=(",", ":")) + "\n" + json.dumps(claims)


def _token_seeds(
    genuine: dict[str, str], keys: tuple[str, ...], kid: str, wrong_type: str
) -> Iterator[Seed]:
    fed = federation()
    for name, token in genuine.items():
        yield f"genuine-{name}", bytes([name == "stream"]) + token.encode()
    token = next(iter(genuine.values()))
    yield "wrong-token-type", bytes([0]) + wrong_type.encode()
    header, payload, _ = token.split(".")
    yield "signature-of-another", bytes([0]) + f"{header}.{payload}.{b64url(bytes(64))}".encode()
    none_header = b64url(json.dumps({"alg": "none", "kid": kid, "typ": "JWT"}).encode())
    yield "alg-none", bytes([0]) + f"{none_header}.{payload}.".encode()
    # The algorithm-confusion forgery: HMAC keyed with the signer's public key.
    public = (
        fed.signing_keys[keys[0]]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    hs_header = b64url(json.dumps({"alg": "HS256", "kid": kid, "typ": "JWT"}).encode())
    mac = hmac.new(public, f"{hs_header}.{payload}".encode(), hashlib.sha256).digest()
    yield "alg-hs256-public-key", bytes([0]) + f"{hs_header}.{payload}.{b64url(mac)}".encode()
    for index, key_name in enumerate(keys):
        flags = HARNESS_SIGNS | index << 1
        yield f"signed-by-{key_name}", bytes([flags]) + canonical_json(claims_of(token))
        yield (
            f"jwt-signed-by-{key_name}",
            bytes([flags | AS_EARLIER_RELEASE_JWT]) + _as_earlier_release_jwt(token).encode(),
        )


def assertion_seeds() -> Iterator[Seed]:
    fed = federation()
    yield from _token_seeds(
        {"get": fed.genuine_get.assertion, "stream": fed.genuine_stream.assertion},
        ASSERTION_KEYS,
        fed.kids[PEER],
        fed.genuine_receipt,
    )
    yield "stormont-assertion", bytes([0]) + fed.stormont_get.assertion.encode()


def receipt_seeds() -> Iterator[Seed]:
    fed = federation()
    yield from _token_seeds(
        {"get": fed.genuine_receipt}, RECEIPT_KEYS, fed.kids[PROVIDER], fed.genuine_get.assertion
    )
    yield "genuine-as-stormont", bytes([1]) + fed.genuine_receipt.encode()


SEEDS = {
    "get_record": get_record_seeds,
    "stream_records": stream_records_seeds,
    "identifier": identifier_seeds,
    "relay": relay_seeds,
    "assertion": assertion_seeds,
    "receipt": receipt_seeds,
}


def write_seeds(root: Path = CORPUS) -> dict[str, int]:
    """Write every target's seeds under root/<target>/; returns how many each target has."""
    written: dict[str, int] = {}
    for target, seeds in SEEDS.items():
        folder = root / target
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("seed-*"):
            old.unlink()
        count = 0
        for name, data in seeds():
            (folder / f"seed-{name}").write_bytes(data)
            count += 1
        written[target] = count
    return written
