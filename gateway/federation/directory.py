"""The signed federation directory: which node serves which records, where, and with which keys.

Each administration signs its own entry with its long-lived directory key, and every node pins
each administration's directory public key, so an entry is believed only on its owner's word.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Protocol, get_args

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gateway.domain import RECORD_TYPES, SubjectKind
from gateway.errors import PeerRejected

SUBJECT_KINDS = frozenset(get_args(SubjectKind))

_ENTRY_FIELDS = frozenset(
    {
        "node",
        "name",
        "exchange_endpoint",
        "federation_endpoint",
        "ca_cert_pem",
        "signing_keys",
        "serves",
        "serial",
        "issued_at",
    }
)
_KEY_FIELDS = frozenset({"kid", "public_key_pem"})
_RULE_FIELDS = frozenset({"record_type", "subject_kinds", "registration_prefixes"})
_RULE_REQUIRED = frozenset({"record_type", "subject_kinds"})
_ENDPOINT = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):([0-9]{1,5})")
_KID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_BASE64URL = re.compile(r"[A-Za-z0-9_-]+={0,2}")
_ED25519_SIGNATURE_BYTES = 64


class DirectoryError(Exception):
    """The directory cannot be verified or understood; a node refuses to start on it."""


@dataclass(frozen=True, slots=True)
class ServiceRule:
    """One record type a node serves, for which subject kinds and (optionally) which prefixes."""

    record_type: str
    subject_kinds: frozenset[str]
    registration_prefixes: tuple[str, ...] = ()

    def matches(self, record_type: str, subject_kind: str, subject_value: str) -> bool:
        if record_type != self.record_type or subject_kind not in self.subject_kinds:
            return False
        return not self.registration_prefixes or subject_value.startswith(
            self.registration_prefixes
        )


@dataclass(frozen=True, slots=True)
class DirectoryEntry:
    """One administration's node, as its own signed directory entry describes it."""

    node: str
    name: str
    exchange_endpoint: str
    federation_endpoint: str
    ca_cert_pem: bytes
    signing_keys: Mapping[str, Ed25519PublicKey]
    serves: tuple[ServiceRule, ...]
    serial: int

    def serves_subject(self, record_type: str, subject_kind: str, subject_value: str) -> bool:
        return any(rule.matches(record_type, subject_kind, subject_value) for rule in self.serves)


class DirectoryLookup(Protocol):
    """What routing and peer checks ask of the directory: a Directory, or a LiveDirectory."""

    @property
    def nodes(self) -> tuple[str, ...]: ...

    def entry(self, node: str) -> DirectoryEntry: ...

    def providers(self, record_type: str, subject_kind: str, subject_value: str) -> list[str]: ...


class Directory:
    """The verified entries of the federation, looked up by node, by service and by key id."""

    def __init__(self, entries: Iterable[DirectoryEntry]) -> None:
        self._entries: dict[str, DirectoryEntry] = {}
        for entry in entries:
            if entry.node in self._entries:
                raise DirectoryError(f"directory has more than one entry for {entry.node}")
            self._entries[entry.node] = entry

    @classmethod
    def load(cls, path: Path, trust_anchors: Mapping[str, Ed25519PublicKey]) -> Directory:
        """Read the directory at `path`, accepting each entry only with its owner's signature."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise DirectoryError(f"cannot read directory {path}: {exc}") from exc
        try:
            document = json.loads(text, parse_constant=_refuse_constant)
        except ValueError as exc:
            raise DirectoryError(f"directory {path} is not valid JSON: {exc}") from exc
        if not isinstance(document, dict) or set(document) != {"entries"}:
            raise DirectoryError(f"directory {path} must be an object with only an 'entries' list")
        items = document["entries"]
        if not isinstance(items, list):
            raise DirectoryError(f"directory {path}: 'entries' must be a list")
        return cls(_verified_entry(index, item, trust_anchors) for index, item in enumerate(items))

    @property
    def nodes(self) -> tuple[str, ...]:
        return tuple(sorted(self._entries))

    def entry(self, node: str) -> DirectoryEntry:
        try:
            return self._entries[node]
        except KeyError:
            raise PeerRejected(f"node {node!r:.80} is not in the federation directory") from None

    def providers(self, record_type: str, subject_kind: str, subject_value: str) -> list[str]:
        """The nodes that serve `record_type` for this subject, in name order."""
        return [
            node
            for node, entry in sorted(self._entries.items())
            if entry.serves_subject(record_type, subject_kind, subject_value)
        ]

    def signing_key(self, node: str, kid: str) -> Ed25519PublicKey:
        """The public key `node` signs assertions and receipts with under `kid`."""
        key = self.entry(node).signing_keys.get(kid)
        if key is None:
            raise PeerRejected(f"node {node} has no signing key {kid!r:.80} in the directory")
        return key

    def ca_bundle_pem(self) -> bytes:
        """Every administration's CA certificates, concatenated: the root set for mutual TLS."""
        return b"".join(
            _with_final_newline(self._entries[node].ca_cert_pem) for node in sorted(self._entries)
        )


