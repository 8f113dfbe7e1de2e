"""The node's two keyed-hash keys: each required, at least 32 bytes, and never the same key."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.config import ConfigError, parse_config
from gateway.dev.state import LocalNodeState, prepare_node
from gateway.node import build_node
from gateway.testing import node_config_dict


@pytest.fixture
def state(tmp_path: Path) -> LocalNodeState:
    return prepare_node(tmp_path, "whitehall", seed_demo=False)


def config_with_keys(state: LocalNodeState, tmp_path: Path, **keys: Any) -> dict[str, Any]:
    config = node_config_dict(state, tmp_path)
    config["keys"] = {k: v for k, v in {**config["keys"], **keys}.items() if v is not None}
    return config


def test_a_config_without_a_pseudonym_key_is_refused_naming_the_setting(
    state: LocalNodeState, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match=r"keys\.pseudonym_key: Field required"):
        parse_config(config_with_keys(state, tmp_path, pseudonym_key=None), base=tmp_path)


def test_the_subject_hash_key_file_cannot_double_as_the_pseudonym_key(
    state: LocalNodeState, tmp_path: Path
) -> None:
    same = str(state.material.subject_hash_key)
    with pytest.raises(ConfigError, match="pseudonym_key must be its own file"):
        parse_config(config_with_keys(state, tmp_path, pseudonym_key=same), base=tmp_path)


def _write(content: bytes) -> Callable[[Path, LocalNodeState], Path]:
    def write(folder: Path, _: LocalNodeState) -> Path:
        path = folder / "key"
        path.write_bytes(content)
        return path

    return write


def _copy_of_subject_hash_key(folder: Path, state: LocalNodeState) -> Path:
    path = folder / "key"
    path.write_bytes(state.material.subject_hash_key.read_bytes())
    return path


@pytest.mark.parametrize(
    ("setting", "make", "message"),
    [
        ("pseudonym_key", lambda folder, _: folder / "absent.key", "cannot be read"),
        ("pseudonym_key", _write(b""), "holds 0 bytes; it needs at least 32"),
        ("pseudonym_key", _write(b"k" * 31), "holds 31 bytes; it needs at least 32"),
        ("subject_hash_key", _write(b"k" * 16), "holds 16 bytes; it needs at least 32"),
        ("pseudonym_key", _copy_of_subject_hash_key, "the same key as keys.subject_hash_key"),
    ],
    ids=["missing", "empty", "short", "short subject hash key", "a copy of the subject hash key"],
)
async def test_a_node_refuses_to_start_with_an_unusable_hash_key(
    state: LocalNodeState,
    tmp_path: Path,
    setting: str,
    make: Callable[[Path, LocalNodeState], Path],
    message: str,
) -> None:
    key = make(tmp_path, state)
    config = parse_config(config_with_keys(state, tmp_path, **{setting: str(key)}), base=tmp_path)
    with pytest.raises(ConfigError, match=f"keys.{setting}: .*{message}"):
        await build_node(config)
