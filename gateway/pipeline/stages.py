"""The stages of an exchange, each one small thing with the same signature.

`async def __call__(self, exchange) -> None`: read what earlier stages set, add one thing,
or raise a ConcordatError. The order lives in gateway/pipeline/order.py.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import date
from typing import Any, Protocol

from adapters.base import AdapterError, RecordSource, SourceDataInvalid
from gateway import records
from gateway.clock import Clock
from gateway.config import ADMINISTRATIONS
from gateway.domain import Decision, Direction, merge_obligations
from gateway.errors import (
    DeadlineExceeded,
    InvalidRequest,
    LocalDataInvalid,
    NoRoute,
    PolicyDenied,
    RecordNotFound,
    Unauthenticated,
    Unavailable,
)
from gateway.exchange import Exchange
from gateway.identifiers import validate_subject
from gateway.identity import TokenVerifier, bearer_token
from gateway.pipeline.routing import Providers
from gateway.policy import PolicyEngine
from gateway.policy.policy_input import PolicyRequest, build_policy_input
from gateway.pseudonyms import Pseudonyms
from gateway.state import IdempotencyStore, ReplayGuard


class Stage(Protocol):
    async def __call__(self, exchange: Exchange) -> None: ...


NOTHING_RELEASED_RULE = "concordat.no_requested_field_released"
# Tokens this node issues are a few hundred characters; anything far longer is not one.
MAX_RESUME_TOKEN = 4096
# Matched whole (`fullmatch`): `$` would also accept a trailing newline.
_AGREEMENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
_PRINTABLE = re.compile(r"[\x20-\x7e]{0,128}")


class RequireDecoded:
    """Refuses a request whose bytes did not decode (the edge hands it on as None)."""

    async def __call__(self, exchange: Exchange) -> None:
        if exchange.request is None:
            raise InvalidRequest(f"the request body is not a valid {exchange.rpc}Request message")


class Authenticate:
    """Turns the caller's bearer token into a verified Requester; each token serves once."""

    def __init__(self, verifier: TokenVerifier, replay: ReplayGuard) -> None:
        self._verifier = verifier
        self._replay = replay

    async def __call__(self, exchange: Exchange) -> None:
        requester = self._verifier.verify(bearer_token(exchange.metadata))
        # Only a token that is genuine and valid may use up its jti.
        if not await self._replay.first_use(requester.token_id, requester.token_expires_at):
            raise Unauthenticated("token jti has already been used")
        exchange.requester = requester


class ValidateRequest:
    """Refuses malformed requests before anything is evaluated; normalises what it keeps."""

    def __init__(self, *, min_deadline_seconds: float, max_batch_size: int) -> None:
        self._min_deadline = min_deadline_seconds
        self._max_batch_size = max_batch_size

    async def __call__(self, exchange: Exchange) -> None:
        request = exchange.request
        if exchange.deadline_seconds is not None and exchange.deadline_seconds < self._min_deadline:
            raise DeadlineExceeded("the call's deadline is too short for an exchange")
        exchange.record_type = records.record_type_name(request.record_type)
        exchange.purpose = records.purpose_name(request.purpose)
        if exchange.rpc == "GetRecord":
            if not request.HasField("subject"):
                raise InvalidRequest("subject is required")
            exchange.subject = _subject(request.subject, "subject")
        else:
            exchange.subjects = tuple(
                _subject(s, f"subjects[{i}]") for i, s in enumerate(request.subjects)
            )
            if request.batch_size > self._max_batch_size:
                raise InvalidRequest(f"batch_size may be at most {self._max_batch_size}")
        if not _AGREEMENT_ID.fullmatch(request.agreement_id):
            raise InvalidRequest(
                "agreement_id is required: letters, digits and . _ : - (at most 128)"
            )
        exchange.agreement_id = request.agreement_id
        exchange.fields = records.validate_field_mask(
            exchange.record_type, list(request.field_mask.paths)
        )
        exchange.released_fields = exchange.fields
        for name in ("case_reference", "idempotency_key"):
            value = getattr(request, name)
            if not _PRINTABLE.fullmatch(value):
                raise InvalidRequest(f"{name} must be printable ASCII of at most 128 characters")
        exchange.case_reference = request.case_reference
        exchange.idempotency_key = request.idempotency_key
        if request.provider_node and request.provider_node not in ADMINISTRATIONS:
            raise InvalidRequest(
                f"provider_node must be empty or one of {', '.join(ADMINISTRATIONS)}"
            )
        if exchange.rpc == "StreamRecords" and len(request.resume_token) > MAX_RESUME_TOKEN:
            raise InvalidRequest("resume_token is malformed")


