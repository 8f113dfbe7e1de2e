"""The contracts and the architecture rules hold: protos lint, generated code is fresh."""

from __future__ import annotations

import ast
import filecmp
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gateway import errors
from gateway.api.status import STATUS_FOR_ERROR

ROOT = Path(__file__).resolve().parent.parent


def _buf() -> str:
    found = shutil.which("buf") or str(Path(sys.executable).parent / "buf")
    if not Path(found).exists():
        pytest.fail("buf is not installed; `pip install -e .[dev]` brings it (PyPI buf-bin)")
    return found


def test_protos_pass_buf_lint_with_the_standard_rules() -> None:
    result = subprocess.run([_buf(), "lint"], cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_protos_build_with_buf() -> None:
    result = subprocess.run(
        [_buf(), "build", "-o", "/dev/null"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_generated_python_code_is_fresh_against_proto(tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from gen_protos import generate
    finally:
        sys.path.pop(0)
    generate(tmp_path)
    fresh = sorted(p.relative_to(tmp_path) for p in (tmp_path / "concordat").rglob("*_pb2*.py*"))
    committed = sorted(p.relative_to(ROOT) for p in (ROOT / "concordat").rglob("*_pb2*.py*"))
    assert fresh == committed, "run `python scripts/gen_protos.py`: modules differ"
    stale = [str(p) for p in fresh if not filecmp.cmp(tmp_path / p, ROOT / p, shallow=False)]
    assert not stale, f"run `python scripts/gen_protos.py`: stale {stale}"


def _all_subclasses(cls: type) -> set[type]:
    found = set(cls.__subclasses__())
    for sub in list(found):
        found |= _all_subclasses(sub)
    return found


def test_every_error_class_maps_to_a_grpc_status() -> None:
    unmapped = [
        c.__name__ for c in _all_subclasses(errors.ConcordatError) if c not in STATUS_FOR_ERROR
    ]
    assert not unmapped, f"add these to gateway/api/status.py: {unmapped}"


def test_error_codes_are_unique() -> None:
    codes = [c.code for c in _all_subclasses(errors.ConcordatError)]
    assert len(codes) == len(set(codes))


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_adapters_never_import_gateway() -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(
            n for n in _imports(path) if n.split(".")[0] == "gateway"
        )
        for path in (ROOT / "adapters").rglob("*.py")
    }
    assert not {k: v for k, v in offenders.items() if v}


def test_only_the_composition_root_imports_concrete_engines_adapters_and_stores() -> None:
    concrete = {
        "adapters.sql",
        "adapters.rest",
        "adapters.registry",
        "gateway.policy.embedded",
        "gateway.policy.opa",
        "gateway.audit.sqlite_log",
    }
    allowed = {"gateway/node.py", "gateway/cli/__init__.py", "gateway/testing.py"}
    offenders = {}
    for path in (ROOT / "gateway").rglob("*.py"):
        rel = str(path.relative_to(ROOT))
        if rel in allowed or rel.startswith(("gateway/policy/", "gateway/audit/")):
            continue
        bad = sorted(_imports(path) & concrete)
        if bad:
            offenders[rel] = bad
    assert not offenders


def test_only_test_helpers_fix_the_day_policies_decide_on() -> None:
    # A node that an operator could run on a fixed day could have its policy back-dated.
    allowed = {"gateway/clock.py", "gateway/testing.py"}
    offenders = [
        str(path.relative_to(ROOT))
        for path in [*(ROOT / "gateway").rglob("*.py"), *(ROOT / "adapters").rglob("*.py")]
        if str(path.relative_to(ROOT)) not in allowed and "FixedClock" in path.read_text()
    ]
    assert not offenders


def test_no_bare_or_blanket_except_in_the_gateway() -> None:
    offenders = []
    for path in [*(ROOT / "gateway").rglob("*.py"), *(ROOT / "adapters").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ExceptHandler) and node.type is None:
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not offenders


def test_ruff_finds_nothing_to_fix() -> None:
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    paths = ["gateway", "adapters", "tests", "bench", "scripts", "fuzz"]
    check = subprocess.run(
        [ruff, "check", *paths], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stdout
    formatted = subprocess.run(
        [ruff, "format", "--check", *paths], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert formatted.returncode == 0, formatted.stdout


def _service_methods(service_name: str) -> set[str]:
    from concordat.evidence.v1 import evidence_pb2
    from concordat.exchange.v1 import exchange_pb2
    from concordat.federation.v1 import federation_pb2
    from concordat.transparency.v1 import subject_search_pb2, transparency_pb2

    for module in (
        exchange_pb2,
        federation_pb2,
        evidence_pb2,
        transparency_pb2,
        subject_search_pb2,
    ):
        if service_name in module.DESCRIPTOR.services_by_name:
            return set(module.DESCRIPTOR.services_by_name[service_name].methods_by_name)
    raise AssertionError(service_name)


def test_every_servicer_method_runs_inside_the_edge_wrapper() -> None:
    from gateway.api.edge import is_wrapped
    from gateway.api.evidence_service import EvidenceService
    from gateway.api.exchange_service import ExchangeService
    from gateway.api.federation_service import FederationService
    from gateway.api.server import evidence_handlers, exchange_handlers, federation_handlers
    from gateway.citizen.service import (
        SubjectSearchService,
        TransparencyService,
        subject_search_handlers,
        transparency_handlers,
    )

    for servicer, service_name, handlers in (
        (ExchangeService, "ExchangeService", exchange_handlers),
        (FederationService, "FederationService", federation_handlers),
        (EvidenceService, "EvidenceService", evidence_handlers),
        (TransparencyService, "TransparencyService", transparency_handlers),
        (SubjectSearchService, "SubjectSearchService", subject_search_handlers),
    ):
        public = {name for name in vars(servicer) if name[:1].isupper()}
        assert public == _service_methods(service_name), servicer
        assert all(is_wrapped(getattr(servicer, name)) for name in public), servicer
        registered = handlers(object.__new__(servicer))  # type: ignore[arg-type]  # each servicer with its own handlers
        assert set(registered) == public
        for name, handler in registered.items():
            behaviour = handler.unary_unary or handler.unary_stream
            assert is_wrapped(behaviour), name
            # The edge decodes: gRPC must hand over raw bytes, or a DecodeError escapes us.
            assert handler.request_deserializer is None, name


def _imported_modules(path: Path, known: set[str]) -> set[str]:
    """The project modules a file imports, lazily or not (TYPE_CHECKING blocks aside)."""
    found: set[str] = set()
    for statement in ast.parse(path.read_text()).body:
        if isinstance(statement, ast.If) and "TYPE_CHECKING" in ast.unparse(statement.test):
            continue
        for node in ast.walk(statement):
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module)
                found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found & known


def test_no_import_cycle_among_the_project_modules() -> None:
    import graphlib

    paths: dict[str, Path] = {}
    for package in ("gateway", "adapters"):
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            paths[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {name: _imported_modules(path, set(paths)) - {name} for name, path in paths.items()}
    try:
        tuple(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as cycle:
        pytest.fail(f"import cycle: {' -> '.join(cycle.args[1])}")


def test_mypy_strict_passes_on_gateway_and_adapters() -> None:
    # [tool.mypy] in pyproject.toml names the files and keeps the cache in .mypy_cache, so a
    # rerun rechecks only what changed.
    result = subprocess.run(
        [sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    if "No module named mypy" in result.stderr:
        pytest.fail("mypy is not installed; `pip install -e .[dev]` brings it")
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_type_ignore_says_why() -> None:
    import re
    import tokenize

    explained = re.compile(r"#\s*type:\s*ignore\[[\w\-, ]+\]\s+#\s*\S")
    offenders = []
    for path in [*(ROOT / "gateway").rglob("*.py"), *(ROOT / "adapters").rglob("*.py")]:
        with path.open("rb") as source:
            for token in tokenize.tokenize(source.readline):
                if (
                    token.type == tokenize.COMMENT
                    and re.search(r"type:\s*ignore", token.string)
                    and not explained.search(token.string)
                ):
                    offenders.append(f"{path.relative_to(ROOT)}:{token.start[0]}")
    assert not offenders, f"write `# type: ignore[code]  # why` at {offenders}"


def test_only_the_audit_package_reads_the_audit_tables() -> None:
    tables = ("FROM entries", "FROM seals", "FROM meter", "INTO entries")
    offenders = [
        str(path.relative_to(ROOT))
        for path in (ROOT / "gateway").rglob("*.py")
        if "audit" not in path.relative_to(ROOT / "gateway").parts[:1]
        and any(table in path.read_text() for table in tables)
    ]
    assert not offenders


def test_production_code_never_imports_the_development_package() -> None:
    allowed = {"gateway/testing.py", "gateway/cli/dev.py", "gateway/cli/__init__.py"}
    modules = {
        ".".join(path.relative_to(ROOT).with_suffix("").parts)
        for path in (ROOT / "gateway" / "dev").rglob("*.py")
    } | {"gateway.dev"}
    offenders = [
        str(path.relative_to(ROOT))
        for package in ("gateway", "adapters")
        for path in (ROOT / package).rglob("*.py")
        if "dev" not in path.relative_to(ROOT).parts[1:2]
        and str(path.relative_to(ROOT)) not in allowed
        and _imported_modules(path, modules)
    ]
    assert not offenders
    # The command line reaches the development package only through its dev commands.
    assert _imported_modules(ROOT / "gateway" / "cli" / "__init__.py", modules) == set()


# The contracts as last released (docs/departmental-developers.md says when the image is
# refreshed, and how a deliberate breaking change is made: a new package version).
RELEASED_CONTRACTS = ROOT / "proto" / "released.binpb"


def test_the_contracts_break_nothing_of_the_released_ones() -> None:
    result = subprocess.run(
        [_buf(), "breaking", "--against", str(RELEASED_CONTRACTS)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_buf_breaking_refuses_a_field_taken_out_of_a_released_message(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "proto", tmp_path / "proto")
    shutil.copy(ROOT / "buf.yaml", tmp_path / "buf.yaml")
    exchange = tmp_path / "proto" / "concordat" / "exchange" / "v1" / "exchange.proto"
    exchange.write_text(exchange.read_text().replace("  string description = 2;\n", ""))
    result = subprocess.run(
        [_buf(), "breaking", "--against", str(RELEASED_CONTRACTS)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert 'field "2" with name "description" on message "Obligation" was deleted' in result.stdout


def test_the_client_kit_passes_ruff_and_mypy_strict() -> None:
    # clients/python has its own configuration: ruff's extends the project's, mypy's is strict
    # and keeps its cache under .mypy_cache/client-kit.
    kit = ROOT / "clients" / "python"
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    for command in ([ruff, "check", "."], [ruff, "format", "--check", "."]):
        result = subprocess.run(command, cwd=kit, capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stdout + result.stderr
    result = subprocess.run(
        [sys.executable, "-m", "mypy"], cwd=kit, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
