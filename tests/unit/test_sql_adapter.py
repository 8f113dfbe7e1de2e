"""The SQL adapter on SQLite and on a real PostgreSQL server, through its public seam."""

from __future__ import annotations

import asyncio
import os
import re
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql as pgsql
from sqlalchemy import (
    BigInteger,
    Column,
    Date,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    func,
    insert,
    select,
    text,
)

from adapters import sql as sql_adapter
from adapters.base import AdapterError, SourceDataInvalid, SourceUnavailable
from adapters.mapping import RECORD_FIELDS, MappingMismatch, SourceMisconfigured, SqlSourceConfig
from adapters.registry import open_source
from adapters.sql import SqlSource
from gateway.dev.demo import ADMINISTRATIONS, demo_source_config, seed_demo_database

POSTGRES_SERVER = "host=127.0.0.1 port=5432 user=postgres connect_timeout=3"

metadata = MetaData()
awards = Table(
    "awards",
    metadata,
    Column("award_no", Integer, primary_key=True, autoincrement=False),
    Column("award_ref", String(20), nullable=False),
    Column("claimant", String(20), nullable=False, index=True),
    Column("benefit_name", Text, nullable=False),
    Column("weekly_pence", BigInteger),
    Column("weekly_note", Text),
    Column("starts", Date),
    Column("ends", Date),
    Column("state", String(20)),
)
patients = Table(
    "patients",
    metadata,
    Column("pid", Integer, primary_key=True, autoincrement=False),
    Column("nhs", String(10), nullable=False),
    Column("forename", String(50)),
    Column("meds_json", Text),
    Column("allergy_text", Text),
)
diagnoses = Table(
    "diagnoses",
    metadata,
    Column("diagnosis_id", Integer, primary_key=True, autoincrement=False),
    Column("pid", Integer, nullable=False),
    Column("label", String(100), nullable=False),
)


def award_row(number: int, **overrides: Any) -> dict[str, Any]:
    return {
        "award_no": number,
        "award_ref": f"DWP-{number:07d}",
        "claimant": f"ZX{number:06d}A",
        "benefit_name": "State Pension",
        "weekly_pence": 22_000 + number,
        "weekly_note": None,
        "starts": date(2020, 4, 6),
        "ends": None,
        "state": "live",
        **overrides,
    }


