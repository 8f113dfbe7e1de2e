"""The `concordat-extract` console script, which needs the kit's `extract` extra."""

from __future__ import annotations

import sys


def main() -> None:
    try:
        from concordat_client.extract import app
    except ImportError as exc:
        sys.exit(f"concordat-extract needs: pip install 'concordat-client[extract]' ({exc})")
    app()
