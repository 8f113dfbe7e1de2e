"""The state of one exchange as it moves through the pipeline's stages."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from concordat.records.v1 import records_pb2
from gateway.audit.chain import AuditPosition
from gateway.domain import Decision, Obligation, Requester, Subject
from gateway.errors import ConcordatError

Rpc = Literal["GetRecord", "StreamRecords"]
Role = Literal["local", "requester", "provider"]


def new_exchange_id() -> str:
    return uuid.uuid4().hex


@dataclass(slots=True)
class PeerEvidence:
    """What the other node of a federated exchange signed, kept in this node's audit entry.

    Only the members that are set go into the entry, so an entry reads as before: a
    requesting node keeps the receipt (or, for a stream, the count and the last one), a
    providing node the receipt it signed and the assertion it was sent.
    """

    peer: str
    receipt: str = ""
    response_digest: str = ""
    ingress_decision_id: str = ""
    assertion: str = ""
    receipts: int = 0
    last_receipt: str = ""

    def as_entry(self) -> dict[str, Any]:
        return {
            member.name: getattr(self, member.name)
            for member in fields(self)
            if getattr(self, member.name) or member.name == "peer"
        }


@dataclass(slots=True)
class Exchange:
    """Everything known about one request; each stage reads what earlier stages set."""

    rpc: Rpc
    role: Role
    # The decoded request message; None when its bytes did not decode (refused as invalid).
    request: Any
    metadata: tuple[tuple[str, Any], ...]
    deadline_seconds: float | None
    exchange_id: str = field(default_factory=new_exchange_id)
    started: float = field(default_factory=time.monotonic)
    # Set by the stages, in pipeline order.
    requester: Requester | None = None
    record_type: str = ""
    subject: Subject | None = None
    subjects: tuple[Subject, ...] = ()
    purpose: str = ""
    agreement_id: str = ""
    fields: tuple[str, ...] = ()
    case_reference: str = ""
    idempotency_key: str = ""
    requesting_node: str = ""
    providing_node: str = ""
    # The input each direction's decision saw, kept so `concordat policy impact` can replay it.
    policy_inputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    # The bundle revision that decided (a hot reload may change it between requests).
    policy_revision: str = ""
    egress: Decision | None = None
    ingress: Decision | None = None
    rows: list[Any] = field(default_factory=list)
    records: list[records_pb2.Record] = field(default_factory=list)
    released_fields: tuple[str, ...] = ()
    obligations: tuple[Obligation, ...] = ()
    record_count: int = 0
    bytes_released: int = 0
    replay_of: str = ""
    response: Any = None
    error: ConcordatError | None = None
    # The idempotency claim this exchange holds, settled when it ends.
    idempotency_owner: str | None = None
    # A providing node's view of the peer: its certificate and the assertion it sent.
    peer_certificate: bytes | None = None
    assertion: str = ""
    exchange_id_invalid: bool = False
    # A requesting node that takes a relayed batch as the bytes its receipt signs.
    peer_accepts_encoded_batch: bool = False
    # A requesting node's view of the provider's answer.
    peer_withheld: dict[str, str] = field(default_factory=dict)
    peer_ingress_decision_id: str = ""
    receipt: str = ""
    peer_evidence: PeerEvidence | None = None
    # A bulk extract's opening entry, written before its first batch leaves (its receipts pin
    # it, and the closing entry names it).
    opening: AuditPosition | None = None

    @property
    def done(self) -> bool:
        """True once the answer is an earlier exchange's (an idempotent replay)."""
        return bool(self.replay_of)

    def elapsed_ms(self) -> float:
        return (time.monotonic() - self.started) * 1000
