"""Copies the generated exchange and records contracts into the kit, as its own package.

Run after `python scripts/gen_protos.py`: `python clients/python/gen_contracts.py`. The
modules under `concordat/` are copied to `concordat_client/contracts/`, with their imports of
each other renamed, so the kit installs beside the node (or without it) and never imports it.
Only the messages are copied; the kit builds its own typed calls (no `*_pb2_grpc` modules).
The suite fails while the copy is stale (tests/unit/test_client_kit_contracts.py).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "concordat"
TARGET = Path(__file__).resolve().parent / "src" / "concordat_client" / "contracts"
# The contracts a caller needs: the exchange API and the records it carries (not federation).
PACKAGES = ("exchange/v1", "records/v1")

# Only import lines and the module name protoc gives its classes are renamed; the serialized
# descriptors also spell `concordat.` (the proto packages) and must stay as they are.
_IMPORT = re.compile(r"^from concordat\.", re.MULTILINE)
_MODULE_NAME = re.compile(r"(BuildTopDescriptorsAndMessages\(DESCRIPTOR, ')concordat\.")


def kit_copy(text: str) -> str:
    """A generated module's text as the kit ships it."""
    text = _IMPORT.sub("from concordat_client.contracts.", text)
    return _MODULE_NAME.sub(r"\1concordat_client.contracts.", text)


def expected() -> dict[Path, str]:
    """Every file of the kit's contracts package (relative to it) and its text."""
    files: dict[Path, str] = {Path("__init__.py"): ""}
    for package in PACKAGES:
        parts = Path(package).parts
        for depth in range(1, len(parts) + 1):
            files[Path(*parts[:depth]) / "__init__.py"] = ""
        for module in sorted((SOURCE / package).glob("*_pb2.py*")):
            files[Path(package) / module.name] = kit_copy(module.read_text())
    return files


def main() -> None:
    for old in TARGET.rglob("*.py*"):
        old.unlink()
    for path, text in expected().items():
        (TARGET / path).parent.mkdir(parents=True, exist_ok=True)
        (TARGET / path).write_text(text)
    print(f"copied the contracts into {TARGET.relative_to(ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
