"""Synthetic demo data for each administration's local systems, and the mappings that serve it.

Nobody here is real. Names are drawn at random from short lists, NINOs use the ZX prefix,
NHS numbers come from the 999 test range that is never issued, Health and Care numbers and CHI
numbers are random with valid check digits (a quarter of CHI numbers carry the newer modulus 10
digit), and UPRNs come from a block starting at 900 000 000 000.

The tables deliberately differ from the record contracts (`surname` for `family_name`, a
`patient_conditions` child table, an `addresses` join) so the SQL mapping is exercised.

Seed a database (SQLite or PostgreSQL; seeding again adds nothing); `--create-database`
first creates a PostgreSQL database that does not exist yet::

    python -m gateway.dev.demo \
        --url postgresql+psycopg://postgres@127.0.0.1:5432/concordat_holyrood \
        --administration holyrood --create-database

`deploy/postgres/holyrood.toml` is holyrood's development config serving that database.
"""

from __future__ import annotations

import argparse
import json
import random
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import partial
from typing import Any, cast

import psycopg
from psycopg import sql as pgsql
from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Date,
    DateTime,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    func,
    insert,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.schema import CreateIndex, CreateTable
from sqlalchemy.sql.dml import Insert

from gateway.dev.synthetic import (
    synthetic_chi_number,
    synthetic_hc_number,
    synthetic_nhs_number,
    synthetic_nino,
)

metadata = MetaData()

_addresses = Table(
    "addresses",
    metadata,
    Column("uprn", BigInteger, primary_key=True, autoincrement=False),
    Column("line_1", String(200), nullable=False),
    Column("postcode", String(10), nullable=False),
)
_people = Table(
    "people",
    metadata,
    Column("person_id", Integer, primary_key=True, autoincrement=False),
    Column("ni_number", String(9), nullable=False, unique=True),
    Column("forename", String(100), nullable=False),
    Column("surname", String(100), nullable=False),
    Column("born_on", Date, nullable=False),
    Column("home_uprn", BigInteger, index=True),
)
_benefit_awards = Table(
    "benefit_awards",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    Column("award_ref", String(20), nullable=False, unique=True),
    Column("claimant_nino", String(9), nullable=False, index=True),
    Column("benefit_name", String(100), nullable=False),
    Column("weekly_rate_pence", BigInteger, nullable=False),
    Column("starts_on", Date, nullable=False),
    Column("ends_on", Date),
    Column("award_status", String(20), nullable=False),
    Column("administered_by", String(20), nullable=False),
)
_birth_entries = Table(
    "birth_entries",
    metadata,
    Column("entry_ref", String(20), primary_key=True),
    Column("district", String(100), nullable=False),
    Column("forenames", String(100), nullable=False),
    Column("surname", String(100), nullable=False),
    Column("born_on", Date, nullable=False),
    Column("birthplace", String(200)),
    Column("sex", String(10), nullable=False),
    Column("mother_surname", String(100)),
    Column("registered_on", Date, nullable=False),
)
_death_entries = Table(
    "death_entries",
    metadata,
    Column("entry_ref", String(20), primary_key=True),
    Column("district", String(100), nullable=False),
    Column("deceased_nino", String(9), index=True),
    Column("forenames", String(100), nullable=False),
    Column("surname", String(100), nullable=False),
    Column("died_on", Date, nullable=False),
    Column("place_of_death", String(200)),
    Column("cause_text", String(500)),
    Column("registered_on", Date, nullable=False),
)
_marriage_entries = Table(
    "marriage_entries",
    metadata,
    Column("entry_ref", String(20), primary_key=True),
    Column("district", String(100), nullable=False),
    Column("ceremony", String(30), nullable=False),
    Column("party_a", String(200), nullable=False),
    Column("party_b", String(200), nullable=False),
    Column("ceremony_on", Date, nullable=False),
    Column("venue", String(200)),
    Column("registered_on", Date, nullable=False),
)
_council_tax_accounts = Table(
    "council_tax_accounts",
    metadata,
    Column("account_no", String(20), primary_key=True),
    Column("property_uprn", BigInteger, nullable=False, index=True),
    Column("liable_nino", String(9), index=True),
    Column("liable_person", String(200), nullable=False),
    Column("valuation_band", String(1), nullable=False),
    Column("annual_charge_pence", BigInteger, nullable=False),
    Column("arrears_pence", BigInteger, nullable=False),
    Column("billing_authority", String(100), nullable=False),
)
_patients = Table(
    "patients",
    metadata,
    Column("patient_id", Integer, primary_key=True, autoincrement=False),
    Column("nhs_no", String(10), unique=True),
    Column("chi_no", String(10), unique=True),
    Column("hc_no", String(10), unique=True),
    Column("forename", String(100), nullable=False),
    Column("surname", String(100), nullable=False),
    Column("born_on", Date, nullable=False),
    Column("practice_code", String(10)),
    # Two ways local systems keep lists in one column: JSON array text, delimited text.
    Column("medications_json", Text),
    Column("allergy_list", Text),
    Column("reviewed_at", DateTime),
)
_patient_conditions = Table(
    "patient_conditions",
    metadata,
    Column("condition_id", Integer, primary_key=True, autoincrement=False),
    Column("patient_id", Integer, ForeignKey("patients.patient_id"), nullable=False, index=True),
    Column("description", String(200), nullable=False),
)

