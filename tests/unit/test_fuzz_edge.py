"""The edge's fuzz targets (fuzz/) hold for their corpus and for a short run of mutations.

The short run replays each target's corpus and a few thousand mutations of it, without
atheris and the same every time; the long, coverage-guided run is `python -m fuzz all`
(docs/fuzzing.md). A finding reported to the gateway's owner and not fixed yet
(fuzz/known.py) is tolerated by the short run and has a strict xfail test here.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from itertools import chain
from pathlib import Path

import pytest

from fuzz.federation import federation, signed_part
from fuzz.known import FINDINGS, known
from fuzz.replay import corpus, dictionary, mutants
from fuzz.seeds import CORPUS
from fuzz.targets import TARGETS

ROOT = Path(__file__).resolve().parents[2]
# Mutations per target: a second or less each.
MUTANTS = {
    "get_record": 15000,
    "stream_records": 10000,
    "identifier": 20000,
    "relay": 6000,
    "assertion": 5000,
    "receipt": 6000,
}


@pytest.mark.parametrize("target", list(TARGETS))
def test_every_corpus_input_and_mutation_passes_or_is_refused_with_a_clean_status(
    target: str, tmp_path: Path
) -> None:
    seeds = [data for _, data in corpus(target)]
    inputs = mutants(seeds, MUTANTS[target], seed=2026, tokens=dictionary(target))
    for data in chain(seeds, inputs):
        try:
            TARGETS[target](data)
        except AssertionError as failure:
            if known(target, failure) is not None:
                continue
            path = tmp_path / "failing-input"
            path.write_bytes(data)
            pytest.fail(
                f"{failure}\nreplay it: .venv/bin/python -m fuzz replay {target} {path}",
                pytrace=False,
            )


# Seeds whose outcome the fuzzer relies on: were genuine tokens refused (a stale clock, a
# changed key), every run would explore only refusals.
EXPECTED = {
    ("get_record", "seed-birth-registration"): True,
    ("get_record", "seed-council-tax-by-uprn"): True,
    ("get_record", "seed-refused-check-digit"): False,
    ("stream_records", "seed-health-by-chi"): True,
    ("identifier", "seed-nino-1"): True,
    ("relay", "seed-genuine-get"): True,
    ("relay", "seed-genuine-stream"): True,
    ("relay", "seed-stormont-genuine"): True,
    ("relay", "seed-certificate-pem-in-input"): True,
    ("relay", "seed-forged-certificate"): False,
    ("relay", "seed-whitehall-relay-stormont-certificate"): False,
    ("relay", "seed-no-certificate"): False,
    ("relay", "seed-exchange-id-not-asserted"): False,
    ("assertion", "seed-genuine-get"): True,
    ("assertion", "seed-genuine-stream"): True,
    ("assertion", "seed-signed-by-whitehall"): True,
    ("assertion", "seed-jwt-signed-by-whitehall"): True,
    ("assertion", "seed-jwt-signed-by-stormont"): False,
    ("assertion", "seed-signed-by-stormont"): False,
    ("assertion", "seed-signed-by-rogue"): False,
    ("assertion", "seed-alg-none"): False,
    ("assertion", "seed-alg-hs256-public-key"): False,
    ("assertion", "seed-wrong-token-type"): False,
    ("assertion", "seed-stormont-assertion"): False,
    ("receipt", "seed-genuine-get"): True,
    ("receipt", "seed-signed-by-holyrood"): True,
    ("receipt", "seed-jwt-signed-by-holyrood"): True,
    ("receipt", "seed-jwt-signed-by-rogue"): False,
    ("receipt", "seed-genuine-as-stormont"): False,
    ("receipt", "seed-signed-by-rogue"): False,
    ("receipt", "seed-wrong-token-type"): False,
}


@pytest.mark.parametrize(("target", "seed", "accepted"), [(*k, v) for k, v in EXPECTED.items()])
def test_genuine_seeds_are_accepted_and_forged_ones_refused(
    target: str, seed: str, accepted: bool
) -> None:
    assert TARGETS[target]((CORPUS / target / seed).read_bytes()) is accepted


def test_one_changed_character_passes_only_where_the_signature_ignores_it() -> None:
    token = federation().genuine_get.assertion
    passed = []
    for position in range(len(token)):
        for replacement in {"A", "_", "."} - {token[position]}:
            changed = token[:position] + replacement + token[position + 1 :]
            # The target itself raises if a token whose signed part was changed passes.
            if TARGETS["assertion"](b"\x00" + changed.encode()):
                passed.append(changed)
    # Only the last character of the signature may change: its low bits are padding.
    assert all(signed_part(changed) == signed_part(token) for changed in passed)
    assert len(passed) <= 2


REGRESSIONS = [
    pytest.param(
        finding.name,
        target,
        path.name,
        marks=pytest.mark.xfail(strict=True, reason=finding.summary),
        id=f"{finding.name}-{target}-{path.name}",
    )
    for finding in FINDINGS
    for target in finding.targets
    for path in sorted((CORPUS / target).glob(f"regression-{finding.name}*"))
]


@pytest.mark.parametrize(("finding", "target", "name"), REGRESSIONS)
def test_a_reported_finding_is_answered_cleanly_once_fixed(
    finding: str, target: str, name: str
) -> None:
    TARGETS[target]((CORPUS / target / name).read_bytes())


def test_every_reported_finding_has_an_input_in_the_corpus() -> None:
    for finding in FINDINGS:
        inputs = [
            path
            for target in finding.targets
            for path in (CORPUS / target).glob(f"regression-{finding.name}*")
        ]
        assert inputs, finding.name


@pytest.mark.skipif(importlib.util.find_spec("atheris") is None, reason="atheris not installed")
def test_a_short_coverage_guided_run_under_atheris_finds_nothing_new(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "fuzz", "identifier", "--runs", "3000", "--work", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Done 3000 runs" in result.stderr
