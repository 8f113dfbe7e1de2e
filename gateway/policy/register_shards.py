"""The register's agreements filed in shards, so that a decision finds one without a scan.

rego-cpp 1.5 finds an object's key by walking the keys in the order they were added, about
1 µs a key. With `data.register.agreements` keyed by id, a decision asking for the middle
agreement of 10,000 spent about 5 ms finding it: four times the rest of the decision.

So the bundle loader replaces `agreements` with `agreement_shards`, each agreement filed
under the first two hex digits of the MD5 of its id:
`{"agreement_shards": {"3f": {"<id>": {...}}, ...}}`. `policies/common/register.rego`
computes the same shard with `crypto.md5` (OPA and rego-cpp both have it) and walks one
shard of the 256: about 40 agreements when 10,000 are registered. MD5 only spreads the ids
evenly; nothing depends on it resisting collisions, since inside its shard an agreement is
still found by its whole id.

The flat map is replaced, not kept beside the shards, so a decision has one copy of each
agreement to read: a Rego test that replaces or patches the register cannot leave a stale
copy behind that a decision would read instead. Authors still write `agreements` keyed by id
in data.json, and a register given that way (a test's fixture register, a bundle loaded by
something other than Concordat) is read as written, at the cost of the scan.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

AGREEMENTS = "agreements"
SHARDS = "agreement_shards"


class RegisterShardError(ValueError):
    """A register's shards cannot be trusted to find its agreements."""


def agreement_shard(agreement_id: str) -> str:
    """The shard an agreement is filed under; Rego's `register.shard` gives the same."""
    return hashlib.md5(agreement_id.encode("utf-8"), usedforsecurity=False).hexdigest()[:2]


def file_agreements_in_shards(data: dict[str, Any]) -> None:
    """Replace `data.register.agreements` with `agreement_shards`, in place.

    A register already in shards (an OPA bundle that `concordat policy build` wrote, unpacked)
    is checked and kept: a misfiled agreement would be missing to every decision. A register
    whose `agreements` is not an object is left as written, for the register check to report
    (`register: agreements must be an object`) when the bundle is tested.
    """
    register = data.get("register")
    if not isinstance(register, dict):
        return
    if SHARDS in register:
        if AGREEMENTS in register:
            raise RegisterShardError(
                f"data.register sets both {AGREEMENTS} and {SHARDS}; register agreements "
                f"under {AGREEMENTS} only ({SHARDS} is built from it when a bundle is loaded)"
            )
        _check_filed(register[SHARDS])
        return
    agreements = register.get(AGREEMENTS)
    if not isinstance(agreements, Mapping):
        return
    shards: dict[str, dict[str, Any]] = {}
    for agreement_id, agreement in agreements.items():
        shards.setdefault(agreement_shard(agreement_id), {})[agreement_id] = agreement
    # Rebuilt rather than updated, so the shards take the place `agreements` had.
    data["register"] = {
        (SHARDS if key == AGREEMENTS else key): (shards if key == AGREEMENTS else value)
        for key, value in register.items()
    }


def _check_filed(shards: Any) -> None:
    if not isinstance(shards, Mapping) or not all(
        isinstance(filed, Mapping) for filed in shards.values()
    ):
        raise RegisterShardError(f"data.register.{SHARDS} must map shards to agreements by id")
    for shard, filed in shards.items():
        for agreement_id in filed:
            if agreement_shard(agreement_id) != shard:
                raise RegisterShardError(
                    f"data.register.{SHARDS} files agreement {agreement_id} under {shard}, "
                    f"where a decision looks for it under {agreement_shard(agreement_id)}"
                )