_TABLES = {
    "PERSON": (_addresses, _people),
    "BENEFIT_AWARD": (_benefit_awards,),
    "BIRTH_REGISTRATION": (_birth_entries,),
    "DEATH_REGISTRATION": (_death_entries,),
    "MARRIAGE_REGISTRATION": (_marriage_entries,),
    "COUNCIL_TAX_ACCOUNT": (_council_tax_accounts,),
    "HEALTH_SUMMARY": (_patients, _patient_conditions),
}


@dataclass(frozen=True, slots=True)
class _Administration:
    serves: tuple[str, ...]
    towns: tuple[str, ...]
    postcode_districts: tuple[str, ...]
    registration_authority: str = ""
    benefit_body: str = ""
    benefits: tuple[str, ...] = ()
    councils: tuple[str, ...] = ()
    bands: str = "ABCDEFGH"
    health_subject: str = ""


_ADMINISTRATIONS = {
    # DWP and GRO (England and Wales) for the UK Government; English councils.
    "whitehall": _Administration(
        serves=(
            "PERSON",
            "BENEFIT_AWARD",
            "BIRTH_REGISTRATION",
            "DEATH_REGISTRATION",
            "MARRIAGE_REGISTRATION",
            "COUNCIL_TAX_ACCOUNT",
        ),
        towns=("Leeds", "Bristol", "Norwich", "Manchester", "Exeter"),
        postcode_districts=("LS6", "BS3", "NR2", "M14", "EX4"),
        registration_authority="EW",
        benefit_body="DWP",
        benefits=(
            "Universal Credit",
            "State Pension",
            "Personal Independence Payment",
            "Pension Credit",
        ),
        councils=(
            "Leeds City Council",
            "Bristol City Council",
            "Norwich City Council",
            "Manchester City Council",
            "Exeter City Council",
        ),
    ),
    # NRS, NHS Scotland (CHI), Social Security Scotland, Scottish councils.
    "holyrood": _Administration(
        serves=(
            "BIRTH_REGISTRATION",
            "DEATH_REGISTRATION",
            "MARRIAGE_REGISTRATION",
            "HEALTH_SUMMARY",
            "BENEFIT_AWARD",
            "COUNCIL_TAX_ACCOUNT",
        ),
        towns=("Edinburgh", "Glasgow", "Dundee", "Inverness", "Aberdeen"),
        postcode_districts=("EH6", "G12", "DD1", "IV2", "AB10"),
        registration_authority="SC",
        benefit_body="SSS",
        benefits=(
            "Adult Disability Payment",
            "Scottish Child Payment",
            "Carer Support Payment",
            "Pension Age Disability Payment",
        ),
        councils=(
            "City of Edinburgh Council",
            "Glasgow City Council",
            "Dundee City Council",
            "The Highland Council",
            "Aberdeen City Council",
        ),
        health_subject="chi_number",
    ),
    # GRONI, Health and Social Care (H&C numbers), the Department for Communities.
    "stormont": _Administration(
        serves=(
            "BIRTH_REGISTRATION",
            "DEATH_REGISTRATION",
            "MARRIAGE_REGISTRATION",
            "HEALTH_SUMMARY",
            "BENEFIT_AWARD",
        ),
        towns=("Belfast", "Derry", "Lisburn", "Newry", "Omagh"),
        postcode_districts=("BT7", "BT48", "BT28", "BT34", "BT78"),
        registration_authority="NI",
        benefit_body="DfC",
        benefits=(
            "Universal Credit",
            "Personal Independence Payment",
            "State Pension",
            "Discretionary Support",
        ),
        health_subject="hc_number",
    ),
    # NHS Wales and Welsh councils (Welsh council tax has a ninth band, I).
    "cardiff": _Administration(
        serves=("HEALTH_SUMMARY", "COUNCIL_TAX_ACCOUNT"),
        towns=("Cardiff", "Swansea", "Bangor", "Newport", "Aberystwyth"),
        postcode_districts=("CF24", "SA1", "LL57", "NP20", "SY23"),
        councils=(
            "Cardiff Council",
            "Swansea Council",
            "Gwynedd Council",
            "Newport City Council",
            "Ceredigion County Council",
        ),
        bands="ABCDEFGHI",
        health_subject="nhs_number",
    ),
}
ADMINISTRATIONS = tuple(_ADMINISTRATIONS)

