"""When an audit writer waits for more entries before it commits: group commit that groups.

A writer commits whatever is queued as soon as it is free. With a fast disk that is almost
always one or two entries, even at 32 concurrent exchanges (1.4 per batch measured), so every
exchange pays a seal, a transaction, an fsync and a wake-up of its own. Like PostgreSQL's
`commit_delay` with `commit_siblings`, the writer may hold a batch for a short while, but
only while enough other exchanges are under way that have yet to hand it their entries: a
lone caller never waits, and a writer stops waiting as soon as nobody else is coming.

Durability is unchanged: nothing is answered before its batch is on disk. What the wait
costs is at most `delay_seconds` on an exchange that had company; what it saves is the
per-batch work divided among the batch (measured in bench/ and docs/performance notes).
"""

from __future__ import annotations

from dataclasses import dataclass

# Measured on the cross-node bench (2 cores, interleaved rounds): at c=32 a 4 ms wait made
# the requesting node's batches about 4 entries instead of 1.4 and cut the nodes' CPU per
# exchange by about 10% (2.57 to 2.30 ms); at c=4 likewise (2.73 to 2.39 ms) with no change
# in p50 beyond the host's noise; c=1 never waits.
DEFAULT_DELAY_SECONDS = 0.004
# A writer waits only when at least this many exchanges are still to hand in their entries.
# One was as good as or better than 2 or 4 in every measured figure: a wait for company
# ends as soon as the company has appended, so a small crowd costs little.
DEFAULT_SIBLINGS = 1


@dataclass(frozen=True)
class GroupCommit:
    """How long a writer may hold a batch open, and how much company makes it worth it."""

    delay_seconds: float = DEFAULT_DELAY_SECONDS
    siblings: int = DEFAULT_SIBLINGS

    def __post_init__(self) -> None:
        if self.delay_seconds < 0:
            raise ValueError("group commit delay must not be negative")
        if self.siblings < 1:
            raise ValueError("group commit siblings must be at least 1")

    @classmethod
    def off(cls) -> GroupCommit:
        """Commit what is queued at once (a writer still batches what arrives meanwhile)."""
        return cls(delay_seconds=0.0)


class AppendsDue:
    """Exchanges under way on this node that have not yet handed their entry to the log.

    Counted by the pipeline on the event loop (`expect` when an exchange starts, `arrived`
    just before it records its entry) and read by the writer. An int read is atomic under
    the GIL and a stale count only makes one batch a little bigger or smaller, never wrong.
    """

    __slots__ = ("_count",)

    def __init__(self) -> None:
        self._count = 0

    @property
    def count(self) -> int:
        return self._count

    def expect(self) -> None:
        self._count += 1

    def arrived(self) -> None:
        self._count -= 1

    def worth_waiting(self, grouping: GroupCommit) -> bool:
        """True while enough exchanges are still to append for a wait to gather them."""
        return grouping.delay_seconds > 0 and self._count >= grouping.siblings

    def anyone_coming(self) -> bool:
        return self._count > 0
