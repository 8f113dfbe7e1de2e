"""An administration's register as typed entries carrying the public DEA register's columns.

The register is read from a loaded bundle (`gateway.policy.bundle.load_bundle`), whose
loader files the agreements in shards (`gateway.policy.register_shards`); the entries come
back keyed by id, in id order, whichever shape the register has.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.policy.bundle import PolicyBundle, load_bundle
from gateway.policy.register_shards import AGREEMENTS, SHARDS


class RegisterUnreadable(ValueError):
    """A bundle's register lacks what publishing needs; the message names what and where."""


@dataclass(frozen=True)
class Column:
    """One column of the published register: the entry's attribute and its heading."""

    key: str
    heading: str


# The public DEA register's columns, in its order, then the terms Concordat adds.
COLUMNS: tuple[Column, ...] = (
    Column("id", "Agreement"),
    Column("name", "Name"),
    Column("status", "Status"),
    Column("purpose", "Purpose (gateway)"),
    Column("purpose_description", "Purpose"),
    Column("benefits", "Benefits"),
    Column("legal_power", "Legal power"),
    Column("lawful_basis", "Lawful basis"),
    Column("information_disclosed", "Information disclosed"),
    Column("controllers", "Controllers"),
    Column("processors", "Processors"),
    Column("method_of_sharing", "Method of sharing"),
    Column("retention_days", "Retention (days)"),
    Column("start", "Start date"),
    Column("end", "End date"),
    Column("review", "Review date"),
    Column("contact", "Contact"),
    Column("areas_covered", "Areas covered"),
    Column("pilot", "Pilot"),
    Column("business_case", "Business case"),
    Column("evaluation_date", "Evaluation date"),
    Column("disclosure_delay_days", "Disclosure delay (days)"),
    Column("provider", "Provider"),
    Column("parties", "Parties"),
    Column("onward_disclosure", "Onward disclosure"),
)


@dataclass(frozen=True)
class RegisterEntry:
    """One registered agreement as the public register shows it.

    `pilot`, `business_case` and `evaluation_date` apply to debt and fraud agreements only
    (None for others); `disclosure_delay_days` is 0 where the agreement sets none.
    """

    id: str
    name: str
    status: str
    purpose: str
    purpose_description: str
    benefits: str
    legal_power: str
    lawful_basis: str
    information_disclosed: str
    controllers: tuple[str, ...]
    processors: tuple[str, ...]
    method_of_sharing: str
    retention_days: int
    start: str
    end: str
    review: str
    contact: str
    areas_covered: tuple[str, ...]
    pilot: bool | None
    business_case: str | None
    evaluation_date: str | None
    disclosure_delay_days: int
    provider: str
    parties: tuple[str, ...]
    onward_disclosure: str


@dataclass(frozen=True)
class Register:
    """One administration's register as of one bundle revision."""

    administration: str
    notes: str
    revision: str
    entries: tuple[RegisterEntry, ...]

    def entry(self, agreement_id: str) -> RegisterEntry | None:
        """The entry registered under `agreement_id`, if any."""
        return next((e for e in self.entries if e.id == agreement_id), None)


def load_register(directories: Sequence[Path]) -> Register:
    """The register of the bundle in `directories` (`policies/common` plus one jurisdiction)."""
    return register_of(load_bundle(directories))


def register_of(bundle: PolicyBundle) -> Register:
    """The register a loaded bundle holds, its agreements read back from their shards."""
    register = bundle.data.get("register")
    if not isinstance(register, Mapping):
        raise RegisterUnreadable("the bundle has no data.register")
    administration = register.get("administration")
    if not isinstance(administration, str):
        raise RegisterUnreadable("data.register.administration must be a string")
    notes = register.get("notes", "")
    entries = tuple(
        _entry(agreement_id, agreement)
        for agreement_id, agreement in sorted(_agreements(register).items())
    )
    return Register(
        administration=administration,
        notes=notes if isinstance(notes, str) else "",
        revision=bundle.revision,
        entries=entries,
    )


def _agreements(register: Mapping[str, Any]) -> dict[str, Any]:
    shards = register.get(SHARDS)
    if isinstance(shards, Mapping):
        return {k: v for filed in shards.values() for k, v in filed.items()}
    agreements = register.get(AGREEMENTS)
    if isinstance(agreements, Mapping):
        return dict(agreements)
    raise RegisterUnreadable(f"data.register has neither {AGREEMENTS} nor {SHARDS}")


def _entry(agreement_id: str, a: Mapping[str, Any]) -> RegisterEntry:
    def text(key: str) -> str:
        value = a.get(key)
        if not isinstance(value, str):
            raise RegisterUnreadable(f"agreement {agreement_id}: {key} must be a string")
        return value

    def names(key: str) -> tuple[str, ...]:
        value = a.get(key)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise RegisterUnreadable(f"agreement {agreement_id}: {key} must be a list of names")
        return tuple(value)

    def whole(key: str, default: int | None = None) -> int:
        value = a.get(key, default)
        # bool is an int to Python, never a number of days.
        if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
            raise RegisterUnreadable(f"agreement {agreement_id}: {key} must be whole days")
        return int(value)

    pilot = a.get("pilot")
    return RegisterEntry(
        id=agreement_id,
        name=text("name"),
        status=text("status"),
        purpose=text("purpose"),
        purpose_description=text("purpose_description"),
        benefits=text("benefits"),
        legal_power=text("power"),
        lawful_basis=text("lawful_basis"),
        information_disclosed=text("information_disclosed"),
        controllers=names("controllers"),
        processors=names("processors"),
        method_of_sharing=text("method_of_sharing"),
        retention_days=whole("retention_days"),
        start=text("start"),
        end=text("end"),
        review=text("review"),
        contact=text("contact"),
        areas_covered=names("areas_covered"),
        pilot=pilot if isinstance(pilot, bool) else None,
        business_case=text("business_case") if "business_case" in a else None,
        evaluation_date=text("evaluation_date") if "evaluation_date" in a else None,
        disclosure_delay_days=whole("disclosure_delay_days", 0),
        provider=text("provider"),
        parties=names("parties"),
        onward_disclosure=text("onward_disclosure"),
    )
