"""Strict parsing of decision documents: anything but a well-formed allow is a denial.

Both engines hand their raw result here, so the embedded engine and an OPA server can
never disagree about what a given document means.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping
from typing import Any

from gateway.domain import Decision, Obligation

UNDEFINED_RULE = "concordat.decision_undefined"
MALFORMED_RULE = "concordat.decision_malformed"
UNREQUESTED_FIELDS_RULE = "concordat.decision_released_unrequested_fields"
ENGINE_ERROR_RULE = "concordat.engine_error"
ENGINE_UNAVAILABLE_RULE = "concordat.engine_unavailable"


class _Malformed(Exception):
    """Raised while reading a document; the message says what was wrong."""


def parse_decision(
    raw: Any, *, decision_id: str, requested_fields: Collection[str], agreement_id: str = ""
) -> Decision:
    """Turn a raw decision document into a `Decision`, failing closed on any doubt.

    `raw` is None when the policy left the decision undefined. An allow may release only
    fields the request asked for (`requested_fields`, the input's `fields`), and may name
    as withheld only fields it asked for and does not release. A denial names the agreement
    the request cited (`agreement_id`) when the document does not.
    """
    if raw is None:
        return deny(
            decision_id,
            UNDEFINED_RULE,
            "the policy defines no decision for this input",
            agreement_id=agreement_id,
        )
    try:
        decision = _read(raw, decision_id)
    except _Malformed as exc:
        return deny(decision_id, MALFORMED_RULE, str(exc), agreement_id=agreement_id)
    if not decision.allow:
        if decision.agreement_id:
            return decision
        return dataclasses.replace(decision, agreement_id=agreement_id)
    cited = decision.agreement_id or agreement_id
    unrequested = sorted(set(decision.released_fields) - set(requested_fields))
    if unrequested:
        return deny(
            decision_id,
            UNREQUESTED_FIELDS_RULE,
            f"{decision.rule} released fields not asked for: {', '.join(unrequested)}",
            agreement_id=cited,
        )
    contradiction = _withheld_contradiction(decision, requested_fields)
    if contradiction:
        return deny(decision_id, MALFORMED_RULE, contradiction, agreement_id=cited)
    return decision


def requested_agreement(policy_input: Mapping[str, Any]) -> str:
    """The agreement a policy input cites, or "" when it names none clearly."""
    agreement_id = policy_input.get("agreement_id")
    return agreement_id if isinstance(agreement_id, str) else ""


def requested_fields(policy_input: Mapping[str, Any]) -> frozenset[str]:
    """The fields a policy input asks for; nothing when the input does not say clearly."""
    fields = policy_input.get("fields")
    if not isinstance(fields, list | tuple) or not all(isinstance(f, str) for f in fields):
        return frozenset()
    return frozenset(fields)


def deny(decision_id: str, rule: str, reason: str, *, agreement_id: str = "") -> Decision:
    """A denial made by the gateway itself rather than by a policy.

    `agreement_id` is the agreement the request cited, so that a caller told "engine
    unavailable" still sees which agreement its request was under.
    """
    return Decision(
        allow=False,
        decision_id=decision_id,
        rule=rule,
        agreement_id=agreement_id,
        reasons=(reason,),
    )


def _read(raw: Any, decision_id: str) -> Decision:
    if not isinstance(raw, Mapping):
        raise _Malformed(f"decision is a {type(raw).__name__}, not an object")
    allow = raw.get("allow")
    if not isinstance(allow, bool):
        raise _Malformed("'allow' is missing or not a boolean")
    rule = raw.get("rule")
    if not isinstance(rule, str) or not rule:
        raise _Malformed("'rule' is missing or not a non-empty string")
    agreement_id = _optional(raw, "agreement_id", str, "")
    fields = tuple(dict.fromkeys(_strings(raw, "fields")))
    withheld = _withheld(raw.get("withheld", {}))
    obligations = _obligations(raw.get("obligations", []))
    reasons = _strings(raw, "reasons")
    pseudonymise = _optional(raw, "pseudonymise", bool, False)
    return Decision(
        allow=allow,
        decision_id=decision_id,
        rule=rule,
        agreement_id=agreement_id,
        # A denial releases nothing, whatever else the document carries.
        released_fields=fields if allow else (),
        withheld=withheld if allow else {},
        obligations=obligations if allow else (),
        reasons=reasons,
        pseudonymise=pseudonymise and allow,
    )


def _optional(raw: Mapping[str, Any], key: str, kind: type, default: Any) -> Any:
    value = raw.get(key, default)
    if not isinstance(value, kind):
        raise _Malformed(f"'{key}' is not a {kind.__name__}")
    return value


def _strings(raw: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = raw.get(key, [])
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _Malformed(f"'{key}' is not a list of strings")
    return tuple(value)


def _withheld(raw: Any) -> dict[str, str]:
    if not isinstance(raw, Mapping) or not all(
        isinstance(name, str) and name and isinstance(rule, str) and rule
        for name, rule in raw.items()
    ):
        raise _Malformed("'withheld' is not an object of field names to rule ids")
    return dict(sorted(raw.items()))


def _withheld_contradiction(decision: Decision, requested_fields: Collection[str]) -> str:
    """What is wrong with an allow's `withheld`, or "" when it is consistent."""
    unrequested = sorted(set(decision.withheld) - set(requested_fields))
    if unrequested:
        return f"{decision.rule} withheld fields not asked for: {', '.join(unrequested)}"
    released = sorted(set(decision.withheld) & set(decision.released_fields))
    if released:
        return f"{decision.rule} both released and withheld: {', '.join(released)}"
    return ""


def _obligations(raw: Any) -> tuple[Obligation, ...]:
    if not isinstance(raw, list):
        raise _Malformed("'obligations' is not a list")
    return tuple(_obligation(item, index) for index, item in enumerate(raw))


def _obligation(item: Any, index: int) -> Obligation:
    where = f"obligations[{index}]"
    if not isinstance(item, Mapping):
        raise _Malformed(f"{where} is not an object")
    code = item.get("code")
    if not isinstance(code, str) or not code:
        raise _Malformed(f"{where}.code is missing or not a non-empty string")
    description = item.get("description", "")
    if not isinstance(description, str):
        raise _Malformed(f"{where}.description is not a string")
    parameters = item.get("parameters", {})
    if not isinstance(parameters, Mapping) or not all(
        isinstance(key, str) and isinstance(value, str) for key, value in parameters.items()
    ):
        raise _Malformed(f"{where}.parameters is not an object of strings")
    return Obligation(code=code, description=description, parameters=dict(parameters))
