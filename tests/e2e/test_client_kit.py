"""The client kit (clients/python) and the guide's other clients against node processes.

Whitehall and Holyrood run as `concordat node` processes (tests/e2e/conftest.py), once for
the module. DWP at Whitehall asks Holyrood for Scottish registrations; ADR Scotland at
Holyrood extracts research benefit awards from Holyrood itself, so killing Holyrood cuts a
stream at the node that provides it. Every test leaves both nodes serving.
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from concordat_client import (
    AsyncClient,
    BenefitAward,
    BirthRegistration,
    Client,
    DeadlineExceeded,
    MarriageRegistration,
    PolicyDenied,
    RetryPolicy,
    Subject,
    Unavailable,
)

from gateway.dev.state import REPO_ROOT, audience
from gateway.testing import read_audit
from tests.e2e.conftest import Federation, build_federation

pytestmark = pytest.mark.slow

GUIDE = REPO_ROOT / "docs" / "departmental-developers.md"
BIN = Path(sys.executable).parent
BIRTH = Subject("registration_id", "SC-B-1931-000037")
BIRTH_FIELDS = ["registration_id", "given_name", "date_of_birth"]
# ADR Scotland's research extract: the identifying nino is withheld, records are pseudonymised.
RESEARCH = {
    "purpose": "RESEARCH",
    "agreement_id": "research-adrs-sss-benefits-2026",
    "fields": ["nino", "benefit", "weekly_amount_pence", "start_date"],
}


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    running = build_federation(tmp_path_factory.mktemp("client-kit"))
    try:
        running.start_many(["whitehall", "holyrood"])
        yield running
    finally:
        running.stop_all()


def _minter(
    federation: Federation, node: str, organisation: str, accreditations: tuple[str, ...] = ()
) -> Callable[[], str]:
    issuer = federation.states[node].issuer
    return lambda: issuer.mint(
        audience=audience(node),
        organisation=organisation,
        system="client-kit",
        accreditations=accreditations,
    )


def dwp_at_whitehall(federation: Federation) -> Client:
    return Client(
        federation.address("whitehall"),
        ca_cert=federation.states["whitehall"].material.ca_cert,
        token=_minter(federation, "whitehall", "dwp"),
    )


def researcher_at_holyrood(federation: Federation, kind: type[Any] = Client) -> Any:
    return kind(
        federation.address("holyrood"),
        ca_cert=federation.states["holyrood"].material.ca_cert,
        token=_minter(federation, "holyrood", "adr-scotland", ("accredited-researcher",)),
    )


def token_command(federation: Federation, node: str, organisation: str, *extra: str) -> str:
    """`concordat token` for a caller, as the guide gives it, on this federation's state."""
    return (
        f"{BIN / 'concordat'} token --node {node} --organisation {organisation} "
        f"--system client-kit --state-dir {federation.state_dir} {' '.join(extra)}"
    )


def _restart_soon(federation: Federation, node: str, delay: float) -> threading.Thread:
    thread = threading.Thread(target=lambda: (time.sleep(delay), federation.start(node)))
    thread.start()
    return thread


def _ensure_running(federation: Federation, node: str) -> None:
    if node not in federation.processes:
        federation.start(node)


# --- errors, retries, resumption ----------------------------------------------------------------


