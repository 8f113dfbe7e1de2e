"""When an exchange may be shown to the person it was about.

An agreement for fraud, debt or crime may set `disclosure_delay_days` in the register: its
exchanges stay out of citizens' lookups until that many days after the day they were decided
on. A case under live investigation stays out while an operator holds it (holds.py). Both
fail closed: an agreement the register no longer names, or a delay that is not a whole
number of days, keeps its exchanges out.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, timedelta
from typing import Any

from gateway.citizen.holds import LiveCaseHolds
from gateway.citizen.register import agreement_in
from gateway.clock import Clock

DELAY_FIELD = "disclosure_delay_days"


class Disclosure:
    """Decides, on the node's day, whether one of its audit entries may be disclosed."""

    def __init__(self, *, holds: LiveCaseHolds, clock: Clock) -> None:
        self._holds = holds
        self._clock = clock

    def disclosed(self, event: Mapping[str, Any], register: Mapping[str, Any]) -> bool:
        agreement_id = str(event.get("agreement_id") or "")
        if self._holds.holds(agreement_id, str(event.get("case_reference") or "")):
            return False
        agreement = agreement_in(register, agreement_id)
        if agreement is None:
            return False
        delay = agreement.get(DELAY_FIELD, 0)
        # Whole days, as the register check reads them (bool is an int to Python, not days).
        if isinstance(delay, bool) or not isinstance(delay, int | float):
            return False
        if delay < 0 or delay != int(delay):
            return False
        decided = decided_on(event)
        if decided is None:
            return False
        return self._clock.today() >= decided + timedelta(days=int(delay))


def decided_on(event: Mapping[str, Any]) -> date | None:
    """The day the exchange was decided on: the day its policies compared the dates with.

    That is the node's own day (gateway/clock.py), so the delay counts in the same days as
    the agreement's start and end; an entry without a decision falls back to when it was made.
    """
    inputs = event.get("policy_inputs")
    days = (
        [d.get("today") for d in inputs.values() if isinstance(d, Mapping)]
        if isinstance(inputs, Mapping)
        else []
    )
    days.append(str(event.get("at") or "")[:10])
    for day in days:
        if isinstance(day, str):
            try:
                return date.fromisoformat(day)
            except ValueError:
                continue
    return None