def source_config(url: str) -> dict[str, Any]:
    return {
        "kind": "sql",
        "url": url,
        "pool_size": 2,
        "max_overflow": 1,
        "records": {
            "BENEFIT_AWARD": {
                "table": "awards",
                "key": "award_no",
                "subjects": {"nino": "claimant"},
                "fields": {
                    "award_id": "award_ref",
                    "nino": "claimant",
                    "benefit": "benefit_name",
                    "weekly_amount_pence": "weekly_pence",
                    "start_date": "starts",
                    "end_date": "ends",
                    "status": "state",
                },
            },
            "HEALTH_SUMMARY": {
                "table": "patients",
                "key": "pid",
                "subjects": {"nhs_number": "nhs"},
                "fields": {
                    "nhs_number": "nhs",
                    "given_name": "forename",
                    "conditions": "dx.label",
                    "medications": "meds_json",
                    "allergies": {"column": "allergy_text", "list_separator": "|"},
                },
                "joins": [
                    {"table": "diagnoses", "alias": "dx", "on": {"pid": "pid"}, "many": True}
                ],
            },
        },
    }


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A database of its own for this test session on the local server, dropped at the end."""
    name = f"concordat_test_{uuid.uuid4().hex[:8]}"
    try:
        server = psycopg.connect(POSTGRES_SERVER, dbname="postgres", autocommit=True)
    except psycopg.OperationalError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL on 127.0.0.1:5432 must be reachable under CI: {exc}")
        pytest.skip("PostgreSQL on 127.0.0.1:5432 is unreachable (CI is not 'true')")
    with server:
        server.execute(pgsql.SQL("CREATE DATABASE {}").format(pgsql.Identifier(name)))
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(POSTGRES_SERVER, dbname="postgres", autocommit=True) as server:
            server.execute(
                pgsql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(pgsql.Identifier(name))
            )


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'local.db'}"
        return
    url = request.getfixturevalue("postgres_database")
    yield url
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text("DROP SCHEMA public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))
    engine.dispose()


def load(url: str, table: Table, rows: list[dict[str, Any]]) -> None:
    engine = create_engine(url)
    metadata.create_all(engine)
    if rows:
        with engine.begin() as connection:
            connection.execute(insert(table), rows)
    engine.dispose()


def count_awards(url: str) -> int:
    engine = create_engine(url)
    with engine.connect() as connection:
        count = connection.execute(select(func.count()).select_from(awards)).scalar_one()
    engine.dispose()
    return count


@pytest.fixture
async def source(database_url: str) -> AsyncIterator[SqlSource]:
    load(database_url, awards, [award_row(n) for n in range(1, 6)])
    opened = await open_source(source_config(database_url))
    assert isinstance(opened, SqlSource)
    yield opened
    await opened.close()


def capture_statements(source: SqlSource) -> list[str]:
    statements: list[str] = []

    def before_cursor_execute(*args: Any) -> None:
        statements.append(args[2])

    event.listen(source.engine, "before_cursor_execute", before_cursor_execute)
    return statements


async def test_fetch_selects_only_the_columns_of_the_requested_fields(source: SqlSource) -> None:
    statements = capture_statements(source)

    rows = await source.fetch("BENEFIT_AWARD", "nino", "ZX000003A", ["benefit", "award_id"])

    assert rows == [{"benefit": "State Pension", "award_id": "DWP-0000003"}]
    [statement] = [s for s in statements if "awards" in s]
    selected = statement.split("FROM")[0]
    assert sorted(re.findall(r"awards\.(\w+)", selected)) == ["award_ref", "benefit_name"]
    assert "ZX000003A" not in statement


async def test_fetch_converts_values_to_record_types(source: SqlSource) -> None:
    rows = await source.fetch(
        "BENEFIT_AWARD", "nino", "ZX000002A", ["weekly_amount_pence", "start_date", "nino"]
    )

    assert rows == [
        {"weekly_amount_pence": 22_002, "start_date": "2020-04-06", "nino": "ZX000002A"}
    ]


async def test_an_integer_column_read_for_a_text_field_is_its_decimal_text_alike_in_an_extract(
    database_url: str,
) -> None:
    load(database_url, awards, [award_row(n) for n in range(1, 4)])
    config = source_config(database_url)
    config["records"]["BENEFIT_AWARD"]["fields"]["award_id"] = "award_no"
    source = await open_source(config)
    try:
        fetched = await source.fetch("BENEFIT_AWARD", "nino", "ZX000002A", ["award_id", "status"])
        extracted = [
            row
            async for batch in source.stream(
                "BENEFIT_AWARD", ["award_id", "status"], batch_size=2, after=None
            )
            for row in batch.rows
        ]
    finally:
        await source.close()

    assert fetched == [{"award_id": "2", "status": "live"}]
    assert extracted == [{"award_id": str(n), "status": "live"} for n in range(1, 4)]


async def test_dates_read_as_iso_text_alike_for_one_subject_and_in_an_extract(
    source: SqlSource,
) -> None:
    fields = ["award_id", "start_date", "end_date"]

    fetched = await source.fetch("BENEFIT_AWARD", "nino", "ZX000004A", fields)
    extracted = [
        row
        async for batch in source.stream("BENEFIT_AWARD", fields, batch_size=2, after=None)
        for row in batch.rows
    ]

    assert fetched == [{"award_id": "DWP-0000004", "start_date": "2020-04-06"}]
    assert [row for row in extracted if row["award_id"] == "DWP-0000004"] == fetched
    assert all(row["start_date"] == "2020-04-06" for row in extracted)


async def test_a_null_column_leaves_its_field_out(source: SqlSource) -> None:
    rows = await source.fetch("BENEFIT_AWARD", "nino", "ZX000001A", ["end_date", "status"])

    assert rows == [{"status": "live"}]


async def test_an_unknown_subject_has_no_rows(source: SqlSource) -> None:
    assert await source.fetch("BENEFIT_AWARD", "nino", "ZX999999D", ["award_id"]) == []


@pytest.mark.parametrize(
    "identifier",
    [
        "ZX000001A' OR '1'='1",
        "'; DROP TABLE awards; --",
        'ZX000001A"; DELETE FROM awards; --',
        "../../etc/passwd",
        "%",
    ],
)
async def test_identifiers_with_metacharacters_are_only_data(
    source: SqlSource, database_url: str, identifier: str
) -> None:
    rows = await source.fetch("BENEFIT_AWARD", "nino", identifier, ["award_id"])

    assert rows == []
    assert count_awards(database_url) == 5


async def test_requests_outside_the_mapping_are_refused(source: SqlSource) -> None:
    with pytest.raises(AdapterError, match="has no field 'salary'"):
        await source.fetch("BENEFIT_AWARD", "nino", "ZX000001A", ["salary"])
    with pytest.raises(AdapterError, match="cannot be looked up by uprn"):
        await source.fetch("BENEFIT_AWARD", "uprn", "900000000001", ["award_id"])
    with pytest.raises(AdapterError, match="does not serve PERSON"):
        await source.fetch("PERSON", "nino", "ZX000001A", ["nino"])


async def test_a_mapped_column_missing_from_the_table_is_refused_by_name(database_url: str) -> None:
    load(database_url, awards, [])
    config = source_config(database_url)
    config["records"]["BENEFIT_AWARD"]["fields"]["benefit"] = "benefit_title"

    with pytest.raises(MappingMismatch) as raised:
        await open_source(config)

    message = str(raised.value)
    for part in ("BENEFIT_AWARD", "field 'benefit'", "'benefit_title'", "table 'awards'"):
        assert part in message


async def test_a_mapped_table_missing_from_the_database_is_refused_by_name(
    database_url: str,
) -> None:
    load(database_url, awards, [])
    config = source_config(database_url)
    config["records"]["HEALTH_SUMMARY"]["joins"][0]["table"] = "conditions"

    with pytest.raises(MappingMismatch, match="HEALTH_SUMMARY join 'dx' uses table 'conditions'"):
        await open_source(config)


async def test_a_key_that_is_not_unique_is_refused(database_url: str) -> None:
    load(database_url, awards, [])
    config = source_config(database_url)
    config["records"]["BENEFIT_AWARD"]["key"] = "claimant"

    with pytest.raises(MappingMismatch, match="key column 'claimant' of table 'awards'"):
        await open_source(config)


async def test_a_key_column_that_cannot_hold_identifiers_is_refused(database_url: str) -> None:
    load(database_url, awards, [])
    config = source_config(database_url)
    config["records"]["BENEFIT_AWARD"]["key"] = "starts"

    with pytest.raises(MappingMismatch, match="column 'starts' of table 'awards', whose type"):
        await open_source(config)


async def test_a_ref_to_an_undeclared_join_is_refused_before_connecting() -> None:
    config = source_config("postgresql+psycopg://concordat:s3cret-pw@127.0.0.1:1/none")
    config["records"]["BENEFIT_AWARD"]["fields"]["status"] = "history.state"

    with pytest.raises(SourceMisconfigured) as raised:
        await open_source(config)

    assert "'history', which is not a declared join" in str(raised.value)
    assert "s3cret-pw" not in str(raised.value)


async def test_text_in_an_integer_field_is_invalid_data_naming_the_field_not_the_value(
    database_url: str,
) -> None:
    load(database_url, awards, [award_row(1, weekly_note="about forty pounds")])
    config = source_config(database_url)
    config["records"]["BENEFIT_AWARD"]["fields"]["weekly_amount_pence"] = "weekly_note"
    source = await open_source(config)

    with pytest.raises(SourceDataInvalid) as raised:
        await source.fetch("BENEFIT_AWARD", "nino", "ZX000001A", ["weekly_amount_pence"])
    await source.close()

    message = str(raised.value)
    assert message == "BENEFIT_AWARD.weekly_amount_pence holds a value that is not an integer"
    assert "forty" not in message


async def test_oversized_text_is_invalid_data(database_url: str) -> None:
    load(database_url, awards, [award_row(1, benefit_name="x" * (64 * 1024 + 1))])
    source = await open_source(source_config(database_url))

    with pytest.raises(SourceDataInvalid, match=r"BENEFIT_AWARD\.benefit holds text over 64 KiB"):
        await source.fetch("BENEFIT_AWARD", "nino", "ZX000001A", ["benefit"])
    await source.close()


async def test_repeated_fields_come_from_a_child_table_json_text_and_delimited_text(
    database_url: str,
) -> None:
    load(
        database_url,
        patients,
        [{"pid": 1, "nhs": "9990000018", "forename": "Bryn", "meds_json": '["metformin"]',
          "allergy_text": "latex | penicillin"}],
    )  # fmt: skip
    load(
        database_url,
        diagnoses,
        [
            {"diagnosis_id": 11, "pid": 1, "label": "asthma"},
            {"diagnosis_id": 12, "pid": 1, "label": "migraine"},
        ],
    )
    source = await open_source(source_config(database_url))

    rows = await source.fetch(
        "HEALTH_SUMMARY",
        "nhs_number",
        "9990000018",
        ["given_name", "conditions", "medications", "allergies"],
    )
    await source.close()

    assert rows == [
        {
            "given_name": "Bryn",
            "conditions": ["asthma", "migraine"],
            "medications": ["metformin"],
            "allergies": ["latex", "penicillin"],
        }
    ]


async def test_a_list_over_a_thousand_items_is_invalid_data(database_url: str) -> None:
    too_many = "[" + ",".join('"aspirin"' for _ in range(1001)) + "]"
    load(database_url, patients, [{"pid": 1, "nhs": "9990000018", "meds_json": too_many}])
    source = await open_source(source_config(database_url))

    with pytest.raises(SourceDataInvalid, match="more than 1000 items"):
        await source.fetch("HEALTH_SUMMARY", "nhs_number", "9990000018", ["medications"])
    await source.close()


async def test_stream_pages_in_batches_and_resumes_without_duplicates_or_gaps(
    database_url: str,
) -> None:
    load(database_url, awards, [award_row(n) for n in range(1, 2501)])
    source = await open_source(source_config(database_url))
    assert isinstance(source, SqlSource)
    statements = capture_statements(source)

    batches = [
        batch
        async for batch in source.stream("BENEFIT_AWARD", ["award_id"], batch_size=1000, after=None)
    ]
    resumed = [
        row
        async for batch in source.stream(
            "BENEFIT_AWARD", ["award_id"], batch_size=1000, after=batches[0].cursor
        )
        for row in batch.rows
    ]
    await source.close()

    assert [len(batch.rows) for batch in batches] == [1000, 1000, 500]
    everything = [row["award_id"] for batch in batches for row in batch.rows]
    assert everything == [f"DWP-{n:07d}" for n in range(1, 2501)]
    assert [row["award_id"] for row in resumed] == everything[1000:]
    reads = [s for s in statements if "awards" in s]
    assert reads and all("LIMIT" in s for s in reads)


async def test_stream_with_subjects_gives_each_rows_subject_without_releasing_it(
    source: SqlSource,
) -> None:
    batches = [
        batch
        async for batch in source.stream(
            "BENEFIT_AWARD", ["award_id"], batch_size=2, after=None, with_subjects=True
        )
    ]

    assert [len(batch.subjects) for batch in batches] == [2, 2, 1]
    subjects = [subject for batch in batches for subject in batch.subjects]
    assert subjects == [("nino", f"ZX{n:06d}A") for n in range(1, 6)]
    # The subject column is read to key pseudonyms on; the rows hold only what was asked for.
    assert all(set(row) == {"award_id"} for batch in batches for row in batch.rows)


async def test_stream_without_subjects_reads_no_subject_column(source: SqlSource) -> None:
    statements = capture_statements(source)
    batches = [
        batch
        async for batch in source.stream("BENEFIT_AWARD", ["award_id"], batch_size=10, after=None)
    ]

    assert not batches[0].subjects
    reads = [s for s in statements if "awards" in s]
    assert reads and not any("claimant" in s for s in reads)


async def test_stream_with_subjects_refuses_a_record_type_that_maps_no_subject(
    database_url: str,
) -> None:
    load(database_url, awards, [award_row(1)])
    config = source_config(database_url)
    config["records"]["BENEFIT_AWARD"]["subjects"] = {}
    source = await open_source(config)
    try:
        with pytest.raises(AdapterError, match="no subject to key pseudonyms on"):
            async for _ in source.stream(
                "BENEFIT_AWARD", ["award_id"], batch_size=10, after=None, with_subjects=True
            ):
                pass
    finally:
        await source.close()


async def test_a_bulk_read_the_database_refuses_is_the_sources_failure(database_url: str) -> None:
    load(database_url, awards, [award_row(n) for n in range(1, 4)])
    source = await open_source(source_config(database_url))
    engine = create_engine(database_url)
    try:
        with engine.begin() as connection:
            connection.execute(awards.delete())
            connection.exec_driver_sql("ALTER TABLE awards RENAME TO awards_gone")
        with pytest.raises((SourceUnavailable, AdapterError)) as raised:
            async for _ in source.stream("BENEFIT_AWARD", ["award_id"], batch_size=2, after=None):
                pass
        assert "local database could not be read" in str(raised.value)
    finally:
        await source.close()
        with engine.begin() as connection:
            connection.exec_driver_sql("ALTER TABLE awards_gone RENAME TO awards")
        engine.dispose()


def test_pseudonym_subject_must_be_one_of_the_mapped_subjects() -> None:
    config = source_config("sqlite:///unused.db")
    config["records"]["BENEFIT_AWARD"]["pseudonym_subject"] = "chi_number"

    with pytest.raises(ValueError, match="pseudonym_subject 'chi_number' is not one of"):
        SqlSourceConfig.model_validate(config)


async def test_a_cursor_this_source_did_not_issue_is_refused(source: SqlSource) -> None:
    with pytest.raises(AdapterError, match="cursor"):
        async for _ in source.stream("BENEFIT_AWARD", ["award_id"], batch_size=10, after="1; --"):
            pass


async def test_a_missing_sqlite_file_is_unavailable_and_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "local.db"

    with pytest.raises(SourceUnavailable) as raised:
        await open_source(source_config(f"sqlite:///{missing}"))

    assert str(tmp_path) not in str(raised.value)
    assert not missing.exists()


@pytest.mark.postgres
async def test_a_database_that_is_down_is_unavailable_without_leaking_the_url(
    postgres_database: str,
) -> None:
    url = "postgresql+psycopg://concordat:s3cret-pw@127.0.0.1:1/concordat"

    with pytest.raises(SourceUnavailable) as raised:
        await open_source(source_config(url))

    message = str(raised.value)
    assert message == (
        "local database could not be reached to read its schema: unavailable or timed out"
    )
    assert "s3cret-pw" not in message and "127.0.0.1" not in message


@pytest.mark.postgres
async def test_a_read_blocked_past_the_statement_timeout_is_unavailable(
    postgres_database: str,
) -> None:
    load(postgres_database, awards, [award_row(1)])
    config = {**source_config(postgres_database), "statement_timeout_ms": 200}
    source = SqlSource.open(SqlSourceConfig.model_validate(config))
    dsn = postgres_database.replace("postgresql+psycopg", "postgresql")
    try:
        with psycopg.connect(dsn) as blocker:
            blocker.execute("LOCK TABLE awards IN ACCESS EXCLUSIVE MODE")
            started = time.monotonic()
            with pytest.raises(SourceUnavailable, match="timed out"):
                await source.fetch("BENEFIT_AWARD", "nino", "ZX000001A", ["award_id"])
            assert time.monotonic() - started < 3
    finally:
        await source.close()
        engine = create_engine(postgres_database)
        metadata.drop_all(engine)
        engine.dispose()


async def test_the_demo_schema_serves_people_through_the_address_join(database_url: str) -> None:
    seed_demo_database(database_url, "whitehall", people=20)
    source = await open_source(demo_source_config(database_url, "whitehall"))
    engine = create_engine(database_url)
    with engine.connect() as connection:
        nino, uprn = connection.execute(
            text("SELECT ni_number, home_uprn FROM people WHERE home_uprn IS NOT NULL LIMIT 1")
        ).one()
    engine.dispose()

    by_nino = await source.fetch("PERSON", "nino", nino, ["uprn", "postcode", "address_line"])
    by_uprn = await source.fetch("PERSON", "uprn", str(uprn), ["nino"])
    injected = await source.fetch("PERSON", "uprn", f"{uprn} OR 1=1", ["nino"])
    await source.close()

    assert by_nino[0]["uprn"] == uprn
    assert set(by_nino[0]) == {"uprn", "postcode", "address_line"}
    assert by_uprn == [{"nino": nino}]
    assert injected == []


async def test_unknown_source_kind_names_the_known_kinds() -> None:
    with pytest.raises(ValueError, match="known kinds: rest, sql"):
        await open_source({"kind": "ldap"})


async def read_everything(source: Any, administration: str, url: str) -> dict[str, Any]:
    """Every record of every type the administration's demo source serves, in pages of 7,
    and up to five subjects' records by each subject kind, with an unknown subject's."""
    config = demo_source_config(url, administration)
    found: dict[str, Any] = {}
    for record_type, mapping in config["records"].items():
        fields = list(RECORD_FIELDS[record_type])
        pages = [
            list(batch.rows)
            async for batch in source.stream(record_type, fields, batch_size=7, after=None)
        ]
        found[f"{record_type} pages"] = pages
        rows = [row for page in pages for row in page]
        for kind in mapping["subjects"]:
            held = list(dict.fromkeys(row[kind] for row in rows if kind in row))
            for value in [*held[:5], "NO-SUCH-SUBJECT"]:
                fetched = await source.fetch(record_type, kind, str(value), fields)
                found[f"{record_type} by {kind} {value}"] = fetched
    return found


@pytest.mark.parametrize("administration", ADMINISTRATIONS)
async def test_driver_cursor_reads_give_the_records_sqlalchemy_reads_give(
    database_url: str, administration: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed_demo_database(database_url, administration, people=40)
    through_driver = await open_source(demo_source_config(database_url, administration))
    try:
        by_driver = await read_everything(through_driver, administration, database_url)
    finally:
        await through_driver.close()
    # Without a driver-level form, every query is executed by SQLAlchemy, as before it had one.
    monkeypatch.setattr(sql_adapter, "_raw_statement", lambda *args, **kwargs: None)
    through_sqlalchemy = await open_source(demo_source_config(database_url, administration))
    try:
        by_sqlalchemy = await read_everything(through_sqlalchemy, administration, database_url)
    finally:
        await through_sqlalchemy.close()

    assert by_driver == by_sqlalchemy
    assert any(rows for key, rows in by_driver.items() if " by " in key)


async def refusal_of_a_renamed_table(url: str) -> tuple[type[Exception], str]:
    source = await open_source(source_config(url))
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql("ALTER TABLE awards RENAME TO awards_gone")
        with pytest.raises(AdapterError) as raised:
            await source.fetch("BENEFIT_AWARD", "nino", "ZX000001A", ["award_id"])
        return type(raised.value), str(raised.value)
    finally:
        await source.close()
        with engine.begin() as connection:
            connection.exec_driver_sql("ALTER TABLE awards_gone RENAME TO awards")
        engine.dispose()


async def test_a_subject_read_the_database_refuses_fails_as_it_did_through_sqlalchemy(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    load(database_url, awards, [award_row(1)])

    through_driver = await refusal_of_a_renamed_table(database_url)
    monkeypatch.setattr(sql_adapter, "_raw_statement", lambda *args, **kwargs: None)
    through_sqlalchemy = await refusal_of_a_renamed_table(database_url)

    assert through_driver == through_sqlalchemy
    assert "local database could not be read" in through_driver[1]


async def test_many_subject_reads_at_once_each_get_their_own_records(source: SqlSource) -> None:
    ninos = [f"ZX{n:06d}A" for n in (1, 2, 3, 4, 5, 9)] * 20

    answers = await asyncio.gather(
        *(source.fetch("BENEFIT_AWARD", "nino", nino, ["nino"]) for nino in ninos)
    )

    assert answers == [[{"nino": nino}] if nino != "ZX000009A" else [] for nino in ninos]


async def test_a_subject_read_cancelled_while_waiting_leaves_the_others_answered(
    source: SqlSource,
) -> None:
    reads = [
        asyncio.ensure_future(source.fetch("BENEFIT_AWARD", "nino", f"ZX{n:06d}A", ["nino"]))
        for n in range(1, 6)
    ]
    reads[2].cancel()

    answers = await asyncio.gather(*reads, return_exceptions=True)

    assert isinstance(answers[2], asyncio.CancelledError)
    assert [a for i, a in enumerate(answers) if i != 2] == [
        [{"nino": f"ZX{n:06d}A"}] for n in (1, 2, 4, 5)
    ]
    assert await source.fetch("BENEFIT_AWARD", "nino", "ZX000003A", ["nino"]) == [
        {"nino": "ZX000003A"}
    ]


async def test_a_subject_read_asked_of_a_closed_source_is_refused_not_left_waiting(
    database_url: str,
) -> None:
    load(database_url, awards, [award_row(1)])
    source = await open_source(source_config(database_url))
    await source.close()

    with pytest.raises(RuntimeError):
        await asyncio.wait_for(
            source.fetch("BENEFIT_AWARD", "nino", "ZX000001A", ["award_id"]), timeout=30
        )
