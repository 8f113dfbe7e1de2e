"""Minimum-necessary trimming is never silent: through a real node with the real policies,
a field the agreement does not list comes back named with the rule that withheld it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from concordat.exchange.v1 import exchange_pb2
from gateway.api.status import error_info
from gateway.dev.demo import demo_subjects
from gateway.testing import RunningNode, get_request, running_node

AGREEMENT = "cr-dwp-gro-deaths-2026"
NOT_IN_AGREEMENT = "common.field_not_in_agreement"


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[RunningNode]:
    async with running_node(tmp_path, "whitehall") as running:
        yield running


def death_registration(
    node: RunningNode, fields: list[str], **extra: str
) -> exchange_pb2.GetRecordRequest:
    kind, value = demo_subjects(f"sqlite:///{node.state.demo_db}", "whitehall")[
        "DEATH_REGISTRATION"
    ][0]
    return get_request(
        "DEATH_REGISTRATION",
        purpose="CIVIL_REGISTRATION",
        agreement_id=AGREEMENT,
        fields=fields,
        **extra,
        **{kind: value},
    )


async def test_field_the_agreement_does_not_list_is_named_with_its_rule_and_audited(
    node: RunningNode,
) -> None:
    client = node.client(organisation="dwp")
    response = await client.get_record(
        death_registration(node, ["registration_id", "date_of_death", "cause_of_death"])
    )
    await client.close()
    assert list(response.released_fields) == ["registration_id", "date_of_death"]
    assert [(w.field, w.rule) for w in response.withheld] == [("cause_of_death", NOT_IN_AGREEMENT)]
    assert response.records and not response.records[0].death_registration.cause_of_death

    [entry] = node.audit_entries()
    assert entry["outcome"] == "released"
    assert entry["fields_withheld"] == {"cause_of_death": NOT_IN_AGREEMENT}
    # Both decisions at this node withheld it, each on its own.
    assert entry["egress"]["withheld"] == {"cause_of_death": NOT_IN_AGREEMENT}
    assert entry["ingress"]["withheld"] == {"cause_of_death": NOT_IN_AGREEMENT}


async def test_a_request_for_agreed_fields_only_withholds_nothing(node: RunningNode) -> None:
    client = node.client(organisation="dwp")
    response = await client.get_record(
        death_registration(node, ["registration_id", "date_of_death"])
    )
    await client.close()
    assert list(response.withheld) == []
    assert node.audit_entries()[0]["fields_withheld"] == {}


async def test_a_replayed_answer_is_audited_with_what_the_first_withheld(
    node: RunningNode,
) -> None:
    client = node.client(organisation="dwp")
    request = death_registration(
        node, ["registration_id", "place_of_death"], idempotency_key="withheld-1"
    )
    first = await client.get_record(request)
    second = await client.get_record(request)
    await client.close()
    assert second == first
    assert [(w.field, w.rule) for w in second.withheld] == [("place_of_death", NOT_IN_AGREEMENT)]
    entries = node.audit_entries()
    assert [e["outcome"] for e in entries] == ["released", "replayed"]
    assert entries[1]["fields_withheld"] == {"place_of_death": NOT_IN_AGREEMENT}


async def test_a_denial_names_no_withheld_fields(node: RunningNode) -> None:
    client = node.client(organisation="hmrc")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await client.get_record(death_registration(node, ["registration_id", "cause_of_death"]))
    await client.close()
    assert error_info(caught.value)["rule"] == "common.requester_not_party"
    [entry] = node.audit_entries()
    assert entry["outcome"] == "denied"
    assert entry["fields_withheld"] == {}
    assert entry["egress"]["withheld"] == {}