def _subject(message: Any, where: str) -> Any:
    kind = message.WhichOneof("identifier")
    if kind is None:
        raise InvalidRequest(f"{where} must carry exactly one identifier")
    try:
        return validate_subject(kind, getattr(message, kind))
    except InvalidRequest as exc:
        raise InvalidRequest(exc.message.replace("subject.", f"{where}.", 1)) from exc


class Deduplicate:
    """Answers a repeat of an earlier request (same caller and idempotency key) once."""

    def __init__(self, store: IdempotencyStore) -> None:
        self._store = store

    async def __call__(self, exchange: Exchange) -> None:
        if not exchange.idempotency_key or exchange.requester is None:
            return
        owner = (
            f"{exchange.requester.administration}/{exchange.requester.organisation}/"
            f"{exchange.requester.system}"
        )
        digest = hashlib.sha256(exchange.request.SerializeToString(deterministic=True)).hexdigest()
        earlier = await self._store.claim(
            owner, exchange.idempotency_key, digest, exchange.exchange_id
        )
        if earlier is None:
            exchange.idempotency_owner = owner
            return
        response = earlier.response
        exchange.replay_of = earlier.exchange_id
        exchange.response = response
        exchange.record_count = len(getattr(response, "records", ()))
        exchange.released_fields = tuple(getattr(response, "released_fields", ()))


class Route:
    """Chooses the node that holds the records: this one, or a peer the providers name."""

    def __init__(self, node: str, local_types: frozenset[str], providers: Providers) -> None:
        self._node = node
        self._local_types = local_types
        self._providers = providers

    async def __call__(self, exchange: Exchange) -> None:
        exchange.requesting_node = self._node
        exchange.providing_node = self._choose(exchange)

    def _choose(self, exchange: Exchange) -> str:
        record_type = exchange.record_type
        candidates = self._providers(exchange)
        if record_type not in self._local_types and self._node in candidates:
            candidates.remove(self._node)
        wanted: str = exchange.request.provider_node
        if wanted:
            if wanted not in candidates:
                raise NoRoute(f"{wanted} does not serve {record_type} records for this subject")
            return wanted
        if not candidates:
            raise NoRoute(f"no node serves {record_type} records for this subject")
        if self._node in candidates:
            return self._node
        if len(candidates) > 1:
            raise NoRoute(
                f"several nodes serve {record_type} records for this subject; set provider_node "
                f"to one of {', '.join(candidates)}"
            )
        return candidates[0]


class Branch:
    """Runs one list of stages when the records are local, another when a peer holds them."""

    def __init__(self, node: str, *, local: Sequence[Stage], remote: Sequence[Stage]) -> None:
        self._node = node
        self._local = list(local)
        self._remote = list(remote)

    async def __call__(self, exchange: Exchange) -> None:
        for stage in self._local if exchange.providing_node == self._node else self._remote:
            await stage(exchange)


