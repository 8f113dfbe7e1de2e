"""A real node on loopback (TLS, JWT, embedded Rego, SQLite audit) with in-memory records."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from adapters.memory import MemorySource
from gateway.dev.synthetic import synthetic_nino
from gateway.testing import RunningNode, running_node

BUNDLE = Path(__file__).parent / "bundle"


def _people() -> list[dict[str, object]]:
    rng = random.Random(11)  # noqa: S311 - synthetic test data, not secrets
    return [
        {
            "nino": synthetic_nino(rng),
            "given_name": f"Given{i}",
            "family_name": f"Family{i}",
            "date_of_birth": "1980-01-01",
            "uprn": 100000000 + i,
            "address_line": f"{i} Test Street",
            "postcode": "ZZ1 1ZZ",
        }
        for i in range(20)
    ]


@pytest.fixture
def people() -> list[dict[str, object]]:
    return _people()


@pytest.fixture
def source(people: list[dict[str, object]]) -> MemorySource:
    awards = [
        {
            "award_id": f"AW{i:06d}",
            "nino": people[i % len(people)]["nino"],
            "benefit": "universal-credit",
            "weekly_amount_pence": 10000 + i,
            "status": "live",
            "start_date": "2024-01-01",
        }
        for i in range(2500)
    ]
    return MemorySource({"PERSON": people, "BENEFIT_AWARD": awards})


@pytest.fixture
async def node(tmp_path: Path, source: MemorySource) -> AsyncIterator[RunningNode]:
    async with running_node(
        tmp_path,
        "whitehall",
        sources={t: source for t in source.record_types},
        policy={"bundle": [str(BUNDLE)]},
    ) as running:
        yield running
