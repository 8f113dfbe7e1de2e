"""The day a node decides on: policies compare it with every agreement's dates.

Only the composition root is given a clock. `concordat node` always runs on `SystemClock`, and
no setting can change the day, since an operator-set date would let policy be back-dated;
tests pin the day with `FixedClock` so they do not start failing when agreements age.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Protocol


class Clock(Protocol):
    def today(self) -> date: ...


class SystemClock:
    """Today in UTC, from the system clock."""

    def today(self) -> date:
        return datetime.now(UTC).date()


@dataclass(frozen=True)
class FixedClock:
    """Always the same day: for tests, which must not depend on the date they run."""

    day: date

    def today(self) -> date:
        return self.day
