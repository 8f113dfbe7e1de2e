"""The jurisdictions' Rego on the real OPA: `opa check --strict` and `opa test` pass, and cover.

Each bundle is checked in both shapes its register takes: the folders as written
(`policies/common` + `policies/<jurisdiction>`, agreements keyed by id) and the tarball that
`concordat policy build --include-tests` writes, whose register the loader has filed in
shards, as a node and an OPA sidecar read it. tests/unit/test_rego_bundles.py runs the same
tests on rego-cpp. Without the pinned OPA binary these tests skip, except under CI, where
they fail.

Coverage is OPA's line coverage of the policy modules (the `_test.rego` files left out):
about 99% in both shapes when measured. What stays uncovered is `req := input` (tests
replace `req`: `with input as` crashes rego-cpp) and, in the folders, the shard lookup of
`register.agreement`, which the built bundle covers.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import pytest

from gateway.policy.bundle import load_bundle
from gateway.policy.rego_tests import discover_tests
from gateway.policy.tools import POLICIES, build_opa_bundle
from tests.support.real_opa import require_opa, run_opa

JURISDICTIONS = ["whitehall", "holyrood", "stormont", "cardiff"]
SHAPES = ["folders", "built"]
# Measured at about 99% in every jurisdiction and shape; a little below, so that a new rule
# without a test that reaches it fails here.
MODULE_COVERAGE_FLOOR = 98.0


@pytest.fixture(scope="module", autouse=True)
def _opa() -> None:
    require_opa()


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each jurisdiction's bundle with its tests, as `concordat policy build` writes it."""
    out = tmp_path_factory.mktemp("opa-bundles")
    return {
        j: build_opa_bundle(folders_of(j), out / f"{j}.tar.gz", include_tests=True).path
        for j in JURISDICTIONS
    }


def folders_of(jurisdiction: str) -> list[Path]:
    return [POLICIES / "common", POLICIES / jurisdiction]


def opa_arguments(jurisdiction: str, shape: str, built: dict[str, Path]) -> list[str]:
    if shape == "folders":
        return [str(folder) for folder in folders_of(jurisdiction)]
    return ["--bundle", str(built[jurisdiction])]


@functools.cache
def expected_tests(jurisdiction: str) -> set[tuple[str, str]]:
    """Every test rule of the bundle, as rego-cpp's runner finds them."""
    found = discover_tests(load_bundle(folders_of(jurisdiction)))
    return {(f"data.{package}", name) for package, names in found.items() for name in names}


def module_coverage(report: dict[str, Any]) -> tuple[float, list[str]]:
    """Line coverage of the policy modules (tests left out), and the lines not covered."""
    covered = uncovered = 0
    missed = []
    for name, file in sorted(report["files"].items()):
        if name.endswith("_test.rego"):
            continue
        covered += file.get("covered_lines", 0)
        uncovered += file.get("not_covered_lines", 0)
        short = "/".join(Path(name).parts[-2:])
        rows = sorted({span["start"]["row"] for span in file.get("not_covered", [])})
        missed += [f"{short}:{row}" for row in rows]
    return 100.0 * covered / (covered + uncovered), missed


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("jurisdiction", JURISDICTIONS)
def test_bundle_passes_opa_check_strict(
    jurisdiction: str, shape: str, built: dict[str, Path]
) -> None:
    checked = run_opa("check", "--strict", *opa_arguments(jurisdiction, shape, built))
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("jurisdiction", JURISDICTIONS)
def test_every_rego_test_passes_on_opa(
    jurisdiction: str, shape: str, built: dict[str, Path]
) -> None:
    tested = run_opa("test", "--format=json", *opa_arguments(jurisdiction, shape, built))
    results = json.loads(tested.stdout)
    failed = [
        f"{r['package']}.{r['name']}: {r.get('error') or 'FAIL'}"
        for r in results
        if r.get("fail") or r.get("error") or r.get("skip")
    ]
    assert failed == []
    assert tested.returncode == 0, tested.stderr
    # The same tests as rego-cpp runs: none left out on either engine.
    assert {(r["package"], r["name"]) for r in results} == expected_tests(jurisdiction)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("jurisdiction", JURISDICTIONS)
def test_opa_tests_cover_the_policy_modules(
    jurisdiction: str, shape: str, built: dict[str, Path], record_property: Any
) -> None:
    tested = run_opa(
        "test", "--coverage", "--format=json", *opa_arguments(jurisdiction, shape, built)
    )
    # With --coverage, OPA prints the failing tests instead of the report.
    assert tested.returncode == 0, tested.stdout + tested.stderr
    coverage, missed = module_coverage(json.loads(tested.stdout))
    record_property("module_coverage_percent", round(coverage, 2))
    print(f"{jurisdiction} ({shape}): modules {coverage:.2f}% covered; not: {', '.join(missed)}")
    assert coverage >= MODULE_COVERAGE_FLOOR, f"{coverage:.2f}% covered; not covered: {missed}"
