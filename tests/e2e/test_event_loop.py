"""`[node] event_loop`: a node runs on uvloop by default, or on the standard library's loop."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from gateway.config import ConfigError, parse_config
from tests.e2e.conftest import _wait_serving, build_federation


@pytest.mark.parametrize(
    ("setting", "expected"), [(None, "uvloop"), ("asyncio", "asyncio"), ("uvloop", "uvloop")]
)
def test_a_node_serves_on_the_loop_its_configuration_names_and_stops_cleanly(
    tmp_path: Path, setting: str | None, expected: str
) -> None:
    federation = build_federation(tmp_path)
    config = federation.configs["whitehall"]
    if setting is not None:
        config["node"]["event_loop"] = setting
    federation.config_path("whitehall").write_text(json.dumps(config))
    federation.start("whitehall")
    try:
        _wait_serving(
            federation.address("whitehall"), federation.states["whitehall"].material.ca_cert
        )
    finally:
        process = federation.processes.pop("whitehall")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    started = [
        json.loads(line)
        for line in (tmp_path / "whitehall.log").read_text().splitlines()
        if '"node_started"' in line
    ]
    assert [line["event_loop"] for line in started] == [expected]


def test_an_unknown_event_loop_is_refused_with_the_setting_named(tmp_path: Path) -> None:
    federation = build_federation(tmp_path)
    config = federation.configs["whitehall"]
    config["node"]["event_loop"] = "trio"
    with pytest.raises(ConfigError, match="event_loop"):
        parse_config(config, base=tmp_path)