_FEMALE_NAMES = ("Ailsa", "Bethan", "Ciara", "Dilys", "Eilidh", "Freya", "Gwen", "Isla", "Maeve")
_MALE_NAMES = ("Angus", "Bryn", "Cormac", "Dafydd", "Euan", "Fergal", "Gareth", "Hamish", "Owen")
_FAMILY_NAMES = (
    "Ashworth", "Brennan", "Cadwallader", "Drummond", "Ellery", "Fairbairn", "Gillespie",
    "Hartigan", "Iredale", "Jardine", "Kilbride", "Llewellyn", "McAllister", "Nairn", "Ormerod",
)  # fmt: skip
_STREETS = ("Mill Lane", "Church Road", "Station Street", "Orchard Close", "Harbour View")
_CONDITIONS = ("asthma", "type 2 diabetes", "hypertension", "osteoarthritis", "migraine")
_MEDICATIONS = ("salbutamol inhaler", "metformin", "amlodipine", "ibuprofen gel", "sumatriptan")
_ALLERGIES = ("penicillin", "peanuts", "latex", "shellfish")
_CAUSES = ("ischaemic heart disease", "pneumonia", "dementia", "stroke", "lung cancer")
_BAND_CHARGE_PENCE = dict(zip("ABCDEFGHI", range(120_000, 480_000, 40_000), strict=True))
_UNIT_LETTERS = "ABDEFGHJLNPQRSTUWXYZ"
_FIRST_UPRN = 900_000_000_000
# The first civil partnerships anywhere in the UK were registered in December 2005.
_CIVIL_PARTNERSHIPS_FROM = date(2005, 12, 19)
_BULK_CHUNK = 10_000


@dataclass(frozen=True, slots=True)
class _Person:
    number: int
    given: str
    family: str
    female: bool
    born: date
    nino: str
    uprn: int
    town: int
    address: str
    postcode: str

    @property
    def name(self) -> str:
        return f"{self.given} {self.family}"


def _facts(administration: str) -> _Administration:
    facts = _ADMINISTRATIONS.get(administration)
    if facts is None:
        raise ValueError(
            f"unknown administration {administration!r}; known: {', '.join(ADMINISTRATIONS)}"
        )
    return facts


def _day_between(rng: random.Random, first: date, last: date) -> date:
    return first + timedelta(days=rng.randrange((last - first).days + 1))


def _unique(rng: random.Random, make: Callable[[random.Random], Any], seen: set[Any]) -> Any:
    while True:
        value = make(rng)
        if value not in seen:
            seen.add(value)
            return value


def _population(rng: random.Random, facts: _Administration, count: int) -> list[_Person]:
    ninos: set[str] = set()
    uprns: set[int] = set()
    found = []
    for number in range(1, count + 1):
        female = rng.random() < 0.5
        town = rng.randrange(len(facts.towns))
        inward = f"{rng.randrange(10)}{rng.choice(_UNIT_LETTERS)}{rng.choice(_UNIT_LETTERS)}"
        found.append(
            _Person(
                number=number,
                given=rng.choice(_FEMALE_NAMES if female else _MALE_NAMES),
                family=rng.choice(_FAMILY_NAMES),
                female=female,
                born=_day_between(rng, date(1930, 1, 1), date(2020, 12, 31)),
                nino=_unique(rng, synthetic_nino, ninos),
                uprn=_unique(rng, lambda r: _FIRST_UPRN + r.randrange(10**9), uprns),
                town=town,
                address=f"{rng.randrange(1, 200)} {rng.choice(_STREETS)}, {facts.towns[town]}",
                postcode=f"{facts.postcode_districts[town]} {inward}",
            )
        )
    return found


_Rows = dict[Table, list[dict[str, Any]]]


