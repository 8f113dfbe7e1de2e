"""Findings reported to the gateway's owner and not fixed yet.

Each has its input in the corpus (fuzz/corpus/<target>/regression-<name>), so every run starts
next to it, and an xfail(strict=True) test in tests/unit/test_fuzz_edge.py that passes once
it is fixed; then the strict xfail fails the suite, and the finding's entry here goes with its
marker. Until then the short run counts a failure that matches a finding instead of failing.
"""

from __future__ import annotations

import re
import traceback
from collections.abc import Callable
from dataclasses import dataclass

from fuzz.properties import PropertyViolation, Unmapped


@dataclass(frozen=True)
class Finding:
    name: str
    summary: str
    # The targets that reach it; each has an input as corpus/<target>/regression-<name>*.
    targets: tuple[str, ...]
    matches: Callable[[AssertionError], bool]


def _violation(pattern: str) -> Callable[[AssertionError], bool]:
    compiled = re.compile(pattern, re.DOTALL)
    return lambda failure: (
        isinstance(failure, PropertyViolation) and bool(compiled.search(str(failure)))
    )


def _escaped_from(
    exception: type[BaseException], function: str
) -> Callable[[AssertionError], bool]:
    """An Unmapped whose cause is `exception`, raised while `function` ran."""

    def matches(failure: AssertionError) -> bool:
        cause = failure.__cause__
        if not isinstance(failure, Unmapped) or not isinstance(cause, exception):
            return False
        return any(frame.name == function for frame in traceback.extract_tb(cause.__traceback__))

    return matches


# Fixed, with their inputs kept in the corpus as regression seeds the short run replays:
# text-ending-in-newline (fullmatch in ValidateRequest), non-ascii-letter-upper-cased-to-ascii
# (identifiers refuse non-ASCII before normalising), signed-claim-huge-integer (_is_number
# treats an integer too large for a float as no time), certificate-unparsable (peer_identity
# refuses a certificate it cannot read as PeerRejected).
FINDINGS: tuple[Finding, ...] = ()


def known(target: str, failure: AssertionError) -> Finding | None:
    """The reported finding this failure of `target` is, if it is one."""
    return next((f for f in FINDINGS if target in f.targets and f.matches(failure)), None)
