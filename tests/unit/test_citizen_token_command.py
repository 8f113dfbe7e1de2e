"""`concordat citizen-token`: the local federation's citizens sign in with it."""

from __future__ import annotations

import tomllib
from pathlib import Path

from typer.testing import CliRunner

from gateway.citizen.tokens import CitizenTokenVerifier
from gateway.cli import app
from gateway.dev.state import LOCAL_CONFIG_DIR
from gateway.identifiers import validate_subject
from gateway.identity import JwksFile, ReplayCache

NINO = "ZX123456A"


async def test_a_minted_citizen_token_is_accepted_as_deploy_local_configures_the_node(
    tmp_path: Path,
) -> None:
    minted = CliRunner().invoke(
        app,
        [
            "citizen-token",
            "--node",
            "holyrood",
            "--identifier",
            f"nino={NINO}",
            "--state-dir",
            str(tmp_path),
        ],
    )
    assert minted.exit_code == 0, minted.output
    citizens = tomllib.loads((LOCAL_CONFIG_DIR / "holyrood.toml").read_text())["citizens"]
    verifier = CitizenTokenVerifier(
        issuer=citizens["issuer"],
        audience=citizens["audience"],
        # deploy/local reads ../../.state/holyrood/citizen-idp/jwks.json: the same file name.
        jwks=JwksFile(tmp_path / "holyrood" / "citizen-idp" / Path(citizens["jwks_file"]).name),
        algorithms=("EdDSA",),
        leeway_seconds=30,
        max_lifetime_seconds=900,
        replay=ReplayCache(),
    )

    citizen = await verifier.verify(minted.stdout.strip())

    assert citizen.identifiers == {validate_subject("nino", NINO)}


def test_an_identifier_that_is_not_kind_equals_value_is_refused(tmp_path: Path) -> None:
    refused = CliRunner().invoke(
        app,
        ["citizen-token", "--node", "holyrood", "--identifier", NINO, "--state-dir", str(tmp_path)],
    )
    assert refused.exit_code == 1
    assert "--identifier must be kind=value" in refused.output