def _person_rows(
    rng: random.Random, facts: _Administration, folk: list[_Person], rows: _Rows
) -> None:
    for person in folk:
        # Some people have no address on file, so the demo shows fields left out for NULL.
        housed = person.number % 10 != 0
        if housed:
            rows[_addresses].append(
                {"uprn": person.uprn, "line_1": person.address, "postcode": person.postcode}
            )
        rows[_people].append(
            {
                "person_id": person.number,
                "ni_number": person.nino,
                "forename": person.given,
                "surname": person.family,
                "born_on": person.born,
                "home_uprn": person.uprn if housed else None,
            }
        )


def _benefit_rows(
    rng: random.Random, facts: _Administration, folk: list[_Person], rows: _Rows
) -> None:
    number = 0
    for person in folk:
        if rng.random() >= 0.6:
            continue
        for _ in range(rng.randint(1, 2)):
            number += 1
            rows[_benefit_awards].append(_benefit_award(rng, facts, number, person.nino))


def _benefit_award(
    rng: random.Random, facts: _Administration, number: int, nino: str
) -> dict[str, Any]:
    starts = _day_between(rng, date(2015, 1, 1), date(2025, 6, 30))
    status = rng.choice(("live", "live", "live", "ended", "suspended"))
    ends = _day_between(rng, starts, date(2025, 12, 31)) if status == "ended" else None
    return {
        "id": number,
        "award_ref": f"{facts.benefit_body}-{number:09d}",
        "claimant_nino": nino,
        "benefit_name": rng.choice(facts.benefits),
        "weekly_rate_pence": rng.randrange(2_000, 40_000, 5),
        "starts_on": starts,
        "ends_on": ends,
        "award_status": status,
        "administered_by": facts.benefit_body,
    }


def _registration_id(facts: _Administration, event: str, year: int, number: int) -> str:
    return f"{facts.registration_authority}-{event}-{year}-{number:06d}"


def _birth_rows(
    rng: random.Random, facts: _Administration, folk: list[_Person], rows: _Rows
) -> None:
    for number, person in enumerate((p for p in folk if rng.random() < 0.5), start=1):
        registered = person.born + timedelta(days=rng.randint(3, 42))
        town = rng.choice(facts.towns)
        rows[_birth_entries].append(
            {
                "entry_ref": _registration_id(facts, "B", registered.year, number),
                "district": town,
                "forenames": person.given,
                "surname": person.family,
                "born_on": person.born,
                "birthplace": f"{town} Maternity Unit",
                "sex": "female" if person.female else "male",
                "mother_surname": rng.choice(_FAMILY_NAMES),
                "registered_on": registered,
            }
        )


def _death_rows(
    rng: random.Random, facts: _Administration, folk: list[_Person], rows: _Rows
) -> None:
    elderly = [p for p in folk if p.born < date(1950, 1, 1) and rng.random() < 0.3]
    for number, person in enumerate(elderly, start=1):
        died = _day_between(rng, date(2015, 1, 1), date(2025, 6, 30))
        registered = died + timedelta(days=rng.randint(1, 8))
        town = rng.choice(facts.towns)
        rows[_death_entries].append(
            {
                "entry_ref": _registration_id(facts, "D", registered.year, number),
                "district": town,
                "deceased_nino": person.nino,
                "forenames": person.given,
                "surname": person.family,
                "died_on": died,
                "place_of_death": rng.choice((f"{town} General Hospital", "home")),
                "cause_text": rng.choice(_CAUSES),
                "registered_on": registered,
            }
        )


def _marriage_rows(
    rng: random.Random, facts: _Administration, folk: list[_Person], rows: _Rows
) -> None:
    kinds = ("marriage", "civil partnership")
    adults = [p for p in folk if p.born < date(2002, 1, 1)]
    rng.shuffle(adults)
    for number, (one, two) in enumerate(zip(adults[0::2], adults[1::2], strict=False), start=1):
        if number > len(folk) // 10:
            break
        of_age = max(one.born, two.born) + timedelta(days=18 * 366)
        ceremony = _day_between(rng, max(of_age, date(1990, 1, 1)), date(2025, 6, 30))
        town = rng.choice(facts.towns)
        rows[_marriage_entries].append(
            {
                "entry_ref": _registration_id(facts, "M", ceremony.year, number),
                "district": town,
                "ceremony": rng.choice(
                    kinds if ceremony >= _CIVIL_PARTNERSHIPS_FROM else kinds[:1]
                ),
                "party_a": one.name,
                "party_b": two.name,
                "ceremony_on": ceremony,
                "venue": rng.choice((f"{town} Register Office", f"{town} Town Hall")),
                "registered_on": ceremony,
            }
        )


