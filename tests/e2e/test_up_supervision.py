"""`concordat up` keeps the federation serving when one node dies, and brings that node back.

`up` runs in a copy of the checkout (tests/e2e/test_readme_commands.py says how) whose
deploy/local configs listen on free ports, so these tests run beside a developer's own
`make up` and beside the README test.
"""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.config import ADMINISTRATIONS
from tests.e2e.conftest import free_port
from tests.e2e.test_readme_commands import (
    READY,
    Up,
    copy_checkout,
    serving,
    start_in_background,
    wait_serving,
)

pytestmark = pytest.mark.slow


def _move_to_free_ports(root: Path) -> None:
    """Gives every address in the checkout's deploy/local configs a free port of its own."""
    configs = sorted((root / "deploy" / "local").glob("*.toml"))
    fixed = {m for c in configs for m in re.findall(r"127\.0\.0\.1:\d+", c.read_text())}
    moved = {address: f"127.0.0.1:{free_port()}" for address in fixed}
    for config in configs:
        config.write_text(
            re.sub(r"127\.0\.0\.1:\d+", lambda m: moved[m.group()], config.read_text())
        )


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = copy_checkout(tmp_path_factory.mktemp("supervision"))
    _move_to_free_ports(root)
    return root


@pytest.fixture(scope="module")
def up(checkout: Path) -> Iterator[Up]:
    running = Up(checkout, [".venv/bin/concordat", "up"])
    try:
        running.wait_for(READY)
        yield running
    finally:
        running.close()


def test_a_killed_node_is_reported_and_restarted_while_the_others_keep_serving(
    checkout: Path, up: Up
) -> None:
    killed = up.pids()["holyrood"]
    os.kill(killed, signal.SIGKILL)

    up.wait_for(
        rf"^holyrood \(pid {killed}\) was killed by SIGKILL \(exit code -9\)$", stream="stderr"
    )
    log = checkout / ".state" / "logs" / "holyrood.log"
    up.wait_for(rf"^  its log: {re.escape(str(log))}$", stream="stderr")
    # The report ends with the last lines the node logged before it died.
    tail = re.findall(r"^  \| (.*)$", up.stderr, re.M)
    logged = log.read_text().splitlines()
    assert 1 <= len(tail) <= 5 and tail[0] in logged, up.stderr
    start = logged.index(tail[0])
    assert logged[start : start + len(tail)] == tail
    assert all(serving(checkout, n) for n in ADMINISTRATIONS if n != "holyrood")

    up.wait_for(r"^the other nodes keep serving; restarting holyrood in 1 s$", stream="stderr")
    up.wait_for(r"^holyrood is serving again on ", timeout=60)
    assert serving(checkout, "holyrood")
    assert up.pids()["holyrood"] != killed
    assert up.process.poll() is None


def test_a_node_that_keeps_failing_is_left_stopped_with_the_command_to_start_it_by_hand(
    checkout: Path, up: Up
) -> None:
    config = checkout / "deploy" / "local" / "stormont.toml"
    good = config.read_text()
    config.write_text("this is [not a node config\n")  # every restart now fails at once
    try:
        os.kill(up.pids()["stormont"], signal.SIGKILL)
        given_up = up.wait_for(
            r"^stormont died within 30 s of each of 3 restarts in a row: not restarting it\.",
            stream="stderr",
            timeout=120,
        )
    finally:
        config.write_text(good)
    reports = re.findall(r"^stormont \(pid \d+\) (.*)$", up.stderr, re.M)
    assert reports[1:] == ["exited with code 1"] * 3, reports
    for delay in (1, 2, 4):
        assert f"restarting stormont in {delay} s" in up.stderr
    assert not (checkout / ".state" / "run" / "stormont.pid").exists()
    assert all(serving(checkout, n) for n in ADMINISTRATIONS if n != "stormont")
    assert up.process.poll() is None

    by_hand = re.search(r"^  (\S+ node --config \S+)$", up.stderr[given_up.end() :], re.M)
    assert by_hand, up.stderr
    command = by_hand.group(1)
    assert command.endswith("concordat node --config deploy/local/stormont.toml")
    stormont = start_in_background(checkout, command, checkout / "stormont-by-hand.log")
    try:
        wait_serving(checkout, "stormont")
    finally:
        stormont.send_signal(signal.SIGINT)
        assert stormont.wait(timeout=30) == 0
