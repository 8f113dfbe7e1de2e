"""Turns a finished exchange into its one audit entry.

The entry says who asked, for what, about whom (as a keyed hash), under which purpose and
agreement, what each policy decided and by which rule, what was released, which fields were
withheld and by which rule, and how it ended. It never holds an identifier or a record value
in clear (field names, never their values).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from gateway.audit import AuditLog
from gateway.audit.subjects import subject_hash
from gateway.domain import Decision
from gateway.exchange import Exchange
from gateway.pipeline.respond import withheld_from_proto, withheld_of
from gateway.policy import PolicyEngine

_PEER_ERROR_KEYS = ("peer", "node", "rule", "decision_id", "agreement_id", "reason")


def _decision_summary(decision: Decision | None) -> dict[str, Any] | None:
    if decision is None:
        return None
    return {
        "decision_id": decision.decision_id,
        "allow": decision.allow,
        "rule": decision.rule,
        "agreement_id": decision.agreement_id,
        "reasons": list(decision.reasons),
        "withheld": dict(decision.withheld),
    }


def _withheld(exchange: Exchange) -> dict[str, str]:
    if exchange.replay_of:
        # A replay released what the first answer released, and withheld what it withheld.
        return withheld_from_proto(getattr(exchange.response, "withheld", ()))
    return withheld_of(exchange)


def outcome_of(exchange: Exchange) -> str:
    if exchange.replay_of:
        return "replayed"
    if exchange.error is None:
        return "released"
    if exchange.error.code == "policy-denied":
        return "denied"
    if exchange.error.code in (
        "unauthenticated",
        "invalid-request",
        "peer-rejected",
        "idempotency-conflict",
    ):
        return "refused"
    return "failed"


class EvidenceRecorder:
    """Writes one audit entry per exchange, durably, before the answer goes out."""

    def __init__(
        self, *, node: str, audit: AuditLog, subject_key: bytes, policy: PolicyEngine
    ) -> None:
        self._node = node
        self._audit = audit
        self._subject_key = subject_key
        # Read per entry: a hot reload changes the revision while the node runs.
        self._policy = policy

    def event_for(self, exchange: Exchange) -> dict[str, Any]:
        requester = exchange.requester
        subjects = [exchange.subject] if exchange.subject else list(exchange.subjects)
        error = exchange.error
        streamed = exchange.rpc == "StreamRecords"
        return {
            "exchange_id": exchange.exchange_id,
            "at": datetime.now(UTC).isoformat(timespec="microseconds"),
            "node": self._node,
            "role": exchange.role,
            "rpc": exchange.rpc,
            "requester": (
                {
                    "organisation": requester.organisation,
                    "system": requester.system,
                    "administration": requester.administration,
                }
                if requester
                else None
            ),
            "requesting_node": exchange.requesting_node,
            "providing_node": exchange.providing_node,
            "record_type": exchange.record_type,
            "subject_kind": subjects[0].kind if subjects else "",
            "subject_hash": (
                subject_hash(self._subject_key, subjects[0].kind, subjects[0].value)
                if len(subjects) == 1
                else ""
            ),
            "subject_count": len(subjects),
            "purpose": exchange.purpose,
            "agreement_id": exchange.agreement_id,
            "case_reference": exchange.case_reference,
            "fields_requested": list(exchange.fields),
            "fields_released": list(exchange.released_fields) if error is None else [],
            # What the answer named as withheld (this node's decisions' and a relaying peer's).
            "fields_withheld": _withheld(exchange) if error is None else {},
            "egress": _decision_summary(exchange.egress),
            "ingress": _decision_summary(exchange.ingress),
            "policy_revision": exchange.policy_revision or self._policy.revision,
            "policy_inputs": exchange.policy_inputs,
            "outcome": outcome_of(exchange),
            "error_code": error.code if error else "",
            "error_message": error.message if error else "",
            # A peer's refusal, as data: which node decided, by which rule and decision.
            "peer_error": (
                {k: v for k, v in error.metadata.items() if k in _PEER_ERROR_KEYS}
                if error is not None and "peer" in error.metadata
                else None
            ),
            "replay_of": exchange.replay_of,
            # A stream that fails part way has still released the batches handed to gRPC
            # (counted as they went); a unary answer that failed released nothing.
            "records": exchange.record_count if error is None or streamed else 0,
            "bytes": exchange.bytes_released if error is None or streamed else 0,
            "duration_ms": round(exchange.elapsed_ms(), 3),
            **(exchange.peer_evidence.as_entry() if exchange.peer_evidence else {}),
        }

    async def record(self, exchange: Exchange) -> int:
        return await self._audit.append(self.event_for(exchange))
