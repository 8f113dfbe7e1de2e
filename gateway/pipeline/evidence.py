"""Turns a finished exchange into its one audit entry.

The entry says who asked, for what, about whom (as a keyed hash), under which purpose and
agreement, what each policy decided and by which rule, what was released, which fields were
withheld and by which rule, and how it ended. It never holds an identifier or a record value
in clear (field names, never their values).

A bulk extract has two entries: an opening one, written durably before its first batch leaves,
and the closing one, which names the opening; a node killed mid-extract leaves the opening
(docs/evidence.md). A providing node signs its receipt for a GetRecord only once the entry is
stored, so the receipt can pin where the entry sits in its chain.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from gateway.audit import AuditLog, AuditPosition
from gateway.audit.meter import OPENING_PHASE
from gateway.audit.reconcile import pinned_position
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


# Called with each exchange and where its entry was stored (a providing node signs its receipt).
AfterEntry = Callable[[Exchange, AuditPosition], None]


def _nothing_after(exchange: Exchange, position: AuditPosition) -> None:
    return None


def role_of(exchange: Exchange, node: str) -> str:
    """The role an entry and the meter record: `caller` where this node relayed the exchange."""
    if exchange.role == "local" and exchange.providing_node not in ("", node):
        return "caller"
    return exchange.role


class EvidenceRecorder:
    """Writes one audit entry per exchange, durably, before the answer goes out."""

    def __init__(
        self,
        *,
        node: str,
        audit: AuditLog,
        subject_key: bytes,
        policy: PolicyEngine,
        after_entry: AfterEntry = _nothing_after,
    ) -> None:
        self._node = node
        self._audit = audit
        self._subject_key = subject_key
        # Read per entry: a hot reload changes the revision while the node runs.
        self._policy = policy
        self._after_entry = after_entry

    def with_after_entry(self, after_entry: AfterEntry) -> EvidenceRecorder:
        """The same recorder, calling `after_entry` once each entry is stored."""
        return EvidenceRecorder(
            node=self._node,
            audit=self._audit,
            subject_key=self._subject_key,
            policy=self._policy,
            after_entry=after_entry,
        )

    def opening_event_for(self, exchange: Exchange) -> dict[str, Any]:
        """An extract's opening entry: who asks what under which agreement, and the decisions;
        its closing entry says how it ended."""
        requester = exchange.requester
        return {
            "exchange_id": exchange.exchange_id,
            "phase": OPENING_PHASE,
            "at": datetime.now(UTC).isoformat(timespec="microseconds"),
            "node": self._node,
            "role": role_of(exchange, self._node),
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
            "purpose": exchange.purpose,
            "agreement_id": exchange.agreement_id,
            "case_reference": exchange.case_reference,
            "fields_requested": list(exchange.fields),
            "fields_released": list(exchange.released_fields),
            "egress": _decision_summary(exchange.egress),
            "ingress": _decision_summary(exchange.ingress),
            "policy_revision": exchange.policy_revision or self._policy.revision,
            "outcome": "opened",
        }

    async def record_opening(self, exchange: Exchange) -> AuditPosition:
        """Writes an extract's opening entry, durably; its batches may leave once this returns."""
        position = await self._audit.append_entry(self.opening_event_for(exchange))
        exchange.opening = position
        return position

    def event_for(self, exchange: Exchange) -> dict[str, Any]:
        requester = exchange.requester
        subjects = [exchange.subject] if exchange.subject else list(exchange.subjects)
        error = exchange.error
        streamed = exchange.rpc == "StreamRecords"
        return {
            "exchange_id": exchange.exchange_id,
            "at": datetime.now(UTC).isoformat(timespec="microseconds"),
            "node": self._node,
            "role": role_of(exchange, self._node),
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
            **self._peer_evidence(exchange),
            **self._opening(exchange),
        }

    @staticmethod
    def _peer_evidence(exchange: Exchange) -> dict[str, Any]:
        evidence = exchange.peer_evidence
        if evidence is None:
            return {}
        entry = evidence.as_entry()
        # Where the provider's receipt says its own entry of this exchange sits: what
        # `concordat audit reconcile` holds the provider's log to.
        pinned = pinned_position(evidence.receipt or evidence.last_receipt)
        if pinned is not None:
            entry["peer_log"] = {"seq": pinned[0], "hash": pinned[1]}
        return entry

    @staticmethod
    def _opening(exchange: Exchange) -> dict[str, Any]:
        opening = exchange.opening
        if opening is None:
            return {}
        return {
            "phase": "closing",
            "opening": {
                "seq": opening.seq,
                "hash": opening.hash,
                "recorded_at": opening.recorded_at,
            },
        }

    async def record(self, exchange: Exchange) -> int:
        position = await self._audit.append_entry(self.event_for(exchange))
        self._after_entry(exchange, position)
        return position.seq
