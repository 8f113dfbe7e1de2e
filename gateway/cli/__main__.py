"""`python -m gateway.cli` runs the `concordat` command."""

from gateway.cli import app

app()
