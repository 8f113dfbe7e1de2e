"""Log lines: JSON with sorted keys, and logging never fails the request that logs."""

from __future__ import annotations

import io
import json

import structlog

from gateway.logs import configure_logging, json_line


def test_a_line_is_json_with_its_keys_sorted() -> None:
    line = json_line({"seq": 3, "event": "audit", "outcome": "released", "name": "Siân"})
    assert line.decode().startswith('{"event":"audit","name":"Siân","outcome"')
    assert json.loads(line) == {"seq": 3, "event": "audit", "outcome": "released", "name": "Siân"}


def test_values_orjson_refuses_are_still_logged() -> None:
    assert json.loads(json_line({"big": 2**70, "event": "x"})) == {"big": 2**70, "event": "x"}
    assert json.loads(json_line({7: "key that is not text", "event": "x"})) == {
        "7": "key that is not text",
        "event": "x",
    }


def test_a_line_no_encoder_can_write_still_names_its_event() -> None:
    line = json.loads(json_line({"event": "audit", "level": "info", 7: 2**70}))
    assert line == {
        "event": "audit",
        "level": "info",
        "log_error": "a value in this line could not be encoded",
    }


def test_an_object_json_cannot_hold_is_logged_as_its_repr() -> None:
    class Opaque:
        def __repr__(self) -> str:
            return "<opaque>"

    assert json.loads(json_line({"value": Opaque()})) == {"value": "<opaque>"}


def test_configured_logger_writes_one_json_line_per_event_to_the_sink() -> None:
    previous = structlog.get_config()
    sink = io.BytesIO()
    try:
        configure_logging("INFO", sink=sink)
        structlog.configure(cache_logger_on_first_use=False)
        logger = structlog.get_logger("test")
        logger.info("audit", seq=1)
        logger.debug("hidden", seq=2)
        logger.warning("refused", why=2**70)
    finally:
        structlog.configure(**previous)
    lines = [json.loads(line) for line in sink.getvalue().splitlines()]
    assert [(line["event"], line["level"]) for line in lines] == [
        ("audit", "info"),
        ("refused", "warning"),
    ]
    assert lines[1]["why"] == 2**70
