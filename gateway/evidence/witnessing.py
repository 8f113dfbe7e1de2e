"""Asks the peers, at an interval, to witness this node's chain head.

A round asks each peer for the last head it signed for us, sends the hashes of the entries
since (at most `MAX_ENTRIES_PER_HEAD` at once: a longer gap is witnessed in steps, each a head
of its own), checks the signature that comes back and keeps it, for `audit verify`. A refusal
is an alert: the peer's log line and counter say why, and so does ours.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Callable, Sequence

import grpc
import structlog

from concordat.evidence.v1 import evidence_pb2, evidence_pb2_grpc
from gateway.audit import AuditLog, AuditPosition, ChainHead, WitnessSignature
from gateway.audit.chain import GENESIS_COMMITMENT, fold_commitment, witness_message
from gateway.federation.assertions import DirectoryKeys
from gateway.federation.peers import PeerClients

log = structlog.get_logger("concordat.witnessing")

MAX_ENTRIES_PER_HEAD = 100_000
_HASHES_PER_READ = 10_000


class HeadWitnessing:
    """This node's side of witnessing: its head, the commitment over it, the peers' signatures."""

    def __init__(
        self,
        *,
        node: str,
        audit: AuditLog,
        peers: PeerClients,
        witnesses: Callable[[], Sequence[str]],
        witness_keys: DirectoryKeys,
        interval_seconds: float,
        timeout_seconds: float = 10.0,
    ) -> None:
        self._node = node
        self._audit = audit
        self._peers = peers
        self._witnesses = witnesses
        self._witness_keys = witness_keys
        self._interval = interval_seconds
        self._timeout = timeout_seconds
        # The commitment over this node's own chain, as far as it has been folded.
        self._folded: tuple[int, str] = (0, GENESIS_COMMITMENT)
        self._task: asyncio.Task[None] | None = None
        # Heads peers refused to sign, by peer: each one an alert.
        self.refused: Counter[str] = Counter()

    def start(self) -> None:
        if self._interval > 0 and self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="concordat-witnessing"
            )

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self.round()

    async def round(self) -> dict[str, str]:
        """Asks every witness once; returns each one's outcome (`signed up to N` or why not)."""
        outcomes: dict[str, str] = {}
        for witness in self._witnesses():
            try:
                signed = await self.ask(witness)
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.FAILED_PRECONDITION:
                    self.refused[witness] += 1
                    log.error("witness.head_refused", witness=witness, detail=exc.details())
                else:
                    log.warning("witness.unreachable", witness=witness, status=exc.code().name)
                outcomes[witness] = f"{exc.code().name}: {exc.details()}"
                continue
            except Exception as exc:  # noqa: BLE001 - one witness's fault must not end the rounds
                log.error("witness.round_failed", witness=witness, error=type(exc).__name__)
                outcomes[witness] = f"failed: {type(exc).__name__}"
                continue
            outcomes[witness] = f"signed up to {signed}"
        return outcomes

    async def ask(self, witness: str) -> int:
        """Has `witness` sign this node's head; returns the last entry it has signed."""
        head = await self._audit.head()
        stub = evidence_pb2_grpc.EvidenceServiceStub(self._peers.get(witness).channel)
        last: evidence_pb2.GetWitnessedHeadResponse = await stub.GetWitnessedHead(
            evidence_pb2.GetWitnessedHeadRequest(), timeout=self._timeout
        )
        since = last.head.seq if last.HasField("head") else 0
        if head is None or (since == head.seq and last.head.entry_hash == head.hash):
            return since
        if head.seq <= since:
            # The witness signed a later head, or another one at this entry: this log no
            # longer extends it, and the witness will refuse (and must).
            commitment = await self._commitment_at(head.seq)
            await self._send(stub, witness, _as_head(self._node, head, commitment), since, b"")
            return since
        while since < head.seq:
            upto = min(head.seq, since + MAX_ENTRIES_PER_HEAD)
            hashes = await self._audit.entry_hashes(since + 1, upto)
            commitment = await self._commitment_at(upto)
            # A step short of the head is a checkpoint: its time is left empty.
            position = head if upto == head.seq else AuditPosition(upto, hashes[-1], "")
            await self._send(
                stub,
                witness,
                _as_head(self._node, position, commitment),
                since,
                b"".join(bytes.fromhex(h) for h in hashes),
            )
            since = upto
        return since

    async def _send(
        self,
        stub: evidence_pb2_grpc.EvidenceServiceStub,
        witness: str,
        head: ChainHead,
        since: int,
        entry_hashes: bytes,
    ) -> None:
        reply: evidence_pb2.WitnessHeadResponse = await stub.WitnessHead(
            evidence_pb2.WitnessHeadRequest(
                head=evidence_pb2.ChainHead(
                    seq=head.seq,
                    entry_hash=head.hash,
                    commitment=head.commitment,
                    recorded_at=head.at,
                ),
                since_seq=since,
                entry_hashes=entry_hashes,
            ),
            timeout=self._timeout,
        )
        signature = WitnessSignature(
            witness=witness,
            kid=reply.kid,
            head=head,
            signed_at=reply.signed_at,
            signature=reply.signature,
        )
        # Kept only if it is the witness's, over exactly this head.
        self._witness_keys(witness, reply.kid).verify(
            bytes.fromhex(reply.signature), witness_message(witness, head, reply.signed_at)
        )
        await self._audit.add_witness_signature(signature)

    async def _commitment_at(self, seq: int) -> str:
        folded_seq, commitment = self._folded
        if folded_seq > seq:
            folded_seq, commitment = 0, GENESIS_COMMITMENT
        while folded_seq < seq:
            upto = min(seq, folded_seq + _HASHES_PER_READ)
            hashes = await self._audit.entry_hashes(folded_seq + 1, upto)
            if len(hashes) != upto - folded_seq:
                raise ValueError(f"entries {folded_seq + 1}..{upto} are not all in the log")
            commitment = fold_commitment(commitment, hashes)
            folded_seq = upto
        self._folded = (folded_seq, commitment)
        return commitment


def _as_head(node: str, position: AuditPosition, commitment: str) -> ChainHead:
    return ChainHead(
        node=node,
        seq=position.seq,
        hash=position.hash,
        commitment=commitment,
        at=position.recorded_at,
    )
