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


FINDINGS = (
    Finding(
        "text-ending-in-newline",
        "ValidateRequest checks agreement_id, case_reference and idempotency_key with ^...$ "
        "patterns and re.match; $ also matches before a final newline, so "
        "'cr-dwp-nrs-births-2026\\n' passes as an agreement id and 'UC-1\\n' as printable ASCII",
        ("get_record", "stream_records"),
        _violation(r"^(agreement_id|case_reference|idempotency_key) '.*\\n' passed"),
    ),
    Finding(
        "non-ascii-letter-upper-cased-to-ascii",
        "identifiers.normalise upper-cases with str.upper(), which turns some non-ASCII letters "
        "into ASCII ones (U+017F long s into S, U+00DF sharp s into SS, U+0131 dotless i into "
        "I, U+FB00 ff ligature into FF), so SC<U+017F>-B-1931-000037 passes as registration "
        "id SCS-B-1931-000037 and <U+00DF>123456A as NINO SS123456A",
        ("identifier", "get_record", "stream_records"),
        _violation(r"more than ASCII spaces, hyphens and case was changed"),
    ),
    Finding(
        "signed-claim-huge-integer",
        "a token signed with the right key whose exp (assertion) or iat (receipt) is an integer "
        "above 1.8e308 passes PyJWT's checks, then assertions._is_number calls "
        "math.isfinite on it, which raises OverflowError: int too large to convert to float",
        ("assertion", "receipt"),
        _escaped_from(OverflowError, "_is_number"),
    ),
    Finding(
        "certificate-unparsable",
        "peers.peer_identity lets the ValueError of a certificate that cryptography cannot "
        "parse escape (keys.node_identity_from_certificate documents that it raises it); and "
        "_node_named reads DER as well as PEM while _issued_by reads only PEM, so a DER "
        "certificate names its node and then raises ValueError",
        ("relay",),
        _escaped_from(ValueError, "peer_identity"),
    ),
)


def known(target: str, failure: AssertionError) -> Finding | None:
    """The reported finding this failure of `target` is, if it is one."""
    return next((f for f in FINDINGS if target in f.targets and f.matches(failure)), None)
