"""The fuzz targets: each takes bytes and drives the edge as a caller or a peer would.

Caller targets decode request bytes, run them through RequireDecoded and ValidateRequest and
build the policy input; federation targets run relay envelopes, assertions and receipts
through the providing node's and the requesting node's checks. Every refusal goes through
the status table. A target returns whether the gateway accepted its input, when it answered
as it should, and raises PropertyViolation or Unmapped (fuzz/properties.py) when it did not.

A federation input starts with one flags byte that chooses what the harness adds (a
certificate, a signing key); the rest is what travels on the wire. docs/fuzzing.md draws
each layout.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from datetime import date
from typing import Any

from concordat.exchange.v1 import exchange_pb2
from concordat.federation.v1 import federation_pb2
from fuzz.federation import (
    DIGEST_KEY,
    EXCHANGE_ID,
    INSTANT,
    LEEWAY_SECONDS,
    PEER,
    PROVIDER,
    PROVIDER_HOLDS,
    Federation,
    at_instant,
    claims_of,
    ed25519_key,
    federation,
    response,
    sign_compact,
    sign_envelope,
    signed_part,
)
from fuzz.properties import (
    STATUS_EXCHANGE_ID,
    PropertyViolation,
    check_identifier,
    check_policy_input,
    check_refusal,
    check_validated,
    never_raises,
    only_concordat_errors,
)
from gateway.api.edge import Call, decode
from gateway.api.federation_service import _provider_exchange
from gateway.config import LimitsConfig
from gateway.domain import Requester
from gateway.errors import ConcordatError
from gateway.exchange import Exchange, Rpc
from gateway.federation.assertions import (
    DIGEST_KEY_METADATA,
    keyed_request_digest,
    request_digest,
)
from gateway.identifiers import validate_subject
from gateway.identity import ReplayCache
from gateway.pipeline.peer import AuthenticatePeer
from gateway.pipeline.routing import RouteToSelf
from gateway.pipeline.stages import RequireDecoded, ValidateRequest, policy_input_for

# The limits and stages a node builds with its default configuration (gateway/node.py,
# gateway/pipeline/order.py).
LIMITS = LimitsConfig()
_VALIDATE = ValidateRequest(
    min_deadline_seconds=LIMITS.min_deadline_seconds,
    max_batch_size=LIMITS.max_stream_batch_size,
)
_REQUIRE_DECODED = RequireDecoded()
_ROUTE_TO_SELF = RouteToSelf(PROVIDER, PROVIDER_HOLDS)
# Authenticate runs before validation in the caller's pipeline; the caller is fixed here.
CALLER = Requester(
    organisation="dwp",
    system="universal-credit",
    administration="whitehall",
    accreditations=frozenset({"fraud-investigator"}),
)
TODAY = date(2026, 9, 21)
SUBJECT_KINDS = ("nino", "nhs_number", "chi_number", "hc_number", "uprn", "registration_id")
# What flags >> 1 & 7 chooses as the calling peer's certificate in `relay`, and which node a
# relay that passes must have come from (None: it must not pass); 6 and 7 take the
# certificate from the input.
RELAY_CERTIFICATES: tuple[tuple[str | None, str | None], ...] = (
    ("whitehall", "whitehall"),
    ("stormont", "stormont"),
    ("holyrood", "holyrood"),
    ("forged-whitehall", None),
    (None, None),
    ("", None),
)
# What flags >> 1 & 3 chooses as the key the harness signs with in `assertion` and `receipt`.
ASSERTION_KEYS = ("whitehall", "stormont", "rogue", "holyrood")
RECEIPT_KEYS = ("holyrood", "stormont", "rogue", "whitehall")
HARNESS_SIGNS = 0x08
# With HARNESS_SIGNS: sign the input as an earlier release's JWT (header and payload split at
# the first newline) rather than as an envelope whose payload is the whole input.
AS_EARLIER_RELEASE_JWT = 0x10
# The verifier's default max_lifetime_seconds, which gateway/node.py keeps.
ASSERTION_MAX_LIFETIME = 120


def _run(stage: Callable[[Exchange], Coroutine[Any, Any, None]], exchange: Exchange) -> None:
    """Runs a stage that never waits to its end; without an event loop, 50 times faster."""
    coroutine = stage(exchange)
    try:
        coroutine.send(None)
    except StopIteration:
        return
    coroutine.close()
    raise RuntimeError(f"{type(stage).__name__} waited; run it on an event loop here instead")


# Caller requests -------------------------------------------------------------------------


def get_record(data: bytes) -> bool:
    """GetRecordRequest bytes, as a caller sends them to the edge."""
    return _caller_request("GetRecord", exchange_pb2.GetRecordRequest, data)


def stream_records(data: bytes) -> bool:
    """StreamRecordsRequest bytes, as a caller sends them to the edge."""
    return _caller_request("StreamRecords", exchange_pb2.StreamRecordsRequest, data)


def _caller_request(rpc: Rpc, message_type: type, data: bytes) -> bool:
    request = never_raises("decode", decode, message_type, data)
    exchange = Exchange(
        rpc=rpc,
        role="local",
        request=request,
        metadata=(),
        deadline_seconds=LIMITS.default_deadline_seconds,
        exchange_id=STATUS_EXCHANGE_ID,
        requester=CALLER,
        requesting_node="whitehall",
        providing_node="holyrood",
    )
    try:
        with only_concordat_errors(f"the validation of a {rpc}Request"):
            _run(_REQUIRE_DECODED, exchange)
            _run(_VALIDATE, exchange)
            document = policy_input_for(exchange, "egress", "whitehall", TODAY)
    except ConcordatError as error:
        check_refusal(error, data)
        return False
    check_validated(exchange, max_batch_size=LIMITS.max_stream_batch_size)
    check_policy_input(document, exchange)
    return True


def identifier(data: bytes) -> bool:
    """One subject identifier: byte 0 picks the kind, the rest is its text (or a uint64 UPRN)."""
    if not data:
        return False
    kind = SUBJECT_KINDS[data[0] % len(SUBJECT_KINDS)]
    raw: str | int
    if kind == "uprn":
        raw = int.from_bytes(data[1:9], "big")  # a uint64, as SubjectIdentifier carries it
    else:
        try:
            raw = data[1:].decode("utf-8")
        except UnicodeDecodeError:
            return False  # protobuf refuses a string field that is not UTF-8 before we see it
    try:
        with only_concordat_errors(f"validate_subject({kind!r})"):
            subject = validate_subject(kind, raw)
    except ConcordatError as error:
        check_refusal(error, data)
        return False
    check_identifier(kind, raw, subject.value)
    return True


# Peer envelopes --------------------------------------------------------------------------


class _PeerContext:
    """What the federation servicer reads of a call's context: the peer certificate, time and
    metadata (a peer's trace context; none here)."""

    def __init__(self, certificate: bytes | None) -> None:
        self._certificate = certificate

    def auth_context(self) -> dict[str, list[bytes]]:
        return {} if self._certificate is None else {"x509_pem_cert": [self._certificate]}

    def time_remaining(self) -> float:
        return LIMITS.default_deadline_seconds

    def invocation_metadata(self) -> tuple[tuple[str, str | bytes], ...]:
        return ((DIGEST_KEY_METADATA, DIGEST_KEY),)


def _authenticate_peer(fed: Federation) -> AuthenticatePeer:
    # A fresh replay guard each time: a genuine assertion is then not a replay of the last.
    return AuthenticatePeer(
        node=PROVIDER,
        directory=fed.directory,
        verifier=fed.assertion_verifier(),
        replay=ReplayCache(leeway_seconds=LEEWAY_SECONDS, clock=lambda: INSTANT),
    )


def relay(data: bytes) -> bool:
    """A RelayRequest or RelayStreamRequest from a peer presenting one of several certificates.

    Flags bit 0: a stream relay. Bits 1-3: the certificate (RELAY_CERTIFICATES); 6 and 7 read
    a 2-byte big-endian length and that many certificate bytes first. The rest is the message.
    """
    if not data:
        return False
    fed = federation()
    flags, rest = data[0], data[1:]
    stream = bool(flags & 1)
    choice = (flags >> 1) & 7
    certificate: bytes | None
    if choice < len(RELAY_CERTIFICATES):
        name, _ = RELAY_CERTIFICATES[choice]
        certificate = None if name is None else fed.certificates.get(name, b"")
    else:
        length = int.from_bytes(rest[:2], "big")
        certificate, rest = rest[2 : 2 + length], rest[2 + length :]
    message_type = federation_pb2.RelayStreamRequest if stream else federation_pb2.RelayRequest
    relay_request = never_raises("decode", decode, message_type, rest)
    call = Call(
        "RelayStream" if stream else "Relay",
        rest,
        _PeerContext(certificate),  # type: ignore[arg-type]
        exchange_id=STATUS_EXCHANGE_ID,
    )
    rpc: Rpc = "StreamRecords" if stream else "GetRecord"
    try:
        with at_instant(), only_concordat_errors(f"the providing node's checks of a {rpc} relay"):
            exchange = _provider_exchange(rpc, relay_request, call)
            _run(_authenticate_peer(fed), exchange)
            _run(_VALIDATE, exchange)
            _run(_ROUTE_TO_SELF, exchange)
    except ConcordatError as error:
        check_refusal(error, data)
        return False
    assert relay_request is not None  # noqa: S101 - AuthenticatePeer refuses an undecoded relay
    if choice < len(RELAY_CERTIFICATES):
        certificate_name, passes_as = RELAY_CERTIFICATES[choice]
        if exchange.requesting_node != passes_as:
            raise PropertyViolation(
                f"a peer presenting certificate {certificate_name!r} passed as "
                f"{exchange.requesting_node}"
            )
    if exchange.exchange_id != relay_request.exchange_id:
        raise PropertyViolation("the relay ran under an exchange id other than the one it named")
    _check_genuine_assertion(fed, exchange.assertion, exchange.requesting_node)
    claims = claims_of(exchange.assertion)
    if claims.get("digest") != keyed_request_digest(DIGEST_KEY, exchange.request):
        raise PropertyViolation("a relay passed whose assertion covers another request")
    if exchange.requester is None or exchange.requester.administration != exchange.requesting_node:
        raise PropertyViolation("a peer spoke for another administration's caller")
    check_validated(exchange, max_batch_size=LIMITS.max_stream_batch_size)
    return True


def _check_genuine_assertion(fed: Federation, token: str, signer: str) -> None:
    if signed_part(token) not in fed.signed_parts.get(signer, frozenset()):
        raise PropertyViolation(
            f"an assertion passed whose signed part {signer} never signed: {token!r:.300}"
        )


def _signed_by_harness(text: str, key_name: str, fed: Federation, flags: int) -> str:
    """The input signed with a real key: as an envelope's payload, or as a JWT's header and
    payload (split at the first newline)."""
    key = fed.signing_keys.get(key_name) or ed25519_key("rogue signing")
    if flags & AS_EARLIER_RELEASE_JWT:
        header, _, payload = text.partition("\n")
        return sign_compact(header.encode(), payload.encode(), key)
    return sign_envelope(text.encode(), key)


def assertion(data: bytes) -> bool:
    """An on-behalf-of assertion in the genuine relay from whitehall, checked by holyrood.

    Flags bit 0: the stream relay. Bit 3: the harness signs the input with the key bits 1-2
    choose (ASSERTION_KEYS), to reach the checks after the signature, as an envelope or (bit
    4) as an earlier release's JWT; otherwise the input is the token itself.
    """
    if not data:
        return False
    fed = federation()
    flags = data[0]
    try:
        text = data[1:].decode("utf-8")
    except UnicodeDecodeError:
        return False  # protobuf refuses a string field that is not UTF-8 before we see it
    key_name = ASSERTION_KEYS[(flags >> 1) & 3]
    harness_signed = bool(flags & HARNESS_SIGNS)
    token = _signed_by_harness(text, key_name, fed, flags) if harness_signed else text
    genuine = fed.genuine_stream if flags & 1 else fed.genuine_get
    exchange = Exchange(
        rpc="StreamRecords" if flags & 1 else "GetRecord",
        role="provider",
        request=genuine.request,
        metadata=((DIGEST_KEY_METADATA, DIGEST_KEY),),
        deadline_seconds=LIMITS.default_deadline_seconds,
        exchange_id=EXCHANGE_ID,
        peer_certificate=fed.certificates[PEER],
        assertion=token,
    )
    try:
        with at_instant(), only_concordat_errors("AuthenticatePeer"):
            _run(_authenticate_peer(fed), exchange)
    except ConcordatError as error:
        check_refusal(error, data)
        return False
    if not harness_signed:
        _check_genuine_assertion(fed, token, PEER)
        return True
    if key_name != PEER:
        raise PropertyViolation(f"an assertion signed with {key_name}'s key passed for {PEER}")
    _check_assertion_claims(claims_of(token), keyed_request_digest(DIGEST_KEY, genuine.request))
    if exchange.requester is None or exchange.requester.administration != PEER:
        raise PropertyViolation("an assertion spoke for another administration's caller")
    return True


def _check_assertion_claims(claims: dict[str, Any], digest: str) -> None:
    audience = claims.get("aud")
    if claims.get("iss") != PEER or not (
        audience == PROVIDER or (isinstance(audience, list) and PROVIDER in audience)
    ):
        raise PropertyViolation(f"an assertion passed from {claims.get('iss')!r} to {audience!r}")
    if claims.get("jti") != EXCHANGE_ID or claims.get("digest") != digest:
        raise PropertyViolation("an assertion passed for another exchange or request")
    iat, nbf, exp = claims["iat"], claims["nbf"], claims["exp"]
    # PyJWT compares whole seconds, so a claim may be up to a second past the leeway.
    if not (exp > INSTANT - LEEWAY_SECONDS - 1 and max(iat, nbf) < INSTANT + LEEWAY_SECONDS + 1):
        raise PropertyViolation(f"an assertion passed outside its lifetime: {claims!r:.300}")
    if exp - iat > ASSERTION_MAX_LIFETIME:
        raise PropertyViolation(f"an assertion passed with a lifetime of {exp - iat}s")


def receipt(data: bytes) -> bool:
    """A providing node's receipt, checked by the requesting node against what it received.

    Flags bit 0: the receipt is checked as stormont's rather than holyrood's. Bit 3: the
    harness signs the input with the key bits 1-2 choose (RECEIPT_KEYS), as an envelope or
    (bit 4) as an earlier release's JWT; otherwise the input is the token itself.
    """
    if not data:
        return False
    fed = federation()
    flags = data[0]
    try:
        text = data[1:].decode("utf-8")
    except UnicodeDecodeError:
        return False  # protobuf refuses a string field that is not UTF-8 before we see it
    key_name = RECEIPT_KEYS[(flags >> 1) & 3]
    harness_signed = bool(flags & HARNESS_SIGNS)
    token = _signed_by_harness(text, key_name, fed, flags) if harness_signed else text
    provider = "stormont" if flags & 1 else PROVIDER
    digest = request_digest(response())
    try:
        with at_instant(), only_concordat_errors("ReceiptVerifier.verify"):
            claims = fed.receipt_verifier().verify(
                token, provider_node=provider, exchange_id=EXCHANGE_ID, response_digest=digest
            )
    except ConcordatError as error:
        check_refusal(error, data)
        return False
    if harness_signed and key_name != provider:
        raise PropertyViolation(f"a receipt signed with {key_name}'s key passed for {provider}")
    if not harness_signed and signed_part(token) not in fed.signed_parts.get(provider, ()):
        raise PropertyViolation(f"a receipt passed whose signed part {provider} never signed")
    count = claims["record_count"]
    if (
        claims["iss"] != provider
        or claims["jti"] != EXCHANGE_ID
        or claims["digest"] != digest
        or not isinstance(count, int)
        or isinstance(count, bool)
        or count < 0
        or not isinstance(claims["released_fields"], list)
        or not all(isinstance(name, str) for name in claims["released_fields"])
        or not isinstance(claims["ingress_decision_id"], str)
        or not _pins_whole_position_or_none(claims)
    ):
        raise PropertyViolation(f"a receipt passed with claims it must not: {sorted(claims)}")
    return True


def _pins_whole_position_or_none(claims: dict[str, Any]) -> bool:
    if "log_seq" not in claims and "log_hash" not in claims:
        return True
    seq, chain_hash = claims.get("log_seq"), claims.get("log_hash")
    return (
        isinstance(seq, int)
        and not isinstance(seq, bool)
        and seq >= 0
        and isinstance(chain_hash, str)
        and bool(chain_hash)
    )


# Each returns whether the gateway accepted the input; a wrong answer raises.
TARGETS: dict[str, Callable[[bytes], bool]] = {
    "get_record": get_record,
    "stream_records": stream_records,
    "identifier": identifier,
    "relay": relay,
    "assertion": assertion,
    "receipt": receipt,
}
