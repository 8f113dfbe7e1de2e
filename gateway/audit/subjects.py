"""Keyed hashes that stand in for subject identifiers in the audit log."""

from __future__ import annotations

import hashlib
import hmac


def subject_hash(key: bytes, kind: str, value: str) -> str:
    """Returns hex HMAC-SHA256 of `kind:value` under `key`.

    Keyed, because identifiers such as NINOs have so few possible values that a plain hash could
    be reversed by trying them all; only whoever holds the key can search the log by subject.
    """
    return hmac.new(key, f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()
