"""The local development state: keys, certificates and demo databases, made on first run.

Everything lives under one state folder (default `.state/`, git-ignored) so a fresh clone
starts with one command and `rm -rf .state` starts over.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gateway.config import ADMINISTRATIONS, NodeConfig, load_config
from gateway.dev.demo import seed_demo_database
from gateway.dev.issuer import DevIssuer
from gateway.dev.pki import NodeMaterial, ensure_node_material, ensure_signing_key
from gateway.federation.directory import write_directory
from gateway.federation.enrolment import signed_directory_entry, write_public_key

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_STATE_DIR = REPO_ROOT / ".state"
LOCAL_CONFIG_DIR = REPO_ROOT / "deploy" / "local"


def issuer_url(node: str) -> str:
    return f"https://id.{node}.concordat.test"


def audience(node: str) -> str:
    return f"concordat:{node}"


def citizen_issuer_url(node: str) -> str:
    return f"https://citizens.{node}.concordat.test"


def citizen_audience(node: str) -> str:
    return f"concordat-citizens:{node}"


def citizen_issuer(state_dir: Path, node: str) -> DevIssuer:
    """The development citizen identity provider of one administration (deploy/local's
    [citizens] reads its keys from `<state>/<node>/citizen-idp/`)."""
    return DevIssuer.load_or_create(
        state_dir / node / "citizen-idp",
        issuer=citizen_issuer_url(node),
        kid_prefix=f"{node}-citizens",
    )


@dataclass(frozen=True)
class LocalNodeState:
    node: str
    material: NodeMaterial
    issuer: DevIssuer
    demo_db: Path

    @property
    def config_path(self) -> Path:
        return LOCAL_CONFIG_DIR / f"{self.node}.toml"


def prepare_node(state_dir: Path, node: str, *, seed_demo: bool = True) -> LocalNodeState:
    """Creates whatever is missing for one node; never overwrites a key that exists."""
    material = ensure_node_material(state_dir, node)
    directory_key = state_dir / node / "directory_key.pem"
    ensure_signing_key(directory_key)
    write_public_key(directory_key, state_dir / node / "directory_public.pem")
    issuer = DevIssuer.load_or_create(material.issuer_dir, issuer=issuer_url(node), kid_prefix=node)
    citizen_issuer(state_dir, node)
    demo_db = state_dir / node / "demo.db"
    if seed_demo:
        seed_demo_database(f"sqlite:///{demo_db}", node)
    return LocalNodeState(node=node, material=material, issuer=issuer, demo_db=demo_db)


def prepare_federation(
    state_dir: Path = DEFAULT_STATE_DIR,
    *,
    config_for: Callable[[str], NodeConfig] | None = None,
    seed_demo: bool = True,
) -> dict[str, LocalNodeState]:
    """Prepares every node, then writes the directory of their signed entries.

    `config_for(node)` gives each node's configuration (default: deploy/local/<node>.toml).
    """
    states = {node: prepare_node(state_dir, node, seed_demo=seed_demo) for node in ADMINISTRATIONS}
    configs = {
        node: (config_for or (lambda n: load_config(LOCAL_CONFIG_DIR / f"{n}.toml")))(node)
        for node in ADMINISTRATIONS
    }
    first = next(iter(configs.values())).federation
    assert first is not None  # noqa: S101 - federation configs only
    write_directory(
        first.directory,
        [signed_directory_entry(config, serial=1) for config in configs.values()],
    )
    return states
