"""Policy decisions: one small protocol, two engines (embedded rego-cpp, OPA server).

Policy input (the same for both engines and both directions; never carries the subject's
identifier, only its kind)::

    {"direction": "egress" | "ingress",
     "node": "whitehall",                     # the node deciding
     "requesting_node": "whitehall", "providing_node": "holyrood",
     "requester": {"organisation", "system", "administration", "accreditations": [...]},
     "record_type": "BENEFIT_AWARD", "subject_kind": "nino",
     "purpose": "FRAUD", "agreement_id": "...",
     "fields": ["nino", "benefit"],          # the field mask asked for
     "field_sensitivity": {"nino": "PERSONAL", ...},
     "identifying_fields": ["nino", ...],
     "bulk": false, "today": "2026-11-21"}

Decision document at `data.concordat.<direction>.decision`::

    {"allow": bool, "rule": str, "agreement_id": str, "fields": [str],
     "obligations": [{"code": str, "description": str, "parameters": {str: str}}],
     "reasons": [str], "pseudonymise": bool,
     "withheld": {field: rule}}            # asked for, not released, and the rule that said so
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from gateway.domain import Decision, Direction


class PolicyEngine(Protocol):
    """Evaluates one decision; never raises for a denial, only returns one."""

    async def decide(self, direction: Direction, policy_input: Mapping[str, Any]) -> Decision: ...

    @property
    def revision(self) -> str:
        """Identifies the bundle revision the decisions come from."""
        ...

    async def close(self) -> None: ...
