"""grpcurl and buf curl, third-party gRPC clients, call a real node as a developer would.

The node runs in this test's event loop, so each tool runs as an asyncio subprocess while the
node keeps serving. grpcurl finds the schema by server reflection; buf curl by reflection for
the health check and from `proto/` (`--schema proto`) for GetRecord. Each call carries a
token of its own in `authorization: Bearer`: tokens are single use for these clients too.

grpcurl is the pinned build in `.tools/bin` (scripts/setup_services.sh tools), buf comes with
the Python environment (PyPI buf-bin). A missing tool skips these tests, except under
CI=true, where it fails them.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from google.rpc import error_details_pb2

from gateway.testing import RunningNode

ROOT = Path(__file__).resolve().parents[2]
SERVICE = "concordat.exchange.v1.ExchangeService"


def _tool(name: str, pinned: Path, installed_by: str) -> str:
    if pinned.is_file() and os.access(pinned, os.X_OK):
        return str(pinned)
    found = shutil.which(name)
    if found:
        return found
    why = f"{name} is not installed at {pinned} ({installed_by} installs it)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{why}; under CI every third-party client must run")
    pytest.skip(f"{why} (CI is not 'true')")


@pytest.fixture
def grpcurl() -> str:
    return _tool("grpcurl", ROOT / ".tools" / "bin" / "grpcurl", "scripts/setup_services.sh tools")


@pytest.fixture
def buf() -> str:
    return _tool("buf", Path(sys.executable).parent / "buf", "pip install -e .[dev]")


@dataclass(frozen=True)
class Answer:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)

    def error(self) -> Any:
        """The status both tools print as JSON on stderr when a call fails."""
        return json.loads(self.stderr)


async def run(*argv: str) -> Answer:
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return Answer(process.returncode, stdout.decode(), stderr.decode())


def ask(nino: str, agreement_id: str, field_mask: object) -> str:
    """A GetRecordRequest in JSON, as a developer would type it."""
    return json.dumps(
        {
            "recordType": "RECORD_TYPE_PERSON",
            "subject": {"nino": nino},
            "purpose": "PURPOSE_FRAUD",
            "agreementId": agreement_id,
            "fieldMask": field_mask,
        }
    )


def grpcurl_call(grpcurl: str, node: RunningNode, *flags: str) -> list[str]:
    bearer = node.token(organisation="dwp")
    return [
        grpcurl,
        "-cacert",
        str(node.config.tls.ca_cert),
        "-H",
        f"authorization: Bearer {bearer}",
        *flags,
        node.node.address,
    ]


def buf_call(buf: str, node: RunningNode, method: str, *flags: str) -> list[str]:
    return [
        buf,
        "curl",
        "--protocol",
        "grpc",
        "--cacert",
        str(node.config.tls.ca_cert),
        *flags,
        f"https://{node.node.address}/{method}",
    ]


# grpcurl reads a FieldMask only as a message ({"paths": [...]}); buf curl only in the
# canonical JSON form, one string of lowerCamelCase paths. Each gets the form it reads.
GRPCURL_FIELDS = {"paths": ["nino", "given_name", "date_of_birth"]}
BUF_FIELDS = "nino,givenName,dateOfBirth"


async def test_grpcurl_lists_and_describes_the_exchange_api_by_reflection(
    node: RunningNode, grpcurl: str
) -> None:
    ca = str(node.config.tls.ca_cert)
    listed = await run(grpcurl, "-cacert", ca, node.node.address, "list")
    assert listed.code == 0, listed.stderr
    assert {SERVICE, "grpc.health.v1.Health"} <= set(listed.stdout.split())

    described = await run(grpcurl, "-cacert", ca, node.node.address, "describe", SERVICE)
    assert described.code == 0, described.stderr
    assert "rpc GetRecord ( .concordat.exchange.v1.GetRecordRequest )" in described.stdout
    assert "returns ( stream .concordat.exchange.v1.StreamRecordsResponse )" in described.stdout


async def test_grpcurl_gets_a_record_with_only_the_released_fields(
    node: RunningNode, grpcurl: str, people: list[dict[str, object]]
) -> None:
    nino = str(people[3]["nino"])
    answer = await run(
        *grpcurl_call(grpcurl, node, "-d", ask(nino, "TEST-FRAUD-1", GRPCURL_FIELDS)),
        f"{SERVICE}/GetRecord",
    )
    assert answer.code == 0, answer.stderr
    reply = answer.json()
    assert reply["records"] == [{"person": {"nino": nino, "given_name": "Given3"}}]
    assert reply["released_fields"] == ["nino", "given_name"]
    assert {o["code"] for o in reply["obligations"]} == {"no-onward-disclosure", "retain-max-days"}
    assert reply["egress_decision_id"] and reply["ingress_decision_id"]


async def test_grpcurl_sees_a_denial_as_permission_denied_with_its_error_info(
    node: RunningNode, grpcurl: str, people: list[dict[str, object]]
) -> None:
    request = ask(str(people[0]["nino"]), "TEST-SUSPENDED", GRPCURL_FIELDS)
    answer = await run(
        *grpcurl_call(grpcurl, node, "-format-error", "-d", request), f"{SERVICE}/GetRecord"
    )
    # grpcurl exits with 64 plus the status code: PERMISSION_DENIED is 7.
    assert answer.code == 64 + 7, answer.stderr
    status = answer.error()
    assert status["code"] == 7
    [info] = status["details"]
    assert info["@type"] == "type.googleapis.com/google.rpc.ErrorInfo"
    assert info["reason"] == "policy-denied"
    assert info["metadata"]["rule"] == "test.ingress.agreement_suspended"
    assert info["metadata"]["agreement_id"] == "TEST-SUSPENDED"
    assert info["metadata"]["node"] == "whitehall"


async def test_buf_curl_health_check_says_serving_by_reflection(
    node: RunningNode, buf: str
) -> None:
    answer = await run(*buf_call(buf, node, "grpc.health.v1.Health/Check"))
    assert answer.code == 0, answer.stderr
    assert answer.json() == {"status": "SERVING"}


async def test_buf_curl_gets_a_record_with_the_schema_from_proto(
    node: RunningNode, buf: str, people: list[dict[str, object]]
) -> None:
    nino = str(people[3]["nino"])
    answer = await run(
        *buf_call(
            buf,
            node,
            f"{SERVICE}/GetRecord",
            "--schema",
            str(ROOT / "proto"),
            "-H",
            f"authorization: Bearer {node.token(organisation='dwp')}",
            "-d",
            ask(nino, "TEST-FRAUD-1", BUF_FIELDS),
        )
    )
    assert answer.code == 0, answer.stderr
    reply = answer.json()
    assert reply["records"] == [{"person": {"nino": nino, "givenName": "Given3"}}]
    assert reply["releasedFields"] == ["nino", "given_name"]
    assert reply["providerNode"] == "whitehall"


async def test_buf_curl_sees_a_denial_and_a_replayed_token_with_their_error_info(
    node: RunningNode, buf: str, people: list[dict[str, object]]
) -> None:
    bearer = node.token(organisation="dwp")
    call = buf_call(
        buf,
        node,
        f"{SERVICE}/GetRecord",
        "-H",
        f"authorization: Bearer {bearer}",
        "-d",
        ask(str(people[0]["nino"]), "TEST-SUSPENDED", BUF_FIELDS),
    )
    denied = await run(*call)
    assert denied.code != 0
    status = denied.error()
    assert status["code"] == "permission_denied"
    assert _error_info(status).reason == "policy-denied"
    assert _error_info(status).metadata["rule"] == "test.ingress.agreement_suspended"

    replayed = await run(*call)
    assert replayed.code != 0
    status = replayed.error()
    assert status["code"] == "unauthenticated"
    assert _error_info(status).reason == "unauthenticated"


def _error_info(status: dict[str, Any]) -> error_details_pb2.ErrorInfo:
    """buf curl prints a detail it has no schema for as its type and base64 bytes."""
    [detail] = status["details"]
    assert detail["type"] == "google.rpc.ErrorInfo"
    encoded = detail["value"]
    return error_details_pb2.ErrorInfo.FromString(
        # Unpadded; either alphabet is read.
        base64.b64decode(encoded + "=" * (-len(encoded) % 4), altchars=b"-_")
    )
