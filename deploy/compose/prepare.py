"""Makes what deploy/compose/compose.yaml mounts, under .state/ (git-ignored), on the host.

    .venv/bin/python deploy/compose/prepare.py            # then: docker compose up
    .venv/bin/python deploy/compose/prepare.py --state-dir DIR

The keys, certificates, identity providers and demo databases are the development ones
`concordat up` makes (made here when missing, never overwritten). Two things differ from the
loopback federation: the directory, whose entries name the compose services as endpoints
(`whitehall:7500`, read from deploy/compose/<node>.toml), signed by each administration's
directory key; and a PostgreSQL password per administration, with the state URL built from
it. Development material only: production keys come from each administration's own PKI.
"""

from __future__ import annotations

import argparse
import secrets
import tomllib
from pathlib import Path

from gateway.config import ADMINISTRATIONS, load_config
from gateway.dev.state import DEFAULT_STATE_DIR, LOCAL_CONFIG_DIR, prepare_node
from gateway.federation.directory import write_directory
from gateway.federation.enrolment import signed_directory_entry

COMPOSE_DIR = Path(__file__).resolve().parent
# The database each node's PostgreSQL service creates (compose.yaml, POSTGRES_DB / _USER).
STATE_DATABASE = "concordat"
STATE_ROLE = "concordat"


def compose_directory_entry(state_dir: Path, node: str) -> dict[str, object]:
    """`node`'s directory entry as the compose federation publishes it, signed."""
    advertised = tomllib.loads((COMPOSE_DIR / f"{node}.toml").read_text())["federation"]
    # The loopback config gives the records served; the keys are the ones in state_dir.
    local = load_config(LOCAL_CONFIG_DIR / f"{node}.toml")
    assert local.federation is not None  # noqa: S101 - every local config is federated
    material = state_dir / node
    config = local.model_copy(
        update={
            "tls": local.tls.model_copy(update={"ca_cert": material / "ca.pem"}),
            "keys": local.keys.model_copy(update={"signing_key": material / "signing_key.pem"}),
            "federation": local.federation.model_copy(
                update={
                    "advertise_exchange": advertised["advertise_exchange"],
                    "advertise_federation": advertised["advertise_federation"],
                    "directory_key": material / "directory_key.pem",
                    "publish_signing_keys": (),
                }
            ),
        }
    )
    return signed_directory_entry(config, serial=1)


def write_state_url(compose_state: Path, node: str) -> None:
    """A random password for `node`'s PostgreSQL and the URL the node reads; kept once made."""
    password_file = compose_state / f"{node}-db-password"
    if not password_file.exists():
        password_file.write_text(secrets.token_urlsafe(24) + "\n")
        password_file.chmod(0o600)
    password = password_file.read_text().strip()
    url_file = compose_state / f"{node}-state-url"
    url_file.write_text(f"postgresql://{STATE_ROLE}:{password}@{node}-db:5432/{STATE_DATABASE}\n")
    url_file.chmod(0o600)


def prepare(state_dir: Path) -> Path:
    """Makes the compose federation's material; returns the directory file."""
    compose_state = state_dir / "compose"
    compose_state.mkdir(parents=True, exist_ok=True)
    for node in ADMINISTRATIONS:
        prepare_node(state_dir, node)
        write_state_url(compose_state, node)
    directory = compose_state / "directory.json"
    write_directory(
        directory, [compose_directory_entry(state_dir, node) for node in ADMINISTRATIONS]
    )
    return directory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    args = parser.parse_args()
    print(f"wrote {prepare(args.state_dir.resolve())}")


if __name__ == "__main__":
    main()
