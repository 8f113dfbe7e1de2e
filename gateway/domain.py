"""Plain values that flow through a node: who asks, about whom, and what was decided."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

SubjectKind = Literal["nino", "nhs_number", "chi_number", "hc_number", "uprn", "registration_id"]
Direction = Literal["egress", "ingress"]

RECORD_TYPES = (
    "PERSON",
    "BIRTH_REGISTRATION",
    "DEATH_REGISTRATION",
    "MARRIAGE_REGISTRATION",
    "BENEFIT_AWARD",
    "COUNCIL_TAX_ACCOUNT",
    "HEALTH_SUMMARY",
)
PURPOSES = (
    "PUBLIC_SERVICE_DELIVERY",
    "CIVIL_REGISTRATION",
    "DEBT",
    "FRAUD",
    "RESEARCH",
    "STATISTICS",
)


@dataclass(frozen=True, slots=True)
class Requester:
    """The departmental system a request is made for, as its verified token says."""

    organisation: str
    system: str
    administration: str
    accreditations: frozenset[str] = frozenset()
    token_id: str = ""
    # When the token (or a peer's assertion) expires: its id is remembered until then.
    token_expires_at: float = 0.0

    def as_policy_input(self) -> dict[str, Any]:
        return {
            "organisation": self.organisation,
            "system": self.system,
            "administration": self.administration,
            "accreditations": sorted(self.accreditations),
        }


@dataclass(frozen=True, slots=True)
class Subject:
    """A validated, normalised subject identifier (never logged or stored in clear)."""

    kind: SubjectKind
    value: str


@dataclass(frozen=True, slots=True)
class Obligation:
    code: str
    description: str
    parameters: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Decision:
    """A policy decision, parsed strictly; anything that is not a clear allow is a denial."""

    allow: bool
    decision_id: str
    rule: str
    agreement_id: str = ""
    released_fields: tuple[str, ...] = ()
    obligations: tuple[Obligation, ...] = ()
    reasons: tuple[str, ...] = ()
    pseudonymise: bool = False
    # Each field asked for and not released, by the id of the rule that withheld it.
    withheld: Mapping[str, str] = field(default_factory=dict)


def merge_obligations(
    current: tuple[Obligation, ...], added: tuple[Obligation, ...]
) -> tuple[Obligation, ...]:
    """Both sets of obligations, each once, in the order first seen."""
    seen = {(o.code, tuple(sorted(o.parameters.items()))) for o in current}
    merged = list(current)
    for obligation in added:
        key = (obligation.code, tuple(sorted(obligation.parameters.items())))
        if key not in seen:
            seen.add(key)
            merged.append(obligation)
    return tuple(merged)


def merge_withheld(*parts: Mapping[str, str]) -> dict[str, str]:
    """Every field any part withheld, by field name; the first part naming a field decides."""
    merged: dict[str, str] = {}
    for part in parts:
        for name, rule in part.items():
            merged.setdefault(name, rule)
    return dict(sorted(merged.items()))