def _council_tax_rows(
    rng: random.Random, facts: _Administration, folk: list[_Person], rows: _Rows
) -> None:
    for person in folk:
        if rng.random() >= 0.5:
            continue
        band = rng.choice(facts.bands)
        council = facts.councils[person.town]
        in_arrears = rng.random() < 0.2
        rows[_council_tax_accounts].append(
            {
                "account_no": f"{council[:3].upper()}-{person.number:07d}",
                "property_uprn": person.uprn,
                "liable_nino": person.nino,
                "liable_person": person.name,
                "valuation_band": band,
                "annual_charge_pence": _BAND_CHARGE_PENCE[band],
                "arrears_pence": rng.randrange(5_000, 150_000, 100) if in_arrears else 0,
                "billing_authority": council,
            }
        )


def _health_rows(
    rng: random.Random, facts: _Administration, folk: list[_Person], rows: _Rows
) -> None:
    seen: set[str] = set()
    column = {"nhs_number": "nhs_no", "chi_number": "chi_no", "hc_number": "hc_no"}
    for person in folk:
        if facts.health_subject == "chi_number":
            # Every fourth CHI number carries the newer modulus 10 check digit.
            luhn = person.number % 4 == 0
            chi = partial(synthetic_chi_number, born=person.born, female=person.female, luhn=luhn)
            number = _unique(rng, chi, seen)
        elif facts.health_subject == "hc_number":
            number = _unique(rng, synthetic_hc_number, seen)
        else:
            number = _unique(rng, synthetic_nhs_number, seen)
        medications = rng.sample(_MEDICATIONS, rng.randint(0, 3))
        allergies = rng.sample(_ALLERGIES, rng.randint(0, 2))
        rows[_patients].append(
            {
                "patient_id": person.number,
                column[facts.health_subject]: number,
                "forename": person.given,
                "surname": person.family,
                "born_on": person.born,
                "practice_code": f"P{rng.randrange(10_000, 99_999)}",
                "medications_json": json.dumps(medications),
                "allergy_list": "; ".join(allergies) or None,
                "reviewed_at": datetime(2024, 1, 1) + timedelta(minutes=rng.randrange(800_000)),
            }
        )
        for position, condition in enumerate(rng.sample(_CONDITIONS, rng.randint(0, 3))):
            rows[_patient_conditions].append(
                {
                    "condition_id": person.number * 10 + position,
                    "patient_id": person.number,
                    "description": condition,
                }
            )


_ROW_MAKERS: dict[str, Callable[[random.Random, _Administration, list[_Person], _Rows], None]] = {
    "PERSON": _person_rows,
    "BENEFIT_AWARD": _benefit_rows,
    "BIRTH_REGISTRATION": _birth_rows,
    "DEATH_REGISTRATION": _death_rows,
    "MARRIAGE_REGISTRATION": _marriage_rows,
    "COUNCIL_TAX_ACCOUNT": _council_tax_rows,
    "HEALTH_SUMMARY": _health_rows,
}


def _tables_of(facts: _Administration) -> list[Table]:
    return [table for record_type in facts.serves for table in _TABLES[record_type]]


def _insert_new(connection: Connection, table: Table) -> Insert:
    """An INSERT that skips rows already present, which makes seeding repeatable."""
    if connection.dialect.name == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    if connection.dialect.name == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing()
    raise ValueError("demo data can be seeded into SQLite or PostgreSQL only")


def create_database(url: str) -> bool:
    """Creates the PostgreSQL database `url` names unless it exists; True if it was created.

    Connects to the same server's `postgres` maintenance database as the same user.
    """
    target = make_url(url)
    if target.get_backend_name() != "postgresql" or not target.database:
        raise ValueError("only a PostgreSQL URL naming a database can be created")
    server = target.set(drivername="postgresql", database="postgres")
    with psycopg.connect(server.render_as_string(hide_password=False), autocommit=True) as db:
        exists = db.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (target.database,)
        ).fetchone()
        if exists:
            return False
        db.execute(pgsql.SQL("CREATE DATABASE {}").format(pgsql.Identifier(target.database)))
    return True


def seed_demo_database(url: str, administration: str, *, people: int = 200, seed: int = 7) -> None:
    """Creates the administration's demo tables at `url` and fills them; repeatable."""
    facts = _facts(administration)
    # Demo data must be reproducible from its seed; secrecy plays no part.
    rng = random.Random(f"{administration}:{seed}")  # noqa: S311
    folk = _population(rng, facts, people)
    rows: _Rows = defaultdict(list)
    for record_type in facts.serves:
        _ROW_MAKERS[record_type](rng, facts, folk, rows)
    engine = create_engine(url)
    try:
        tables = _tables_of(facts)
        metadata.create_all(engine, tables=tables)
        with engine.begin() as connection:
            for table in tables:
                if rows[table]:
                    connection.execute(_insert_new(connection, table), rows[table])
    finally:
        engine.dispose()