class Decide:
    """Asks the policy engine to decide, as of the clock's day; a denial stops the exchange."""

    def __init__(self, direction: Direction, node: str, engine: PolicyEngine, clock: Clock) -> None:
        self.name = f"decide_{direction}"
        self._direction: Direction = direction
        self._node = node
        self._engine = engine
        self._clock = clock

    async def __call__(self, exchange: Exchange) -> None:
        policy_input = policy_input_for(exchange, self._direction, self._node, self._clock.today())
        exchange.policy_inputs[self._direction] = policy_input
        exchange.policy_revision = self._engine.revision
        decision = await self._engine.decide(self._direction, policy_input)
        setattr(exchange, self._direction, decision)
        if not decision.allow:
            raise PolicyDenied(
                f"{self._direction} policy of {self._node} denied the request: {decision.rule}",
                metadata={
                    "rule": decision.rule,
                    "decision_id": decision.decision_id,
                    "agreement_id": decision.agreement_id,
                    "node": self._node,
                },
            )
        exchange.released_fields = _narrow(exchange.released_fields, decision)
        if not exchange.released_fields:
            # An allow that releases none of the fields asked for discloses nothing: a denial,
            # the same on GetRecord and StreamRecords, before any local system is read.
            raise PolicyDenied(
                f"the {self._direction} policy of {self._node} released none of the requested "
                "fields",
                metadata={
                    "rule": NOTHING_RELEASED_RULE,
                    "decision_id": decision.decision_id,
                    "agreement_id": decision.agreement_id or exchange.agreement_id,
                    "node": self._node,
                },
            )
        exchange.obligations = merge_obligations(exchange.obligations, decision.obligations)


def policy_input_for(
    exchange: Exchange, direction: Direction, node: str, today: date
) -> dict[str, Any]:
    """The policy input document for this exchange; it names the subject's kind, never its
    identifier."""
    return build_policy_input(
        PolicyRequest(
            direction=direction,
            node=node,
            requesting_node=exchange.requesting_node,
            providing_node=exchange.providing_node,
            requester=exchange.requester,
            record_type=exchange.record_type,
            subject_kind=exchange.subject.kind if exchange.subject else "",
            purpose=exchange.purpose,
            agreement_id=exchange.agreement_id,
            fields=exchange.fields,
            case_reference_present=bool(exchange.case_reference),
            bulk=exchange.rpc == "StreamRecords",
            today=today,
        )
    )


def _narrow(released: Sequence[str], decision: Decision) -> tuple[str, ...]:
    allowed = set(decision.released_fields)
    return tuple(f for f in released if f in allowed)


class Fetch:
    """Reads the released fields of the subject's records from the local system."""

    def __init__(self, sources: Mapping[str, RecordSource]) -> None:
        self._sources = sources

    async def __call__(self, exchange: Exchange) -> None:
        assert exchange.subject is not None  # noqa: S101 - ValidateRequest guarantees it
        source = self._sources[exchange.record_type]
        with translate_adapter_errors(exchange.record_type):
            exchange.rows = await source.fetch(
                exchange.record_type,
                exchange.subject.kind,
                exchange.subject.value,
                list(exchange.released_fields),
            )
        if not exchange.rows:
            raise RecordNotFound(f"no {exchange.record_type} record is held for this subject")


@contextmanager
def translate_adapter_errors(record_type: str) -> Iterator[None]:
    """Turns an adapter's failure into our error, never showing the local system's detail."""
    try:
        yield
    except SourceDataInvalid as exc:
        raise LocalDataInvalid(
            f"the local system returned an invalid {record_type} record"
        ) from exc
    except AdapterError as exc:  # SourceUnavailable and any other failure of the local system
        raise Unavailable(
            f"the local system that holds {record_type} records is unavailable"
        ) from exc


class Minimise:
    """Builds the records from the released fields only; pseudonymises where the policy says."""

    def __init__(self, pseudonym_key: bytes) -> None:
        self._pseudonym_key = pseudonym_key

    async def __call__(self, exchange: Exchange) -> None:
        pseudonymise = bool(exchange.ingress and exchange.ingress.pseudonymise)
        pseudonym = ""
        if pseudonymise and exchange.subject is not None:
            pseudonym = Pseudonyms(self._pseudonym_key, exchange.agreement_id).of(
                exchange.subject.kind, exchange.subject.value
            )
        exchange.records = [
            records.build_record(
                exchange.record_type, row, exchange.released_fields, pseudonym=pseudonym
            )
            for row in exchange.rows
        ]
        exchange.rows = []
        exchange.record_count = len(exchange.records)
        exchange.bytes_released = records.size_of(exchange.records)