async def test_a_denial_raises_policy_denied_with_its_rule_deciding_node_and_decision(
    federation: Federation,
) -> None:
    asked = {
        "purpose": "CIVIL_REGISTRATION",
        "agreement_id": "cr-dwp-nrs-marriages-2026",
        "fields": ["registration_id", "date_of_ceremony"],
    }
    marriage = Subject("registration_id", "SC-M-1999-000011")
    with dwp_at_whitehall(federation) as client, pytest.raises(PolicyDenied) as sync_denial:
        client.get_record(MarriageRegistration, marriage, **asked)
    async with AsyncClient(
        federation.address("whitehall"),
        ca_cert=federation.states["whitehall"].material.ca_cert,
        token=_minter(federation, "whitehall", "dwp"),
    ) as aclient:
        with pytest.raises(PolicyDenied) as async_denial:
            await aclient.get_record(MarriageRegistration, marriage, **asked)
    for denial in (sync_denial.value, async_denial.value):
        # Whitehall let the request go; Holyrood never agreed to the agreement.
        assert (denial.rule, denial.node, denial.agreement_id) == (
            "common.agreement_unknown",
            "holyrood",
            "cr-dwp-nrs-marriages-2026",
        )
        assert denial.status.name == "PERMISSION_DENIED"
        assert denial.decision_id and denial.exchange_id
        assert "common.agreement_unknown" in str(denial)
    audited = {e["exchange_id"] for e in read_audit(federation.audit_path("whitehall"))}
    assert {sync_denial.value.exchange_id, async_denial.value.exchange_id} <= audited


def test_an_unavailable_peer_is_retried_within_the_deadline_until_it_answers(
    federation: Federation,
) -> None:
    federation.kill("holyrood")
    try:
        with dwp_at_whitehall(federation) as client, ThreadPoolExecutor(1) as pool:
            call = pool.submit(
                client.get_record,
                BirthRegistration,
                BIRTH,
                purpose="CIVIL_REGISTRATION",
                agreement_id="cr-dwp-nrs-births-2026",
                fields=BIRTH_FIELDS,
                case_reference="kit-retry",
                timeout=30,
            )
            # Holyrood comes back once Whitehall has answered a first attempt UNAVAILABLE.
            deadline = time.monotonic() + 10
            while not _attempts(federation, "kit-retry") and time.monotonic() < deadline:
                time.sleep(0.05)
            federation.start("holyrood")
            release = call.result(timeout=40)
    finally:
        _ensure_running(federation, "holyrood")
    assert release.records[0].registration_id == "SC-B-1931-000037"
    assert release.records[0].given_name
    attempts = _attempts(federation, "kit-retry")
    # Each attempt is an exchange of its own, with a token of its own (a replayed one would be
    # refused): the early ones failed at Whitehall, the last one was released.
    assert len(attempts) >= 2
    assert attempts[-1] == "released"
    assert "released" not in attempts[:-1]


def _attempts(federation: Federation, case_reference: str) -> list[str]:
    return [
        entry["outcome"]
        for entry in read_audit(federation.audit_path("whitehall"))
        if entry["case_reference"] == case_reference
    ]


def _rows(batches: Any) -> list[tuple[str, str, int, str]]:
    return [
        (pseudonym, award.benefit, award.weekly_amount_pence, award.start_date)
        for batch in batches
        for award, pseudonym in zip(batch.records, batch.pseudonyms, strict=True)
    ]


@pytest.fixture(scope="module")
def whole_extract(federation: Federation) -> list[tuple[str, str, int, str]]:
    with researcher_at_holyrood(federation) as client:
        return _rows(client.stream_records(BenefitAward, batch_size=10, **RESEARCH))


def test_a_stream_cut_by_the_providing_node_restarting_resumes_with_no_gap_or_duplicate(
    federation: Federation, whole_extract: list[tuple[str, str, int, str]]
) -> None:
    batches = []
    restart = None
    try:
        with researcher_at_holyrood(federation) as client:
            for index, batch in enumerate(
                client.stream_records(BenefitAward, batch_size=10, **RESEARCH)
            ):
                batches.append(batch)
                if index == 2:
                    federation.kill("holyrood")
                    restart = _restart_soon(federation, "holyrood", 0.3)
    finally:
        if restart is not None:
            restart.join()
        _ensure_running(federation, "holyrood")
    assert len(whole_extract) > 30
    assert _rows(batches) == whole_extract
    _assert_resumed(batches)


