"""Bulk extracts: batches read from the local system, minimised, resumable.

A resume token is the adapter's cursor bound to the request it belongs to and signed with
the node's key, so a token cannot be forged or replayed against a different extract.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import date
from typing import Any, Generic, Protocol, TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from adapters.base import AdapterError, Batch, RecordSource, Row, SubjectKey
from concordat.exchange.v1 import exchange_pb2
from gateway import records
from gateway.clock import Clock
from gateway.domain import Direction
from gateway.errors import InvalidRequest, PolicyDenied
from gateway.exchange import Exchange
from gateway.pipeline.evidence import EvidenceRecorder
from gateway.pipeline.respond import obligations_to_proto, withheld_of, withheld_to_proto
from gateway.pipeline.stages import policy_input_for, translate_adapter_errors
from gateway.policy import PolicyEngine
from gateway.pseudonyms import Pseudonyms
from gateway.records import BuiltBatch
from gateway.wire import EncodedResponse

# Batches built ahead of the one being sent.
BATCHES_AHEAD = 1
_Built = BuiltBatch | Exception | None


# A batch as a caller receives it: built by this node, or relayed as a providing node signed
# it (gateway.wire explains why that one stays in wire form).
StreamBatch = exchange_pb2.StreamRecordsResponse | EncodedResponse


class StreamBatches(Protocol):
    """Batches this node builds, each with its encoding (a providing node signs it, and both
    kinds of caller are sent it as it is)."""

    def __call__(self, exchange: Exchange) -> AsyncIterator[BuiltBatch]: ...


class CallerBatches(Protocol):
    """Batches for a caller of this node: built here, or relayed from a providing node."""

    def __call__(self, exchange: Exchange) -> AsyncIterator[StreamBatch]: ...


class ResumeTokens:
    """Issues and opens resume tokens under a key of their own (never the subject hash key:
    whoever searches the audit log by subject must not be able to forge a token)."""

    def __init__(self, key: bytes) -> None:
        self._key = hashlib.sha256(b"resume-token:" + key).digest()

    @classmethod
    def keyed_from_signing_key(cls, signing_key: Ed25519PrivateKey) -> ResumeTokens:
        """Tokens keyed from the node's signing key, domain-separated, so every replica of a
        node agrees on them and no other key in the node can make one."""
        seed = signing_key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        return cls(hmac.new(seed, b"concordat resume tokens v1", hashlib.sha256).digest())

    @staticmethod
    def extract_digest(request: exchange_pb2.StreamRecordsRequest) -> str:
        """Identifies the extract a request asks for, whatever its batch size or position."""
        bare = exchange_pb2.StreamRecordsRequest()
        bare.CopyFrom(request)
        bare.resume_token = ""
        bare.batch_size = 0
        bare.idempotency_key = ""
        return hashlib.sha256(bare.SerializeToString(deterministic=True)).hexdigest()[:32]

    def issue(self, extract: str, cursor: str) -> str:
        body = json.dumps({"c": cursor, "r": extract}).encode()
        mac = hmac.new(self._key, body, hashlib.sha256).digest()[:16]
        return (
            base64.urlsafe_b64encode(body).decode() + "." + base64.urlsafe_b64encode(mac).decode()
        )

    def open(self, request: exchange_pb2.StreamRecordsRequest, extract: str) -> str | None:
        token = request.resume_token
        if not token:
            return None
        try:
            body_part, mac_part = token.split(".", 1)
            body = base64.urlsafe_b64decode(body_part)
            mac = base64.urlsafe_b64decode(mac_part)
            payload = json.loads(body)
        except (ValueError, TypeError) as exc:
            raise InvalidRequest("resume_token is malformed") from exc
        expected = hmac.new(self._key, body, hashlib.sha256).digest()[:16]
        if not hmac.compare_digest(mac, expected) or not isinstance(payload, dict):
            raise InvalidRequest("resume_token was not issued by this node")
        if payload.get("r") != extract:
            raise InvalidRequest("resume_token belongs to a different extract")
        cursor = payload.get("c")
        if not isinstance(cursor, str):
            raise InvalidRequest("resume_token is malformed")
        return cursor


class LocalBatches:
    """Reads an extract from the local source batch by batch; gRPC's flow control paces it."""

    def __init__(
        self,
        *,
        sources: Mapping[str, RecordSource],
        tokens: ResumeTokens,
        default_batch_size: int,
        pseudonym_key: bytes,
    ) -> None:
        self._sources = sources
        self._tokens = tokens
        self._default_batch_size = default_batch_size
        self._pseudonym_key = pseudonym_key

    async def __call__(self, exchange: Exchange) -> AsyncIterator[BuiltBatch]:
        request = exchange.request
        extract = self._tokens.extract_digest(request)
        after = self._tokens.open(request, extract)
        batch_size = request.batch_size or self._default_batch_size
        source = self._sources[exchange.record_type]
        # Decide refused the exchange if its decisions released none of the fields.
        fields = list(exchange.released_fields)
        # The next batch is built while gRPC sends the last one (the event loop is otherwise idle
        # while a send waits on flow control); at most BATCHES_AHEAD wait, so memory stays flat.
        built: asyncio.Queue[_Built] = asyncio.Queue(maxsize=BATCHES_AHEAD)
        producer = asyncio.create_task(
            self._build(exchange, source, fields, batch_size, after, extract, built)
        )
        try:
            while (item := await built.get()) is not None:
                if isinstance(item, Exception):
                    raise item
                # Counted as handed to gRPC, so the audit never counts a batch never sent.
                exchange.record_count += len(item.response.records)
                exchange.bytes_released += item.record_bytes
                yield item
        finally:
            if not producer.done():
                producer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await producer

    async def _build(
        self,
        exchange: Exchange,
        source: RecordSource,
        fields: list[str],
        batch_size: int,
        after: str | None,
        extract: str,
        built: asyncio.Queue[_Built],
    ) -> None:
        """Puts each batch's response and size on `built`, then None, or the failure."""
        builder = records.record_builder(exchange.record_type, tuple(fields))
        # Research extracts carry a pseudonym per record, keyed on each row's subject, which
        # the source reads for this alone: it is never one of the released fields.
        pseudonyms = None
        if exchange.ingress is not None and exchange.ingress.pseudonymise:
            pseudonyms = Pseudonyms(self._pseudonym_key, exchange.agreement_id)
        # What was released and why travels once, in the first batch, built in with its records
        # so that the batch is encoded once, complete.
        description: dict[str, Any] = self._release_description(exchange)
        batches: AsyncIterator[Batch] | None = None
        try:
            # Inside the translation: a source may refuse as soon as it is asked (REST sources
            # offer no bulk extract), and that is the local system's failure like any other.
            with translate_adapter_errors(exchange.record_type):
                if exchange.subjects:
                    batches = self._subject_batches(exchange, source, fields, batch_size, after)
                else:
                    batches = source.stream(
                        exchange.record_type,
                        fields,
                        batch_size=batch_size,
                        after=after,
                        with_subjects=pseudonyms is not None,
                    )
                async for batch in batches:
                    await built.put(
                        builder.batch(
                            batch.rows,
                            pseudonyms=_pseudonyms_of(batch, pseudonyms),
                            exchange_id=exchange.exchange_id,
                            resume_token=self._tokens.issue(extract, batch.cursor),
                            provider_node=exchange.providing_node,
                            **description,
                        )
                    )
                    description = {}
        except Exception as exc:  # noqa: BLE001 - handed to the consumer, which raises it
            await built.put(exc)
            return
        finally:
            # Stops the source's own read-ahead as soon as the extract stops, however it stops.
            close = getattr(batches, "aclose", None)
            if close is not None:
                await close()
        await built.put(None)

    @staticmethod
    async def _subject_batches(
        exchange: Exchange,
        source: RecordSource,
        fields: list[str],
        batch_size: int,
        after: str | None,
    ) -> AsyncIterator[Batch]:
        """Batches over an explicit subject list; the cursor is the next subject's index."""
        start = int(after) if after and after.isdigit() else 0
        pending: list[Row] = []
        subjects: list[SubjectKey | None] = []
        for index in range(start, len(exchange.subjects)):
            subject = exchange.subjects[index]
            rows = await source.fetch(exchange.record_type, subject.kind, subject.value, fields)
            pending.extend(rows)
            # Each row is about the subject it was fetched for, as a GetRecord would be.
            subjects.extend([(subject.kind, subject.value)] * len(rows))
            if len(pending) >= batch_size or index == len(exchange.subjects) - 1:
                yield Batch(rows=pending, cursor=str(index + 1), subjects=subjects)
                pending, subjects = [], []

    @staticmethod
    def _release_description(exchange: Exchange) -> dict[str, Any]:
        """The first batch's fields that say what was released and why."""
        return {
            "released_fields": exchange.released_fields,
            "withheld": withheld_to_proto(withheld_of(exchange)),
            "obligations": obligations_to_proto(exchange.obligations),
            "egress_decision_id": exchange.egress.decision_id if exchange.egress else "",
            "ingress_decision_id": exchange.ingress.decision_id if exchange.ingress else "",
        }


