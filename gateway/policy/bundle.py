"""Policy bundles: Rego modules, their tests and their data, loaded from directories.

A node loads `policies/common` plus `policies/<jurisdiction>`. Each directory follows the
OPA bundle layout, so the same directories serve the embedded engine and an OPA server:
`*.rego` modules (`*_test.rego` are tests), `data.json` files merged into the data
document at the path of their folder, and an optional `.manifest` naming the bundle roots.
One step is Concordat's own: the register's agreements are filed in shards as they are
loaded (see `register_shards`), so that a decision can reach one without a scan.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from gateway.policy.register_shards import RegisterShardError, file_agreements_in_shards

_PACKAGE = re.compile(r"^package\s+([A-Za-z_][\w.]*)\s*(?:#.*)?$", re.MULTILINE)


class PolicyBundleError(Exception):
    """A bundle cannot be loaded, compiled or tested; the message says where and why."""


@dataclass(frozen=True)
class PolicyBundle:
    """One revision of a node's policies, immutable once loaded."""

    modules: Mapping[str, str]
    tests: Mapping[str, str]
    data: Mapping[str, Any]
    revision: str
    roots: tuple[str, ...]


def load_bundle(directories: Sequence[Path]) -> PolicyBundle:
    """Load and merge bundle directories, refusing anything ambiguous or malformed."""
    if not directories:
        raise PolicyBundleError("no policy directories given")
    modules: dict[str, str] = {}
    tests: dict[str, str] = {}
    data: dict[str, Any] = {}
    roots_by_directory: dict[str, list[str]] = {}
    hashed: dict[str, bytes] = {}
    for directory in directories:
        if not directory.is_dir():
            raise PolicyBundleError(f"policy directory {directory} does not exist")
        for path in sorted(directory.rglob("*")):
            if not path.is_file():
                continue
            key = f"{directory.name}/{path.relative_to(directory).as_posix()}"
            if key in hashed:
                raise PolicyBundleError(f"two policy directories both provide {key}")
            if path.suffix == ".rego":
                raw = path.read_bytes()
                target = tests if path.name.endswith("_test.rego") else modules
                target[key] = _decode(raw, path)
            elif path.name == "data.json":
                raw = path.read_bytes()
                prefix = path.parent.relative_to(directory).parts
                _merge(data, _nest(prefix, _parse_json(raw, path), path), path, ())
            elif path.name == ".manifest":
                raw = path.read_bytes()
                roots_by_directory[str(directory)] = _manifest_roots(_parse_json(raw, path), path)
            else:
                continue
            hashed[key] = raw
    if not modules:
        raise PolicyBundleError(f"no Rego modules found in {', '.join(map(str, directories))}")
    roots = _check_roots(roots_by_directory)
    if roots:
        _check_under_roots(modules, tests, data, roots)
    try:
        file_agreements_in_shards(data)
    except RegisterShardError as exc:
        raise PolicyBundleError(str(exc)) from exc
    return PolicyBundle(
        modules=MappingProxyType(modules),
        tests=MappingProxyType(tests),
        data=MappingProxyType(data),
        revision=_revision(hashed),
        roots=roots,
    )


def packages_of(source: str) -> list[str]:
    """The package names a Rego source declares (one, in any valid module)."""
    return _PACKAGE.findall(source)


def _decode(raw: bytes, path: Path) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PolicyBundleError(f"{path} is not UTF-8: {exc}") from exc


def _parse_json(raw: bytes, path: Path) -> Any:
    try:
        return json.loads(_decode(raw, path))
    except json.JSONDecodeError as exc:
        raise PolicyBundleError(f"{path} is not valid JSON: {exc}") from exc


def _nest(prefix: tuple[str, ...], value: Any, path: Path) -> dict[str, Any]:
    """Place a data.json's value at the path of its folder, as OPA does."""
    for key in reversed(prefix):
        value = {key: value}
    if not isinstance(value, dict):
        raise PolicyBundleError(f"{path} must hold a JSON object")
    return value


def _merge(into: dict[str, Any], new: dict[str, Any], path: Path, at: tuple[str, ...]) -> None:
    """Deep-merge objects; two files setting the same non-object value is a conflict."""
    for key, value in new.items():
        if key not in into:
            into[key] = value
        elif isinstance(into[key], dict) and isinstance(value, dict):
            _merge(into[key], value, path, (*at, key))
        else:
            where = ".".join((*at, key))
            raise PolicyBundleError(f"{path} sets data.{where}, which another data.json sets")


def _manifest_roots(manifest: Any, path: Path) -> list[str]:
    roots = manifest.get("roots") if isinstance(manifest, dict) else None
    if not isinstance(roots, list) or not all(isinstance(r, str) and r for r in roots):
        raise PolicyBundleError(f"{path} must hold an object whose 'roots' is a list of paths")
    return [root.strip("/") for root in roots]


def _overlaps(a: str, b: str) -> bool:
    return a == b or a.startswith(b + "/") or b.startswith(a + "/")


def _check_roots(roots_by_directory: Mapping[str, list[str]]) -> tuple[str, ...]:
    """Union the roots; OPA refuses bundles whose roots overlap, so we do too."""
    owners: dict[str, str] = {}
    for directory, roots in roots_by_directory.items():
        for root in roots:
            for other, owner in owners.items():
                if owner != directory and _overlaps(root, other):
                    raise PolicyBundleError(
                        f"bundle root {root!r} of {directory} overlaps {other!r} of {owner}"
                    )
            owners.setdefault(root, directory)
    return tuple(owners)


def _under(path: str, roots: tuple[str, ...]) -> bool:
    return any(path == root or path.startswith(root + "/") for root in roots)


def _check_under_roots(
    modules: Mapping[str, str],
    tests: Mapping[str, str],
    data: Mapping[str, Any],
    roots: tuple[str, ...],
) -> None:
    """OPA rejects a bundle that writes outside its roots; refuse it here first."""
    for name, source in {**modules, **tests}.items():
        for package in packages_of(source):
            if not _under(package.replace(".", "/"), roots):
                raise PolicyBundleError(f"{name}: package {package} is outside the bundle roots")
    _check_data_under_roots(data, roots, "")


def _check_data_under_roots(data: Mapping[str, Any], roots: tuple[str, ...], at: str) -> None:
    for key, value in data.items():
        path = f"{at}/{key}" if at else key
        if _under(path, roots):
            continue
        if isinstance(value, Mapping) and any(root.startswith(path + "/") for root in roots):
            _check_data_under_roots(value, roots, path)
            continue
        raise PolicyBundleError(f"data.{path.replace('/', '.')} is outside the bundle roots")


def _revision(files: Mapping[str, bytes]) -> str:
    digest = hashlib.sha256()
    for key in sorted(files):
        name = key.encode()
        # Length prefixes keep ("ab", "c") and ("a", "bc") from hashing alike.
        digest.update(len(name).to_bytes(8, "big") + name)
        digest.update(len(files[key]).to_bytes(8, "big") + files[key])
    return digest.hexdigest()
