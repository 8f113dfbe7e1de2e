"""Synthetic demo data: valid identifiers, nobody real, repeatable seeding, a working mapping."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Select, column, create_engine, func, select, table

from adapters.mapping import RECORD_FIELDS
from adapters.registry import open_source
from concordat.records.v1 import records_pb2
from gateway.dev.demo import (
    ADMINISTRATIONS,
    demo_source_config,
    demo_subjects,
    metadata,
    postgres_schema,
    seed_bulk,
    seed_demo_database,
)
from gateway.identifiers import mod11_check_digit, validate_subject

REPO = Path(__file__).resolve().parents[2]
IDENTIFIER_FIELDS = {
    "nino": "nino",
    "liable_nino": "nino",
    "uprn": "uprn",
    "registration_id": "registration_id",
    "nhs_number": "nhs_number",
    "chi_number": "chi_number",
    "hc_number": "hc_number",
}
AUTHORITIES = {"whitehall": "EW", "holyrood": "SC", "stormont": "NI"}


def seeded(tmp_path: Path, administration: str, **options: Any) -> str:
    tmp_path.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{tmp_path / f'{administration}.db'}"
    seed_demo_database(url, administration, **options)
    return url


def identifiers(url: str, administration: str) -> dict[str, list[Any]]:
    """Every identifier value the administration's demo database holds, by kind."""
    found: dict[str, list[Any]] = {}
    engine = create_engine(url)
    with engine.connect() as connection:
        for mapping in demo_source_config(url, administration)["records"].values():
            for field, name in mapping["fields"].items():
                kind = IDENTIFIER_FIELDS.get(field)
                if kind is None:
                    continue
                query: Select[Any] = select(column(name)).select_from(table(mapping["table"]))
                found.setdefault(kind, []).extend(
                    v for v in connection.execute(query).scalars() if v is not None
                )
    engine.dispose()
    return found


def row_counts(url: str) -> dict[str, int]:
    engine = create_engine(url)
    with engine.connect() as connection:
        counts = {
            name: connection.execute(select(func.count()).select_from(t)).scalar_one()
            for name, t in metadata.tables.items()
            if engine.dialect.has_table(connection, name)
        }
    engine.dispose()
    return counts


@pytest.mark.parametrize("administration", ADMINISTRATIONS)
def test_every_identifier_in_the_demo_data_is_valid(tmp_path: Path, administration: str) -> None:
    url = seeded(tmp_path, administration)

    found = identifiers(url, administration)

    assert found
    for kind, values in found.items():
        assert values, kind
        for value in values:
            assert validate_subject(kind, value).value == str(value)


@pytest.mark.parametrize("administration", ADMINISTRATIONS)
def test_demo_identifiers_come_from_ranges_no_real_person_holds(
    tmp_path: Path, administration: str
) -> None:
    found = identifiers(seeded(tmp_path, administration), administration)

    assert all(nino.startswith("ZX") for nino in found["nino"])
    assert all(number.startswith("999") for number in found.get("nhs_number", []))
    assert all(320_000_001 <= int(n[:9]) <= 399_999_999 for n in found.get("hc_number", []))
    authority = AUTHORITIES.get(administration)
    assert all(rid.startswith(f"{authority}-") for rid in found.get("registration_id", []))


def test_chi_numbers_carry_both_kinds_of_check_digit(tmp_path: Path) -> None:
    found = identifiers(seeded(tmp_path, "holyrood"), "holyrood")

    mod11 = [n for n in found["chi_number"] if mod11_check_digit(n[:9]) == int(n[9])]

    assert 0 < len(mod11) < len(found["chi_number"])


def test_seeding_twice_adds_no_rows(tmp_path: Path) -> None:
    url = seeded(tmp_path, "holyrood")
    first = row_counts(url)

    seed_demo_database(url, "holyrood")

    assert row_counts(url) == first
    assert first["patients"] == 200


def test_seeding_is_reproducible_from_its_seed(tmp_path: Path) -> None:
    one = demo_subjects(seeded(tmp_path / "one", "whitehall"), "whitehall")
    two = demo_subjects(seeded(tmp_path / "two", "whitehall"), "whitehall")
    other = demo_subjects(seeded(tmp_path / "three", "whitehall", seed=8), "whitehall")

    assert one == two
    assert one != other