def _append_rows(connection: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    if connection.dialect.driver != "psycopg":
        connection.execute(insert(table), rows)
        return
    # COPY loads a million rows in seconds where batched INSERTs take minutes.
    columns = [column.name for column in table.columns]
    statement = pgsql.SQL("COPY {} ({}) FROM STDIN").format(
        pgsql.Identifier(table.name),
        pgsql.SQL(", ").join(pgsql.Identifier(name) for name in columns),
    )
    raw = cast(psycopg.Connection[Any], connection.connection.driver_connection)
    with raw.cursor() as cursor, cursor.copy(statement) as copy:
        for row in rows:
            copy.write_row([row[name] for name in columns])


# Records the bulk extract benchmark can seed: BENEFIT_AWARD (about 70 bytes as the fraud
# agreements release it) and DEATH_REGISTRATION (about 200 bytes as the statistics
# agreement releases it, with a medical certificate's cause of death in full).
BULK_RECORD_TYPES = ("BENEFIT_AWARD", "DEATH_REGISTRATION")
# Parts of a medical certificate of cause of death: I(a) the disease that led directly to
# death, I(b) and I(c) what led to it, II other conditions that contributed.
_DIRECT_CAUSES = (
    "aspiration pneumonia",
    "acute myocardial infarction",
    "bronchopneumonia",
    "congestive cardiac failure",
    "acute kidney injury",
    "sepsis",
)
_UNDERLYING_CAUSES = (
    "advanced Alzheimer's disease",
    "ischaemic heart disease due to coronary artery atherosclerosis",
    "chronic obstructive pulmonary disease",
    "metastatic carcinoma of the bronchus",
    "cerebrovascular accident (ischaemic stroke)",
    "frailty of old age",
)
_CONTRIBUTING_CAUSES = (
    "type 2 diabetes mellitus",
    "chronic kidney disease stage 3",
    "atrial fibrillation",
    "hypertension",
    "osteoporosis with fractured neck of femur",
)


def seed_bulk(
    url: str,
    administration: str,
    rows: int,
    *,
    record_type: str = "BENEFIT_AWARD",
    seed: int = 7,
) -> None:
    """Appends `rows` synthetic rows of `record_type`, in chunks, for the bulk benchmark."""
    facts = _facts(administration)
    if record_type not in BULK_RECORD_TYPES:
        raise ValueError(
            f"bulk rows can be seeded for {', '.join(BULK_RECORD_TYPES)}, not {record_type}"
        )
    if record_type not in facts.serves:
        raise ValueError(f"{administration} serves no {record_type} records")
    table = _benefit_awards if record_type == "BENEFIT_AWARD" else _death_entries
    engine = create_engine(url)
    try:
        table.create(engine, checkfirst=True)
        with engine.connect() as connection:
            if record_type == "BENEFIT_AWARD":
                start = (connection.execute(select(func.max(table.c.id))).scalar() or 0) + 1
            else:
                start = connection.execute(select(func.count()).select_from(table)).scalar_one()
        rng = random.Random(f"bulk:{administration}:{record_type}:{seed}:{start}")  # noqa: S311 (as above)
        for first in range(start, start + rows, _BULK_CHUNK):
            last = min(first + _BULK_CHUNK, start + rows)
            if record_type == "BENEFIT_AWARD":
                chunk = [
                    _benefit_award(rng, facts, number, synthetic_nino(rng))
                    for number in range(first, last)
                ]
            else:
                chunk = [_bulk_death(rng, facts, number) for number in range(first, last)]
            with engine.begin() as connection:
                _append_rows(connection, table, chunk)
    finally:
        engine.dispose()


def _bulk_death(rng: random.Random, facts: _Administration, number: int) -> dict[str, Any]:
    """A death registered in the years 2015-2025, numbered apart from the demo's own.

    Registration numbers run from 500000 in each year, far above the demo's, so a bulk
    entry's reference never collides with one and still has the six digits of a real one.
    """
    year = 2015 + number % 11
    registered = _day_between(rng, date(year, 1, 9), date(year, 12, 31))
    died = registered - timedelta(days=rng.randint(1, 8))
    town = rng.choice(facts.towns)
    cause = f"I(a) {rng.choice(_DIRECT_CAUSES)}; I(b) {rng.choice(_UNDERLYING_CAUSES)}"
    if rng.random() < 0.5:
        cause += f"; I(c) {rng.choice(_UNDERLYING_CAUSES)}"
    cause += f"; II {', '.join(rng.sample(_CONTRIBUTING_CAUSES, rng.randint(1, 2)))}"
    # Where a death happened is registered as an address, as a hospital or as a home's.
    place = rng.choice(
        (
            f"{town} Royal Infirmary, {rng.choice(_STREETS)}, {town}",
            f"{rng.choice(('Ashgrove', 'Beechwood', 'Riverside'))} Care Home, {town}",
            f"{rng.randrange(1, 200)} {rng.choice(_STREETS)}, {town}",
        )
    )
    return {
        "entry_ref": _registration_id(facts, "D", year, 500_000 + number // 11),
        "district": town,
        "deceased_nino": synthetic_nino(rng),
        "forenames": rng.choice(_FEMALE_NAMES + _MALE_NAMES),
        "surname": rng.choice(_FAMILY_NAMES),
        "died_on": died,
        "place_of_death": place,
        "cause_text": cause,
        "registered_on": registered,
    }


_REGISTRATION_FIELDS = {
    "BIRTH_REGISTRATION": {
        "registration_id": "entry_ref",
        "registration_district": "district",
        "given_name": "forenames",
        "family_name": "surname",
        "date_of_birth": "born_on",
        "place_of_birth": "birthplace",
        "sex": "sex",
        "mother_family_name": "mother_surname",
        "registered_on": "registered_on",
    },
    "DEATH_REGISTRATION": {
        "registration_id": "entry_ref",
        "registration_district": "district",
        "nino": "deceased_nino",
        "given_name": "forenames",
        "family_name": "surname",
        "date_of_death": "died_on",
        "place_of_death": "place_of_death",
        "cause_of_death": "cause_text",
        "registered_on": "registered_on",
    },
    "MARRIAGE_REGISTRATION": {
        "registration_id": "entry_ref",
        "registration_district": "district",
        "kind": "ceremony",
        "party_one_name": "party_a",
        "party_two_name": "party_b",
        "date_of_ceremony": "ceremony_on",
        "place_of_ceremony": "venue",
        "registered_on": "registered_on",
    },
}


def _registration_mapping(record_type: str) -> dict[str, Any]:
    subjects = {"registration_id": "entry_ref"}
    if record_type == "DEATH_REGISTRATION":
        subjects["nino"] = "deceased_nino"
    return {
        "table": _TABLES[record_type][0].name,
        "key": "entry_ref",
        "subjects": subjects,
        "fields": _REGISTRATION_FIELDS[record_type],
    }


def _health_mapping(subject: str) -> dict[str, Any]:
    column = {"nhs_number": "nhs_no", "chi_number": "chi_no", "hc_number": "hc_no"}[subject]
    return {
        "table": "patients",
        "key": "patient_id",
        "subjects": {subject: column},
        "fields": {
            subject: column,
            "given_name": "forename",
            "family_name": "surname",
            "date_of_birth": "born_on",
            "gp_practice": "practice_code",
            "conditions": "diagnoses.description",
            "medications": "medications_json",
            "allergies": {"column": "allergy_list", "list_separator": ";"},
            "last_updated": "reviewed_at",
        },
        "joins": [
            {
                "table": "patient_conditions",
                "alias": "diagnoses",
                "on": {"patient_id": "patient_id"},
                "many": True,
            }
        ],
    }


def _record_mapping(record_type: str, facts: _Administration) -> dict[str, Any]:
    if record_type == "PERSON":
        return {
            "table": "people",
            "key": "person_id",
            "subjects": {"nino": "ni_number", "uprn": "home_uprn"},
            "fields": {
                "nino": "ni_number",
                "given_name": "forename",
                "family_name": "surname",
                "date_of_birth": "born_on",
                "uprn": "home_uprn",
                "address_line": "home.line_1",
                "postcode": "home.postcode",
            },
            "joins": [{"table": "addresses", "alias": "home", "on": {"home_uprn": "uprn"}}],
        }
    if record_type == "BENEFIT_AWARD":
        return {
            "table": "benefit_awards",
            "key": "id",
            "subjects": {"nino": "claimant_nino"},
            "fields": {
                "award_id": "award_ref",
                "nino": "claimant_nino",
                "benefit": "benefit_name",
                "weekly_amount_pence": "weekly_rate_pence",
                "start_date": "starts_on",
                "end_date": "ends_on",
                "status": "award_status",
                "administration": "administered_by",
            },
        }
    if record_type == "COUNCIL_TAX_ACCOUNT":
        return {
            "table": "council_tax_accounts",
            "key": "account_no",
            "subjects": {"uprn": "property_uprn", "nino": "liable_nino"},
            "fields": {
                "account_ref": "account_no",
                "uprn": "property_uprn",
                "liable_nino": "liable_nino",
                "liable_name": "liable_person",
                "band": "valuation_band",
                "annual_charge_pence": "annual_charge_pence",
                "arrears_pence": "arrears_pence",
                "local_authority": "billing_authority",
            },
        }
    if record_type == "HEALTH_SUMMARY":
        return _health_mapping(facts.health_subject)
    return _registration_mapping(record_type)


def demo_source_config(url: str, administration: str) -> dict[str, Any]:
    """The SQL source config (as plain data) serving the administration's demo records."""
    facts = _facts(administration)
    return {
        "kind": "sql",
        "url": url,
        "records": {rt: _record_mapping(rt, facts) for rt in facts.serves},
    }


def demo_subjects(url: str, administration: str) -> dict[str, list[tuple[str, str | int]]]:
    """A few (subject kind, value) pairs per record type that the seeded database holds."""
    config = demo_source_config(url, administration)
    found: dict[str, list[tuple[str, str | int]]] = {}
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            for record_type, mapping in config["records"].items():
                table = metadata.tables[mapping["table"]]
                found[record_type] = []
                for kind, name in mapping["subjects"].items():
                    column = table.c[name]
                    statement = (
                        select(column)
                        .where(column.is_not(None))
                        .order_by(table.c[mapping["key"]])
                        .limit(3)
                    )
                    values = connection.execute(statement).scalars()
                    found[record_type] += [(kind, value) for value in values]
    finally:
        engine.dispose()
    return found


_SCHEMA_HEADER = """\
-- Demo tables of an administration's local systems, for PostgreSQL.
--
-- Generated from the SQLAlchemy metadata in gateway/dev/demo.py; after changing that, run
--   python -m gateway.dev.demo --postgres-schema > deploy/postgres/schema.sql
-- (tests/unit/test_demo_data.py fails while the two disagree).
--
-- Seeding creates the database (with --create-database) and any missing tables itself, so
-- applying this file first is optional:
--   python -m gateway.dev.demo \\
--     --url postgresql+psycopg://postgres@127.0.0.1:5432/concordat_holyrood \\
--     --administration holyrood --create-database   # whitehall, stormont, cardiff likewise
-- deploy/postgres/holyrood.toml serves that database; docs/adapters.md says how to run it.
-- Add --bulk-rows 1000000 for a bulk extract (BENEFIT_AWARD rows).
-- Seeding is repeatable: running it again adds nothing.
"""


def postgres_schema() -> str:
    """The demo tables as PostgreSQL DDL, safe to run more than once."""
    dialect = postgresql.dialect()
    statements = []
    for table in metadata.sorted_tables:
        statements.append(CreateTable(table, if_not_exists=True).compile(dialect=dialect))
        for index in sorted(table.indexes, key=lambda i: str(i.name)):
            statements.append(CreateIndex(index, if_not_exists=True).compile(dialect=dialect))
    ddl = "".join(f"\n{str(statement).strip()};\n" for statement in statements)
    lines = (line.rstrip().replace("\t", "    ") for line in ddl.splitlines())
    return _SCHEMA_HEADER + "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m gateway.dev.demo", description="Seed an administration's demo database."
    )
    parser.add_argument("--url", help="SQLAlchemy URL of the database to seed")
    parser.add_argument("--administration", choices=ADMINISTRATIONS)
    parser.add_argument("--people", type=int, default=200)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--bulk-rows", type=int, default=0, help="extra rows for bulk extracts")
    parser.add_argument(
        "--bulk-record-type",
        choices=BULK_RECORD_TYPES,
        default="BENEFIT_AWARD",
        help="the record type of the extra rows",
    )
    parser.add_argument(
        "--create-database",
        action="store_true",
        help="create the PostgreSQL database first if it does not exist",
    )
    parser.add_argument(
        "--postgres-schema", action="store_true", help="print the PostgreSQL DDL and exit"
    )
    args = parser.parse_args(argv)
    if args.postgres_schema:
        print(postgres_schema(), end="")
        return
    if not args.url or not args.administration:
        parser.error("--url and --administration are needed to seed")
    if args.create_database:
        create_database(args.url)
    seed_demo_database(args.url, args.administration, people=args.people, seed=args.seed)
    if args.bulk_rows:
        seed_bulk(
            args.url,
            args.administration,
            args.bulk_rows,
            record_type=args.bulk_record_type,
            seed=args.seed,
        )


if __name__ == "__main__":
    main()
