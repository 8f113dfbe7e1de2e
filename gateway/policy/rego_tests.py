"""Runs a bundle's Rego unit tests (`test_*` rules in `*_test.rego` modules) with rego-cpp.

rego-cpp has no test runner: querying a test package returns only the test rules that
evaluated to true, so a test missing from the answer failed or was undefined.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import regopy

from gateway.policy.bundle import PolicyBundle, PolicyBundleError, load_bundle, packages_of
from gateway.policy.embedded import EmbeddedEngine, load_interpreter

_TEST_RULE = re.compile(r"^(test_\w+)\s*(?:if\b|\{|:=|=)", re.MULTILINE)


@dataclass(frozen=True)
class RegoTestResult:
    package: str
    name: str
    passed: bool


def run_rego_tests(bundle: PolicyBundle) -> list[RegoTestResult]:
    """Run every test rule of the bundle, in package and name order."""
    interpreter = load_interpreter(bundle, with_tests=True)
    results: list[RegoTestResult] = []
    for package, names in sorted(discover_tests(bundle).items()):
        passed = _passing(interpreter, package, names)
        results.extend(RegoTestResult(package, name, name in passed) for name in names)
    return results


def discover_tests(bundle: PolicyBundle) -> dict[str, list[str]]:
    """Test rule names by package, read from the test modules' sources."""
    found: dict[str, set[str]] = defaultdict(set)
    for name, source in bundle.tests.items():
        packages = packages_of(source)
        if len(packages) != 1:
            raise PolicyBundleError(f"{name} must declare exactly one package")
        found[packages[0]].update(_TEST_RULE.findall(source))
    return {package: sorted(names) for package, names in found.items() if names}


def _passing(interpreter: regopy.Interpreter, package: str, names: list[str]) -> set[str]:
    document = _query(interpreter, f"data.{package}")
    if isinstance(document, dict):
        return {name for name in names if document.get(name) is True}
    # An erroring test makes the whole package fail to evaluate; run each one on its own
    # so the others still report.
    return {name for name in names if _query(interpreter, f"data.{package}.{name}") is True}


def _query(interpreter: regopy.Interpreter, query: str) -> Any:
    output = interpreter.query(query)
    if not output.ok() or len(output) != 1 or len(output[0].expressions) != 1:
        return None
    return output[0].expressions[0]


def check_bundle(directories: Sequence[Path]) -> str:
    """Load, compile and test a bundle in this process; raise if anything fails.

    Returns the revision that passed, so a caller knows exactly what was checked.
    """
    bundle = load_bundle(directories)
    EmbeddedEngine.compile(bundle)
    failed = [f"{r.package}.{r.name}" for r in run_rego_tests(bundle) if not r.passed]
    if failed:
        raise PolicyBundleError(f"Rego tests failed: {', '.join(failed)}")
    return bundle.revision
