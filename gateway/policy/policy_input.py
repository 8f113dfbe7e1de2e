"""The policy input document, built in one place for the node, the tests and the bench.

The layout is drawn in gateway/policy/__init__.py. `PolicyRequest` holds what a decision is
about; `build_policy_input` adds what follows from it (each field's sensitivity, the
identifying fields), so an input built for a test cannot disagree with what a node sends.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from gateway import records
from gateway.domain import Direction, Requester


@dataclass(frozen=True, slots=True)
class PolicyRequest:
    """What one decision is asked about; never the subject's identifier, only its kind."""

    direction: Direction
    node: str
    requesting_node: str
    providing_node: str
    requester: Requester | None
    record_type: str
    subject_kind: str
    purpose: str
    agreement_id: str
    fields: Sequence[str]
    case_reference_present: bool
    bulk: bool
    today: date


def build_policy_input(request: PolicyRequest) -> dict[str, Any]:
    """The input document both engines evaluate."""
    shape = records.shape(request.record_type)
    fields = list(request.fields)
    return {
        "direction": request.direction,
        "node": request.node,
        "requesting_node": request.requesting_node,
        "providing_node": request.providing_node,
        "requester": request.requester.as_policy_input() if request.requester else {},
        "record_type": request.record_type,
        "subject_kind": request.subject_kind,
        "purpose": request.purpose,
        "agreement_id": request.agreement_id,
        "fields": fields,
        # A node refuses a field its record type lacks before deciding; an input built for a
        # test may name one, which then has no sensitivity (policies treat it as special).
        "field_sensitivity": {f: shape.sensitivity[f] for f in fields if f in shape.sensitivity},
        "identifying_fields": sorted(shape.identifying & set(fields)),
        "case_reference_present": request.case_reference_present,
        "bulk": request.bulk,
        "today": request.today.isoformat(),
    }
