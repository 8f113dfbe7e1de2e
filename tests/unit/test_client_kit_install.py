"""The client kit installs on its own: a fresh virtual environment gets it and its three
dependencies from `pip install clients/python`, and nothing of the node comes with it.

pip fetches grpcio, protobuf, googleapis-common-protos and setuptools (to build the kit) from
PyPI the first time; its cache serves later runs.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
KIT = ROOT / "clients" / "python"

CHECK = """
import importlib.metadata, importlib.util, re, sys
import concordat_client
from concordat_client import AsyncClient, BirthRegistration, Client, Subject, errors
import concordat_client.extract_file
node = ("gateway", "adapters", "concordat", "typer", "rich")
print(concordat_client.__file__)
print(sorted(m for m in sys.modules if m.split(".")[0] in node))
print(sorted(n for n in node if importlib.util.find_spec(n) is not None))
print(sorted(re.split(r"[<>=!~;\\[ ]", r)[0]
             for r in importlib.metadata.requires("concordat-client") if "extra ==" not in r))
"""


def test_the_kit_installs_into_a_fresh_environment_and_imports_nothing_of_the_node(
    tmp_path: Path,
) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", str(KIT)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    # Run from elsewhere, with no path into the checkout.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    done = subprocess.run(
        [str(python), "-c", CHECK], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    location, imported, importable, requires = done.stdout.splitlines()
    assert location.startswith(str(venv))
    assert imported == "[]"
    assert importable == "[]"
    assert requires == "['googleapis-common-protos', 'grpcio', 'protobuf']"
    # The extract command says what it lacks rather than failing on an import.
    extract = subprocess.run(
        [str(venv / "bin" / "concordat-extract"), "--help"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert extract.returncode == 1
    assert "pip install 'concordat-client[extract]'" in extract.stderr