async def test_an_async_stream_cut_the_same_way_resumes_the_same_way(
    federation: Federation, whole_extract: list[tuple[str, str, int, str]]
) -> None:
    batches = []
    restart = None
    try:
        async with researcher_at_holyrood(federation, AsyncClient) as client:
            async for batch in client.stream_records(BenefitAward, batch_size=10, **RESEARCH):
                batches.append(batch)
                if len(batches) == 3:
                    federation.kill("holyrood")
                    restart = _restart_soon(federation, "holyrood", 0.3)
    finally:
        if restart is not None:
            await asyncio.to_thread(restart.join)
        _ensure_running(federation, "holyrood")
    assert _rows(batches) == whole_extract
    _assert_resumed(batches)


def _assert_resumed(batches: list[Any]) -> None:
    exchanges = list(dict.fromkeys(batch.exchange_id for batch in batches))
    assert len(exchanges) >= 2, "the stream was never cut"
    # The first batch of each exchange says what its decisions released, and they agree.
    firsts = [next(b for b in batches if b.exchange_id == e) for e in exchanges]
    assert all(first.decisions is not None for first in firsts)
    assert {first.decisions.released_fields for first in firsts} == {
        ("benefit", "weekly_amount_pence", "start_date")
    }


def test_a_node_that_stays_down_ends_unavailable_after_the_attempts_or_at_the_deadline(
    federation: Federation,
) -> None:
    nobody = f"127.0.0.1:{_free_port()}"
    ca_cert = federation.states["whitehall"].material.ca_cert
    token = _minter(federation, "whitehall", "dwp")
    asked = {
        "purpose": "CIVIL_REGISTRATION",
        "agreement_id": "cr-dwp-nrs-births-2026",
        "fields": BIRTH_FIELDS,
    }
    patient = RetryPolicy(max_attempts=3, initial_backoff=0.1, max_backoff=0.2)
    with Client(nobody, ca_cert=ca_cert, token=token, retry=patient) as client:
        # Unavailable, not DeadlineExceeded: the attempts ran out well inside the 30 s deadline.
        with pytest.raises(Unavailable):
            client.get_record(BirthRegistration, BIRTH, timeout=30, **asked)
    # The deadline bounds the retries: it ends the call while the default policy still waits.
    with Client(nobody, ca_cert=ca_cert, token=token) as client:
        with pytest.raises(DeadlineExceeded):
            client.get_record(BirthRegistration, BIRTH, timeout=1, **asked)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- concordat extract --------------------------------------------------------------------------


class StallingProxy:
    """A TCP proxy in front of a node that stops passing the node's bytes on after `budget`
    of them, as a stalled network does (TLS passes through untouched)."""

    def __init__(self, upstream: str) -> None:
        host, port = upstream.rsplit(":", 1)
        self._upstream = (host, int(port))
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self.budget: int | None = None
        self.passed = 0
        self.stalled = threading.Event()
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                caller, _ = self._listener.accept()
            except OSError:
                return
            try:
                node = socket.create_connection(self._upstream)
            except OSError:
                caller.close()  # the node is down: so is the connection through the proxy
                continue
            self._sockets += [caller, node]
            for source, sink, from_node in ((caller, node, False), (node, caller, True)):
                threading.Thread(
                    target=self._pump, args=(source, sink, from_node), daemon=True
                ).start()

    def _pump(self, source: socket.socket, sink: socket.socket, from_node: bool) -> None:
        try:
            while data := source.recv(65536):
                if from_node and self.budget is not None:
                    if self.passed + len(data) > self.budget:
                        sink.sendall(data[: self.budget - self.passed])
                        self.passed = self.budget
                        self.stalled.set()
                        return  # the connection stays open and silent
                if from_node:
                    self.passed += len(data)
                sink.sendall(data)
        except OSError:
            return
        for end in (source, sink):
            end.close()

    def close(self) -> None:
        self._listener.close()
        for end in self._sockets:
            end.close()