def sign_entry(entry: Mapping[str, Any], directory_key: Ed25519PrivateKey) -> dict[str, Any]:
    """Check `entry` and sign its canonical JSON; returns `{"entry": ..., "signature": ...}`."""
    try:
        canonical = canonical_json(entry)
    except (TypeError, ValueError) as exc:
        raise DirectoryError(f"directory entry cannot be encoded as JSON: {exc}") from exc
    document = json.loads(canonical)
    if not isinstance(document, dict):
        raise DirectoryError("a directory entry must be a JSON object")
    _parse_entry(document)
    signature = base64.urlsafe_b64encode(directory_key.sign(canonical)).decode().rstrip("=")
    return {"entry": document, "signature": signature}


def write_directory(path: Path, signed_entries: Sequence[Mapping[str, Any]]) -> None:
    """Write signed entries as a directory file, replacing any old file atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Nodes may be (re)reading the file; they must see the old file or the new one, never half.
    fd, temporary = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        json.dump({"entries": [dict(item) for item in signed_entries]}, file, indent=2)
        file.write("\n")
    os.chmod(temporary, 0o644)  # mkstemp makes it 0600; the directory is public by design
    os.replace(temporary, path)


def public_key_kid(node: str, key: Ed25519PublicKey) -> str:
    """A stable key id: the node name and the first 16 hex digits of the raw key's SHA-256."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return f"{node}-{hashlib.sha256(raw).hexdigest()[:16]}"


