"""Hot reload through a real node: suspensions bite at once, bad bundles are refused, swaps
lose no request."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from structlog.testing import capture_logs

from gateway.dev.demo import demo_subjects
from gateway.dev.state import REPO_ROOT
from gateway.policy.reloading import LivePolicy
from gateway.testing import RunningNode, get_request, running_node

AGREEMENT = "cr-dwp-gro-deaths-2026"
FIELDS = ["registration_id", "given_name", "family_name", "date_of_death"]


@pytest.fixture
def bundle(tmp_path: Path) -> list[Path]:
    """A private copy of whitehall's bundle that a test may edit while the node runs."""
    copied = []
    for name in ("common", "whitehall"):
        target = tmp_path / "policies" / name
        shutil.copytree(REPO_ROOT / "policies" / name, target)
        copied.append(target)
    return copied


@pytest.fixture
async def node(tmp_path: Path, bundle: list[Path]) -> AsyncIterator[RunningNode]:
    async with running_node(
        tmp_path / "state",
        "whitehall",
        policy={"bundle": [str(p) for p in bundle], "reload_interval_seconds": 0.05},
    ) as running:
        yield running


def _ask(node: RunningNode) -> Any:
    kind, value = demo_subjects(f"sqlite:///{node.state.demo_db}", "whitehall")[
        "DEATH_REGISTRATION"
    ][0]
    return get_request(
        "DEATH_REGISTRATION",
        purpose="CIVIL_REGISTRATION",
        agreement_id=AGREEMENT,
        fields=FIELDS,
        **{kind: value},
    )


def _edit_register(bundle: list[Path], change: Callable[[dict[str, Any]], None]) -> None:
    path = bundle[1] / "data.json"
    data = json.loads(path.read_text())
    change(data["register"])
    _replace(path, json.dumps(data, indent=1))


def _replace(path: Path, text: str) -> None:
    # Written aside and renamed, as an operator's deploy would, so no half file is read.
    staged = path.with_suffix(".staged")
    staged.write_text(text)
    staged.replace(path)


async def _until(predicate: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {seconds}s")
        await asyncio.sleep(0.05)


def _policy(node: RunningNode) -> LivePolicy:
    assert isinstance(node.node.engine, LivePolicy)
    return node.node.engine


async def test_a_suspended_body_is_denied_on_the_next_decision_without_a_restart(
    node: RunningNode, bundle: list[Path]
) -> None:
    client = node.client(organisation="dwp")
    request = _ask(node)
    await client.get_record(request)
    before = _policy(node).revision

    def suspend(register: dict[str, Any]) -> None:
        register["bodies"]["dwp@whitehall"]["status"] = "suspended"

    _edit_register(bundle, suspend)
    started = time.monotonic()
    # Denied long before the new bundle's Rego tests have finished (they take seconds).
    denial = ""
    while not denial:
        try:
            await client.get_record(request)
        except grpc.aio.AioRpcError as exc:
            assert exc.code() == grpc.StatusCode.PERMISSION_DENIED
            denial = exc.details() or ""
        assert time.monotonic() - started < 1.5, "the suspension did not bite within 1.5 s"
        await asyncio.sleep(0.02)
    assert "common.requester_not_fit_and_proper" in denial
    # whitehall's own tests say DWP may ask, so the edited bundle fails them and is
    # refused; the suspension must stay in force all the same.
    with capture_logs() as logs:
        await _policy(node).reload()
    refusal = next(e for e in logs if e["event"] == "policy.reload_refused")
    assert "test_dwp_may_ask_gro_for_a_death_registration" in refusal["reason"]
    assert refusal["tightening_in_force"]
    with pytest.raises(grpc.aio.AioRpcError) as still:
        await client.get_record(request)
    assert still.value.code() == grpc.StatusCode.PERMISSION_DENIED
    entries = node.audit_entries()
    assert entries[0]["outcome"] == "released"
    assert entries[0]["policy_revision"] == before
    assert entries[-1]["outcome"] == "denied"
    assert entries[-1]["policy_revision"] == f"{before}+{refusal['tightening_in_force']}"


async def test_reverting_a_refused_tightening_restores_the_running_revision_alone(
    node: RunningNode, bundle: list[Path]
) -> None:
    client = node.client(organisation="dwp")
    request = _ask(node)
    before = _policy(node).revision
    data = bundle[1] / "data.json"
    original = data.read_text()

    def suspend(register: dict[str, Any]) -> None:
        register["bodies"]["dwp@whitehall"]["status"] = "suspended"

    _edit_register(bundle, suspend)
    assert await _policy(node).reload() == "refused"
    with pytest.raises(grpc.aio.AioRpcError):
        await client.get_record(request)
    _replace(data, original)
    await _until(lambda: _policy(node).revision == before, 10)
    await client.get_record(request)


async def test_a_bundle_that_does_not_compile_is_refused_and_the_running_one_stays(
    node: RunningNode, bundle: list[Path]
) -> None:
    client = node.client(organisation="dwp")
    request = _ask(node)
    revision = _policy(node).revision
    with capture_logs() as logs:
        broken = bundle[1] / "egress.rego"
        _replace(broken, broken.read_text() + "\nthis is not rego {\n")
        await _until(lambda: any(e["event"] == "policy.reload_refused" for e in logs), 60)
    refusal = next(e for e in logs if e["event"] == "policy.reload_refused")
    assert "egress.rego" in refusal["reason"]
    assert refusal["revision"] == revision
    assert _policy(node).revision == revision
    await client.get_record(request)


async def test_a_bundle_whose_own_tests_fail_is_refused(
    node: RunningNode, bundle: list[Path]
) -> None:
    revision = _policy(node).revision
    failing = bundle[1] / "zz_reload_test.rego"
    failing.write_text(
        "package concordat.tests.reload\n\nimport rego.v1\n\ntest_always_fails if false\n"
    )
    with capture_logs() as logs:
        outcome = await _policy(node).reload()
    assert outcome == "refused"
    refusal = next(e for e in logs if e["event"] == "policy.reload_refused")
    assert "test_always_fails" in refusal["reason"]
    assert _policy(node).revision == revision
    await node.client(organisation="dwp").get_record(_ask(node))


async def test_loosening_waits_for_the_tests_and_no_request_fails_during_the_swap(
    node: RunningNode, bundle: list[Path]
) -> None:
    client = node.client(organisation="dwp")
    request = _ask(node)
    before = _policy(node).revision
    failures: list[grpc.StatusCode] = []
    calls = 0
    stop = asyncio.Event()

    async def keep_calling() -> None:
        nonlocal calls
        while not stop.is_set():
            try:
                await client.get_record(request)
            except grpc.aio.AioRpcError as exc:
                failures.append(exc.code())
            calls += 1

    callers = [asyncio.create_task(keep_calling()) for _ in range(4)]
    # A module change (a new comment is enough to make a new revision) goes through the
    # whole check before it is swapped in.
    module = bundle[1] / "egress.rego"
    _replace(module, module.read_text() + "\n# reviewed 2026-11-21\n")
    await _until(lambda: _policy(node).revision != before, 60)
    await asyncio.sleep(0.2)
    stop.set()
    await asyncio.gather(*callers)
    assert failures == []
    assert calls > 20
    revisions = {e["policy_revision"] for e in node.audit_entries()}
    assert revisions == {before, _policy(node).revision}
