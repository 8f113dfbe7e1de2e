"""The cross-node floor adds up the work the path cannot skip, from timings taken here."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import floor


def test_floor_is_the_sum_of_the_signatures_and_commits_it_timed(tmp_path: Path) -> None:
    least = floor.measure(tmp_path, smoke=True)

    assert least["verify_us"] > 0 and least["sign_us"] > 0 and least["durable_commit_us"] > 0
    expected_c1_us = 3 * least["verify_us"] + 4 * least["sign_us"] + 2 * least["durable_commit_us"]
    assert least["c1_floor_ms"] == pytest.approx(expected_c1_us / 1000, rel=0.01)
    expected_loaded_us = 3 * least["verify_us"] + 2 * least["sign_us"]
    assert least["loaded_signature_cpu_ms"] == pytest.approx(expected_loaded_us / 1000, rel=0.01)


def test_ceiling_shrinks_as_the_bare_chain_gets_cheaper() -> None:
    least = {"loaded_signature_cpu_ms": 0.5}

    assert floor.throughput_ceiling(1.5, least) == pytest.approx(0.75)
    assert floor.throughput_ceiling(0.5, least) == pytest.approx(0.5)
