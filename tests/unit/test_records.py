"""Records built from local rows: only released fields, and hostile values refused by name.

Bulk extracts build whole batches through `RecordBuilder.batch`, which hands common rows to
the protobuf runtime as they are; these tests hold it to the same checks as `build_record`.
"""

from __future__ import annotations

from collections import OrderedDict
from types import MappingProxyType
from typing import Any

import pytest

from concordat.exchange.v1 import exchange_pb2
from gateway.errors import LocalDataInvalid
from gateway.records import build_record, record_builder

AWARD_FIELDS = ("award_id", "nino", "benefit", "weekly_amount_pence", "start_date", "status")


def award(number: int, **overrides: Any) -> dict[str, Any]:
    return {
        "award_id": f"DFC-{number:09d}",
        "nino": "ZX268958C",
        "benefit": "State Pension",
        "weekly_amount_pence": 22_000 + number,
        "start_date": "2020-04-06",
        "end_date": None,
        "status": "live",
        **overrides,
    }


def batch(record_type: str, fields: tuple[str, ...], rows: list[dict[str, Any]]) -> Any:
    built = record_builder(record_type, fields).batch(rows, exchange_id="e1")
    assert built.record_bytes == sum(record.ByteSize() for record in built.response.records)
    return built.response


def test_a_batch_holds_the_same_records_as_building_each_row_alone() -> None:
    rows = [award(1), award(2, benefit=None), award(3, nino="ZX900043A", status="ended")]

    response = batch("BENEFIT_AWARD", AWARD_FIELDS, rows)

    assert list(response.records) == [build_record("BENEFIT_AWARD", r, AWARD_FIELDS) for r in rows]
    assert response.records[1].benefit_award.weekly_amount_pence == 22_002
    assert not response.records[1].benefit_award.benefit
    assert response.exchange_id == "e1"


def test_a_batch_comes_with_its_deterministic_encoding_which_a_receipt_signs() -> None:
    built = record_builder("BENEFIT_AWARD", AWARD_FIELDS).batch(
        [award(1), award(2)],
        exchange_id="e1",
        obligations=[
            exchange_pb2.Obligation(code="retain", parameters={"days": "30", "basis": "law"})
        ],
    )

    assert built.encoded == built.response.SerializeToString(deterministic=True)


def test_fields_not_released_stay_out_even_when_the_row_holds_them() -> None:
    rows = [award(1, end_date="2024-01-01", administration="DfC")]

    response = batch("BENEFIT_AWARD", ("award_id", "status"), rows)

    record = response.records[0].benefit_award
    assert record.award_id == "DFC-000000001" and record.status == "live"
    assert not record.nino and not record.end_date and not record.administration


def test_rows_that_are_not_plain_dicts_give_the_same_batch_as_plain_dicts() -> None:
    rows = [award(1), award(2, benefit=None), award(3, status="ended")]
    released = ("award_id", "benefit", "weekly_amount_pence", "status")
    mappings: list[Any] = [MappingProxyType(rows[0]), OrderedDict(rows[1]), dict(rows[2])]

    from_mappings = batch("BENEFIT_AWARD", released, mappings)
    from_dicts = batch("BENEFIT_AWARD", released, rows)

    assert from_mappings == from_dicts
    assert not from_dicts.records[0].benefit_award.nino


def test_pseudonyms_go_with_their_rows_records_in_order() -> None:
    rows = [award(1), award(2)]

    response = (
        record_builder("BENEFIT_AWARD", ("award_id",))
        .batch(rows, pseudonyms=["p-one", "p-two"])
        .response
    )

    assert [(r.pseudonym, r.benefit_award.award_id) for r in response.records] == [
        ("p-one", "DFC-000000001"),
        ("p-two", "DFC-000000002"),
    ]


def test_repeated_fields_are_built_from_lists() -> None:
    row = {"hc_number": "3334445556", "conditions": ["asthma", "migraine"]}

    response = batch("HEALTH_SUMMARY", ("hc_number", "conditions"), [row])

    assert list(response.records[0].health_summary.conditions) == ["asthma", "migraine"]


@pytest.mark.parametrize(
    ("record_type", "field", "value", "problem"),
    [
        ("BENEFIT_AWARD", "benefit", b"State Pension", "a non-text value"),
        ("BENEFIT_AWARD", "benefit", 12345, "a non-text value"),
        ("BENEFIT_AWARD", "benefit", "x" * (64 * 1024 + 1), "an oversized value"),
        ("BENEFIT_AWARD", "benefit", "\u00e9" * (64 * 1024 + 1), "an oversized value"),
        ("BENEFIT_AWARD", "benefit", "bad \ud800 text", "text that is not Unicode"),
        ("BENEFIT_AWARD", "weekly_amount_pence", True, "a non-integer value"),
        ("BENEFIT_AWARD", "weekly_amount_pence", "about forty pounds", "a non-integer value"),
        ("BENEFIT_AWARD", "weekly_amount_pence", 2**63, "an out-of-range value"),
        ("COUNCIL_TAX_ACCOUNT", "uprn", -1, "an out-of-range value"),
        ("HEALTH_SUMMARY", "conditions", "asthma", "a non-list value"),
        ("HEALTH_SUMMARY", "conditions", ["ok"] * 1001, "an oversized value"),
    ],
)
def test_a_hostile_value_in_a_batch_is_local_data_invalid_naming_the_field(
    record_type: str, field: str, value: Any, problem: str
) -> None:
    good = {"BENEFIT_AWARD": award(1)}.get(record_type, {})
    rows = [dict(good), {**good, field: value}]
    fields = (*good, field) if field not in good else tuple(good)

    with pytest.raises(LocalDataInvalid) as in_batch:
        batch(record_type, fields, rows)
    with pytest.raises(LocalDataInvalid) as alone:
        build_record(record_type, rows[1], fields)

    expected = f"the local system returned {problem} for {record_type}.{field}"
    assert str(in_batch.value) == expected
    assert str(alone.value) == expected
