"""The REST adapter against a real HTTP server on loopback."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from adapters.base import AdapterError, SourceDataInvalid, SourceUnavailable
from adapters.mapping import SourceMisconfigured
from adapters.registry import open_source
from adapters.rest import RestSource
from tests.support.rest_server import FakeRestSystem

TOKEN = "demo-token-0f9e"

PERSON = {
    "name": {"given": "Ailsa", "family": "Drummond"},
    "born": "1961-04-02",
    "nino": "ZX123456A",
    "address": {"uprn": 900000000123, "line": "12 Mill Lane, Leeds", "postcode": "LS6 2AB"},
    "internal_risk_score": 87,
}
PATIENT = {
    "patient": {"nhs": "9990000018", "given": "Bryn"},
    "conditions": [{"label": "asthma"}, {"label": "migraine"}],
    "allergies": ["latex"],
}


@pytest.fixture
def system() -> Iterator[FakeRestSystem]:
    fake = FakeRestSystem(token=TOKEN)
    fake.routes["/api/people/ZX123456A"] = PERSON
    fake.routes["/api/patients/9990000018"] = {"items": [PATIENT]}
    with fake.running():
        yield fake


def config(base_url: str, **overrides: Any) -> dict[str, Any]:
    return {
        "kind": "rest",
        "base_url": f"{base_url}/api",
        "secret_env": "CONCORDAT_TEST_REST_SECRET",
        "timeout_seconds": 1.0,
        "retries": 2,
        "records": {
            "PERSON": {
                "path_template": "/people/{nino}",
                "subjects": {"nino": "nino"},
                "fields": {
                    "nino": "nino",
                    "given_name": "name.given",
                    "family_name": "name.family",
                    "date_of_birth": "born",
                    "uprn": "address.uprn",
                    "address_line": "address.line",
                    "postcode": "address.postcode",
                },
            },
            "HEALTH_SUMMARY": {
                "path_template": "/patients/{id}",
                "subjects": {"nhs_number": "id"},
                "list_path": "items",
                "fields": {
                    "nhs_number": "patient.nhs",
                    "given_name": "patient.given",
                    "conditions": "conditions[*].label",
                    "allergies": "allergies",
                    "medications": "medications",
                },
            },
        },
        **overrides,
    }


@pytest.fixture(autouse=True)
def secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONCORDAT_TEST_REST_SECRET", TOKEN)


@pytest.fixture
async def source(system: FakeRestSystem) -> AsyncIterator[RestSource]:
    opened = await open_source(config(system.base_url))
    assert isinstance(opened, RestSource)
    yield opened
    await opened.close()


async def test_fetch_extracts_only_the_requested_fields(source: RestSource) -> None:
    rows = await source.fetch("PERSON", "nino", "ZX123456A", ["given_name", "uprn"])

    assert rows == [{"given_name": "Ailsa", "uprn": 900000000123}]


async def test_repeated_fields_come_from_wildcard_paths_and_lists(source: RestSource) -> None:
    rows = await source.fetch(
        "HEALTH_SUMMARY", "nhs_number", "9990000018", ["conditions", "allergies", "medications"]
    )

    assert rows == [{"conditions": ["asthma", "migraine"], "allergies": ["latex"]}]


async def test_the_secret_travels_in_the_auth_header(
    source: RestSource, system: FakeRestSystem
) -> None:
    await source.fetch("PERSON", "nino", "ZX123456A", ["nino"])

    assert [seen.authorization for seen in system.seen] == [f"Bearer {TOKEN}"]


async def test_secret_can_come_from_a_file(system: FakeRestSystem, tmp_path: Path) -> None:
    secret_file = tmp_path / "rest-secret"
    secret_file.write_text(f"{TOKEN}\n")
    source = await open_source(
        config(system.base_url, secret_env=None, secret_file=str(secret_file))
    )

    rows = await source.fetch("PERSON", "nino", "ZX123456A", ["nino"])
    await source.close()

    assert rows == [{"nino": "ZX123456A"}]


async def test_a_wrong_secret_is_refused_as_unavailable(
    system: FakeRestSystem, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONCORDAT_TEST_REST_SECRET", "not-the-token")
    source = await open_source(config(system.base_url))

    with pytest.raises(SourceUnavailable, match="answered 401"):
        await source.fetch("PERSON", "nino", "ZX123456A", ["nino"])
    await source.close()


async def test_missing_secret_env_is_a_config_error(
    system: FakeRestSystem, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CONCORDAT_TEST_REST_SECRET")

    with pytest.raises(SourceMisconfigured, match="CONCORDAT_TEST_REST_SECRET"):
        await open_source(config(system.base_url))


async def test_missing_secret_file_is_a_config_error(
    system: FakeRestSystem, tmp_path: Path
) -> None:
    with pytest.raises(SourceMisconfigured, match="cannot be read"):
        await open_source(
            config(system.base_url, secret_env=None, secret_file=str(tmp_path / "absent"))
        )


async def test_503_is_retried_then_succeeds(source: RestSource, system: FakeRestSystem) -> None:
    system.fail_with(503, times=2)

    rows = await source.fetch("PERSON", "nino", "ZX123456A", ["nino"])

    assert rows == [{"nino": "ZX123456A"}]
    assert len(system.seen) == 3


async def test_503_beyond_the_retries_is_unavailable(
    source: RestSource, system: FakeRestSystem
) -> None:
    system.fail_with(503, times=3)

    with pytest.raises(SourceUnavailable, match="answered 503"):
        await source.fetch("PERSON", "nino", "ZX123456A", ["nino"])
    assert len(system.seen) == 3


async def test_500_is_unavailable_at_once_with_a_safe_message(
    source: RestSource, system: FakeRestSystem
) -> None:
    system.fail_with(500)

    with pytest.raises(SourceUnavailable) as raised:
        await source.fetch("PERSON", "nino", "ZX123456A", ["nino"])

    assert str(raised.value) == "local REST system answered 500"
    assert len(system.seen) == 1


async def test_broken_json_is_invalid_data(source: RestSource, system: FakeRestSystem) -> None:
    system.break_json()

    with pytest.raises(SourceDataInvalid, match="malformed JSON"):
        await source.fetch("PERSON", "nino", "ZX123456A", ["nino"])


async def test_a_slow_answer_times_out_as_unavailable(system: FakeRestSystem) -> None:
    source = await open_source(config(system.base_url, timeout_seconds=0.2, retries=1))
    system.delay(2.0, times=2)

    with pytest.raises(SourceUnavailable, match="timed out"):
        await source.fetch("PERSON", "nino", "ZX123456A", ["nino"])
    await source.close()

    assert len(system.seen) == 2


async def test_an_unreachable_system_is_unavailable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free_port = probe.getsockname()[1]
    source = await open_source(config(f"http://127.0.0.1:{free_port}", retries=0))

    with pytest.raises(SourceUnavailable, match="could not be reached"):
        await source.fetch("PERSON", "nino", "ZX123456A", ["nino"])
    await source.close()


async def test_unknown_subject_is_no_records(source: RestSource) -> None:
    assert await source.fetch("PERSON", "nino", "ZX999999D", ["nino"]) == []


@pytest.mark.parametrize(
    ("identifier", "segment"),
    [
        ("../../admin", "..%2F..%2Fadmin"),
        ("..", "%2E%2E"),
        ("ZX1'; DROP TABLE people; --", "ZX1%27%3B%20DROP%20TABLE%20people%3B%20--"),
        ("a?b#c", "a%3Fb%23c"),
        ("%2e%2e", "%252e%252e"),
    ],
)
async def test_identifier_metacharacters_stay_one_encoded_path_segment(
    source: RestSource, system: FakeRestSystem, identifier: str, segment: str
) -> None:
    rows = await source.fetch("PERSON", "nino", identifier, ["nino"])

    assert rows == []
    assert [seen.path for seen in system.seen] == [f"/api/people/{segment}"]


async def test_a_value_of_the_wrong_type_is_invalid_data(
    source: RestSource, system: FakeRestSystem
) -> None:
    system.routes["/api/people/ZX123456A"] = {**PERSON, "address": {"uprn": "nine"}}

    with pytest.raises(SourceDataInvalid) as raised:
        await source.fetch("PERSON", "nino", "ZX123456A", ["uprn"])

    assert str(raised.value) == "PERSON.uprn holds a value that is not an integer"


async def test_an_answer_without_its_list_is_invalid_data(
    source: RestSource, system: FakeRestSystem
) -> None:
    system.routes["/api/patients/9990000018"] = {"records": [PATIENT]}

    with pytest.raises(SourceDataInvalid, match="list_path"):
        await source.fetch("HEALTH_SUMMARY", "nhs_number", "9990000018", ["given_name"])


async def test_bulk_extract_is_refused(source: RestSource) -> None:
    with pytest.raises(AdapterError, match="not supported by the rest adapter"):
        async for _ in source.stream("PERSON", ["nino"], batch_size=100, after=None):
            pass


async def test_a_scalar_field_cannot_take_a_wildcard_path(system: FakeRestSystem) -> None:
    broken = config(system.base_url)
    broken["records"]["PERSON"]["fields"]["given_name"] = "names[*].given"

    with pytest.raises(SourceMisconfigured, match=r"PERSON\.given_name is not repeated"):
        await open_source(broken)


async def test_a_subject_must_name_the_template_placeholder(system: FakeRestSystem) -> None:
    broken = config(system.base_url)
    broken["records"]["PERSON"]["subjects"] = {"nino": "id"}

    with pytest.raises(SourceMisconfigured, match="path_template does not hold"):
        await open_source(broken)
