-- Demo tables of an administration's local systems, for PostgreSQL.
--
-- Generated from the SQLAlchemy metadata in gateway/dev/demo.py; after changing that, run
--   python -m gateway.dev.demo --postgres-schema > deploy/postgres/schema.sql
-- (tests/unit/test_demo_data.py fails while the two disagree).
--
-- Seeding creates the database (with --create-database) and any missing tables itself, so
-- applying this file first is optional:
--   python -m gateway.dev.demo \
--     --url postgresql+psycopg://postgres@127.0.0.1:5432/concordat_holyrood \
--     --administration holyrood --create-database   # whitehall, stormont, cardiff likewise
-- deploy/postgres/holyrood.toml serves that database; docs/adapters.md says how to run it.
-- Add --bulk-rows 1000000 for a bulk extract (BENEFIT_AWARD rows).
-- Seeding is repeatable: running it again adds nothing.

CREATE TABLE IF NOT EXISTS addresses (
    uprn BIGINT NOT NULL,
    line_1 VARCHAR(200) NOT NULL,
    postcode VARCHAR(10) NOT NULL,
    PRIMARY KEY (uprn)
);

CREATE TABLE IF NOT EXISTS benefit_awards (
    id BIGINT NOT NULL,
    award_ref VARCHAR(20) NOT NULL,
    claimant_nino VARCHAR(9) NOT NULL,
    benefit_name VARCHAR(100) NOT NULL,
    weekly_rate_pence BIGINT NOT NULL,
    starts_on DATE NOT NULL,
    ends_on DATE,
    award_status VARCHAR(20) NOT NULL,
    administered_by VARCHAR(20) NOT NULL,
    PRIMARY KEY (id),
    UNIQUE (award_ref)
);

CREATE INDEX IF NOT EXISTS ix_benefit_awards_claimant_nino ON benefit_awards (claimant_nino);

CREATE TABLE IF NOT EXISTS birth_entries (
    entry_ref VARCHAR(20) NOT NULL,
    district VARCHAR(100) NOT NULL,
    forenames VARCHAR(100) NOT NULL,
    surname VARCHAR(100) NOT NULL,
    born_on DATE NOT NULL,
    birthplace VARCHAR(200),
    sex VARCHAR(10) NOT NULL,
    mother_surname VARCHAR(100),
    registered_on DATE NOT NULL,
    PRIMARY KEY (entry_ref)
);

CREATE TABLE IF NOT EXISTS council_tax_accounts (
    account_no VARCHAR(20) NOT NULL,
    property_uprn BIGINT NOT NULL,
    liable_nino VARCHAR(9),
    liable_person VARCHAR(200) NOT NULL,
    valuation_band VARCHAR(1) NOT NULL,
    annual_charge_pence BIGINT NOT NULL,
    arrears_pence BIGINT NOT NULL,
    billing_authority VARCHAR(100) NOT NULL,
    PRIMARY KEY (account_no)
);

CREATE INDEX IF NOT EXISTS ix_council_tax_accounts_liable_nino ON council_tax_accounts (liable_nino);

CREATE INDEX IF NOT EXISTS ix_council_tax_accounts_property_uprn ON council_tax_accounts (property_uprn);

CREATE TABLE IF NOT EXISTS death_entries (
    entry_ref VARCHAR(20) NOT NULL,
    district VARCHAR(100) NOT NULL,
    deceased_nino VARCHAR(9),
    forenames VARCHAR(100) NOT NULL,
    surname VARCHAR(100) NOT NULL,
    died_on DATE NOT NULL,
    place_of_death VARCHAR(200),
    cause_text VARCHAR(500),
    registered_on DATE NOT NULL,
    PRIMARY KEY (entry_ref)
);

CREATE INDEX IF NOT EXISTS ix_death_entries_deceased_nino ON death_entries (deceased_nino);

CREATE TABLE IF NOT EXISTS marriage_entries (
    entry_ref VARCHAR(20) NOT NULL,
    district VARCHAR(100) NOT NULL,
    ceremony VARCHAR(30) NOT NULL,
    party_a VARCHAR(200) NOT NULL,
    party_b VARCHAR(200) NOT NULL,
    ceremony_on DATE NOT NULL,
    venue VARCHAR(200),
    registered_on DATE NOT NULL,
    PRIMARY KEY (entry_ref)
);

CREATE TABLE IF NOT EXISTS patients (
    patient_id INTEGER NOT NULL,
    nhs_no VARCHAR(10),
    chi_no VARCHAR(10),
    hc_no VARCHAR(10),
    forename VARCHAR(100) NOT NULL,
    surname VARCHAR(100) NOT NULL,
    born_on DATE NOT NULL,
    practice_code VARCHAR(10),
    medications_json TEXT,
    allergy_list TEXT,
    reviewed_at TIMESTAMP WITHOUT TIME ZONE,
    PRIMARY KEY (patient_id),
    UNIQUE (nhs_no),
    UNIQUE (chi_no),
    UNIQUE (hc_no)
);

CREATE TABLE IF NOT EXISTS people (
    person_id INTEGER NOT NULL,
    ni_number VARCHAR(9) NOT NULL,
    forename VARCHAR(100) NOT NULL,
    surname VARCHAR(100) NOT NULL,
    born_on DATE NOT NULL,
    home_uprn BIGINT,
    PRIMARY KEY (person_id),
    UNIQUE (ni_number)
);

CREATE INDEX IF NOT EXISTS ix_people_home_uprn ON people (home_uprn);

CREATE TABLE IF NOT EXISTS patient_conditions (
    condition_id INTEGER NOT NULL,
    patient_id INTEGER NOT NULL,
    description VARCHAR(200) NOT NULL,
    PRIMARY KEY (condition_id),
    FOREIGN KEY(patient_id) REFERENCES patients (patient_id)
);

CREATE INDEX IF NOT EXISTS ix_patient_conditions_patient_id ON patient_conditions (patient_id);
