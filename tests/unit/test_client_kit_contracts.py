"""The client kit speaks the node's contracts: its copy of them, its errors, its names."""

from __future__ import annotations

import ast
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import get_args

import grpc
import pytest
from concordat_client import RECORD_CLASSES, RetryPolicy, errors
from concordat_client.channel import SERVICE
from concordat_client.messages import Purpose, SubjectKind

from concordat.exchange.v1 import exchange_pb2
from gateway import errors as node_errors
from gateway.api.status import STATUS_FOR_ERROR, to_grpc_status

ROOT = Path(__file__).resolve().parents[2]
KIT = ROOT / "clients" / "python"
CONTRACTS = KIT / "src" / "concordat_client" / "contracts"


def test_the_kit_s_contracts_are_a_fresh_copy_of_the_generated_modules() -> None:
    sys.path.insert(0, str(KIT))
    try:
        from gen_contracts import expected
    finally:
        sys.path.pop(0)
    wanted = expected()
    shipped = {path.relative_to(CONTRACTS) for path in CONTRACTS.rglob("*.py*")}
    assert shipped == set(wanted), "run `python clients/python/gen_contracts.py`"
    stale = [str(path) for path, text in wanted.items() if (CONTRACTS / path).read_text() != text]
    assert not stale, f"run `python clients/python/gen_contracts.py`: stale {stale}"


def test_the_kit_never_imports_the_node_or_its_generated_package() -> None:
    offenders = {}
    for path in (KIT / "src").rglob("*.py"):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
        bad = {n for n in names if n.split(".")[0] in {"gateway", "adapters", "concordat"}}
        if bad:
            offenders[str(path.relative_to(ROOT))] = sorted(bad)
    assert not offenders


class _Failed(grpc.RpcError):
    """A failed call as grpc raises it, from a status the node's edge would send."""

    def __init__(self, status: grpc.Status | _Bare) -> None:
        self._status = status

    def code(self) -> grpc.StatusCode:
        return self._status.code

    def details(self) -> str:
        return self._status.details

    def trailing_metadata(self) -> tuple[tuple[str, str | bytes], ...]:
        return tuple(self._status.trailing_metadata)


@pytest.mark.parametrize("kind", sorted(STATUS_FOR_ERROR, key=lambda k: k.code), ids=str)
def test_each_error_of_the_node_becomes_the_kit_class_for_its_reason(
    kind: type[node_errors.ConcordatError],
) -> None:
    metadata = {"rule": "r.x", "decision_id": "d1", "agreement_id": "a1", "node": "holyrood"}
    sent = to_grpc_status(kind("it failed", metadata=metadata), "e1")
    raised = errors.from_rpc_error(_Failed(sent))
    assert type(raised).reason == kind.code
    assert raised.status == STATUS_FOR_ERROR[kind]
    assert (raised.exchange_id, raised.rule, raised.decision_id) == ("e1", "r.x", "d1")
    assert (raised.agreement_id, raised.node) == ("a1", "holyrood")
    assert raised.message == "it failed"


def test_the_kit_has_a_class_for_every_reason_and_no_other() -> None:
    assert set(errors.ERROR_FOR_REASON) == {kind.code for kind in STATUS_FOR_ERROR}


@dataclass(frozen=True)
class _Bare:
    """A status from the transport or the client itself: no ErrorInfo."""

    code: grpc.StatusCode
    details: str = "connection refused"
    trailing_metadata: tuple[tuple[str, str | bytes], ...] = ()


def test_a_status_without_the_node_s_error_info_becomes_the_class_of_its_code() -> None:
    refused = errors.from_rpc_error(_Failed(_Bare(grpc.StatusCode.UNAVAILABLE)))
    assert isinstance(refused, errors.Unavailable)
    assert refused.exchange_id == ""
    late = errors.from_rpc_error(_Failed(_Bare(grpc.StatusCode.DEADLINE_EXCEEDED)))
    assert isinstance(late, errors.DeadlineExceeded)
    assert type(errors.from_rpc_error(_Failed(_Bare(grpc.StatusCode.CANCELLED)))) is (
        errors.ExchangeError
    )


def test_the_kit_s_names_are_the_contract_s() -> None:
    record_types = {n.removeprefix("RECORD_TYPE_") for n in exchange_pb2.RecordType.keys()}
    assert set(RECORD_CLASSES) == record_types - {"UNSPECIFIED"}
    purposes = {n.removeprefix("PURPOSE_") for n in exchange_pb2.Purpose.keys()}
    assert set(get_args(Purpose)) == purposes - {"UNSPECIFIED"}
    kinds = exchange_pb2.SubjectIdentifier.DESCRIPTOR.oneofs_by_name["identifier"].fields
    assert set(get_args(SubjectKind)) == {field.name for field in kinds}


def test_the_retry_policy_is_grpc_s_service_config_for_the_exchange_api() -> None:
    config = json.loads(RetryPolicy().service_config())
    (method,) = config["methodConfig"]
    assert method["name"] == [{"service": SERVICE}]
    assert method["retryPolicy"] == {
        "maxAttempts": 5,
        "initialBackoff": "0.5s",
        "maxBackoff": "5.0s",
        "backoffMultiplier": 2.0,
        "retryableStatusCodes": ["UNAVAILABLE"],
    }
    assert "retryPolicy" not in json.loads(RetryPolicy(max_attempts=1).service_config())
    with pytest.raises(ValueError, match="gRPC's limit"):
        RetryPolicy(max_attempts=6)
