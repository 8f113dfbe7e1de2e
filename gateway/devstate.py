"""The local development state: keys, certificates and demo databases, made on first run.

Everything lives under one state folder (default `.state/`, git-ignored) so a fresh clone
starts with one command and `rm -rf .state` starts over.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gateway.config import ADMINISTRATIONS
from gateway.demo import seed_demo_database
from gateway.devpki import NodeMaterial, ensure_node_material
from gateway.identity import DevIssuer

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_STATE_DIR = REPO_ROOT / ".state"
LOCAL_CONFIG_DIR = REPO_ROOT / "deploy" / "local"


def issuer_url(node: str) -> str:
    return f"https://id.{node}.concordat.test"


def audience(node: str) -> str:
    return f"concordat:{node}"


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
    issuer = DevIssuer.load_or_create(material.issuer_dir, issuer=issuer_url(node), kid_prefix=node)
    demo_db = state_dir / node / "demo.db"
    if seed_demo:
        seed_demo_database(f"sqlite:///{demo_db}", node)
    return LocalNodeState(node=node, material=material, issuer=issuer, demo_db=demo_db)


def prepare_federation(state_dir: Path = DEFAULT_STATE_DIR) -> dict[str, LocalNodeState]:
    return {node: prepare_node(state_dir, node) for node in ADMINISTRATIONS}