@pytest.mark.parametrize("administration", ADMINISTRATIONS)
async def test_demo_config_matches_the_live_schema_and_finds_its_subjects(
    tmp_path: Path, administration: str
) -> None:
    url = seeded(tmp_path, administration)
    source = await open_source(demo_source_config(url, administration))
    subjects = demo_subjects(url, administration)

    try:
        assert set(subjects) == source.record_types
        for record_type, examples in subjects.items():
            assert examples, record_type
            for kind, value in examples:
                rows = await source.fetch(
                    record_type, kind, str(value), list(RECORD_FIELDS[record_type])
                )
                assert rows, (record_type, kind)
    finally:
        await source.close()


def test_each_administration_serves_what_it_holds_in_law() -> None:
    served = {
        administration: set(demo_source_config("sqlite://", administration)["records"])
        for administration in ADMINISTRATIONS
    }

    assert "PERSON" in served["whitehall"]
    assert "HEALTH_SUMMARY" not in served["whitehall"]
    assert "COUNCIL_TAX_ACCOUNT" not in served["stormont"]
    assert served["cardiff"] == {"HEALTH_SUMMARY", "COUNCIL_TAX_ACCOUNT"}


async def test_bulk_rows_stream_in_full_after_the_demo_rows(tmp_path: Path) -> None:
    url = seeded(tmp_path, "stormont", people=20)
    before = row_counts(url)["benefit_awards"]

    seed_bulk(url, "stormont", 25_000)
    source = await open_source(demo_source_config(url, "stormont"))
    streamed = [
        row["award_id"]
        async for batch in source.stream(
            "BENEFIT_AWARD", ["award_id", "nino"], batch_size=5_000, after=None
        )
        for row in batch.rows
    ]
    await source.close()

    assert len(streamed) == before + 25_000
    assert len(set(streamed)) == len(streamed)


async def test_bulk_death_registrations_are_valid_unique_and_about_200_bytes_released(
    tmp_path: Path,
) -> None:
    url = seeded(tmp_path, "stormont", people=20)
    before = row_counts(url)["death_entries"]

    seed_bulk(url, "stormont", 3_000, record_type="DEATH_REGISTRATION")
    seed_bulk(url, "stormont", 3_000, record_type="DEATH_REGISTRATION")
    # What the statistics agreement releases, and the reference, to check it.
    released = ["registration_district", "date_of_death", "place_of_death", "cause_of_death"]
    source = await open_source(demo_source_config(url, "stormont"))
    streamed = [
        row
        async for batch in source.stream(
            "DEATH_REGISTRATION",
            ["registration_id", "registered_on", *released],
            batch_size=2_000,
            after=None,
        )
        for row in batch.rows
    ]
    await source.close()

    assert len(streamed) == before + 6_000
    references = [row["registration_id"] for row in streamed]
    assert len(set(references)) == len(references)
    for row in streamed:
        validate_subject("registration_id", row["registration_id"])
        assert row["date_of_death"] <= row["registered_on"]
    bulk = streamed[before:]
    sizes = [
        records_pb2.Record(
            death_registration=records_pb2.DeathRegistration(
                **{name: row[name] for name in [*released, "registered_on"]}
            )
        ).ByteSize()
        for row in bulk
    ]
    assert 180 <= sum(sizes) / len(sizes) <= 240


def test_bulk_rows_of_a_type_the_benchmark_cannot_seed_are_refused(tmp_path: Path) -> None:
    url = seeded(tmp_path, "stormont", people=5)
    with pytest.raises(ValueError, match="not PERSON"):
        seed_bulk(url, "stormont", 10, record_type="PERSON")
    with pytest.raises(ValueError, match="cardiff serves no BENEFIT_AWARD records"):
        seed_bulk(url, "cardiff", 10)


def test_seeding_an_unknown_administration_names_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="known: whitehall, holyrood, stormont, cardiff"):
        seed_demo_database(f"sqlite:///{tmp_path / 'x.db'}", "westminster")


def test_the_checked_in_postgres_schema_matches_the_demo_tables() -> None:
    checked_in = (REPO / "deploy" / "postgres" / "schema.sql").read_text()

    assert checked_in == postgres_schema()