def _pseudonyms_of(batch: Batch, pseudonyms: Pseudonyms | None) -> list[str]:
    if pseudonyms is None:
        return []
    if len(batch.subjects) != len(batch.rows):
        # Fail closed: a research record must never go out without its pseudonym.
        raise AdapterError("the source did not give every row's subject for its pseudonym")
    return [pseudonyms.of_held(subject) for subject in batch.subjects]


class ChooseBatches:
    """Local batches when this node holds the records, relayed batches when a peer does.

    A local batch goes to the caller as the encoding it was built with: serialising the
    message again for gRPC would cost as much as building it did.
    """

    def __init__(self, node: str, *, local: StreamBatches, remote: CallerBatches) -> None:
        self._node = node
        self._local = local
        self._remote = remote

    def __call__(self, exchange: Exchange) -> AsyncIterator[StreamBatch]:
        if exchange.providing_node == self._node:
            return _as_encoded(self._local(exchange))
        return self._remote(exchange)


async def _as_encoded(batches: AsyncIterator[BuiltBatch]) -> AsyncIterator[StreamBatch]:
    async for built in batches:
        yield EncodedResponse(built.encoded)


class AgreementWatch:
    """Holds a running extract to the decisions that let it start.

    Before each batch after the first, if the policy revision or the day has changed since
    the extract last looked, every decision this node took for it is taken again; a denial
    (a suspended agreement or party, an agreement that has ended) stops the extract there with
    PERMISSION_DENIED naming the rule. While neither changes, a batch costs two comparisons.
    """

    def __init__(self, *, node: str, engine: PolicyEngine, clock: Clock) -> None:
        self._node = node
        self._engine = engine
        self._clock = clock

    def decided_as(self, exchange: Exchange) -> tuple[str, date]:
        """What the extract's decisions were taken under: the revision and the day."""
        return exchange.policy_revision or self._engine.revision, self._clock.today()

    async def recheck(self, exchange: Exchange, last: tuple[str, date]) -> tuple[str, date]:
        """Decides again if anything changed since `last`; returns what it now holds under."""
        now = (self._engine.revision, self._clock.today())
        if now == last:
            return last
        for direction in _DIRECTIONS:
            if direction not in exchange.policy_inputs:
                continue
            policy_input = policy_input_for(exchange, direction, self._node, now[1])
            decision = await self._engine.decide(direction, policy_input)
            if not decision.allow:
                raise PolicyDenied(
                    f"the {direction} policy of {self._node} stopped the extract: {decision.rule}",
                    metadata={
                        "rule": decision.rule,
                        "decision_id": decision.decision_id,
                        "agreement_id": decision.agreement_id or exchange.agreement_id,
                        "node": self._node,
                    },
                )
        return now