def _extract_command(federation: Federation, proxy: StallingProxy, out: Path) -> list[str]:
    """The guide's extract as `concordat-extract`, in batches of 5 (the guide's are the node's
    default, larger than this extract), so the network can stall between two of them."""
    return [
        str(BIN / "concordat-extract"),
        str(out),
        "--target",
        proxy.address,
        "--ca-cert",
        str(federation.states["holyrood"].material.ca_cert),
        "--token-command",
        token_command(
            federation,
            "holyrood",
            "adr-scotland",
            "--accreditation",
            "accredited-researcher",
        ),
        "--record-type",
        "BENEFIT_AWARD",
        "--purpose",
        "RESEARCH",
        "--agreement",
        RESEARCH["agreement_id"],
        "--fields",
        ",".join(RESEARCH["fields"]),
        "--batch-size",
        "5",
    ]


def test_an_extract_killed_mid_way_and_run_again_writes_the_file_of_an_uninterrupted_run(
    federation: Federation, tmp_path: Path
) -> None:
    assert (BIN / "concordat-extract").exists(), "the kit is not installed: `make setup` does"
    proxy = StallingProxy(federation.address("holyrood"))
    try:
        # The guide's `concordat extract`, uninterrupted, counting the bytes the node sends.
        (guide_command,) = _guide_commands(".venv/bin/concordat extract")
        done = subprocess.run(
            ["sh", "-c", _on_this_federation(federation, guide_command, holyrood=proxy.address)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        whole = tmp_path / "awards.csv"
        # The same extract: the network stalls half way, then the process is killed.
        proxy.budget, proxy.passed = proxy.passed // 2, 0
        out = tmp_path / "extract.csv"
        command = _extract_command(federation, proxy, out)
        killed = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            sidecar = out.with_name("extract.csv.resume")
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not (
                proxy.stalled.is_set() and _written(sidecar) > 0
            ):
                time.sleep(0.02)
        finally:
            killed.send_signal(signal.SIGKILL)
            killed.communicate(timeout=30)
        assert 0 < _written(sidecar) < _records(whole)
        # The same command again carries on where the file ends.
        proxy.budget = None
        again = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    finally:
        proxy.close()
    assert again.returncode == 0, again.stderr
    assert "resuming" in again.stderr
    assert out.read_bytes() == whole.read_bytes()
    assert not sidecar.exists()
    first, resumed = (
        json.loads(path.with_name(path.name + ".summary.json").read_text()) for path in (whole, out)
    )
    assert resumed["records"] == first["records"] == _records(whole)
    assert len(resumed["exchanges"]) == 2
    for key in ("columns", "released_fields", "withheld", "obligations"):
        assert resumed[key] == first[key], key
    assert first["withheld"] == [{"field": "nino", "rule": "common.research_identifying_field"}]
    assert "retain-max-days" in {o["code"] for o in first["obligations"]}
    # The summary is printed too: released, withheld and the obligations.
    flat = " ".join(again.stderr.split())
    assert "withheld: nino (common.research_identifying_field)" in flat
    assert "retain-max-days days=730" in flat


def _written(sidecar: Path) -> int:
    try:
        return int(json.loads(sidecar.read_text())["records"])
    except (OSError, ValueError):
        return 0


def _records(path: Path) -> int:
    with path.open(newline="") as file:
        return sum(1 for _ in csv.reader(file)) - 1


# --- the guide's examples -----------------------------------------------------------------------


def _guide_blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", GUIDE.read_text(), re.M | re.S)


def _on_this_federation(federation: Federation, text: str, *, holyrood: str = "") -> str:
    """A command of the guide, aimed at this test's nodes instead of `make up`'s."""
    for node, port in (("whitehall", 7401), ("holyrood", 7402)):
        address = holyrood if node == "holyrood" and holyrood else federation.address(node)
        text = text.replace(f"127.0.0.1:{port}", address).replace(
            f".state/{node}/ca.pem", str(federation.states[node].material.ca_cert)
        )
    text = text.replace(
        "--system my-system", f"--system my-system --state-dir {federation.state_dir}"
    )
    return text.replace(".venv/bin/", f"{BIN}/")


def _example_env(federation: Federation) -> dict[str, str]:
    return {
        **os.environ,
        "CONCORDAT_TARGET": federation.address("whitehall"),
        "CONCORDAT_CA_CERT": str(federation.states["whitehall"].material.ca_cert),
        "CONCORDAT_TOKEN_COMMAND": token_command(federation, "whitehall", "dwp"),
    }


def _assert_the_birth(output: str) -> None:
    assert "SC-B-1931-000037" in output
    assert re.search(r"1931-\d\d-\d\d", output), output


def test_the_guide_shows_its_python_and_node_examples_as_committed() -> None:
    examples = {
        "python": REPO_ROOT / "clients" / "python" / "examples" / "get_record.py",
        "js": REPO_ROOT / "clients" / "node" / "get-record.js",
    }
    for language, path in examples.items():
        assert path.read_text() in _guide_blocks(language), f"{GUIDE} shows {path} otherwise"


def test_the_guide_s_python_example_gets_the_record(federation: Federation) -> None:
    example = REPO_ROOT / "clients" / "python" / "examples" / "get_record.py"
    done = subprocess.run(
        [sys.executable, str(example)],
        env=_example_env(federation),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    _assert_the_birth(done.stdout)
    assert "from holyrood" in done.stdout


def _node_modules() -> Path:
    """@grpc/grpc-js and @grpc/proto-loader as clients/node's lock file pins them, installed
    once into .tools/node (outside the tree the README test copies)."""
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("Node.js and npm are needed for the guide's Node.js example")
        pytest.skip("Node.js and npm are not installed")
    cache = REPO_ROOT / ".tools" / "node"
    cache.mkdir(parents=True, exist_ok=True)
    lock = (REPO_ROOT / "clients" / "node" / "package-lock.json").read_text()
    installed = cache / "node_modules" / ".package-lock.json"
    if (cache / "package-lock.json").exists() and installed.exists():
        if (cache / "package-lock.json").read_text() == lock:
            return cache / "node_modules"
    for name in ("package.json", "package-lock.json"):
        shutil.copyfile(REPO_ROOT / "clients" / "node" / name, cache / name)
    done = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund"],
        cwd=cache,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return cache / "node_modules"


def test_the_guide_s_node_example_gets_the_record_with_grpc_js_and_the_protos(
    federation: Federation,
) -> None:
    modules = _node_modules()
    done = subprocess.run(
        ["node", str(REPO_ROOT / "clients" / "node" / "get-record.js")],
        env={**_example_env(federation), "NODE_PATH": str(modules)},
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    _assert_the_birth(done.stdout)
    assert "from holyrood" in done.stdout


def _guide_commands(program: str) -> list[str]:
    commands = [block for block in _guide_blocks("sh") if block.startswith(program)]
    assert commands, f"the guide shows no {program} command"
    return commands


def test_the_guide_s_buf_curl_call_gets_the_record_by_reflection(federation: Federation) -> None:
    for command in _guide_commands(".venv/bin/buf curl"):
        done = subprocess.run(
            ["sh", "-c", _on_this_federation(federation, command)],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        if "GetRecord" in command:
            _assert_the_birth(done.stdout)


def test_the_guide_s_grpcurl_call_gets_the_record_by_reflection(federation: Federation) -> None:
    if not (REPO_ROOT / ".tools" / "bin" / "grpcurl").exists():
        if os.environ.get("CI") == "true":
            pytest.fail("grpcurl is missing: scripts/setup_services.sh builds it")
        pytest.skip("grpcurl is not built (scripts/setup_services.sh builds it)")
    for command in _guide_commands(".tools/bin/grpcurl"):
        done = subprocess.run(
            ["sh", "-c", _on_this_federation(federation, command)],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        _assert_the_birth(done.stdout)