def canonical_json(value: Any) -> bytes:
    """The bytes an entry signature covers: sorted keys, no spaces, UTF-8."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def _verified_entry(
    index: int, item: object, trust_anchors: Mapping[str, Ed25519PublicKey]
) -> DirectoryEntry:
    if not isinstance(item, dict) or set(item) != {"entry", "signature"}:
        raise DirectoryError(
            f"directory entry {index} must be an object with only 'entry' and 'signature'"
        )
    entry, signature = item["entry"], item["signature"]
    if not isinstance(entry, dict) or not isinstance(entry.get("node"), str):
        raise DirectoryError(f"directory entry {index} has no 'node' name")
    node = entry["node"]
    anchor = trust_anchors.get(node)
    if anchor is None:
        raise DirectoryError(
            f"directory entry {index} is for node {node!r:.80}, "
            "which has no trust anchor in this node's configuration"
        )
    # Verify before reading any other field, so nothing unsigned is ever interpreted.
    try:
        anchor.verify(_signature_bytes(signature), canonical_json(entry))
    except (InvalidSignature, ValueError):
        raise DirectoryError(
            f"directory entry for {node} is not signed by {node}'s directory key"
        ) from None
    return _parse_entry(entry)


def _signature_bytes(signature: object) -> bytes:
    if not isinstance(signature, str) or not _BASE64URL.fullmatch(signature):
        raise ValueError("signature is not base64url")
    unpadded = signature.rstrip("=")
    try:
        raw = base64.urlsafe_b64decode(unpadded + "=" * (-len(unpadded) % 4))
    except binascii.Error as exc:
        raise ValueError("signature is not base64url") from exc
    if len(raw) != _ED25519_SIGNATURE_BYTES:
        raise ValueError("signature has the wrong length")
    return raw


def _parse_entry(entry: Mapping[str, Any]) -> DirectoryEntry:
    node = entry.get("node")
    if not isinstance(node, str) or not node:
        raise DirectoryError("directory entry has no 'node' name")
    where = f"directory entry for {node}"
    # Unknown fields are refused rather than ignored: a field this node does not understand
    # might be a constraint its owner expects every node to honour.
    _object(entry, _ENTRY_FIELDS, _ENTRY_FIELDS, where)
    serial = entry["serial"]
    if not isinstance(serial, int) or isinstance(serial, bool) or serial < 0:
        raise DirectoryError(f"{where}: 'serial' must be a non-negative integer")
    _check_timestamp(entry["issued_at"], f"{where}: 'issued_at'")
    return DirectoryEntry(
        node=node,
        name=_text(entry["name"], f"{where}: 'name'"),
        exchange_endpoint=_endpoint(entry["exchange_endpoint"], f"{where}: 'exchange_endpoint'"),
        federation_endpoint=_endpoint(
            entry["federation_endpoint"], f"{where}: 'federation_endpoint'"
        ),
        ca_cert_pem=_ca_certificates(entry["ca_cert_pem"], f"{where}: 'ca_cert_pem'"),
        signing_keys=_signing_keys(entry["signing_keys"], where),
        serves=tuple(
            _service_rule(rule, where) for rule in _list(entry["serves"], where, "serves")
        ),
        serial=serial,
    )


def _signing_keys(value: object, where: str) -> Mapping[str, Ed25519PublicKey]:
    items = _list(value, where, "signing_keys")
    if not items:
        raise DirectoryError(f"{where}: 'signing_keys' must list at least one key")
    keys: dict[str, Ed25519PublicKey] = {}
    for item in items:
        item = _object(item, _KEY_FIELDS, _KEY_FIELDS, f"{where}: each signing key")
        kid = item["kid"]
        if not isinstance(kid, str) or not _KID.fullmatch(kid):
            raise DirectoryError(f"{where}: signing key id {kid!r:.80} is malformed")
        if kid in keys:
            raise DirectoryError(f"{where}: signing key id {kid} is listed twice")
        pem = _text(item["public_key_pem"], f"{where}: key {kid}")
        try:
            key = serialization.load_pem_public_key(pem.encode())
        except ValueError as exc:
            raise DirectoryError(f"{where}: key {kid} is not a PEM public key") from exc
        if not isinstance(key, Ed25519PublicKey):
            raise DirectoryError(f"{where}: key {kid} is not an Ed25519 key")
        keys[kid] = key
    return MappingProxyType(keys)


def _service_rule(value: object, where: str) -> ServiceRule:
    value = _object(value, _RULE_FIELDS, _RULE_REQUIRED, f"{where}: each 'serves' rule")
    record_type = value["record_type"]
    if record_type not in RECORD_TYPES:
        raise DirectoryError(f"{where}: unknown record type {record_type!r:.80}")
    kinds = _list(value["subject_kinds"], where, f"{record_type} 'subject_kinds'")
    unknown = [kind for kind in kinds if kind not in SUBJECT_KINDS]
    if not kinds or unknown:
        raise DirectoryError(
            f"{where}: {record_type} 'subject_kinds' must name known kinds, "
            f"from {sorted(SUBJECT_KINDS)}"
        )
    prefixes = _list(value.get("registration_prefixes", []), where, "registration_prefixes")
    if not all(isinstance(prefix, str) and prefix for prefix in prefixes):
        raise DirectoryError(f"{where}: registration prefixes must be non-empty strings")
    # A prefix tested against a NINO or a health number would silently never match.
    if prefixes and set(kinds) != {"registration_id"}:
        raise DirectoryError(
            f"{where}: {record_type} may set 'registration_prefixes' only for "
            "subject kind 'registration_id'"
        )
    return ServiceRule(record_type, frozenset(kinds), tuple(prefixes))


def _object(
    value: object, allowed: frozenset[str], required: frozenset[str], where: str
) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise DirectoryError(f"{where} must be a JSON object")
    missing = sorted(required - set(value))
    if missing:
        raise DirectoryError(f"{where} is missing {missing}")
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise DirectoryError(f"{where} has unknown fields {unknown}")
    return value


def _list(value: object, where: str, name: str) -> list[Any]:
    if not isinstance(value, list):
        raise DirectoryError(f"{where}: {name!r} must be a list")
    return value


def _text(value: object, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise DirectoryError(f"{where} must be a non-empty string")
    return value


def _endpoint(value: object, where: str) -> str:
    text = _text(value, where)
    match = _ENDPOINT.fullmatch(text)
    if match is None or not 0 < int(match.group(1)) < 65536:
        raise DirectoryError(f"{where} must be host:port, not {text!r:.80}")
    return text


def _ca_certificates(value: object, where: str) -> bytes:
    pem = _text(value, where).encode()
    try:
        x509.load_pem_x509_certificates(pem)
    except ValueError as exc:
        raise DirectoryError(f"{where} does not hold PEM certificates") from exc
    return pem


def _check_timestamp(value: object, where: str) -> None:
    try:
        moment = dt.datetime.fromisoformat(_text(value, where))
    except ValueError as exc:
        raise DirectoryError(f"{where} must be an ISO 8601 timestamp") from exc
    if moment.tzinfo is None:
        raise DirectoryError(f"{where} must include a time zone, e.g. 2026-11-21T10:00:00Z")


def _with_final_newline(pem: bytes) -> bytes:
    return pem if pem.endswith(b"\n") else pem + b"\n"


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")
