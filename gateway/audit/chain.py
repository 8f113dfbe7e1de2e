"""The bytes the audit chain is built from, shared by the writer and the verifier.

An entry's hash is SHA-256 over, in order: the previous entry's hash (32 raw bytes; 32 zero
bytes before the first entry), the sequence number (8 bytes, big-endian), the length of
`recorded_at` (2 bytes, big-endian) and `recorded_at` itself (ASCII), then the canonical JSON of
the event. Framing the one variable-length field before the event keeps the split unambiguous.
A seal is an Ed25519 signature over `seal_message`, which names the node, the last sequence
number it covers and the chain hash there, so one seal vouches for every entry up to it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

GENESIS_HASH = "00" * 32
SEAL_FORMAT = "concordat.audit.seal/v1"

_encoder = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)


def canonical_json(value: Mapping[str, Any]) -> str:
    """Encodes a mapping as JSON with sorted keys and no whitespace; NaN and infinities refused."""
    return _encoder.encode(dict(value))


# orjson writes the same text as `canonical_json` for the JSON an event holds (sorted keys, no
# whitespace, UTF-8 as is) some 20 times faster, and an entry is encoded once per append, on
# the caller's side. What it will not take (keys that are not strings, integers beyond 64 bits,
# a date or dataclass that JSON has no form for) goes to the standard encoder, which encodes it
# or refuses it as before. Unlike it, orjson writes NaN and the infinities as null: an event
# cannot carry them into the chain either way.
_EVENT_OPTIONS = (
    orjson.OPT_SORT_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
)


def event_json(event: Mapping[str, Any]) -> str:
    """The text an entry stores and hashes for `event`: canonical JSON (as `canonical_json`)."""
    try:
        return orjson.dumps(event, option=_EVENT_OPTIONS).decode("utf-8")
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        return canonical_json(event)


def entry_hash(prev_hash: str, seq: int, recorded_at: str, event_json: str) -> str:
    """Returns the hex chain hash of one entry, given the hex hash of the entry before it."""
    stamp = recorded_at.encode("ascii")
    return hashlib.sha256(
        bytes.fromhex(prev_hash)
        + seq.to_bytes(8, "big")
        + len(stamp).to_bytes(2, "big")
        + stamp
        + event_json.encode("utf-8")
    ).hexdigest()


def seal_message(node: str, upto_seq: int, chain_hash: str, sealed_at: str) -> bytes:
    """Returns the bytes a node signs to vouch for its chain up to and including `upto_seq`."""
    return canonical_json(
        {
            "format": SEAL_FORMAT,
            "node": node,
            "upto_seq": upto_seq,
            "hash": chain_hash,
            "sealed_at": sealed_at,
        }
    ).encode("utf-8")


def index_columns(event: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """Returns `exchange_id` and `subject_hash` as the log indexes them: None if absent or empty."""
    exchange_id = event.get("exchange_id")
    subject = event.get("subject_hash")
    return (
        exchange_id if isinstance(exchange_id, str) and exchange_id else None,
        subject if isinstance(subject, str) and subject else None,
    )


def timestamp(epoch_seconds: float) -> str:
    """Formats a POSIX time as fixed-width UTC ISO 8601 with microseconds."""
    return datetime.fromtimestamp(epoch_seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# Chain heads, as peers witness them (docs/evidence.md). A head's commitment folds every entry
# hash up to it, one SHA-256 per entry: C(0) = 32 zero bytes, C(n) = SHA-256(C(n-1) || h(n)).
# Given C(m) and the entry hashes m+1..n, anyone can compute C(n) without seeing an entry, so a
# witness keeps only the last head it signed and checks a new one in time linear in the
# entries since; a log rewritten or cut anywhere at or before m can no longer reach the C(m)
# it signed, because every entry hash after the change differs.
WITNESS_FORMAT = "concordat.audit.witness/v1"
GENESIS_COMMITMENT = "00" * 32


@dataclass(frozen=True, slots=True)
class AuditPosition:
    """Where one entry sits in a node's chain: its sequence number, hash and recording time."""

    seq: int
    hash: str
    recorded_at: str


@dataclass(frozen=True, slots=True)
class ChainHead:
    """A node's chain up to `seq`: the entry hash there, the commitment over every entry hash
    up to it, and the time that entry was recorded."""

    node: str
    seq: int
    hash: str
    commitment: str
    at: str


@dataclass(frozen=True, slots=True)
class WitnessSignature:
    """A peer's Ed25519 signature over one of a node's heads (`witness_message`)."""

    witness: str
    kid: str
    head: ChainHead
    signed_at: str
    signature: str


@dataclass(frozen=True, slots=True)
class ExchangeHash:
    """One entry of an exchange, as reconciliation sees it: position and hash, no content."""

    exchange_id: str
    seq: int
    hash: str


def fold_commitment(commitment: str, entry_hashes: Iterable[str]) -> str:
    """Extends a head commitment over the next entry hashes, in sequence order."""
    value = bytes.fromhex(commitment)
    for entry in entry_hashes:
        value = hashlib.sha256(value + bytes.fromhex(entry)).digest()
    return value.hex()


def witness_message(witness: str, head: ChainHead, signed_at: str) -> bytes:
    """The bytes a witness signs to say it saw `head` extend every head it signed before."""
    return canonical_json(
        {
            "format": WITNESS_FORMAT,
            "witness": witness,
            "node": head.node,
            "seq": head.seq,
            "hash": head.hash,
            "commitment": head.commitment,
            "at": head.at,
            "signed_at": signed_at,
        }
    ).encode("utf-8")
