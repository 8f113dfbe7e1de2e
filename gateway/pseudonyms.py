"""Research pseudonyms: stable within one agreement, unlinkable across agreements.

A pseudonym is an HMAC of the subject identifier under a key derived from the node's
pseudonym key and the agreement id, so the same person has the same pseudonym in every
release under one agreement, and pseudonyms from two agreements cannot be joined by anyone
who lacks the node's key. Plain hashes would not do: identifiers are few enough to guess.
"""

from __future__ import annotations

import hashlib
import hmac

from adapters.base import SubjectKey
from gateway.identifiers import normalise_held


class Pseudonyms:
    """The pseudonyms of one agreement, its derived key made once."""

    def __init__(self, key: bytes, agreement_id: str) -> None:
        self._key = hmac.new(key, f"pseudonym:{agreement_id}".encode(), hashlib.sha256).digest()

    def of(self, kind: str, value: str) -> str:
        """The pseudonym of a normalised subject identifier."""
        return hmac.new(self._key, f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()[:32]

    def of_held(self, subject: SubjectKey | None) -> str:
        """The pseudonym of an identifier as a local system holds it; "" where it holds none."""
        if subject is None:
            return ""
        kind, value = subject
        return self.of(kind, normalise_held(kind, value))
