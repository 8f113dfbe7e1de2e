"""The witness: this node counter-signs a peer's chain head only if it extends the last one.

For each peer the witness keeps one head, the last it signed: (seq, entry hash, commitment).
A new head comes with the raw hashes of the entries since; the witness folds them onto the
commitment it kept and signs only if that gives the commitment the peer claims and ends on
the entry hash it claims. That is O(1) stored per peer and O(k) work for k new entries, and it
never sees an entry's content. A head that is behind the last one signed (a cut log) or that
does not fold to its claim (a rewritten log) is refused, logged and counted.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Callable

import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.audit import AuditLog, ChainHead, WitnessSignature
from gateway.audit.chain import (
    GENESIS_COMMITMENT,
    GENESIS_HASH,
    fold_commitment,
    timestamp,
    witness_message,
)
from gateway.errors import InvalidRequest, WitnessRefused

log = structlog.get_logger("concordat.witness")

HASH_BYTES = 32
_HEX_HASH = re.compile(r"[0-9a-f]{64}")
# The key a witness signs with now, and its id in the directory (rotation may change both).
CurrentKey = Callable[[], tuple[Ed25519PrivateKey, str]]


class Witness:
    """Checks and signs peers' chain heads, keeping the last head it signed for each."""

    def __init__(self, *, node: str, audit: AuditLog, current_key: CurrentKey) -> None:
        self._node = node
        self._audit = audit
        self._current_key = current_key
        # Refusals by (peer, reason): alerts for the operator, read by the metrics.
        self.refusals: Counter[tuple[str, str]] = Counter()

    async def last_signed(self, peer: str) -> ChainHead | None:
        signed = await self._audit.witnessed_head(peer)
        return signed.head if signed is not None else None

    async def witness(
        self, head: ChainHead, since_seq: int, entry_hashes: bytes
    ) -> WitnessSignature:
        """Signs `head` of `head.node` if it extends the last head signed for it; else refuses."""
        if not (_HEX_HASH.fullmatch(head.hash) and _HEX_HASH.fullmatch(head.commitment)):
            raise InvalidRequest("a head's entry hash and commitment are 64 lowercase hex digits")
        last = await self._audit.witnessed_head(head.node)
        last_seq = last.head.seq if last else 0
        last_hash = last.head.hash if last else GENESIS_HASH
        last_commitment = last.head.commitment if last else GENESIS_COMMITMENT
        if head.seq < last_seq:
            self._refuse(
                head,
                "truncated",
                f"head {head.seq} is behind entry {last_seq}, which this witness signed",
            )
        if since_seq != last_seq:
            self._refuse(
                head, "stale", f"this witness last signed entry {last_seq}, not {since_seq}"
            )
        if len(entry_hashes) != HASH_BYTES * (head.seq - last_seq):
            raise InvalidRequest(
                f"expected the hashes of entries {last_seq + 1}..{head.seq},"
                f" {HASH_BYTES} bytes each"
            )
        hashes = [
            entry_hashes[at : at + HASH_BYTES].hex()
            for at in range(0, len(entry_hashes), HASH_BYTES)
        ]
        if fold_commitment(last_commitment, hashes) != head.commitment or (
            (hashes[-1] if hashes else last_hash) != head.hash
        ):
            self._refuse(
                head,
                "forked",
                f"head {head.seq} does not extend entry {last_seq}, which this witness signed",
            )
        key, kid = self._current_key()
        signed_at = timestamp(time.time())
        signature = WitnessSignature(
            witness=self._node,
            kid=kid,
            head=head,
            signed_at=signed_at,
            signature=key.sign(witness_message(self._node, head, signed_at)).hex(),
        )
        # Kept before the signature leaves: a witness that forgot what it signed could be led
        # to sign a fork of it.
        await self._audit.record_witnessed_head(signature)
        return signature

    def _refuse(self, head: ChainHead, reason: str, detail: str) -> None:
        self.refusals[(head.node, reason)] += 1
        log.error(
            "witness.refused",
            peer=head.node,
            reason=reason,
            seq=head.seq,
            hash=head.hash,
            detail=detail,
        )
        raise WitnessRefused(f"{self._node} refuses to witness {head.node}'s head: {detail}")
