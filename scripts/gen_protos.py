"""Generates the Python code for proto/ into the `concordat` package.

Run after changing a .proto file: `python scripts/gen_protos.py`. The test suite fails while
the committed code is stale (tests/test_contracts.py), so this is never forgotten.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"


def generate(out_dir: Path) -> None:
    """Writes the generated modules (and empty __init__.py files) below out_dir."""
    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in PROTO_ROOT.rglob("*.proto"))
    wkt = Path(protoc.__file__).parent / "_proto"
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{wkt}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *protos,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    for directory in [out_dir / "concordat", *(out_dir / "concordat").rglob("*")]:
        if directory.is_dir():
            (directory / "__init__.py").touch()


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        target = ROOT / "concordat"
        for old in target.rglob("*_pb2*.py*"):
            old.unlink()
        for new in (Path(tmp) / "concordat").rglob("*"):
            if new.is_file():
                dest = target / new.relative_to(Path(tmp) / "concordat")
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(new.read_bytes())
    print("generated", file=sys.stderr)


if __name__ == "__main__":
    main()
