"""A citizen's lookup, from their token to the merged answer, and a peer's search of its log.

Each writes exactly one audit entry, whatever happens, before the answer goes out: who asked
(a keyed hash of the citizen, the calling node), about which identifiers (keyed hashes, never
in clear), and how it ended.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import grpc
import structlog

from concordat.exchange.v1 import exchange_pb2
from concordat.transparency.v1 import (
    subject_search_pb2,
    subject_search_pb2_grpc,
    transparency_pb2,
)
from gateway.api.edge import Call, decode
from gateway.audit import AuditLog
from gateway.audit.subjects import subject_hash
from gateway.citizen.search import Found, LogSearch
from gateway.citizen.tokens import CITIZEN_KINDS, MAX_IDENTIFIERS, CitizenTokenVerifier
from gateway.domain import Subject
from gateway.errors import (
    ConcordatError,
    InternalError,
    InvalidRequest,
    NotYourSubject,
    Unavailable,
)
from gateway.federation.directory import DirectoryLookup
from gateway.federation.peers import PeerClients, peer_identity
from gateway.identifiers import validate_subject
from gateway.identity import bearer_token
from gateway.state import RateLimiter

log = structlog.get_logger("concordat.citizen")

_REFUSALS = frozenset(
    {"unauthenticated", "invalid-request", "not-your-subject", "rate-limited", "peer-rejected"}
)


@dataclass
class _Entry:
    """What one lookup or search has learnt so far, for its audit entry."""

    started: float = field(default_factory=time.monotonic)
    subjects: list[Subject] = field(default_factory=list)
    fields: dict[str, Any] = field(default_factory=dict)


class _Recorder:
    """Writes the one audit entry of a lookup or a search, shielded from cancellation."""

    def __init__(self, *, node: str, audit: AuditLog, subject_key: bytes) -> None:
        self._node = node
        self._audit = audit
        self._subject_key = subject_key

    async def record(
        self, call: Call, entry: _Entry, role: str, failure: BaseException | None
    ) -> None:
        error = _as_error(failure, call.exchange_id) if failure is not None else None
        event = {
            "exchange_id": call.exchange_id,
            "at": datetime.now(UTC).isoformat(timespec="microseconds"),
            "node": self._node,
            "role": role,
            "rpc": call.method,
            # Indexed as no subject, so no lookup is ever found by a lookup.
            "subject_hash": "",
            "subject_kinds": sorted({s.kind for s in entry.subjects}),
            "subject_hashes": sorted(
                {subject_hash(self._subject_key, s.kind, s.value) for s in entry.subjects}
            ),
            **entry.fields,
            "outcome": _outcome(error),
            "error_code": error.code if error else "",
            "error_message": error.message if error else "",
            "duration_ms": round((time.monotonic() - entry.started) * 1000, 3),
        }
        try:
            await asyncio.shield(self._audit.append(event))
        except asyncio.CancelledError:
            if not isinstance(failure, asyncio.CancelledError):
                raise
        except Exception as exc:
            log.error("audit_append_failed", exchange_id=call.exchange_id, error=type(exc).__name__)
            # No evidence, no answer; a state store that is unreachable will be back.
            if isinstance(exc, Unavailable):
                raise Unavailable("the lookup could not be recorded; retry shortly") from exc
            raise InternalError(
                f"the lookup could not be recorded; quote exchange id {call.exchange_id}"
            ) from exc

    def citizen_hash(self, citizen: str) -> str:
        return subject_hash(self._subject_key, "citizen", citizen)


class FederationSearch:
    """Asks every other node in the directory to search its own log, all at once."""

    def __init__(
        self,
        *,
        node: str,
        directory: DirectoryLookup,
        peers: PeerClients,
        timeout_seconds: float,
    ) -> None:
        self._node = node
        self._directory = directory
        self._peers = peers
        self._timeout = timeout_seconds

    async def search(
        self, lookup_id: str, subjects: Sequence[Subject]
    ) -> tuple[list[subject_search_pb2.SubjectSearchResponse], list[str]]:
        """The answers of the nodes that answered, and the nodes that did not."""
        others = [n for n in self._directory.nodes if n != self._node]
        request = subject_search_pb2.SubjectSearchRequest(
            lookup_id=lookup_id, subjects=[identifier_message(s) for s in subjects]
        )
        answers = await asyncio.gather(*(self._ask(node, request) for node in others))
        answered = [a for a in answers if a is not None]
        unanswered = [n for n, a in zip(others, answers, strict=True) if a is None]
        return answered, unanswered

    async def _ask(
        self, node: str, request: subject_search_pb2.SubjectSearchRequest
    ) -> subject_search_pb2.SubjectSearchResponse | None:
        try:
            stub = subject_search_pb2_grpc.SubjectSearchServiceStub(self._peers.get(node).channel)
            answer: subject_search_pb2.SubjectSearchResponse = await stub.SubjectSearch(
                request, timeout=self._timeout
            )
        except grpc.aio.AioRpcError as exc:
            # The code only: the request carries identifiers, and nothing of it is logged.
            log.warning("subject_search_failed", peer=node, code=exc.code().name)
            return None
        return answer


class CitizenLookup:
    """ListMyExchanges: authenticate, limit, check ownership, search everywhere, merge."""

    def __init__(
        self,
        *,
        node: str,
        verifier: CitizenTokenVerifier,
        limiter: RateLimiter,
        search: LogSearch,
        federation: FederationSearch | None,
        audit: AuditLog,
        subject_key: bytes,
    ) -> None:
        self._node = node
        self._verifier = verifier
        self._limiter = limiter
        self._search = search
        self._federation = federation
        self._recorder = _Recorder(node=node, audit=audit, subject_key=subject_key)

    async def answer(self, call: Call) -> transparency_pb2.ListMyExchangesResponse:
        # The meter counts lookups as the citizens' of this administration.
        entry = _Entry(fields={"requester": _citizens_of(self._node)})
        try:
            response = await self._answer(call, entry)
        except BaseException as exc:
            await self._recorder.record(call, entry, "citizen", exc)
            raise
        await self._recorder.record(call, entry, "citizen", None)
        return response

    async def _answer(self, call: Call, entry: _Entry) -> transparency_pb2.ListMyExchangesResponse:
        citizen = await self._verifier.verify(
            bearer_token(tuple(call.context.invocation_metadata() or ()))
        )
        entry.fields["citizen"] = self._recorder.citizen_hash(citizen.subject)
        # Before anything about the identifiers: probing others' identifiers is limited too.
        await self._limiter.take(citizen.subject)
        request = decode(transparency_pb2.ListMyExchangesRequest, call.request)
        if request is None:
            raise InvalidRequest("the request is not a valid ListMyExchangesRequest")
        asked = subjects_of(request.subjects) or sorted(
            citizen.identifiers, key=lambda s: (s.kind, s.value)
        )
        entry.subjects = list(asked)
        if not set(asked) <= citizen.identifiers:
            raise NotYourSubject(
                "you can ask only about the identifiers your sign-in verified as yours"
            )
        local, (remote, unanswered) = await asyncio.gather(
            self._search.search(asked), self._ask_federation(call.exchange_id, asked)
        )
        exchanges = merged([local, *(_found(answer) for answer in remote)], unanswered)
        entry.fields.update(unanswered=unanswered, exchanges_listed=len(exchanges))
        return transparency_pb2.ListMyExchangesResponse(
            exchanges=exchanges, unanswered_administrations=unanswered
        )

    async def _ask_federation(
        self, lookup_id: str, subjects: Sequence[Subject]
    ) -> tuple[list[subject_search_pb2.SubjectSearchResponse], list[str]]:
        if self._federation is None:
            return [], []
        return await self._federation.search(lookup_id, subjects)


class PeerSearchAnswer:
    """SubjectSearch: a member node's search of this node's log, for one of its citizens."""

    def __init__(
        self,
        *,
        node: str,
        directory: DirectoryLookup,
        search: LogSearch,
        audit: AuditLog,
        subject_key: bytes,
    ) -> None:
        self._directory = directory
        self._search = search
        self._recorder = _Recorder(node=node, audit=audit, subject_key=subject_key)

    async def answer(self, call: Call) -> subject_search_pb2.SubjectSearchResponse:
        entry = _Entry()
        try:
            response = await self._answer(call, entry)
        except BaseException as exc:
            await self._recorder.record(call, entry, "provider", exc)
            raise
        await self._recorder.record(call, entry, "provider", None)
        return response

    async def _answer(self, call: Call, entry: _Entry) -> subject_search_pb2.SubjectSearchResponse:
        certificate = next(iter(call.context.auth_context().get("x509_pem_cert", ())), None)
        peer = peer_identity(certificate, self._directory)
        entry.fields.update(requesting_node=peer, requester=_citizens_of(peer))
        request = decode(subject_search_pb2.SubjectSearchRequest, call.request)
        if request is None:
            raise InvalidRequest("the request is not a valid SubjectSearchRequest")
        entry.fields["lookup_id"] = request.lookup_id[:64]
        entry.subjects = subjects_of(request.subjects)
        if not entry.subjects:
            raise InvalidRequest("subjects must name at least one identifier")
        found = await self._search.search(entry.subjects)
        entry.fields.update(
            exchanges_listed=len(found.exchanges), exchanges_withheld=len(found.withheld)
        )
        return subject_search_pb2.SubjectSearchResponse(
            exchanges=found.exchanges, withheld_exchange_ids=sorted(found.withheld)
        )


def subjects_of(messages: Iterable[exchange_pb2.SubjectIdentifier]) -> list[Subject]:
    """Validated identifiers of the kinds that name one person; InvalidRequest otherwise."""
    subjects: list[Subject] = []
    for index, message in enumerate(messages):
        kind = message.WhichOneof("identifier")
        if kind not in CITIZEN_KINDS:
            raise InvalidRequest(f"subjects[{index}] must be one of {', '.join(CITIZEN_KINDS)}")
        try:
            subjects.append(validate_subject(kind, getattr(message, kind)))
        except InvalidRequest as exc:
            raise InvalidRequest(f"subjects[{index}]: {exc.message}") from exc
        if len(subjects) > MAX_IDENTIFIERS:
            raise InvalidRequest(f"at most {MAX_IDENTIFIERS} subjects may be asked about")
    return list(dict.fromkeys(subjects))


def identifier_message(subject: Subject) -> exchange_pb2.SubjectIdentifier:
    message = exchange_pb2.SubjectIdentifier()
    setattr(message, subject.kind, subject.value)
    return message


def merged(
    founds: Sequence[Found], unanswered: Sequence[str] = ()
) -> list[transparency_pb2.ExchangeAboutYou]:
    """One entry per exchange, newest first, leaving out every exchange any node withheld.

    Both nodes of a federated exchange log it; if either holds it back, neither record shows.
    An exchange one of whose nodes did not answer is left out too: that node might have held
    it back, and a hold must not come to light because a node was down.
    """
    withheld = set().union(*(found.withheld for found in founds))
    silent = set(unanswered)
    chosen: dict[str, transparency_pb2.ExchangeAboutYou] = {}
    for found in founds:
        for exchange in found.exchanges:
            parties = {exchange.requester.administration, exchange.provider.administration}
            if exchange.exchange_id not in withheld and not parties & silent:
                chosen.setdefault(exchange.exchange_id, exchange)
    return sorted(
        chosen.values(),
        key=lambda e: (e.at.seconds, e.at.nanos, e.exchange_id),
        reverse=True,
    )


def _citizens_of(administration: str) -> dict[str, str]:
    return {"organisation": "citizens", "system": "transparency", "administration": administration}


def _found(answer: subject_search_pb2.SubjectSearchResponse) -> Found:
    return Found(exchanges=list(answer.exchanges), withheld=set(answer.withheld_exchange_ids))


def _as_error(failure: BaseException, exchange_id: str) -> ConcordatError:
    if isinstance(failure, ConcordatError):
        return failure
    return InternalError(f"internal error; quote exchange id {exchange_id} to the operator")


def _outcome(error: ConcordatError | None) -> str:
    if error is None:
        return "answered"
    return "refused" if error.code in _REFUSALS else "failed"
