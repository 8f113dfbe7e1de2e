"""What the running bundle's register says about an agreement and a body, for citizens."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from gateway.policy.bundle import PolicyBundle
from gateway.policy.register_shards import AGREEMENTS, SHARDS, agreement_shard

RegisterSource = Callable[[], PolicyBundle]


def register_of(bundle: PolicyBundle) -> Mapping[str, Any]:
    register = bundle.data.get("register")
    return register if isinstance(register, Mapping) else {}


def agreement_in(register: Mapping[str, Any], agreement_id: str) -> Mapping[str, Any] | None:
    """The agreement's register entry, filed in shards or (as written) by id; None if absent."""
    shards = register.get(SHARDS)
    if isinstance(shards, Mapping):
        filed = shards.get(agreement_shard(agreement_id))
        entry = filed.get(agreement_id) if isinstance(filed, Mapping) else None
    else:
        agreements = register.get(AGREEMENTS)
        entry = agreements.get(agreement_id) if isinstance(agreements, Mapping) else None
    return entry if isinstance(entry, Mapping) else None


def body_name(register: Mapping[str, Any], body: str) -> str:
    """The register's name for `organisation@administration`, or "" if it names none."""
    bodies = register.get("bodies")
    entry = bodies.get(body) if isinstance(bodies, Mapping) else None
    name = entry.get("name") if isinstance(entry, Mapping) else None
    return name if isinstance(name, str) else ""


def text(entry: Mapping[str, Any], *names: str) -> str:
    """The first of `names` the entry holds as text (registers grew their fields over time)."""
    for name in names:
        value = entry.get(name)
        if isinstance(value, str) and value:
            return value
    return ""