_DIRECTIONS: tuple[Direction, ...] = ("egress", "ingress")
_B = TypeVar("_B")


class ExtractUnderWatch(Generic[_B]):
    """An extract's batches as they leave this node, leaving evidence and watched as they go.

    The opening entry is stored durably before the first batch leaves, so a node killed
    mid-extract still shows it (the pipeline writes the closing entry when the extract ends);
    before each later batch the agreement watch may stop it.
    """

    def __init__(
        self,
        batches: Callable[[Exchange], AsyncIterator[_B]],
        *,
        evidence: EvidenceRecorder,
        watch: AgreementWatch,
    ) -> None:
        self._batches = batches
        self._evidence = evidence
        self._watch = watch

    async def __call__(self, exchange: Exchange) -> AsyncIterator[_B]:
        decided = self._watch.decided_as(exchange)
        # Shielded like the closing entry: a caller that goes away now must not leave the
        # opening half written, nor the extract without one.
        await asyncio.shield(self._evidence.record_opening(exchange))
        # What had been handed to gRPC when the last batch left: the batch sources count a
        # batch as they give it, so one stopped here, built but never sent, is taken back.
        sent: tuple[int, int] | None = None
        async for batch in self._batches(exchange):
            if sent is not None:
                try:
                    decided = await self._watch.recheck(exchange, decided)
                except PolicyDenied:
                    exchange.record_count, exchange.bytes_released = sent
                    raise
            yield batch
            sent = (exchange.record_count, exchange.bytes_released)
